"""The whole grid on the reference models, measured side by side in one run.

Usage: python benchmarks/grid.py [--output-dir artifacts/grid] [--skip-mobilenet-224]

For each reference model (the embedded mnist_cnn and the MobileNetV2-family
mnist_mobilenet): float32, dynamic-range, float16, full-int8, and pruned
50/75/90% + full-int8. All files are converted first, then measured together by
one benchmark run, so latency figures share the same machine state. Then
keras.applications MobileNetV2 at 224x224 (weights=None), latency and size only.
Writes grid.json and grid.md (top-1, size, gzip size, p50 latency, and their
ratios to float32) into --output-dir.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from tflite_opt.core import default_data
from tflite_opt.core.config import BenchmarkSettings, ConvertConfig, Mode, PruneConfig
from tflite_opt.core.variant import VariantSpec
from tflite_opt.jobs.benchmark import run_benchmark
from tflite_opt.jobs.convert import run_convert
from tflite_opt.jobs.default_model import BUILDERS

MODES = (Mode.FLOAT32, Mode.DYNAMIC_RANGE, Mode.FLOAT16, Mode.FULL_INT8)
SPARSITIES = (0.5, 0.75, 0.9)


def convert_grid(name: str, model_path: Path, folder: Path) -> list[Path]:
    common = {
        "model_path": model_path,
        "model_name": name,
        "representative_data": default_data.CALIBRATION_DIR,
        "eval_data": None,
        "preprocessing": default_data.PREPROCESSING,
        "overwrite": True,
    }
    run_convert(ConvertConfig(modes=MODES, output_dir=folder / "plain", **common))
    files = [folder / "plain" / f"{name}.{mode.value}.tflite" for mode in MODES]
    for sparsity in SPARSITIES:
        prune = PruneConfig(target_sparsity=sparsity)
        out = folder / f"pruned{prune.percent}"
        config = ConvertConfig(
            modes=(Mode.FULL_INT8,), prune=prune, train_data=default_data.TRAIN_FILE, output_dir=out, **common
        )
        run_convert(config)
        files.append(VariantSpec(Mode.FULL_INT8, sparsity).path(out, name))
    measured = folder / "measured"
    measured.mkdir(exist_ok=True)
    return [Path(shutil.copy(f, measured / f.name)) for f in files]


def mobilenet_224_files(folder: Path) -> list[Path]:
    from tflite_opt.core.keras2 import keras
    from tflite_opt.stages.convert import convert_keras

    model = keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    calibration = np.random.default_rng(0).uniform(-1, 1, (16, 224, 224, 3)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for mode in MODES:
        path = folder / f"mobilenet_v2_224.{mode.value}.tflite"
        path.write_bytes(convert_keras(model, mode, calibration, progress=False))
        files.append(path)
    return files


def rows(report_dict: dict) -> list[dict]:
    reference = next(v for v in report_dict["variants"] if v["variant"] == "float32")
    out = []
    for v in report_dict["variants"]:
        out.append(
            {
                "variant": v["variant"],
                "top1": v["top1"],
                "top1_drop_points": v["top1_drop_points"],
                "size_bytes": v["size_bytes"],
                "size_ratio": v["size_ratio"],
                "gzip_size_bytes": v["gzip_size_bytes"],
                "gzip_ratio": v["gzip_ratio"],
                "p50_ms": v["latency_ms"]["p50"],
                "p50_ratio": round(v["latency_ms"]["p50"] / reference["latency_ms"]["p50"], 3),
                "verdict": v["verdict"],
            }
        )
    return out


def markdown(name: str, table: list[dict], note: str) -> str:
    lines = [f"## {name}", "", note, ""]
    lines.append(
        "| variant | top-1 | drop (pts) | size (KiB) | vs f32 | gzip (KiB) | vs f32 | p50 (ms) | vs f32 | verdict |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in table:
        top1 = "n/a" if r["top1"] is None else f"{100 * r['top1']:.2f}%"
        drop = "n/a" if r["top1_drop_points"] is None else f"{r['top1_drop_points']:+.2f}"
        lines.append(
            f"| {r['variant']} | {top1} | {drop} | {r['size_bytes'] / 1024:.1f} | {r['size_ratio']:.3f} "
            f"| {r['gzip_size_bytes'] / 1024:.1f} | {r['gzip_ratio']:.3f} | {r['p50_ms']:.3f} | {r['p50_ratio']:.2f} "
            f"| {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("artifacts/grid"))
    parser.add_argument("--skip-mobilenet-224", action="store_true")
    parser.add_argument("--num-threads", type=int, default=1)
    args = parser.parse_args()
    settings = BenchmarkSettings(num_threads=args.num_threads)
    results, sections = {}, []
    started = time.perf_counter()
    for name, (_, model_path) in BUILDERS.items():
        folder = args.output_dir / name
        files = convert_grid(name, model_path, folder)
        report = run_benchmark(
            files,
            folder / "report",
            eval_data=default_data.EVAL_DIR,
            keras_model_path=model_path,
            preprocessing=default_data.PREPROCESSING,
            settings=settings,
            seen_data={"calibration": default_data.CALIBRATION_DIR, "training": default_data.TRAIN_FILE},
            overwrite=True,
        )
        results[name] = rows(report.to_dict())
        note = (
            f"Top-1 on {report.eval_samples} held-out digits (Keras {100 * report.keras_top1:.2f}%); "
            f"p50 of one image, {args.num_threads} thread(s)."
        )
        sections.append(markdown(name, results[name], note))
    if not args.skip_mobilenet_224:
        folder = args.output_dir / "mobilenet_v2_224"
        report = run_benchmark(mobilenet_224_files(folder), folder / "report", settings=settings, overwrite=True)
        results["mobilenet_v2_224"] = rows(report.to_dict())
        note = "keras.applications MobileNetV2, 224x224, weights=None: latency and size only (no accuracy)."
        sections.append(markdown("mobilenet_v2_224", results["mobilenet_v2_224"], note))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "grid.json").write_text(json.dumps(results, indent=2) + "\n")
    text = "# tflite_opt grid\n\n" + "\n".join(sections)
    (args.output_dir / "grid.md").write_text(text)
    print(text)
    print(f"({time.perf_counter() - started:.0f} s; {args.output_dir / 'grid.json'})")


if __name__ == "__main__":
    main()
