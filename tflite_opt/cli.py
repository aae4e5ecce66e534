"""``tflite-opt <command> [flags]``: one entry point for every command.

Each ``python -m tflite_opt.<command>`` works on its own too; this module only dispatches.
Nothing imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from tflite_opt import benchmark, convert, debug, prune, publish, pull, version_check
from tflite_opt.command import EXIT_USAGE

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "convert": convert.main,
    "prune": prune.main,
    "benchmark": benchmark.main,
    "debug": debug.main,
    "publish": publish.main,
    "pull": pull.main,
    "version-check": version_check.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``tflite-opt <command> [flags]``; returns the command's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    known = ", ".join(COMMANDS)
    if args and args[0] in COMMANDS:
        return COMMANDS[args[0]](args[1:])
    if args and args[0] not in ("-h", "--help"):
        print(f"error: unknown command {args[0]!r}; commands: {known}", file=sys.stderr)
        return EXIT_USAGE
    print(f"usage: tflite-opt <command> [flags]\ncommands: {known}\nrun `tflite-opt <command> --help` for its flags")
    return 0


if __name__ == "__main__":
    sys.exit(main())
