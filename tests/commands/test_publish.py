"""``python -m tflite_opt.publish``: flags → what is published where, a line per published model, one-line errors
(publishing stubbed); real publishes end to end, never overwriting a version nor a damaged index."""

from pathlib import Path

import pytest
from helpers import one_line_error

from tflite_opt import publish
from tflite_opt.publish import main
from tflite_opt.stages.repository import Published


@pytest.fixture
def job(stub):
    return stub(publish, "publish", result=[])


def test_the_folders_and_version_reach_publish(job):
    assert main(["--from", "artifacts", "--to", "repo", "--version", "2"]) == 0
    assert job.received == {"source": Path("artifacts"), "repository": Path("repo"), "version": "2"}


def test_without_a_version_the_manifests_decide(job):
    assert main(["--from", "artifacts", "--to", "repo"]) == 0
    assert job.received["version"] is None


def test_a_line_per_published_model_says_what_went_where(stub, capsys):
    published = [
        Published("mnist_cnn", "1", Path("repo/mnist_cnn/1"), ("float32", "int8")),
        Published("faces", "3", Path("repo/faces/3"), ("int8-pruned80",)),
    ]
    stub(publish, "publish", result=published)
    assert main(["--from", "artifacts", "--to", "repo"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"published mnist_cnn 1 (float32, int8) to {Path('repo/mnist_cnn/1')}",
        f"published faces 3 (int8-pruned80) to {Path('repo/faces/3')}",
    ]


@pytest.mark.parametrize("args", [["--to", "repo"], ["--from", "artifacts"], []], ids=["no --from", "no --to", "none"])
def test_both_folders_are_required(job, args, capsys):
    assert main(args) == 2
    assert one_line_error(capsys) == "error: pass --from <convert output folder> and --to <repository folder>"
    assert job.calls == []


def test_a_typed_error_from_publishing_is_one_line_and_its_exit_code(stub, typed_error, capsys):
    error_class, code = typed_error
    stub(publish, "publish", error=error_class("mnist_cnn 1 is already published"))
    assert main(["--from", "artifacts", "--to", "repo"]) == code
    assert one_line_error(capsys) == "error: mnist_cnn 1 is already published"


@pytest.mark.slow
def test_publishing_prints_what_went_where_and_never_overwrites(bundle_dir, tmp_path, capsys):
    """End to end."""
    repo = tmp_path / "repo"
    assert main(["--from", str(bundle_dir), "--to", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == f"published mnist_cnn 1 (float32, int8) to {repo / 'mnist_cnn' / '1'}"
    assert main(["--from", str(bundle_dir), "--to", str(repo)]) == 2
    assert "already published" in one_line_error(capsys)


@pytest.mark.slow
def test_a_damaged_index_is_one_line_exit_2_and_left_as_it_was(bundle_dir, tmp_path, capsys):
    """End to end: publishing over a damaged index.json would drop the versions it lists."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "index.json").write_text('{"schema_version": 1, "models": {"mnist_cnn": ')
    assert main(["--from", str(bundle_dir), "--to", str(repo)]) == 2
    assert one_line_error(capsys).startswith(f"error: {repo / 'index.json'} is damaged: not valid JSON (")
    assert (repo / "index.json").read_text() == '{"schema_version": 1, "models": {"mnist_cnn": '
    assert not (repo / "mnist_cnn").exists()
