"""The CLI edge: flag parsing, one-line errors and exit codes for every command.

``tflite-opt <command> [flags]`` dispatches to the modules' ``main`` functions;
each ``python -m tflite_opt.<module>`` goes through :func:`run_cli` too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from tflite_opt.config import Preprocessing
from tflite_opt.errors import TfliteOptError, UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


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
def _signals_unwind():
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


def define_preprocessing_flags(flag_values) -> None:
    """--input-scale/--input-offset or --mean/--std, shared by every command that reads images."""
    from absl import flags

    prep = {
        "flag_values": flag_values,
        "module_name": "Preprocessing (x = pixel * scale + offset, pixel in 0..255; kept with the artifact)",
    }
    flags.DEFINE_list("input-scale", None, "Scale, one value or one per channel. Default 1/255.", **prep)
    flags.DEFINE_list("input-offset", None, "Offset, one value or one per channel. Default 0.", **prep)
    flags.DEFINE_list("mean", None, "Alternative: x = (pixel - mean) / std; one value or one per channel.", **prep)
    flags.DEFINE_list("std", None, "Standard deviation for --mean.", **prep)


def _floats(values: Sequence[str] | None, name: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except ValueError as exc:
        raise UsageError(f"--{name} takes numbers separated by commas, got {','.join(values)}") from exc


def preprocessing_from_flags(fv) -> Preprocessing | None:
    scale, offset = _floats(fv["input-scale"].value, "input-scale"), _floats(fv["input-offset"].value, "input-offset")
    mean, std = _floats(fv["mean"].value, "mean"), _floats(fv["std"].value, "std")
    if (scale or offset) and (mean or std):
        raise UsageError("give either --input-scale/--input-offset or --mean/--std, not both")
    if mean or std:
        return Preprocessing.from_mean_std(mean or (0.0,), std or (1.0,))
    if scale or offset:
        return Preprocessing(scale=scale or (1.0 / 255.0,), offset=offset or (0.0,))
    return None


def define_unsafe_flag(flag_values, module_name: str) -> None:
    """--allow-unsafe-deserialization, for every command that loads a Keras model."""
    from absl import flags

    flags.DEFINE_bool(
        "allow-unsafe-deserialization",
        False,
        "Load a Keras model even if it carries code (Lambda layers, custom modules). Only for files you trust.",
        flag_values=flag_values,
        module_name=module_name,
    )


def _print_help(program: str, flag_values) -> None:
    print(f"usage: python -m {program} [flags]\n")
    print(flag_values.get_help(include_special_flags=False).lstrip("\n"))


def run_cli(program: str, argv: Sequence[str] | None, define_flags: Callable, run: Callable) -> int:
    """Parse ``argv`` with a fresh set of flags, call ``run(flags)`` and map errors to exit codes.

    A user error (TfliteOptError, bad flag) prints one line and returns 2; a
    traceback only appears with ``--verbose``. Each call gets its own FlagValues,
    so commands can run in-process, one after another, in tests or notebooks.
    """
    from absl import flags

    args = list(sys.argv[1:] if argv is None else argv)
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in args):
        _print_help(program, flag_values)
        return 0
    try:
        leftover = flag_values([program, *args])
    except flags.Error as exc:
        print(f"error: {exc} (see --help)", file=sys.stderr)
        return EXIT_USAGE
    if len(leftover) > 1:
        print(f"error: unexpected argument {leftover[1]!r}; every option is a --flag (see --help)", file=sys.stderr)
        return EXIT_USAGE
    verbose = "verbose" in flag_values and flag_values["verbose"].value
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    try:
        with _signals_unwind():
            return run(flag_values)
    except (KeyboardInterrupt, Terminated) as exc:
        return _interrupted_exit(default=signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except Exception as exc:
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


def _commands() -> dict[str, Callable[[Sequence[str]], int]]:
    from tflite_opt import benchmark, convert, prune, publish, pull, version_check

    return {
        "convert": convert.main,
        "prune": prune.main,
        "benchmark": benchmark.main,
        "publish": publish.main,
        "pull": pull.main,
        "version-check": version_check.main,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``tflite-opt <command> [flags]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    if not args or args[0] in ("-h", "--help") or args[0] not in commands:
        known = ", ".join(commands)
        if args and args[0] not in ("-h", "--help"):
            print(f"error: unknown command {args[0]!r}; commands: {known}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"usage: tflite-opt <command> [flags]\ncommands: {known}\nrun `tflite-opt <command> --help` for its flags"
        )
        return 0
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
