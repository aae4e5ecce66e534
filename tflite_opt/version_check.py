"""``python -m tflite_opt.version_check [--json] [--strict]``: can this stack convert?

This module parses flags, runs :func:`tflite_opt.jobs.version_check.run_checks` and prints the results.
It imports no TensorFlow until a check needs it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from absl import flags

from tflite_opt.command import OUTPUT_GROUP, run_cli, supervised
from tflite_opt.jobs.version_check import exit_code, format_results, run_checks

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "can this stack convert?"


def _define_flags(flag_values: flags.FlagValues) -> None:
    output = {"flag_values": flag_values, "module_name": OUTPUT_GROUP}
    flags.DEFINE_bool("json", False, "Print the results as JSON.", **output)
    flags.DEFINE_bool("strict", False, "Exit 1 on a warning too.", **output)


def _run(fv: flags.FlagValues) -> int:
    results = run_checks()
    code = exit_code(results, strict=fv["strict"].value)
    if fv["json"].value:
        print(json.dumps({"schema_version": 1, "exit_code": code, "checks": [r.to_dict() for r in results]}, indent=2))
    else:
        print(format_results(results))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tflite_opt.version_check``; returns the exit code."""
    return run_cli("tflite_opt.version_check", argv, _define_flags, _run, SUMMARY)


if __name__ == "__main__":
    sys.exit(supervised("tflite_opt.version_check", main))
