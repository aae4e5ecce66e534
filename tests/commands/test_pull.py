"""``python -m tflite_opt.pull``: flags → what is pulled from where, a line per file saying whether it was verified,
what is missing named in one line (pulling stubbed); real pulls end to end: every file verified, a tampered or
damaged repository refused in one line with nothing written, existing files kept unless --overwrite, an older
index pulled with its unverified files said so."""

import json
import re
from pathlib import Path

import pytest
from helpers import BUNDLE_FILES, one_line_error

from tflite_opt import pull
from tflite_opt.pull import main
from tflite_opt.stages.repository import IntegrityError, Pulled, publish

HASH = "[0-9a-f]{64}"
BUNDLE = BUNDLE_FILES


@pytest.fixture
def job(stub):
    return stub(pull, "pull", result=[])


def test_the_int8_variant_of_the_latest_version_is_pulled_by_default(job):
    assert main(["--from", "https://models.example/repo", "--model", "mnist_cnn", "--to", "app"]) == 0
    assert job.received == {
        "location": "https://models.example/repo",
        "model": "mnist_cnn",
        "variant": "int8",
        "destination": Path("app"),
        "version": None,
        "overwrite": False,
    }


def test_the_variant_and_version_asked_for_reach_pull(job):
    args = ["--from", "repo", "--model", "mnist_cnn", "--to", "app", "--variant", "int8-pruned80", "--version", "2"]
    assert main(args) == 0
    assert (job.received["variant"], job.received["version"]) == ("int8-pruned80", "2")


def test_overwrite_reaches_pull(job):
    assert main(["--from", "repo", "--model", "mnist_cnn", "--to", "app", "--overwrite"]) == 0
    assert job.received["overwrite"] is True


def test_a_line_per_file_says_verified_only_where_it_was_checked(stub, capsys):
    pulled = [
        Pulled(Path("app/mnist_cnn.int8.tflite"), verified=True),
        Pulled(Path("app/mnist_cnn.labels.txt"), verified=True, unchanged=True),
        Pulled(Path("app/mnist_cnn.int8.kt"), verified=False),
        Pulled(Path("app/mnist_cnn.int8.swift"), verified=False, unchanged=True),
    ]
    stub(pull, "pull", result=pulled)
    assert main(["--from", "repo", "--model", "mnist_cnn", "--to", "app"]) == 0
    why = "not verified: index.json, written by an older tflite_opt, records no sha256 for it"
    assert capsys.readouterr().out.splitlines() == [
        f"verified and wrote {Path('app/mnist_cnn.int8.tflite')}",
        f"verified {Path('app/mnist_cnn.labels.txt')} (already there, identical)",
        f"wrote {Path('app/mnist_cnn.int8.kt')} ({why})",
        f"kept {Path('app/mnist_cnn.int8.swift')}, already there and identical ({why})",
    ]


@pytest.mark.parametrize(
    "args",
    [["--model", "m", "--to", "app"], ["--from", "repo", "--to", "app"], ["--from", "repo", "--model", "m"]],
    ids=["no --from", "no --model", "no --to"],
)
def test_the_repository_model_and_destination_are_required(job, args, capsys):
    assert main(args) == 2
    assert one_line_error(capsys) == "error: pass --from <repository>, --model <name> and --to <folder>"
    assert job.calls == []


def test_a_file_that_does_not_match_its_sha256_is_one_line_exit_2(stub, capsys):
    stub(pull, "pull", error=IntegrityError("mnist_cnn.int8.tflite does not match its sha256"))
    assert main(["--from", "repo", "--model", "mnist_cnn", "--to", "app"]) == 2
    assert one_line_error(capsys) == "error: mnist_cnn.int8.tflite does not match its sha256"


def test_a_typed_error_from_pulling_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(pull, "pull", error=error_class("repo has no model 'nope'"))
    assert main(["--from", "repo", "--model", "nope", "--to", "app"]) == code
    assert one_line_error(capsys) == "error: repo has no model 'nope'"


@pytest.fixture
def repo(bundle_dir, tmp_path) -> Path:
    """The default bundles published into a folder (end-to-end tests)."""
    publish(bundle_dir, tmp_path / "repo")
    return tmp_path / "repo"


def pull_into(repo: Path, app: Path, *extra: str) -> int:
    return main(["--from", str(repo), "--model", "mnist_cnn", "--to", str(app), *extra])


@pytest.mark.slow
def test_every_file_arrives_verified_and_listed(bundle_dir, repo, tmp_path, capsys):
    """End to end: the model, manifest, labels and the Kotlin and Swift helpers."""
    assert pull_into(repo, tmp_path / "app") == 0
    assert capsys.readouterr().out.splitlines() == [f"verified and wrote {tmp_path / 'app' / name}" for name in BUNDLE]
    assert sorted(p.name for p in (tmp_path / "app").iterdir()) == sorted(BUNDLE)
    assert all((tmp_path / "app" / name).read_bytes() == (bundle_dir / name).read_bytes() for name in BUNDLE)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist_cnn.labels.txt", "mnist_cnn.int8.manifest.json", "mnist_cnn.int8.kt"])
def test_a_tampered_file_is_named_in_one_line_exit_2_and_nothing_is_written(repo, tmp_path, capsys, name):
    published = repo / "mnist_cnn" / "1" / name
    published.write_bytes(published.read_bytes().replace(b"1", b"7", 1))
    assert pull_into(repo, tmp_path / "app") == 2
    error = one_line_error(capsys)
    pattern = f"error: mnist_cnn/1/{re.escape(name)} has sha256 {HASH}, but index.json says {HASH}: .*"
    assert re.fullmatch(pattern, error)
    actual, expected = re.findall(HASH, error)
    assert actual != expected
    assert error.endswith("nothing was written")
    assert not (tmp_path / "app").exists()


@pytest.mark.slow
def test_a_damaged_index_is_one_line_exit_2(repo, tmp_path, capsys):
    (repo / "index.json").write_bytes((repo / "index.json").read_bytes()[:200])
    assert pull_into(repo, tmp_path / "app") == 2
    assert one_line_error(capsys).startswith(f"error: {repo / 'index.json'} is damaged: not valid JSON (")
    assert not (tmp_path / "app").exists()


@pytest.mark.slow
def test_an_existing_file_is_refused_without_overwrite_and_replaced_with_it(repo, tmp_path, capsys):
    app = tmp_path / "app"
    app.mkdir()
    (app / "mnist_cnn.labels.txt").write_text("cat\ndog\n")
    assert pull_into(repo, app) == 2
    assert one_line_error(capsys) == (
        f"error: {app / 'mnist_cnn.labels.txt'} exists and differs from the pulled file; pass --overwrite to replace it"
    )
    assert [p.name for p in app.iterdir()] == ["mnist_cnn.labels.txt"]
    assert (app / "mnist_cnn.labels.txt").read_text() == "cat\ndog\n"
    assert pull_into(repo, app, "--overwrite") == 0
    assert f"verified and wrote {app / 'mnist_cnn.labels.txt'}" in capsys.readouterr().out.splitlines()
    published = repo / "mnist_cnn" / "1" / "mnist_cnn.labels.txt"
    assert (app / "mnist_cnn.labels.txt").read_bytes() == published.read_bytes()


@pytest.mark.slow
def test_an_older_index_is_pulled_and_its_unchecked_files_said_not_verified(repo, tmp_path, capsys):
    index = json.loads((repo / "index.json").read_text())
    for entry in index["models"]["mnist_cnn"]["versions"]["1"]["variants"].values():
        for key in set(entry) - {"file", "sha256", "size_bytes", "manifest", "labels"}:
            del entry[key]
    (repo / "index.json").write_text(json.dumps(index))
    assert pull_into(repo, tmp_path / "app") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"verified and wrote {tmp_path / 'app' / BUNDLE[0]}"
    why = "not verified: index.json, written by an older tflite_opt, records no sha256 for it"
    # Golden vectors came after such indexes: an entry without them brings none.
    older = [name for name in BUNDLE[1:] if not name.endswith(".golden.json")]
    assert lines[1:] == [f"wrote {tmp_path / 'app' / name} ({why})" for name in older]
