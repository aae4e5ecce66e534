"""``python -m tflite_opt.default_model export | train [mnist_cnn|mnist_mobilenet]``: regenerate the embedded
default data (needs the ``data`` extra) or retrain a reference model (see WORKSPACE.md)."""

from __future__ import annotations

import sys

from tflite_opt.core.default_data import DATA_DIR, EVAL_DIR, MODEL_NAME
from tflite_opt.jobs.default_model import BUILDERS, export_mnist, train_default_model


def main(argv: list[str] | None = None) -> int:
    """Run ``export`` or ``train``; returns the exit code."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["export"]:
        summary = export_mnist()
        counts = f"{summary.train} training, {summary.calibration} calibration, {summary.eval} eval"
        print(f"wrote {counts} digits to {DATA_DIR}")
    elif args[:1] == ["train"] and (len(args) == 1 or args[1] in BUILDERS):
        name = args[1] if len(args) > 1 else MODEL_NAME
        top1 = train_default_model(name=name)
        print(f"saved {BUILDERS[name][1]}; top-1 on {EVAL_DIR}: {top1:.4f}")
    else:
        print(f"usage: python -m tflite_opt.default_model export | train [{'|'.join(BUILDERS)}]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
