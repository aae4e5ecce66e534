"""What every command shares: flag groups, the one error edge (:func:`run_cli`), signals and exit codes.

A command module (``python -m tflite_opt.<command>``) defines its flags from the
groups here, turns them into a configuration, makes one call to a job and prints
what comes back. Nothing below the commands imports this module.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from absl import flags

from tflite_opt.core.config import BenchmarkSettings, ClusterConfig, PruneConfig, QatConfig, Schedule
from tflite_opt.core.errors import TfliteOptError, UsageError
from tflite_opt.core.preprocessing import Preprocessing

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
OUTPUT_GROUP = "Output"


class Terminated(BaseException):
    """SIGTERM, raised where the program is, so every cleanup (temporary files) runs as for Ctrl-C."""


_received_signal: int | None = None


def _unwind(signum, frame) -> None:
    # Remember the signal: native code (the converter) may turn the exception raised here into an
    # error of its own, and the user must still be told the run was interrupted, not that it failed.
    global _received_signal
    _received_signal = signum
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """SIGINT and SIGTERM raise exceptions during a command (main thread only)."""
    global _received_signal
    _received_signal = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _unwind) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted_exit(default: int | None = None) -> int | None:
    """The exit code for a signal received during the command (or ``default``), if any; says so on stderr."""
    received = _received_signal or default
    if received == signal.SIGINT:
        print("interrupted; no partial output was left behind", file=sys.stderr)
        return EXIT_INTERRUPTED
    if received == signal.SIGTERM:
        print("terminated; no partial output was left behind", file=sys.stderr)
        return EXIT_TERMINATED
    return None


class _UserLines(logging.Formatter):
    """Log records as the lines a user reads: a warning says so, progress is the message itself."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return f"warning: {message}" if record.levelno >= logging.WARNING else message


class _LastStep(logging.Handler):
    """Keeps the latest progress line, each step included (DEBUG), in a file, for the supervising parent to name
    the step a death cut short."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.DEBUG)
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError):
            self.path.write_text(record.getMessage(), encoding="utf-8")


@contextlib.contextmanager
def _progress_on_stderr(verbose: bool) -> Iterator[None]:
    """The jobs' log (``tflite_opt.*`` loggers) on stderr while a command runs: progress and warnings,
    and with --verbose each step too (DEBUG). Under a supervisor, the latest progress line also goes to its file."""
    logger = logging.getLogger("tflite_opt")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UserLines())
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = [handler]
    if os.environ.get(SUPERVISED_STEP_FILE):
        handlers.append(_LastStep(Path(os.environ[SUPERVISED_STEP_FILE])))
    saved = logger.level, logger.propagate
    for each in handlers:
        logger.addHandler(each)
    logger.setLevel(logging.DEBUG if verbose or len(handlers) > 1 else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        for each in handlers:
            logger.removeHandler(each)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def invocation(program: str) -> str:
    """How the user started ``program`` (``tflite_opt.convert``): ``tflite-opt convert`` through the dispatcher's
    script, else ``python -m tflite_opt.convert``."""
    if Path(sys.argv[0]).name == "tflite-opt":
        return f"tflite-opt {program.rsplit('.', 1)[-1].replace('_', '-')}"
    return f"python -m {program}"


def _print_help(program: str, summary: str, flag_values: flags.FlagValues) -> None:
    print(f"usage: {invocation(program)} [flags]\n{summary[0].upper()}{summary[1:]}.\n")
    lines = flag_values.get_help(include_special_flags=False).lstrip("\n").splitlines()
    print("\n".join("Flags:" if _module_heading(line) else line for line in lines))


def _module_heading(line: str) -> bool:
    """absl heads the flags defined without a group with their module's name or file path: not a user's word."""
    heading = not line.startswith(" ") and line.endswith(":")
    return heading and (line.startswith(("tflite_opt.", "__main__")) or line.endswith(".py:"))


def _parse(program: str, args: list[str], flag_values: flags.FlagValues) -> str | None:
    """Parse ``args`` into ``flag_values``; a one-line error message where they do not parse."""
    try:
        leftover = flag_values([program, *args])
    except flags.Error as exc:
        return f"error: {exc} (see --help)"
    if len(leftover) > 1:
        return f"error: unexpected argument {leftover[1]!r}; every option is a --flag (see --help)"
    return None


def run_cli(
    program: str,
    argv: Sequence[str] | None,
    define_flags: Callable[[flags.FlagValues], None],
    run: Callable[[flags.FlagValues], int],
    summary: str,
) -> int:
    """Parse ``argv`` with a fresh set of flags, call ``run(flags)`` and map errors to exit codes; ``--help``
    prints the usage, ``summary`` (what the command does) and the flags.

    Every command gets ``--verbose`` here. A user error (TfliteOptError, bad flag) prints one
    line and returns its exit code (2 for most); a traceback only appears with ``--verbose``.
    Each call gets its own FlagValues, so commands can run in-process, one after another,
    in tests or notebooks.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    flags.DEFINE_bool(
        "verbose",
        False,
        "Show tracebacks, each step, and TensorFlow's own log.",
        flag_values=flag_values,
        module_name=OUTPUT_GROUP,
    )
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in args):
        _print_help(program, summary, flag_values)
        return 0
    problem = _parse(program, args, flag_values)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    verbose = flag_values["verbose"].value
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        # A crash in native code then prints the Python stack it happened under before the process dies; a
        # captured stderr (tests, notebooks) has no file descriptor to print to.
        with contextlib.suppress(OSError, ValueError):
            faulthandler.enable()
    try:
        with _signals_unwind(), _progress_on_stderr(verbose):
            return run(flag_values)
    except (KeyboardInterrupt, Terminated) as exc:
        return _interrupted_exit(default=signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except Exception as exc:
        return _failed(exc, verbose)


def _failed(exc: Exception, verbose: bool) -> int:
    """The exit code and one line for an exception a command raised."""
    interrupted = _interrupted_exit()
    if interrupted is not None:
        return interrupted
    if verbose:
        traceback.print_exc()
    if isinstance(exc, TfliteOptError):
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------------- supervision

# Set in the supervised child: the file its latest progress line goes to. Its presence means "already supervised".
SUPERVISED_STEP_FILE = "TFLITE_OPT_STEP_FILE"
_NATIVE_CRASHES = {signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE}


@dataclass(frozen=True)
class ChildDeath:
    """How a supervised command's process died: the signal, after how long, at what peak resident memory (of the
    machine's memory or the container's limit), the last progress line it wrote, and whether it fine-tuned."""

    signal: int
    seconds: float
    peak_bytes: int
    memory_bytes: int | None
    step: str | None
    fine_tuning: bool = False

    def describe(self) -> str:
        """One line: what killed the run, when and where, and what to do."""
        name = signal.Signals(self.signal).name
        when = f"after {self.seconds:.0f} s" + (f", while {_quoted(self.step)}" if self.step else "")
        memory = f"{self.peak_bytes / 2**30:.1f} GB resident" + (
            f" of {self.memory_bytes / 2**30:.1f} GB" if self.memory_bytes else ""
        )
        if self.signal == signal.SIGKILL:
            likely = (
                "most likely out of memory (the kernel's out-of-memory killer sends SIGKILL)"
                if self.memory_bytes is None or self.peak_bytes > 0.5 * self.memory_bytes
                else "by another process, or by the out-of-memory killer if other programs filled the memory"
            )
            fewer = "fine-tune fewer steps at once (for example without --qat), " if self.fine_tuning else ""
            return (
                f"the run was killed ({name}) {when}, at {memory}: {likely}. Nothing was written. Close other "
                f"programs, {fewer}or use a machine with more memory"
            )
        if self.signal in _NATIVE_CRASHES:
            return (
                f"the run crashed in native code ({name}) {when}, at {memory}. Nothing was written. This is a bug "
                "in TensorFlow or tflite_opt, not in your input: rerun with --verbose to see where, and report it"
            )
        return f"the run was ended by {name} {when}, at {memory}. Nothing was written"


def _quoted(step: str) -> str:
    line = step.strip().splitlines()[0] if step.strip() else ""
    return f'"{line[:117]}..."' if len(line) > 120 else f'"{line}"'


def _memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or the container's (cgroup v2) limit where smaller."""
    try:
        limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    except (OSError, ValueError):
        limits = []
    with contextlib.suppress(OSError, ValueError):
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text != "max":
            limits.append(int(text))
    return min(limits) if limits else None


def _sent_to_the_whole_group() -> bool:
    """Whether the terminal's Ctrl-C reached the child too: our process group is the terminal's foreground."""
    try:
        with open("/dev/tty", "rb") as tty:
            return os.tcgetpgrp(tty.fileno()) == os.getpgrp()
    except OSError:
        return False


def run_supervised(launch: Sequence[str]) -> int:
    """Run ``[python, *launch]`` as a child and return its exit code; where it dies by a signal (the kernel's
    out-of-memory SIGKILL, a native SIGSEGV or SIGABRT), print one line saying what, when and at what memory, and
    return 2.

    The child has a temporary folder of its own (TMPDIR), removed when it ends however it ended, and writes its
    latest progress line there. SIGTERM and SIGHUP are passed on to it; SIGINT too, unless the terminal sent it
    to the child as well. The parent imports no TensorFlow.
    """
    private = Path(tempfile.mkdtemp(prefix="tflite_opt-"))
    step_file = private / "step.txt"
    env = {**os.environ, "TMPDIR": str(private), SUPERVISED_STEP_FILE: str(step_file)}
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, *launch], env=env)

    def forward(signum, frame) -> None:
        if signum != signal.SIGINT or not _sent_to_the_whole_group():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    passed_on = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, forward) for sig in passed_on}
    try:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        step = step_file.read_text(encoding="utf-8") if step_file.exists() else None
        shutil.rmtree(private, ignore_errors=True)
    if child.returncode >= 0:
        return child.returncode
    died = -child.returncode
    if died in (signal.SIGINT, signal.SIGTERM):  # before the child's own handlers were in place
        return _interrupted_exit(default=died) or EXIT_USAGE
    seconds = time.monotonic() - started
    # Linux gives ru_maxrss in kilobytes.
    fine_tuning = any(arg.split("=")[0] in ("--prune", "--cluster", "--qat") for arg in launch)
    death = ChildDeath(died, seconds, usage.ru_maxrss * 1024, _memory_bytes(), step, fine_tuning)
    print(f"error: {death.describe()}", file=sys.stderr)
    return EXIT_USAGE


def supervised(module: str, main: Callable[[], int]) -> int:
    """A command's entry point (``python -m <module>``, ``tflite-opt``): ``main()`` in a child process under
    :func:`run_supervised`, or ``main()`` itself in that child. In-process calls (``main([...])``) are never
    supervised."""
    if os.environ.get(SUPERVISED_STEP_FILE):
        return main()
    # A console script (tflite-opt) is started again as itself, so that messages name it as the user typed it.
    launcher = ["-m", module] if sys.argv[0].endswith(".py") or not Path(sys.argv[0]).is_file() else [sys.argv[0]]
    return run_supervised([*launcher, *sys.argv[1:]])


# ---------------------------------------------------------------------------------------------- flag groups


def define_unsafe_flag(flag_values: flags.FlagValues, group: str) -> None:
    """--allow-unsafe-deserialization, for every command that loads a Keras model."""
    flags.DEFINE_bool(
        "allow-unsafe-deserialization",
        False,
        "Load a Keras model even if it carries code (Lambda layers, custom modules). Only for files you trust.",
        flag_values=flag_values,
        module_name=group,
    )


def define_model_flags(flag_values: flags.FlagValues, group: str, model_help: str) -> None:
    """--model (a Keras model; default: the embedded one) and --allow-unsafe-deserialization."""
    flags.DEFINE_string("model", None, model_help, flag_values=flag_values, module_name=group)
    define_unsafe_flag(flag_values, group)


def define_calibration_flags(flag_values: flags.FlagValues, group: str) -> None:
    """--representative-data, --num-calibration-samples and --seed."""
    data = {"flag_values": flag_values, "module_name": group}
    flags.DEFINE_string(
        "representative-data", None, "Calibration images (folder, flat or per class) or .npy/.npz.", **data
    )
    # benchmark calls the same data --calibration-data: either name works in both commands.
    flags.DEFINE_alias("calibration-data", "representative-data", flag_values=flag_values, module_name=group)
    flags.DEFINE_integer("num-calibration-samples", 200, "Calibration samples to draw.", lower_bound=1, **data)
    flags.DEFINE_integer("seed", 0, "Seed of the calibration draw.", **data)


TIMING_GROUP = "Measurement"


def define_timing_flags(flag_values: flags.FlagValues) -> None:
    """How latency and accuracy are measured: --num-runs, --warmup-runs, --num-threads, --[no]xnnpack and
    --eval-batch-size (convert and benchmark alike)."""
    default = BenchmarkSettings()
    timing = {"flag_values": flag_values, "module_name": TIMING_GROUP}
    flags.DEFINE_integer("num-runs", default.num_runs, "Timed single-image invokes per variant.", **timing)
    flags.DEFINE_integer("warmup-runs", default.warmup_runs, "Untimed invokes before timing.", **timing)
    flags.DEFINE_integer("num-threads", default.num_threads, "Interpreter threads.", **timing)
    flags.DEFINE_bool("xnnpack", True, "Use the XNNPACK delegate (--noxnnpack: built-in kernels only).", **timing)
    flags.DEFINE_integer(
        "eval-batch-size", default.batch_size, "Images per interpreter invoke in evaluation.", **timing
    )


def timing_from_flags(fv: flags.FlagValues, settings: BenchmarkSettings | None = None) -> BenchmarkSettings:
    """``settings`` (default: the defaults) with what :func:`define_timing_flags`' flags say."""
    return replace(
        settings or BenchmarkSettings(),
        num_runs=fv["num-runs"].value,
        warmup_runs=fv["warmup-runs"].value,
        num_threads=fv["num-threads"].value,
        use_xnnpack=fv["xnnpack"].value,
        batch_size=fv["eval-batch-size"].value,
    )


def define_preprocessing_flags(flag_values: flags.FlagValues) -> None:
    """--input-scale/--input-offset or --mean/--std, shared by every command that reads images."""
    prep = {
        "flag_values": flag_values,
        "module_name": "Preprocessing (x = pixel * scale + offset, pixel in 0..255; kept with the artifact)",
    }
    flags.DEFINE_list("input-scale", None, "Scale, one value or one per channel. Default 1/255.", **prep)
    flags.DEFINE_list("input-offset", None, "Offset, one value or one per channel. Default 0.", **prep)
    flags.DEFINE_list("mean", None, "Alternative: x = (pixel - mean) / std; one value or one per channel.", **prep)
    flags.DEFINE_list("std", None, "Standard deviation for --mean.", **prep)


PRUNING_GROUP = "Pruning (tensorflow-model-optimization)"


def define_pruning_flags(flag_values: flags.FlagValues) -> None:
    """The pruning flags shared by ``convert --prune`` and ``python -m tflite_opt.prune``."""
    group = {"flag_values": flag_values, "module_name": PRUNING_GROUP}
    default = PruneConfig()
    flags.DEFINE_bool("prune", False, "Prune (magnitude) and fine-tune before converting.", **group)
    flags.DEFINE_float("target-sparsity", default.target_sparsity, "Fraction of weights set to zero.", **group)
    flags.DEFINE_enum(
        "pruning-schedule", default.schedule.value, [s.value for s in Schedule], "How sparsity ramps up.", **group
    )
    flags.DEFINE_integer("pruning-epochs", default.epochs, "Fine-tuning epochs.", **group)
    flags.DEFINE_integer(
        "batch-size",
        None,
        f"Fine-tuning batch size. Default: {default.batch_size} (pruning), {ClusterConfig().batch_size} "
        f"(clustering), {QatConfig().batch_size} (quantization-aware training).",
        **group,
    )
    flags.DEFINE_float(
        "learning-rate",
        None,
        "Fine-tuning learning rate (Adam). Default: measured on a held-out fifth of the training data, starting "
        f"from {default.START_LEARNING_RATE:g} (pruning), {ClusterConfig.START_LEARNING_RATE:g} (clustering), "
        f"{QatConfig.START_LEARNING_RATE:g} (quantization-aware training) and dividing by ten while that helps.",
        **group,
    )
    flags.DEFINE_integer(
        "min-fine-tuning-steps",
        default.min_steps,
        "Fine-tuning (pruning, clustering, quantization-aware training) takes at least this many steps: more epochs "
        "on a small training set.",
        **group,
    )
    flags.DEFINE_string("block-size", "1,1", "Prune blocks of HxW weights together, e.g. 1,4.", **group)
    flags.DEFINE_string("sparsity-m-by-n", None, "Structured sparsity: m zeros in every n weights, e.g. 2:4.", **group)


def define_qat_flags(flag_values: flags.FlagValues) -> None:
    """--cluster and --qat: clustering and quantization-aware training (they share --batch-size and
    --learning-rate with pruning, with defaults of their own)."""
    group = {"flag_values": flag_values, "module_name": "Clustering and quantization-aware training (tfmot)"}
    clustering = ClusterConfig()
    flags.DEFINE_integer(
        "cluster", None, "Cluster each layer's weights to N shared values (after --prune, keeping its zeros).", **group
    )
    flags.DEFINE_integer(
        "cluster-epochs",
        clustering.epochs,
        f"Fine-tuning epochs after clustering (--batch-size {clustering.batch_size} unless given).",
        **group,
    )
    default = QatConfig()
    flags.DEFINE_bool(
        "qat",
        False,
        "Also make int8-qat: fine-tune with int8 simulated, then convert to full int8. With --max-accuracy-drop: "
        "tried where post-training int8 misses the budget, before keeping layers in float.",
        **group,
    )
    flags.DEFINE_integer(
        "qat-epochs",
        default.epochs,
        f"Quantization-aware fine-tuning epochs (with --batch-size, default {default.batch_size} here).",
        **group,
    )


def define_overwrite_flag(flag_values: flags.FlagValues, group: str, what: str) -> None:
    """--overwrite: replace ``what`` if it exists."""
    flags.DEFINE_bool("overwrite", False, f"Replace {what}.", flag_values=flag_values, module_name=group)


# ---------------------------------------------------------------------------------------------- flag values


def path_flag(flag_values: flags.FlagValues, name: str) -> Path | None:
    """A flag's value as a path, or None where it was not given."""
    return Path(flag_values[name].value) if flag_values[name].value else None


def _floats(values: Sequence[str] | None, name: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError as exc:
        raise UsageError(f"--{name} takes numbers separated by commas, got {','.join(values)}") from exc


def preprocessing_from_flags(fv: flags.FlagValues) -> Preprocessing | None:
    """The preprocessing the flags give, or None where they give none (the job's default applies)."""
    scale, offset = _floats(fv["input-scale"].value, "input-scale"), _floats(fv["input-offset"].value, "input-offset")
    mean, std = _floats(fv["mean"].value, "mean"), _floats(fv["std"].value, "std")
    if (scale or offset) and (mean or std):
        raise UsageError("give either --input-scale/--input-offset or --mean/--std, not both")
    if mean or std:
        return Preprocessing.from_mean_std(mean or (0.0,), std or (1.0,))
    if scale or offset:
        return Preprocessing(scale=scale or (1.0 / 255.0,), offset=offset or (0.0,))
    return None


def _pair(text: str | None, separator: str, flag: str) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.replace(" ", "").split(separator)
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise UsageError(f"--{flag} takes two integers as A{separator}B, got {text!r}")
    return int(parts[0]), int(parts[1])


def _shared(fv: flags.FlagValues, name: str, default: Any) -> Any:
    """A shared fine-tuning flag's value where it was given, else this step's own default."""
    return fv[name].value if fv[name].present else default


def cluster_config_from_flags(fv: flags.FlagValues) -> ClusterConfig | None:
    """A ClusterConfig when --cluster is given."""
    if fv["cluster"].value is None:
        return None
    default = ClusterConfig()
    return ClusterConfig(
        clusters=fv["cluster"].value,
        epochs=fv["cluster-epochs"].value,
        batch_size=_shared(fv, "batch-size", default.batch_size),
        learning_rate=fv["learning-rate"].value,
        min_steps=fv["min-fine-tuning-steps"].value,
    )


def qat_config_from_flags(fv: flags.FlagValues) -> QatConfig | None:
    """A QatConfig when --qat is given; --batch-size and --learning-rate apply only where given."""
    if not fv["qat"].value:
        return None
    default = QatConfig()
    return QatConfig(
        epochs=fv["qat-epochs"].value,
        batch_size=_shared(fv, "batch-size", default.batch_size),
        learning_rate=fv["learning-rate"].value,
        min_steps=fv["min-fine-tuning-steps"].value,
    )


def prune_config_from_flags(fv: flags.FlagValues, always: bool = False) -> PruneConfig | None:
    """A PruneConfig when --prune is given (or ``always``), else None."""
    if not (always or fv["prune"].value):
        return None
    return PruneConfig(
        target_sparsity=fv["target-sparsity"].value,
        schedule=Schedule(fv["pruning-schedule"].value),
        epochs=fv["pruning-epochs"].value,
        batch_size=_shared(fv, "batch-size", PruneConfig().batch_size),
        learning_rate=fv["learning-rate"].value,
        min_steps=fv["min-fine-tuning-steps"].value,
        block_size=_pair(fv["block-size"].value, ",", "block-size") or (1, 1),
        m_by_n=_pair(fv["sparsity-m-by-n"].value, ":", "sparsity-m-by-n"),
    )
