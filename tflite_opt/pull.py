"""``python -m tflite_opt.pull --from <repository dir or URL> --model NAME --variant int8 --to DIR``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tflite_opt.command import run_cli
from tflite_opt.core.errors import UsageError
from tflite_opt.stages.repository import pull


def _define_flags(flag_values: flags.FlagValues) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("from", None, "Repository folder, or an http(s) URL serving it.", **fv)
    flags.DEFINE_string("model", None, "Model name.", **fv)
    flags.DEFINE_string("version", None, "Version. Default: the latest published.", **fv)
    flags.DEFINE_string("variant", "int8", "Variant, e.g. int8 or int8-pruned80.", **fv)
    flags.DEFINE_string("to", None, "Destination folder.", **fv)


def _run(fv: flags.FlagValues) -> int:
    if not fv["from"].value or not fv["model"].value or not fv["to"].value:
        raise UsageError("pass --from <repository>, --model <name> and --to <folder>")
    written = pull(fv["from"].value, fv["model"].value, fv["variant"].value, Path(fv["to"].value), fv["version"].value)
    for path in written:
        print(f"verified and wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.pull``: fetch and verify a variant; returns the exit code."""
    return run_cli("tflite_opt.pull", argv, _define_flags, _run)


if __name__ == "__main__":
    sys.exit(main())
