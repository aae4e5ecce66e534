"""The artifact repository: publish never overwrites a version, pull checks every byte before writing."""

import functools
import http.server
import json
import shutil
import threading

import pytest

from tflite_opt.core.errors import DataError, OutputExistsError
from tflite_opt.stages import repository
from tflite_opt.stages.repository import IntegrityError, publish, pull

pytestmark = pytest.mark.slow


@pytest.fixture
def http_repository(tmp_path):
    """A repository folder served by a local HTTP server on 127.0.0.1."""
    folder = tmp_path / "repo"
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


def test_publish_then_pull_over_http_is_byte_identical(bundle_dir, http_repository, tmp_path):
    folder, url = http_repository
    (published,) = publish(bundle_dir, folder)
    assert (published.model, published.version, set(published.variants)) == ("mnist_cnn", "1", {"float32", "int8"})
    index = json.loads((folder / "index.json").read_text())
    assert index["models"]["mnist_cnn"]["latest"] == "1"
    assert set(index["models"]["mnist_cnn"]["versions"]["1"]["variants"]) == {"float32", "int8"}
    written = pull(url, "mnist_cnn", "int8", tmp_path / "app")
    assert sorted(p.name for p in written) == [
        "mnist_cnn.int8.manifest.json",
        "mnist_cnn.int8.tflite",
        "mnist_cnn.labels.txt",
    ]
    for path in written:
        assert path.read_bytes() == (bundle_dir / path.name).read_bytes()


def test_a_published_version_is_never_overwritten(bundle_dir, tmp_path):
    repo = tmp_path / "repo"
    publish(bundle_dir, repo)
    before = (repo / "index.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already published"):
        publish(bundle_dir, repo)
    assert (repo / "index.json").read_bytes() == before
    publish(bundle_dir, repo, version="2")
    index = json.loads((repo / "index.json").read_text())
    assert index["models"]["mnist_cnn"]["latest"] == "2" and set(index["models"]["mnist_cnn"]["versions"]) == {"1", "2"}


def test_a_tampered_file_is_refused_and_nothing_is_left_in_the_destination(bundle_dir, http_repository, tmp_path):
    folder, url = http_repository
    publish(bundle_dir, folder)
    published = folder / "mnist_cnn" / "1" / "mnist_cnn.int8.tflite"
    tampered = bytearray(published.read_bytes())
    tampered[1000] ^= 0xFF
    published.write_bytes(bytes(tampered))
    destination = tmp_path / "app"
    with pytest.raises(IntegrityError, match="altered or damaged; nothing was written"):
        pull(url, "mnist_cnn", "int8", destination)
    assert not destination.exists() or list(destination.iterdir()) == []


@pytest.mark.parametrize(
    "model, variant, version, message",
    [
        ("nope", "int8", None, "has no model 'nope'"),
        ("mnist_cnn", "float16", None, "has no variant 'float16'"),
        ("mnist_cnn", "int8", "9", "has no version '9'"),
    ],
)
def test_pull_names_what_is_missing(bundle_dir, tmp_path, model, variant, version, message):
    repo = tmp_path / "repo"
    publish(bundle_dir, repo)
    with pytest.raises(DataError, match=message):
        pull(str(repo), model, variant, tmp_path / "app", version)


def test_an_index_pointing_outside_the_repository_is_refused(bundle_dir, tmp_path):
    repo = tmp_path / "repo"
    publish(bundle_dir, repo)
    index = json.loads((repo / "index.json").read_text())
    index["models"]["mnist_cnn"]["versions"]["1"]["variants"]["int8"]["manifest"] = "../../etc/passwd"
    (repo / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="points outside the repository"):
        pull(str(repo), "mnist_cnn", "int8", tmp_path / "app")


def test_a_bundle_whose_model_changed_since_convert_is_not_published(bundle_dir, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(bundle_dir, source)
    (source / "mnist_cnn.int8.tflite").write_bytes(b"TFL3 changed")
    with pytest.raises(DataError, match="does not match mnist_cnn.int8.manifest.json"):
        publish(source, tmp_path / "repo")
    assert not (tmp_path / "repo" / "mnist_cnn").exists()


def test_an_interrupted_publish_leaves_no_version_and_the_index_unchanged(bundle_dir, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    publish(bundle_dir, repo, version="1")
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
