"""``tflite-opt <command> [flags]``: one entry point for every command.

Each ``python -m tflite_opt.<command>`` works on its own too; this module only dispatches.
Nothing imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from tflite_opt import benchmark, convert, debug, prune, publish, pull, reference_runner, version_check
from tflite_opt.command import EXIT_USAGE, supervised
from tflite_opt.core.version import __version__

_MODULES = {
    "convert": convert,
    "prune": prune,
    "benchmark": benchmark,
    "debug": debug,
    "publish": publish,
    "pull": pull,
    "version-check": version_check,
    "reference-runner": reference_runner,
}
COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {name: module.main for name, module in _MODULES.items()}
# What each command does: its module's summary, the first line of its own --help too.
SUMMARIES: dict[str, str] = {name: module.SUMMARY for name, module in _MODULES.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``tflite-opt <command> [flags]``; returns the command's exit code. Started as a program (``argv`` None),
    the command runs in a supervised child process (see :func:`tflite_opt.command.supervised`)."""
    if argv is None:
        return supervised("tflite_opt.cli", lambda: main(sys.argv[1:]))
    args = list(argv)
    known = ", ".join(COMMANDS)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args and args[0] == "--version":
        print(f"tflite-opt {__version__}")
        return 0
    if args and args[0] not in ("-h", "--help"):
        print(f"error: unknown command {args[0]!r}; commands: {known}", file=sys.stderr)
        return EXIT_USAGE
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {SUMMARIES[name]}" for name in COMMANDS)
    print(
        "usage: tflite-opt <command> [flags]   (tflite-opt --version)\n"
        "Makes Keras image classifiers small and fast for phones, and proves what they lose.\n"
        f"commands:\n{listing}\nrun `tflite-opt <command> --help` for its flags"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
