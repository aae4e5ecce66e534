"""``python -m tflite_opt.pull --from <repository dir or URL> --model NAME --variant int8 --to DIR [--overwrite]``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from tflite_opt.command import OUTPUT_GROUP, define_overwrite_flag, run_cli, supervised
from tflite_opt.core.errors import UsageError
from tflite_opt.stages.repository import UNVERIFIED_REASON, Pulled, pull

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "fetch one variant's bundle from a repository, every file verified"


def _define_flags(flag_values: flags.FlagValues) -> None:
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("from", None, "Required: the repository folder, or an http(s) URL serving it.", **fv)
    flags.DEFINE_string("model", None, "Required: the model's name.", **fv)
    flags.DEFINE_string("version", None, "Version. Default: the latest published.", **fv)
    flags.DEFINE_string("variant", "int8", "Variant, e.g. int8 or int8-pruned80.", **fv)
    flags.DEFINE_string("to", None, "Required: the destination folder.", **fv)
    define_overwrite_flag(flag_values, OUTPUT_GROUP, "files in --to that differ from the pulled ones")


# The line for a pulled file, by (sha256 checked, an identical copy already there): "verified" only where checked.
_LINES = {
    (True, False): "verified and wrote {path}",
    (True, True): "verified {path} (already there, identical)",
    (False, False): "wrote {path} (not verified: {why})",
    (False, True): "kept {path}, already there and identical (not verified: {why})",
}


def _line(item: Pulled) -> str:
    return _LINES[item.verified, item.unchanged].format(path=item.path, why=UNVERIFIED_REASON)


def _run(fv: flags.FlagValues) -> int:
    if not fv["from"].value or not fv["model"].value or not fv["to"].value:
        raise UsageError("pass --from <repository>, --model <name> and --to <folder>")
    pulled = pull(
        fv["from"].value,
        fv["model"].value,
        fv["variant"].value,
        Path(fv["to"].value),
        fv["version"].value,
        overwrite=fv["overwrite"].value,
    )
    for item in pulled:
        print(_line(item))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.pull``: fetch and verify a variant; returns the exit code."""
    return run_cli("tflite_opt.pull", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.pull", main))
