"""``python -m tflite_opt.publish --from <convert output dir> --to <repository dir> [--version V]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tflite_opt.command import run_cli, supervised
from tflite_opt.core.errors import UsageError
from tflite_opt.stages.repository import publish

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "copy bundles into a model repository (plain files and index.json)"


def _define_flags(flag_values: flags.FlagValues) -> None:
    flags.DEFINE_string("from", None, "Required: a convert output folder with bundles.", flag_values=flag_values)
    flags.DEFINE_string("to", None, "Required: the repository folder (created if missing).", flag_values=flag_values)
    flags.DEFINE_string(
        "version", None, "Version to publish as. Default: the manifests' version.", flag_values=flag_values
    )


def _run(fv: flags.FlagValues) -> int:
    if not fv["from"].value or not fv["to"].value:
        raise UsageError("pass --from <convert output folder> and --to <repository folder>")
    for item in publish(Path(fv["from"].value), Path(fv["to"].value), fv["version"].value):
        print(f"published {item.model} {item.version} ({', '.join(item.variants)}) to {item.folder}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.publish``: publish bundles into a repository; returns the exit code."""
    return run_cli("tflite_opt.publish", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.publish", main))
