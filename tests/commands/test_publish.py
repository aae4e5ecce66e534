"""``python -m tflite_opt.publish``: a line per published model; a second publish of a version refused."""

import pytest
from helpers import one_line_error

from tflite_opt.publish import main

pytestmark = pytest.mark.slow


def test_publishing_prints_what_went_where_and_never_overwrites(bundle_dir, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["--from", str(bundle_dir), "--to", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == f"published mnist_cnn 1 (float32, int8) to {repo / 'mnist_cnn' / '1'}"
    assert main(["--from", str(bundle_dir), "--to", str(repo)]) == 2
    assert "already published" in one_line_error(capsys)


def test_both_folders_are_required(capsys):
    assert main(["--to", "somewhere"]) == 2
    assert "pass --from <convert output folder> and --to <repository folder>" in one_line_error(capsys)
