"""``tflite-opt <command>``: the dispatcher reaches every command, and help does not wait for TensorFlow."""

import subprocess
import sys

import pytest

from tflite_opt import cli


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_command_answers_help_through_the_dispatcher(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m tflite_opt.") and "--[no]verbose" in text


def test_convert_help_groups_its_flags(capsys):
    assert cli.main(["convert", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--[no]full-int8" in text and "Calibration and evaluation data:" in text
    assert text.count("--[no]verbose") == 1


def test_an_unknown_command_is_exit_2_naming_the_commands(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'; commands: convert, prune, benchmark, debug" in capsys.readouterr().err
    assert cli.main([]) == 0
    assert "usage: tflite-opt <command> [flags]" in capsys.readouterr().out


def test_help_through_the_dispatcher_imports_no_tensorflow():
    code = "import sys; from tflite_opt import cli; cli.main(['convert', '--help']); print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip().splitlines()[-1] == "False"
