"""The error edge every command shares: one-line errors, exit codes, --verbose, and interruptions that leave
no partial output; and the flag groups turned into configurations."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from absl import flags

from tflite_opt import command
from tflite_opt.command import (
    cluster_config_from_flags,
    define_preprocessing_flags,
    define_pruning_flags,
    define_qat_flags,
    preprocessing_from_flags,
    prune_config_from_flags,
    qat_config_from_flags,
    run_cli,
)
from tflite_opt.core import errors
from tflite_opt.core.config import ClusterConfig, PruneConfig, QatConfig, Schedule
from tflite_opt.core.errors import ConversionError, DataError, TfliteOptError, UsageError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite


def no_flags(flag_values):
    pass


def raising(error):
    def run(flag_values):
        raise error

    return run


def test_every_typed_error_is_one_line_and_its_exit_code(typed_error, capsys):
    error_class, code = typed_error
    assert run_cli("test", [], no_flags, raising(error_class("eval/7/x.png: unreadable")), "do a test thing") == code
    err = capsys.readouterr().err
    assert err == "error: eval/7/x.png: unreadable\n"


def test_the_typed_errors_checked_are_every_one_there_is(typed_errors):
    defined = {cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, TfliteOptError)}
    assert defined - {TfliteOptError} == set(typed_errors)


def test_any_other_error_is_an_internal_error_exit_1_in_one_line(capsys):
    assert run_cli("test", [], no_flags, raising(ZeroDivisionError("float division")), "do a test thing") == 1
    err = capsys.readouterr().err
    assert err == "internal error: ZeroDivisionError: float division (rerun with --verbose for the traceback)\n"


def test_verbose_adds_the_traceback_and_is_defined_for_every_command(capsys):
    assert run_cli("test", ["--verbose"], no_flags, raising(DataError("bad data")), "do a test thing") == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("error: bad data")


def test_bad_flags_and_stray_arguments_exit_2_without_running(capsys):
    ran = []
    assert run_cli("test", ["--bogus"], no_flags, ran.append, "do a test thing") == 2
    assert "Unknown command line flag 'bogus'" in capsys.readouterr().err
    assert run_cli("test", ["stray"], no_flags, ran.append, "do a test thing") == 2
    assert "unexpected argument 'stray'" in capsys.readouterr().err
    assert ran == []


def test_help_prints_the_usage_and_every_flag_without_running(capsys):
    ran = []
    assert run_cli("test", ["--help"], define_preprocessing_flags, ran.append, "do a test thing") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m test [flags]\nDo a test thing.\n") and "--input-scale" in out
    assert "--[no]verbose" in out
    assert ran == []


def test_the_command_gets_the_parsed_flags_and_its_return_value_is_the_exit_code():
    seen = {}

    def run(flag_values):
        seen.update(scale=flag_values["input-scale"].value, verbose=flag_values["verbose"].value)
        return 3

    args = ["--input-scale", "0.5", "--verbose"]
    assert run_cli("test", args, define_preprocessing_flags, run, "do a test thing") == 3
    assert seen == {"scale": ["0.5"], "verbose": True}


def test_the_jobs_log_reaches_stderr_only_while_the_command_runs(capsys):
    log = logging.getLogger("tflite_opt.jobs.example")

    def run(flag_values):
        log.debug("a step")
        log.info("progress")
        log.warning("careful")
        return 0

    assert run_cli("test", [], no_flags, run, "do a test thing") == 0
    assert capsys.readouterr().err.splitlines() == ["progress", "warning: careful"]
    assert run_cli("test", ["--verbose"], no_flags, run, "do a test thing") == 0
    assert capsys.readouterr().err.splitlines() == ["a step", "progress", "warning: careful"]
    log.warning("after the command")
    assert "after the command" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "error, expected, word",
    [(KeyboardInterrupt(), 130, "interrupted"), (command.Terminated(), 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interruption_is_its_exit_code_and_one_line(error, expected, word, capsys):
    assert run_cli("test", [], no_flags, raising(error), "do a test thing") == expected
    assert capsys.readouterr().err == f"{word}; no partial output was left behind\n"


@pytest.mark.parametrize(
    "sig, expected, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_that_native_code_turns_into_an_error_is_still_reported_as_the_signal(sig, expected, word, capsys):
    """pybind11 replaces an exception raised in a signal handler during a native call with its own error."""

    def run(flag_values):
        try:
            os.kill(os.getpid(), sig)
            time.sleep(5)  # the handler raises here
        except BaseException as exc:  # what the converter's binding does with it
            raise ConversionError("float16 conversion failed: pybind11::error_already_set: MISMATCH") from exc
        return 0

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    assert run_cli("test", [], no_flags, run, "do a test thing") == expected
    err = capsys.readouterr().err.strip()
    assert err == f"{word}; no partial output was left behind"
    assert {s: signal.getsignal(s) for s in before} == before  # the command's handlers are gone again


def parse(define, args):
    flag_values = flags.FlagValues()
    define(flag_values)
    flag_values(["test", *args])
    return flag_values


def test_preprocessing_flags_become_a_spec_or_none():
    assert preprocessing_from_flags(parse(define_preprocessing_flags, [])) is None
    spec = preprocessing_from_flags(parse(define_preprocessing_flags, ["--mean", "127.5", "--std", "127.5"]))
    assert spec == Preprocessing.from_mean_std(127.5, 127.5)
    scaled = preprocessing_from_flags(parse(define_preprocessing_flags, ["--input-scale", "0.5,0.25"]))
    assert scaled == Preprocessing(scale=(0.5, 0.25), offset=(0.0,))
    with pytest.raises(UsageError, match="not both"):
        preprocessing_from_flags(parse(define_preprocessing_flags, ["--mean", "1", "--input-scale", "2"]))
    with pytest.raises(UsageError, match="--input-scale takes numbers"):
        preprocessing_from_flags(parse(define_preprocessing_flags, ["--input-scale", "half"]))


def test_pruning_flags_become_a_config_only_with_prune():
    assert prune_config_from_flags(parse(define_pruning_flags, [])) is None
    assert prune_config_from_flags(parse(define_pruning_flags, []), always=True) == PruneConfig()
    config = prune_config_from_flags(parse(define_pruning_flags, ["--prune", "--block-size", "1,4"]))
    assert config == PruneConfig(block_size=(1, 4))
    given = ["--prune", "--target-sparsity", "0.6", "--pruning-schedule", "constant", "--pruning-epochs", "3"]
    given += ["--batch-size", "16", "--learning-rate", "0.001", "--min-fine-tuning-steps", "0"]
    assert prune_config_from_flags(parse(define_pruning_flags, given)) == PruneConfig(
        target_sparsity=0.6, schedule=Schedule.CONSTANT, epochs=3, batch_size=16, learning_rate=0.001, min_steps=0
    )
    assert prune_config_from_flags(parse(define_pruning_flags, ["--prune", "--sparsity-m-by-n", "2:4"])) == (
        PruneConfig(m_by_n=(2, 4))
    )
    with pytest.raises(UsageError, match="--sparsity-m-by-n takes two integers as A:B"):
        prune_config_from_flags(parse(define_pruning_flags, ["--prune", "--sparsity-m-by-n", "2-4"]))


def test_qat_flags_keep_their_own_defaults_unless_the_shared_fine_tuning_flags_are_given():
    def both(flag_values):
        define_pruning_flags(flag_values)
        define_qat_flags(flag_values)

    assert qat_config_from_flags(parse(both, [])) is None
    assert qat_config_from_flags(parse(both, ["--qat"])) == QatConfig()
    given = qat_config_from_flags(parse(both, ["--qat", "--qat-epochs", "3", "--learning-rate", "0.01"]))
    assert given == QatConfig(epochs=3, learning_rate=0.01, batch_size=QatConfig().batch_size)
    assert qat_config_from_flags(parse(both, ["--qat", "--batch-size", "8"])) == QatConfig(batch_size=8)
    assert cluster_config_from_flags(parse(both, [])) is None
    assert cluster_config_from_flags(parse(both, ["--cluster", "8"])) == ClusterConfig(clusters=8)
    assert cluster_config_from_flags(parse(both, ["--cluster", "8", "--cluster-epochs", "1", "--batch-size", "8"])) == (
        ClusterConfig(clusters=8, epochs=1, batch_size=8)
    )
    with pytest.raises(UsageError, match="--cluster takes 2 to 256"):
        cluster_config_from_flags(parse(both, ["--cluster", "1"]))


def output_is_whole(folder: Path) -> None:
    """No temporary file, every .tflite parses, report.json absent or valid."""
    if not folder.exists():
        return
    names = [p.name for p in folder.iterdir()]
    assert not [n for n in names if n.endswith(".tmp") or ".tmp." in n], names
    for model in folder.glob("*.tflite"):
        read_tflite(model.read_bytes(), source=str(model))
    if (folder / "report.json").exists():
        json.loads((folder / "report.json").read_text())


@pytest.mark.slow
def test_terminating_a_real_run_in_the_converter_leaves_no_partial_artifact(tmp_path):
    """End to end: SIGTERM is sent when the run says (with --verbose) that it started converting, during the
    converter's native code, which takes over a second, so the run is always still going. (SIGINT is the same
    path, checked in-process above; an interrupt while measuring is checked on the convert job.)"""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tflite_opt.convert", "--full-int8", "--float16", "--verbose"]
    process = subprocess.Popen(
        [*args, "--output-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("converting"):
            process.send_signal(signal.SIGTERM)
            break
    _, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == 143, err[-2000:]
    assert "terminated; no partial output was left behind" in err
    assert not out.exists() or list(out.iterdir()) == []
    output_is_whole(out)
