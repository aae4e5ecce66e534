"""A command started as a program runs in a child process, so that a death no process can report about itself
(the kernel's out-of-memory SIGKILL, a crash in native code) still ends in one line and exit 2, with nothing left
behind. The children here kill themselves the way the kernel or a native crash would."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tflite_opt.command import ChildDeath, run_supervised

# A child that runs a command through run_cli: it reports a step, holds memory, leaves a file in its temporary
# folder (path on stdout), then does what argv[1] says.
CHILD = textwrap.dedent(
    """
    import logging, os, signal, sys, tempfile, time
    from tflite_opt.command import run_cli

    def run(flag_values):
        logging.getLogger("tflite_opt.test").info("fine-tuning the model")
        held = bytearray(os.urandom(1 << 20)) * 300  # 300 MB, written, so resident
        with tempfile.NamedTemporaryFile(delete=False) as left:
            print(left.name, flush=True)
        how = sys.argv[1]
        if how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "segfault":
            import ctypes
            ctypes.string_at(0)
        if how == "wait":
            print("ready", flush=True)
            time.sleep(60)
        return int(how)

    sys.exit(run_cli("test", [], lambda flag_values: None, run, "do a test thing"))
    """
)


def supervise(how, capfd):
    code = run_supervised(["-c", CHILD, how])
    out, err = capfd.readouterr()
    progress, _, said = err.partition("\n")
    assert progress == "fine-tuning the model", "the child's own stderr reaches the user"
    return code, out.split(), said


def test_a_child_killed_by_sigkill_is_one_line_with_its_step_and_memory_and_leaves_no_temporary_file(capfd):
    code, out, err = supervise("sigkill", capfd)
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: the run was killed (SIGKILL) after ")
    assert 'while "fine-tuning the model"' in err
    resident = float(err.split(" GB resident")[0].rsplit(" ", 1)[1])
    assert resident >= 0.3, err
    assert "Nothing was written" in err
    left = Path(out[0])
    assert left.parent.name.startswith("tflite_opt-"), "the child's TMPDIR is the supervisor's own folder"
    assert not left.parent.exists(), "and it is removed after the child died"


def test_a_native_crash_is_one_line_naming_the_signal(capfd):
    code, _, err = supervise("segfault", capfd)
    assert code == 2
    assert err.count("\n") == 1, err
    assert err.startswith("error: the run crashed in native code (SIGSEGV) after ")
    assert 'while "fine-tuning the model"' in err


@pytest.mark.parametrize("exit_code", [0, 3])
def test_a_child_that_exits_passes_its_exit_code_through_without_a_word(exit_code, capfd):
    code, out, err = supervise(str(exit_code), capfd)
    assert (code, err) == (exit_code, "")
    assert not Path(out[0]).exists()


@pytest.mark.parametrize(
    "sig, expected, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")]
)
def test_a_signal_to_the_supervisor_reaches_the_command_once(sig, expected, word, tmp_path):
    """Outside a terminal's foreground group (a new session here), SIGINT is passed on as SIGTERM is; the child's
    own handler answers it, once."""
    supervising = "import sys; from tflite_opt.command import run_supervised; sys.exit(run_supervised(sys.argv[1:]))"
    parent = subprocess.Popen(
        [sys.executable, "-c", supervising, "-c", CHILD, "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    for line in parent.stdout:
        if line.strip() == "ready":
            parent.send_signal(sig)
            break
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == expected, err
    assert err == f"fine-tuning the model\n{word}; no partial output was left behind\n"


def test_sigkill_far_below_the_memory_says_it_came_from_elsewhere():
    gib = 2**30
    own = ChildDeath(signal.SIGKILL, 12.0, 20 * gib, 23 * gib, "converting").describe()
    assert "20.0 GB resident of 23.0 GB: most likely out of memory" in own
    other = ChildDeath(signal.SIGKILL, 12.0, 2 * gib, 23 * gib, "converting").describe()
    assert "by another process, or by the out-of-memory killer if other programs filled the memory" in other
    assert "without --qat" not in own, "fewer fine-tuning steps are advised only to a run that fine-tunes"
    fine_tuning = ChildDeath(signal.SIGKILL, 12.0, 20 * gib, 23 * gib, "pruning", fine_tuning=True).describe()
    assert "fine-tune fewer steps at once (for example without --qat)" in fine_tuning


@pytest.mark.slow
def test_a_real_run_whose_process_is_killed_says_so_through_the_console_script(tmp_path):
    """End to end, as a user starts it (``tflite-opt convert``): the command's own process is killed with SIGKILL
    while converting, as the out-of-memory killer would; the user reads one line naming that step (a step only
    --verbose shows: the step file has them all), and nothing is written."""
    script = Path(sys.executable).with_name("tflite-opt")
    out, temporary = tmp_path / "out", tmp_path / "tmp"
    temporary.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(script), "convert", "--full-int8", "--output-dir", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(temporary)},
    )
    step = None
    while process.poll() is None and not (step and step.startswith("converting")):
        time.sleep(0.05)
        for step_file in temporary.glob("tflite_opt-*/step.txt"):  # the file the child keeps its step in
            with contextlib.suppress(OSError):
                step = step_file.read_text()
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, "the command runs in one child process"
    os.kill(int(children[0]), signal.SIGKILL)
    rest = process.stderr.read()
    process.wait(timeout=60)
    assert process.returncode == 2, rest
    last = rest.strip().splitlines()[-1]
    assert last.startswith("error: the run was killed (SIGKILL) after ") and 'while "converting' in last, last
    assert not out.exists() or list(out.iterdir()) == []
    assert list(temporary.iterdir()) == [], "the child's temporary folder went with it"
