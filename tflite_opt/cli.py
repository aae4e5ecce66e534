"""``tflite-opt <command> [flags]``: one entry point for every command.

Each ``python -m tflite_opt.<command>`` works on its own too; this module only dispatches.
Nothing imports it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from tflite_opt import benchmark, convert, debug, prune, publish, pull, reference_runner, version_check
from tflite_opt.command import EXIT_USAGE
from tflite_opt.core.version import __version__

COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "convert": convert.main,
    "prune": prune.main,
    "benchmark": benchmark.main,
    "debug": debug.main,
    "publish": publish.main,
    "pull": pull.main,
    "version-check": version_check.main,
    "reference-runner": reference_runner.main,
}
# What each command does, in the words `tflite-opt --help` lists them with.
SUMMARIES = {
    "convert": "a Keras model to verified, measured .tflite files and app bundles (the main job)",
    "prune": "prune and fine-tune a Keras model, save it stripped",
    "benchmark": "measure .tflite files you have: size, latency, top-1",
    "debug": "each layer's int8 error, worst first",
    "publish": "copy bundles into a model repository (plain files and index.json)",
    "pull": "fetch one variant's bundle from a repository, every file verified",
    "version-check": "can this stack convert?",
    "reference-runner": "classify images with nothing but a pulled bundle, its golden vectors checked first",
}


def main(argv: Sequence[str] | None = None) -> int:
    """``tflite-opt <command> [flags]``; returns the command's exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
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
