"""Pruning, clustering and QAT through the CLI on every common keras.applications architecture.

    python benchmarks/architectures.py [--models MobileNetV2,Xception] [--keras 2,3] [--runs prune,qat]
                                       [--train 256] [--min-steps 60] [--work DIR]

Each architecture is built with random weights at the smallest input it accepts (3 channels, 10 classes), in
Keras 3 (``import keras``, saved as .keras) and tf_keras (.h5), trained for one short epoch on digits so that its
predictions are not constant, then run as a user runs it: ``python -m tflite_opt.convert --full-int8`` with
``--prune --target-sparsity 0.5``, ``--cluster 16``, ``--qat`` and ``--prune --cluster 16 --qat``, each in its own
process (a native crash is an exit code here, not the end of the table). Per row: the exit code or the one-line
refusal, the variant's verification, the least share of zeros in any pruned kernel and the most distinct values in
one output channel of any clustered kernel (both read from the file), top-1 against plain int8 of the same run, and
the fine-tuning seconds. A run that takes more than --timeout seconds is a "timeout" row; each run's stderr is kept
beside its output (``<work>/<model>_<run>/stderr.txt``). The figures of models with random weights trained for one
epoch say whether the tool holds, not how accurate such a model can be. The pretrained-like row is
``benchmarks/pretrained.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from tflite_opt.core import default_data

ARCHITECTURES = {  # name: smallest input side keras.applications accepts with weights=None
    "MobileNetV2": 32,
    "MobileNetV3Small": 32,
    "EfficientNetB0": 32,
    "ResNet50V2": 32,
    "DenseNet121": 32,
    "Xception": 71,
    "NASNetMobile": 32,
}
RUNS = {
    "prune": ["--prune", "--target-sparsity", "0.5"],
    "cluster": ["--cluster", "16"],
    "qat": ["--qat"],
    "prune+cluster+qat": ["--prune", "--target-sparsity", "0.5", "--cluster", "16", "--qat"],
}
BUILD = """
import os, sys, numpy as np
keras_version, name, side, out, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
if keras_version == "2":
    from tflite_opt.core import keras2
    keras = keras2.keras
else:
    from tflite_opt.core import keras3
    keras = keras3.keras
keras.utils.set_random_seed(0)
kwargs = dict(input_shape=(side, side, 3), weights=None, classes=10)
if name.startswith("MobileNetV3"):
    kwargs["include_preprocessing"] = False
model = getattr(keras.applications, name)(**kwargs)
with np.load(data) as archive:
    x, y = archive["x"].astype(np.float32) / 127.5 - 1.0, archive["y"]
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
model.fit(x, y, epochs=1, batch_size=32, verbose=0)
model.save(out)
"""


def write_data(work: Path, side: int, train: int) -> dict[str, Path]:
    """Digits at ``side`` x ``side``, 3 channels: training .npz, calibration and held-out folders."""
    folder = work / f"data{side}"
    paths = {"train": folder / "train.npz", "calibration": folder / "calibration", "eval": folder / "eval"}
    if paths["train"].exists():
        return paths
    with np.load(default_data.TRAIN_FILE) as archive:
        images, labels = archive["x"], archive["y"]
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]

    def rgb(image: np.ndarray) -> np.ndarray:
        grey = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
        return np.repeat(grey[..., None], 3, axis=-1)

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(paths["train"], x=np.stack([rgb(i) for i in images[:train]]), y=labels[:train])
    for i in range(train, train + 64):
        target = paths["calibration"] / f"c{i}.png"
        target.parent.mkdir(exist_ok=True)
        Image.fromarray(rgb(images[i])).save(target)
    for i in range(train + 64, train + 264):
        target = paths["eval"] / str(int(labels[i])) / f"e{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb(images[i])).save(target)
    return paths


def run(args: list[str], log: Path, timeout: float | None = None) -> tuple[int | str, str, float, float]:
    """(exit code, or "timeout"; the last line of stderr; wall seconds; the run's peak resident memory in GB)
    of one run, its whole stderr kept in ``log``, so a crash or refusal can be read in full after the table."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_USE_LEGACY_KERAS")}
    started = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    timed_out = False
    with log.open("w") as stderr:
        child = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        # wait4, not Popen.wait: the child's own resource usage (its peak resident set), not that of all children.
        while not (ended := os.wait4(child.pid, os.WNOHANG))[0]:
            if timeout is not None and time.perf_counter() - started > timeout:
                child.kill()
                ended = os.wait4(child.pid, 0)
                timed_out = True
                break
            time.sleep(0.5)
    _, status, usage = ended
    child.returncode = os.waitstatus_to_exitcode(status)
    peak_gb = usage.ru_maxrss / 1024**2  # Linux reports kilobytes
    wall = time.perf_counter() - started
    if timed_out:
        return "timeout", f"no result within {timeout:.0f} s (stderr: {log})", wall, peak_gb
    last = (log.read_text().strip().splitlines() or [""])[-1]
    return child.returncode, last, wall, peak_gb


def row(report: dict) -> str:
    """Verification, zeros, values per channel, top-1 against plain int8 and fine-tuning seconds of a run."""
    variants = {v["variant"]: v for v in report["variants"]}
    tuned = [v for name, v in variants.items() if name not in ("float32", "int8")]
    plain = variants["int8"]["top1"]
    parts = []
    for v in tuned:
        checks = "verified" if v["verified"] else "NOT verified"
        parts.append(f"{v['variant']} {checks}, top-1 {100 * v['top1']:.1f}% vs int8 {100 * plain:.1f}%")
    pruning = report.get("pruning") or {}
    layers = pruning.get("layers") or []
    if layers:
        zeros = min(min(layer["sparsity_in_file"].values(), default=0.0) for layer in layers)
        parts.append(f"least zeros in a pruned kernel {100 * zeros:.1f}% ({len(layers)} layers)")
    clustering = report.get("clustering")
    if clustering:
        kept = [c for v in tuned for c in v.get("checks", []) if "clusters kept" in c]
        most = [int(m.group(1)) for c in kept if (m := re.search(r"the most in one channel: (\d+)", c))]
        values = f", at most {max(most)} distinct values in one channel" if most else ""
        parts.append(f"{len(clustering['clustered_layers'])} layers clustered{values}")
    seconds = sum((report.get(step) or {}).get("seconds", 0.0) for step in ("pruning", "clustering", "qat"))
    parts.append(f"fine-tuning {seconds:.0f} s")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ARCHITECTURES))
    parser.add_argument("--keras", default="2,3")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--train", type=int, default=256)
    parser.add_argument("--min-steps", type=int, default=60)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tflite_opt_architectures"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a row may take (default 1800)")
    args = parser.parse_args()
    print(f"{'model':<18}{'keras':<6}{'run':<19}{'exit':>5}{'wall s':>8}{'peak GB':>8}  result")
    for name in args.models.split(","):
        side = ARCHITECTURES[name]
        data = write_data(args.work, side, args.train)
        for keras_version in args.keras.split(","):
            model = args.work / f"{name}_k{keras_version}.{'h5' if keras_version == '2' else 'keras'}"
            if not model.exists():
                build = ["-c", BUILD, keras_version, name, str(side), str(model), str(data["train"])]
                code, last, _, _ = run(build, args.work / f"{model.stem}_build.stderr.txt", args.timeout)
                if code != 0:
                    print(f"{name:<18}{keras_version:<6}{'build':<19}{code:>5}{'':>8}  {last}")
                    continue
            for run_name in args.runs.split(","):
                out = args.work / f"{model.stem}_{run_name}"
                command = ["-m", "tflite_opt.convert", "--full-int8", "--model", str(model), "--overwrite"]
                command += ["--representative-data", str(data["calibration"]), "--eval-data", str(data["eval"])]
                command += ["--train-data", str(data["train"]), "--mean", "127.5", "--std", "127.5"]
                command += ["--output-dir", str(out), "--min-fine-tuning-steps", str(args.min_steps)]
                code, last, wall, peak_gb = run([*command, *RUNS[run_name]], out / "stderr.txt", args.timeout)
                result = row(json.loads((out / "report.json").read_text())) if code == 0 else last
                line = f"{name:<18}{keras_version:<6}{run_name:<19}{code:>5}{wall:>8.0f}{peak_gb:>8.1f}  {result}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
