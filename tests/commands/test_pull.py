"""``python -m tflite_opt.pull``: flags → what is pulled from where, a line per verified file, what is missing named
in one line (pulling stubbed); a real pull end to end."""

from pathlib import Path

import pytest
from helpers import one_line_error

from tflite_opt import pull
from tflite_opt.pull import main
from tflite_opt.stages.repository import IntegrityError, publish


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
    }


def test_the_variant_and_version_asked_for_reach_pull(job):
    args = ["--from", "repo", "--model", "mnist_cnn", "--to", "app", "--variant", "int8-pruned80", "--version", "2"]
    assert main(args) == 0
    assert (job.received["variant"], job.received["version"]) == ("int8-pruned80", "2")


def test_a_line_per_verified_file(stub, capsys):
    written = [Path("app/mnist_cnn.int8.tflite"), Path("app/mnist_cnn.labels.txt")]
    stub(pull, "pull", result=written)
    assert main(["--from", "repo", "--model", "mnist_cnn", "--to", "app"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"verified and wrote {path}" for path in written]


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


@pytest.mark.slow
def test_pulled_files_are_verified_and_listed(bundle_dir, tmp_path, capsys):
    """End to end."""
    publish(bundle_dir, tmp_path / "repo")
    assert main(["--from", str(tmp_path / "repo"), "--model", "mnist_cnn", "--to", str(tmp_path / "app")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("/", 1)[-1] for line in lines] == [
        "mnist_cnn.int8.tflite",
        "mnist_cnn.int8.manifest.json",
        "mnist_cnn.labels.txt",
    ]
    assert all(line.startswith("verified and wrote ") for line in lines)
    assert all((tmp_path / "app" / line.rsplit("/", 1)[-1]).is_file() for line in lines)
