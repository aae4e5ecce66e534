"""``tflite-opt <command>``: the dispatcher reaches every command, and help does not wait for TensorFlow."""

import subprocess
import sys

import pytest

from tflite_opt import benchmark, cli, convert, debug, prune, publish, pull, reference_runner, version_check
from tflite_opt.core.config import ClusterConfig, PruneConfig, QatConfig
from tflite_opt.core.version import __version__


def test_each_command_name_dispatches_to_its_modules_main():
    assert cli.COMMANDS == {
        "convert": convert.main,
        "prune": prune.main,
        "benchmark": benchmark.main,
        "debug": debug.main,
        "publish": publish.main,
        "pull": pull.main,
        "version-check": version_check.main,
        "reference-runner": reference_runner.main,
    }
    assert set(cli.SUMMARIES) == set(cli.COMMANDS)


def test_version_is_printed_and_exits_0(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"tflite-opt {__version__}\n"


def test_the_command_gets_the_arguments_after_its_name_and_its_exit_code_is_returned(monkeypatch):
    received = []

    def fake_main(argv):
        received.append(list(argv))
        return 3

    monkeypatch.setitem(cli.COMMANDS, "convert", fake_main)
    assert cli.main(["convert", "--float16", "--output-dir", "out"]) == 3
    assert received == [["--float16", "--output-dir", "out"]]


@pytest.mark.parametrize("command", [name for name in cli.COMMANDS if name != "reference-runner"])
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


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"]], ids=["nothing", "--help", "-h"])
def test_no_command_or_help_prints_the_usage_and_exits_0(argv, capsys):
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tflite-opt <command> [flags]")
    assert "  convert           a Keras model to verified, measured .tflite files" in out
    assert "  reference-runner  classify images with nothing but a pulled bundle" in out


def test_help_through_the_dispatcher_imports_no_tensorflow():
    code = "import sys; from tflite_opt import cli; cli.main(['convert', '--help']); print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("command", [name for name in cli.COMMANDS if name != "reference-runner"])
def test_help_names_the_command_as_it_was_started_says_what_it_does_and_groups_flags_in_words(
    command, capsys, monkeypatch
):
    monkeypatch.setattr(sys, "argv", ["/home/user/.venv/bin/tflite-opt", command, "--help"])
    assert cli.main([command, "--help"]) == 0
    usage, summary, *rest = capsys.readouterr().out.splitlines()
    assert usage == f"usage: tflite-opt {command} [flags]"
    assert summary == f"{cli.SUMMARIES[command][0].upper()}{cli.SUMMARIES[command][1:]}."
    headings = [line for line in rest if line and not line.startswith(" ")]
    assert headings and not [h for h in headings if h.endswith(".py:") or h.startswith(("tflite_opt", "/"))]


@pytest.mark.parametrize(("command", "required"), [("publish", ["from", "to"]), ("pull", ["from", "model", "to"])])
def test_flags_a_command_cannot_run_without_say_they_are_required(command, required, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"  --{flag}: Required: " in text for flag in required)
    assert cli.main([command]) == 2, "and leaving them out is a usage error"


def test_help_shows_each_default_as_it_applies(capsys):
    assert cli.main(["convert", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    full_int8 = text.split("--[no]full-int8:")[1].split("--")[0]
    assert "Made where no mode flag is given." in full_int8 and "default: 'false'" not in full_int8
    batch = text.split("--batch-size:")[1].split("--")[0]
    sizes = [config().batch_size for config in (PruneConfig, ClusterConfig, QatConfig)]
    assert "Default: {} (pruning), {} (clustering), {} (quantization-aware training).".format(*sizes) in batch
    assert "(default:" not in batch
