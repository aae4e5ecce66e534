"""``python -m tflite_opt.pull``: a line per verified file; what is missing named in one line."""

import pytest
from helpers import one_line_error

from tflite_opt.pull import main
from tflite_opt.stages.repository import publish

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(bundle_dir, tmp_path):
    publish(bundle_dir, tmp_path / "repo")
    return tmp_path / "repo"


def test_pulled_files_are_verified_and_listed(repo, tmp_path, capsys):
    assert main(["--from", str(repo), "--model", "mnist_cnn", "--to", str(tmp_path / "app")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.rsplit("/", 1)[-1] for line in lines] == [
        "mnist_cnn.int8.tflite",
        "mnist_cnn.int8.manifest.json",
        "mnist_cnn.labels.txt",
    ]
    assert all(line.startswith("verified and wrote ") for line in lines)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "has no model 'nope'"),
        (["--model", "mnist_cnn", "--variant", "float16"], "has no variant 'float16'"),
        (["--model", "mnist_cnn", "--version", "9"], "has no version '9'"),
        (["--to", "x"], "pass --from <repository>, --model <name> and --to <folder>"),
    ],
)
def test_what_is_missing_is_named_in_one_line(repo, tmp_path, capsys, args, message):
    base = ["--from", str(repo)] if "--to" in args else ["--from", str(repo), "--to", str(tmp_path / "app")]
    assert main([*base, *args]) == 2
    assert message in one_line_error(capsys)
