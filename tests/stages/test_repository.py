"""The artifact repository: publish never overwrites a version and records every file's sha256; pull checks every
byte before anything is moved into place, and a failed pull leaves the destination as it was."""

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import threading

import pytest
from helpers import BUNDLE_FILES

from tflite_opt.core.errors import DataError, OutputExistsError
from tflite_opt.stages import repository
from tflite_opt.stages.repository import INDEX_KEYS, IntegrityError, Pulled, publish, pull

pytestmark = pytest.mark.slow

BUNDLE = BUNDLE_FILES
VERSION_FOLDER = "mnist_cnn/1"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tamper(path) -> bytes:
    """Flip one bit in the middle of a file, as a damaged upload or a hand edit would; the new bytes."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return bytes(data)


def edit_index(repo, change) -> None:
    """Apply ``change`` to the int8 entry of index.json."""
    index = json.loads((repo / "index.json").read_text())
    change(index["models"]["mnist_cnn"]["versions"]["1"]["variants"]["int8"])
    (repo / "index.json").write_text(json.dumps(index))


def as_older_index(entry) -> None:
    """An entry as publish wrote it before it recorded every file's sha256: the model's only, and no helpers."""
    for key in list(entry):
        if key not in ("file", "sha256", "size_bytes", "manifest", "labels"):
            del entry[key]


def listing(folder) -> dict[str, bytes]:
    """Every file under ``folder``, hidden ones included, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def repo(bundle_dir, tmp_path):
    """The default bundles published as version 1 into a folder."""
    folder = tmp_path / "repo"
    publish(bundle_dir, folder)
    return folder


@pytest.fixture
def http_repository(tmp_path):
    """A repository folder served by a local HTTP server on 127.0.0.1."""
    folder = tmp_path / "served"
    folder.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# ---------------------------------------------------------------------------------------------- publish


def test_publish_records_the_path_and_sha256_of_every_file_it_copied(repo):
    index = json.loads((repo / "index.json").read_text())
    entry = index["models"]["mnist_cnn"]["versions"]["1"]["variants"]["int8"]
    assert index["schema_version"] == 1
    for name, (path_key, hash_key) in zip(BUNDLE, INDEX_KEYS.values(), strict=True):
        assert entry[path_key] == f"{VERSION_FOLDER}/{name}"
        assert entry[hash_key] == sha256((repo / VERSION_FOLDER / name).read_bytes()), name
    assert entry["size_bytes"] == (repo / VERSION_FOLDER / BUNDLE[0]).stat().st_size


def test_a_published_version_is_never_overwritten(bundle_dir, repo):
    before = (repo / "index.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already published"):
        publish(bundle_dir, repo)
    assert (repo / "index.json").read_bytes() == before
    publish(bundle_dir, repo, version="2")
    index = json.loads((repo / "index.json").read_text())
    assert index["models"]["mnist_cnn"]["latest"] == "2" and set(index["models"]["mnist_cnn"]["versions"]) == {"1", "2"}


def test_a_damaged_index_is_refused_by_publish_and_left_as_it_was(bundle_dir, repo):
    damaged = (repo / "index.json").read_bytes()[:200]
    (repo / "index.json").write_bytes(damaged)
    with pytest.raises(DataError, match=r"index.json is damaged: not valid JSON .*nothing was published"):
        publish(bundle_dir, repo, version="2")
    assert (repo / "index.json").read_bytes() == damaged
    assert not (repo / "mnist_cnn" / "2").exists()


def test_a_damaged_manifest_is_not_published(bundle_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(bundle_dir, source)
    (source / "mnist_cnn.int8.manifest.json").write_text('{"model": "mnist_cnn", ')
    with pytest.raises(DataError, match="mnist_cnn.int8.manifest.json is damaged: not valid JSON"):
        publish(source, tmp_path / "repo")
    assert not (tmp_path / "repo" / "mnist_cnn").exists()


def test_a_bundle_whose_model_changed_since_convert_is_not_published(bundle_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(bundle_dir, source)
    (source / "mnist_cnn.int8.tflite").write_bytes(b"TFL3 changed")
    with pytest.raises(DataError, match="does not match mnist_cnn.int8.manifest.json"):
        publish(source, tmp_path / "repo")
    assert not (tmp_path / "repo" / "mnist_cnn").exists()


def test_an_interrupted_publish_leaves_no_version_and_the_index_unchanged(bundle_dir, repo, monkeypatch):
    before = (repo / "index.json").read_bytes()
    copies = []

    def interrupted_copy(source, target):
        copies.append(source)
        if len(copies) == 3:
            raise KeyboardInterrupt
        return shutil.copyfile(source, target)

    monkeypatch.setattr(repository.shutil, "copy2", interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        publish(bundle_dir, repo, version="2")
    assert sorted(p.name for p in (repo / "mnist_cnn").iterdir()) == ["1"]
    assert (repo / "index.json").read_bytes() == before


# ---------------------------------------------------------------------------------------------- pull


def test_pull_over_http_brings_every_file_verified_and_byte_identical(bundle_dir, http_repository, tmp_path):
    folder, url = http_repository
    (published,) = publish(bundle_dir, folder)
    assert (published.model, published.version, set(published.variants)) == ("mnist_cnn", "1", {"float32", "int8"})
    pulled = pull(url, "mnist_cnn", "int8", tmp_path / "app")
    assert [item.path.name for item in pulled] == BUNDLE
    assert all(item.verified and not item.unchanged for item in pulled)
    assert listing(tmp_path / "app") == {name: (bundle_dir / name).read_bytes() for name in BUNDLE}


@pytest.mark.parametrize("name", BUNDLE)
def test_a_tampered_file_is_named_with_both_hashes_and_nothing_is_written(repo, tmp_path, name):
    expected = sha256((repo / VERSION_FOLDER / name).read_bytes())
    actual = sha256(tamper(repo / VERSION_FOLDER / name))
    destination = tmp_path / "app" / "models"
    with pytest.raises(IntegrityError) as caught:
        pull(str(repo), "mnist_cnn", "int8", destination)
    message = str(caught.value)
    assert message.startswith(f"{VERSION_FOLDER}/{name} has sha256 {actual}, but index.json says {expected}: ")
    assert message.endswith("nothing was written")
    assert not (tmp_path / "app").exists()


def test_a_wrong_hash_in_the_index_blames_the_model_against_the_index_with_two_different_hashes(repo, tmp_path):
    edit_index(repo, lambda entry: entry.update(sha256="0" * 64))
    with pytest.raises(IntegrityError) as caught:
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
    hashes = re.findall(r"[0-9a-f]{64}", str(caught.value))
    assert str(caught.value).startswith(f"{VERSION_FOLDER}/mnist_cnn.int8.tflite has sha256 ")
    assert "but index.json says" in str(caught.value)
    assert hashes == [sha256((repo / VERSION_FOLDER / BUNDLE[0]).read_bytes()), "0" * 64]


def test_a_manifest_that_disagrees_with_its_model_is_named(repo, tmp_path):
    """An older index does not vouch for the manifest; the model's sha256 in it is still checked."""
    manifest_path = repo / VERSION_FOLDER / BUNDLE[1]
    manifest = json.loads(manifest_path.read_text())
    manifest["file"]["sha256"] = "f" * 64
    manifest_path.write_text(json.dumps(manifest))
    edit_index(repo, as_older_index)
    with pytest.raises(IntegrityError, match=f"but {VERSION_FOLDER}/{BUNDLE[1]} says {'f' * 64}: "):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[:200], "index.json is damaged: not valid JSON"),
        (lambda text: "[]", "index.json is damaged: its content is not a JSON object"),
        (lambda text: '{"models": {"mnist_cnn": []}}', "index.json is damaged: model 'mnist_cnn' is not a JSON object"),
        (lambda text: text.replace('"mnist_cnn/1/mnist_cnn.int8.tflite"', "7"), "damaged: file is not a file path"),
        (lambda text: text.replace('"sha256": "', '"sha256": "x'), "damaged: sha256 is not a sha256"),
    ],
    ids=["truncated", "a list", "a model as a list", "a number for a path", "a malformed sha256"],
)
def test_a_damaged_index_is_a_data_error_and_nothing_is_written(repo, tmp_path, damage, message):
    (repo / "index.json").write_text(damage((repo / "index.json").read_text()))
    with pytest.raises(DataError, match=message):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
    assert not (tmp_path / "app").exists()


def test_a_damaged_manifest_of_an_older_index_is_a_data_error(repo, tmp_path):
    edit_index(repo, as_older_index)
    (repo / VERSION_FOLDER / BUNDLE[1]).write_text("{")
    with pytest.raises(DataError, match=f"{BUNDLE[1]} is damaged: not valid JSON"):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
    assert not (tmp_path / "app").exists()


def test_an_older_index_is_pulled_with_only_the_model_verified(bundle_dir, repo, tmp_path):
    edit_index(repo, as_older_index)
    pulled = pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
    older = [name for name in BUNDLE if not name.endswith(".golden.json")]  # golden vectors came after
    assert [(item.path.name, item.verified) for item in pulled] == [
        (older[0], True),
        *((name, False) for name in older[1:]),
    ]
    assert listing(tmp_path / "app") == {name: (bundle_dir / name).read_bytes() for name in older}


def test_an_older_index_without_helpers_in_the_repository_pulls_the_rest(bundle_dir, http_repository, tmp_path):
    """Over HTTP, where the helpers guessed beside the model answer 404."""
    folder, url = http_repository
    publish(bundle_dir, folder)
    edit_index(folder, as_older_index)
    for name in BUNDLE[3:]:
        (folder / VERSION_FOLDER / name).unlink()
    pulled = pull(url, "mnist_cnn", "int8", tmp_path / "app")
    assert [(item.path.name, item.verified) for item in pulled] == [
        (BUNDLE[0], True),
        (BUNDLE[1], False),
        (BUNDLE[2], False),
    ]


def test_a_file_listed_in_the_index_but_missing_is_an_error(repo, tmp_path):
    (repo / VERSION_FOLDER / "mnist_cnn.int8.swift").unlink()
    with pytest.raises(DataError, match="mnist_cnn.int8.swift does not exist"):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
    assert not (tmp_path / "app").exists()


def test_a_different_file_in_the_destination_is_kept_unless_overwrite(repo, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "mnist_cnn.labels.txt").write_text("cat\ndog\n")
    with pytest.raises(OutputExistsError, match="mnist_cnn.labels.txt exists and differs .* pass --overwrite"):
        pull(str(repo), "mnist_cnn", "int8", app)
    assert listing(app) == {"mnist_cnn.labels.txt": b"cat\ndog\n"}
    pulled = pull(str(repo), "mnist_cnn", "int8", app, overwrite=True)
    assert all(item.verified and not item.unchanged for item in pulled)
    assert listing(app) == {name: (repo / VERSION_FOLDER / name).read_bytes() for name in BUNDLE}


def test_identical_files_are_kept_so_a_second_variant_shares_the_labels(repo, tmp_path):
    app = tmp_path / "app"
    pull(str(repo), "mnist_cnn", "int8", app)
    pulled = pull(str(repo), "mnist_cnn", "float32", app)
    assert [(item.path.name, item.unchanged) for item in pulled if item.unchanged] == [("mnist_cnn.labels.txt", True)]
    assert all(item.verified for item in pulled)
    assert pull(str(repo), "mnist_cnn", "int8", app) == [Pulled(app / name, True, True) for name in BUNDLE]


def test_a_download_interrupted_at_the_third_file_leaves_nothing_behind(repo, tmp_path, monkeypatch):
    real_fetch = repository._Source.fetch
    fetches = []

    def interrupted_fetch(self, relative, target):
        fetches.append(relative)
        if len(fetches) == 3:
            raise KeyboardInterrupt
        return real_fetch(self, relative, target)

    monkeypatch.setattr(repository._Source, "fetch", interrupted_fetch)
    with pytest.raises(KeyboardInterrupt):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app" / "models")
    assert not (tmp_path / "app").exists()


def test_a_rename_failing_at_the_third_file_undoes_the_first_two(repo, tmp_path, monkeypatch):
    app = tmp_path / "app"
    app.mkdir()
    (app / BUNDLE[0]).write_bytes(b"the app's old model")
    (app / "notes.txt").write_text("mine")
    before = listing(app)
    real_replace = os.replace
    renames = []

    def failing_replace(source, target):
        renames.append(target)
        if len(renames) == 3:
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(repository.os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        pull(str(repo), "mnist_cnn", "int8", app, overwrite=True)
    assert listing(app) == before


@pytest.mark.parametrize(
    "model, variant, version, message",
    [
        ("nope", "int8", None, "has no model 'nope'"),
        ("mnist_cnn", "float16", None, "has no variant 'float16'"),
        ("mnist_cnn", "int8", "9", "has no version '9'"),
    ],
)
def test_pull_names_what_is_missing(repo, tmp_path, model, variant, version, message):
    with pytest.raises(DataError, match=message):
        pull(str(repo), model, variant, tmp_path / "app", version)


def test_a_folder_without_an_index_is_not_a_repository(tmp_path):
    with pytest.raises(DataError, match="is not a model repository: .*index.json does not exist"):
        pull(str(tmp_path), "mnist_cnn", "int8", tmp_path / "app")


def test_an_index_pointing_outside_the_repository_is_refused(repo, tmp_path):
    edit_index(repo, lambda entry: entry.update(manifest="../../etc/passwd"))
    with pytest.raises(DataError, match="points outside the repository"):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")
