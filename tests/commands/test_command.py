"""The error edge every command shares: one-line errors, exit codes, --verbose, and interruptions that leave
no partial output."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from absl import flags

from tflite_opt.command import preprocessing_from_flags, prune_config_from_flags, run_cli
from tflite_opt.core.config import ClusterConfig, Preprocessing, PruneConfig, QatConfig
from tflite_opt.core.errors import ConversionError, DataError, UsageError
from tflite_opt.core.tflite_file import read_tflite


def no_flags(flag_values):
    pass


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (DataError("eval/7/x.png: unreadable"), 2, "error: eval/7/x.png: unreadable"),
        (ZeroDivisionError("float division"), 1, "internal error: ZeroDivisionError: float division (rerun with"),
    ],
)
def test_an_error_is_one_line_and_an_exit_code(error, code, line, capsys):
    def run(flag_values):
        raise error

    assert run_cli("test", [], no_flags, run) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(line) and "Traceback" not in err


def test_verbose_adds_the_traceback_and_is_defined_for_every_command(capsys):
    def run(flag_values):
        raise DataError("bad data")

    assert run_cli("test", ["--verbose"], no_flags, run) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("error: bad data")


def test_bad_flags_and_stray_arguments_exit_2(capsys):
    assert run_cli("test", ["--bogus"], no_flags, lambda fv: 0) == 2
    assert "Unknown command line flag 'bogus'" in capsys.readouterr().err
    assert run_cli("test", ["stray"], no_flags, lambda fv: 0) == 2
    assert "unexpected argument 'stray'" in capsys.readouterr().err


def test_the_jobs_log_reaches_stderr_only_while_the_command_runs(capsys):
    import logging

    log = logging.getLogger("tflite_opt.jobs.example")

    def run(flag_values):
        log.debug("a step")
        log.info("progress")
        log.warning("careful")
        return 0

    assert run_cli("test", [], no_flags, run) == 0
    assert capsys.readouterr().err.splitlines() == ["progress", "warning: careful"]
    assert run_cli("test", ["--verbose"], no_flags, run) == 0
    assert capsys.readouterr().err.splitlines() == ["a step", "progress", "warning: careful"]
    log.warning("after the command")
    assert "after the command" not in capsys.readouterr().err


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
    assert run_cli("test", [], no_flags, run) == expected
    err = capsys.readouterr().err.strip()
    assert err == f"{word}; no partial output was left behind"
    assert {s: signal.getsignal(s) for s in before} == before  # the command's handlers are gone again


def parse(define, args):
    flag_values = flags.FlagValues()
    define(flag_values)
    flag_values(["test", *args])
    return flag_values


def test_preprocessing_flags_become_a_spec_or_none():
    from tflite_opt.command import define_preprocessing_flags

    assert preprocessing_from_flags(parse(define_preprocessing_flags, [])) is None
    spec = preprocessing_from_flags(parse(define_preprocessing_flags, ["--mean", "127.5", "--std", "127.5"]))
    assert spec == Preprocessing.from_mean_std(127.5, 127.5)
    with pytest.raises(UsageError, match="not both"):
        preprocessing_from_flags(parse(define_preprocessing_flags, ["--mean", "1", "--input-scale", "2"]))
    with pytest.raises(UsageError, match="--input-scale takes numbers"):
        preprocessing_from_flags(parse(define_preprocessing_flags, ["--input-scale", "half"]))


def test_pruning_flags_become_a_config_only_with_prune():
    from tflite_opt.command import define_pruning_flags

    assert prune_config_from_flags(parse(define_pruning_flags, [])) is None
    config = prune_config_from_flags(parse(define_pruning_flags, ["--prune", "--block-size", "1,4"]))
    assert config == PruneConfig(block_size=(1, 4))
    with pytest.raises(UsageError, match="--sparsity-m-by-n takes two integers as A:B"):
        prune_config_from_flags(parse(define_pruning_flags, ["--prune", "--sparsity-m-by-n", "2-4"]))


def test_qat_flags_keep_their_own_defaults_unless_the_shared_fine_tuning_flags_are_given():
    from tflite_opt.command import (
        cluster_config_from_flags,
        define_pruning_flags,
        define_qat_flags,
        qat_config_from_flags,
    )

    def both(flag_values):
        define_pruning_flags(flag_values)
        define_qat_flags(flag_values)

    assert qat_config_from_flags(parse(both, [])) is None
    assert qat_config_from_flags(parse(both, ["--qat"])) == QatConfig()
    given = qat_config_from_flags(parse(both, ["--qat", "--qat-epochs", "3", "--learning-rate", "0.01"]))
    assert given == QatConfig(epochs=3, learning_rate=0.01, batch_size=QatConfig().batch_size)
    assert cluster_config_from_flags(parse(both, [])) is None
    assert cluster_config_from_flags(parse(both, ["--cluster", "8"])) == ClusterConfig(clusters=8)
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
@pytest.mark.parametrize(
    "sig, step, expected",
    [
        (signal.SIGINT, "converting", 130),
        (signal.SIGTERM, "converting", 143),
        (signal.SIGTERM, "measuring", 143),
        (signal.SIGINT, "measuring", 130),
    ],
)
def test_interrupting_a_real_run_leaves_no_partial_artifact(tmp_path, sig, step, expected):
    """The signal is sent when the run says (with --verbose) that it started ``step``: during the converter's
    native code, or while measuring; both take over a second, so the run is always still going."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tflite_opt.convert", "--full-int8", "--float16", "--verbose"]
    process = subprocess.Popen(
        [*command, "--output-dir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith(step):
            process.send_signal(sig)
            break
    _, rest = process.communicate(timeout=120)
    err = "".join(seen) + rest
    assert process.returncode == expected, err[-2000:]
    assert "no partial output was left behind" in err
    assert not out.exists() or list(out.iterdir()) == []
    output_is_whole(out)
