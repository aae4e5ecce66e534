"""Post-training quantization against quantization-aware training, alone and after pruning and clustering.

    python benchmarks/collaborative.py [--sparsity 0.8] [--clusters 16]

On both reference models (the embedded MNIST CNN and the MobileNetV2-style one, with the shipped data), converts
full int8 four ways and prints, per variant: file size, gzip size (and its share of the float32 file's), zeros
among conv/dense weights, the largest number of distinct int8 values in one output channel of any kernel (read
from the file), top-1 on the held-out digits against Keras, and the seconds of fine-tuning the run took (pruning,
clustering and quantization-aware training together: a PTQ variant of a PQAT run needed only the pruning):

    PTQ    int8                          post-training quantization
    QAT    int8-qat                      quantization-aware training
    PQAT   int8-pruned80(-pqat)          pruned, then PTQ and prune-preserving QAT
    PCQAT  int8-pruned80-clustered16(-pcqat)  pruned and clustered, then PTQ and prune- and cluster-preserving QAT
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tflite_opt.core import default_data
from tflite_opt.core.config import ClusterConfig, ConvertConfig, PruneConfig, QatConfig
from tflite_opt.core.tflite_file import distinct_per_channel, kernel_tensor, read_tflite
from tflite_opt.jobs.convert import run_convert

MODELS = {
    "mnist_cnn": default_data.MODEL_PATH,
    "mnist_mobilenet": default_data.MODEL_PATH.with_name("mnist_mobilenet.keras"),
}


def most_distinct(path: Path) -> int:
    """The largest number of distinct values in one output channel of any kernel of the file."""
    model = read_tflite(path.read_bytes())
    counts = [distinct_per_channel(model, op, t) for op in model.operators if (t := kernel_tensor(model, op))]
    return max(counts)


def seconds(report) -> float:
    """Fine-tuning time of the run: pruning, clustering and quantization-aware training."""
    parts = [report.pruning, report.clustering, report.qat]
    return sum(part.seconds for part in parts if part is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--clusters", type=int, default=16)
    args = parser.parse_args()
    prune, cluster = PruneConfig(args.sparsity), ClusterConfig(args.clusters)
    runs = {
        "PTQ": {},
        "QAT": {"qat": QatConfig()},
        "PQAT": {"prune": prune, "qat": QatConfig()},
        "PCQAT": {"prune": prune, "cluster": cluster, "qat": QatConfig()},
    }
    work = Path(tempfile.mkdtemp(prefix="collaborative_"))
    print(f"{'model':<16}{'run':<7}{'variant':<34}{'KiB':>7}{'gzip KiB':>9}{'gzip %':>8}{'zeros':>7}"
          f"{'values/ch':>10}{'top-1':>8}{'keras':>8}{'run s':>8}")  # fmt: skip
    for name, path in MODELS.items():
        for run, extra in runs.items():
            output = work / name / run
            common = {"model_path": path, "model_name": name, "output_dir": output, "overwrite": True}
            data = {
                "representative_data": default_data.CALIBRATION_DIR,
                "eval_data": default_data.EVAL_DIR,
                "train_data": default_data.TRAIN_FILE,
                "preprocessing": default_data.PREPROCESSING,
            }
            report = run_convert(ConvertConfig(**common, **data, **extra))
            float32 = report.variant("float32")
            for variant in report.variants[1:]:
                if run != "PTQ" and variant.variant == "int8":
                    continue  # post-training quantization again, as in the PTQ row
                share = 100 * variant.gzip_size_bytes / float32.gzip_size_bytes
                print(
                    f"{name:<16}{run:<7}{variant.variant:<34}{variant.size_bytes / 1024:>7.1f}"
                    f"{variant.gzip_size_bytes / 1024:>9.1f}{share:>7.1f}%"
                    f"{100 * variant.sparsity:>6.1f}%{most_distinct(variant.path):>10}{100 * variant.top1:>7.2f}%"
                    f"{100 * report.keras_top1:>7.2f}%{seconds(report):>8.0f}"
                )


if __name__ == "__main__":
    main()
