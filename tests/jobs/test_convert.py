"""The convert job: the plan, what a run writes, the embedded default's targets, nothing half-written."""

import json

import numpy as np
import pytest

from tflite_opt.core.config import ConvertConfig, Mode, Preprocessing, PruneConfig, SearchConfig
from tflite_opt.core.errors import OutputExistsError, UsageError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.jobs.convert import PlannedVariant, plan_variants, run_convert
from tflite_opt.stages.data import ImageSize, load_dataset
from tflite_opt.stages.load import load_keras_model
from tflite_opt.stages.verify import float_operators


def test_the_plan_puts_the_float32_reference_first_and_names_every_variant():
    plan = plan_variants(ConvertConfig(modes=(Mode.FULL_INT8, Mode.FLOAT16)))
    assert plan == (
        PlannedVariant("float32", Mode.FLOAT32),
        PlannedVariant("float16", Mode.FLOAT16),
        PlannedVariant("int8", Mode.FULL_INT8),
    )


def test_a_pruned_plan_converts_the_pruned_model_but_keeps_the_unpruned_reference():
    plan = plan_variants(ConvertConfig(prune=PruneConfig(target_sparsity=0.8), sparse_format=True))
    assert [(v.name, v.from_pruned, v.sparse_weights) for v in plan] == [
        ("float32", False, False),
        ("int8-pruned80", True, False),
        ("int8-pruned80-sparse", True, True),
    ]


def test_per_tensor_adds_a_variant_beside_the_per_channel_one_and_a_search_plans_only_the_reference():
    assert [(v.name, v.per_tensor) for v in plan_variants(ConvertConfig(per_tensor=True))] == [
        ("float32", False),
        ("int8", False),
        ("int8-per-tensor", True),
    ]
    assert [v.name for v in plan_variants(ConvertConfig(search=SearchConfig(1.0)))] == ["float32"]


@pytest.fixture
def tiny_config(saved_tiny_model, digit_folders, tmp_path):
    calibration, evaluation = digit_folders
    return ConvertConfig(
        model_path=saved_tiny_model,
        representative_data=calibration,
        eval_data=evaluation,
        output_dir=tmp_path / "out",
    )


@pytest.mark.slow
def test_every_mode_is_written_verified_and_measured_on_the_held_out_data(tiny_config, saved_tiny_model):
    modes = (Mode.FULL_INT8, Mode.DYNAMIC_RANGE, Mode.FLOAT16)
    report = run_convert(ConvertConfig(**{**tiny_config.__dict__, "modes": modes}))
    out = tiny_config.output_dir
    assert [v.variant for v in report.variants] == ["float32", "dynamic-range", "float16", "int8"]
    evaluation = load_dataset(tiny_config.eval_data, ImageSize(12, 12, 1), require_labels=True)
    inputs = evaluation.model_input(Preprocessing())
    keras_top1 = np.mean(
        np.argmax(load_keras_model(saved_tiny_model).predict(inputs, verbose=0), 1) == evaluation.labels
    )
    assert report.keras_top1 == pytest.approx(keras_top1)
    for variant in report.variants:
        content = (out / f"tiny.{variant.variant}.tflite").read_bytes()
        assert len(content) == variant.size_bytes and variant.verification.passed
        expected = np.mean(np.argmax(TfliteRunner(content).predict(inputs), axis=1) == evaluation.labels)
        assert variant.top1 == pytest.approx(expected), variant.variant
    saved = json.loads((out / "report.json").read_text())
    assert saved["model"] == "tiny" and saved["preprocessing"]["scale"] == [pytest.approx(1 / 255)]
    int8 = saved["variants"][-1]
    assert int8["input"]["dtype"] == int8["output"]["dtype"] == "int8" and int8["input"]["scale"] > 0
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())


@pytest.mark.slow
def test_existing_output_is_refused_before_any_work_and_kept(tiny_config):
    run_convert(tiny_config)
    before = (tiny_config.output_dir / "tiny.int8.tflite").stat().st_mtime_ns
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        run_convert(tiny_config)
    assert (tiny_config.output_dir / "tiny.int8.tflite").stat().st_mtime_ns == before
    run_convert(ConvertConfig(**{**tiny_config.__dict__, "overwrite": True}))


@pytest.mark.slow
def test_an_interrupt_while_measuring_leaves_no_file(tiny_config, monkeypatch):
    def interrupted(self, inputs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TfliteRunner, "predict", interrupted)  # evaluation, after every variant converted
    with pytest.raises(KeyboardInterrupt):
        run_convert(tiny_config)
    out = tiny_config.output_dir
    assert not out.exists() or list(out.iterdir()) == []


def test_a_user_model_without_the_data_its_modes_need_is_refused(saved_tiny_model, tmp_path):
    with pytest.raises(UsageError, match="pass --representative-data"):
        run_convert(ConvertConfig(model_path=saved_tiny_model, output_dir=tmp_path))
    with pytest.raises(UsageError, match="pass --train-data"):
        run_convert(ConvertConfig(model_path=saved_tiny_model, representative_data=tmp_path, prune=PruneConfig()))


@pytest.mark.slow
def test_default_model_meets_the_full_int8_targets(tmp_path):
    """Done-when of the foundation: int8 ≤ 30% of float32, integer-only, top-1 within 1 point."""
    report = run_convert(ConvertConfig(output_dir=tmp_path))
    saved = json.loads((tmp_path / "report.json").read_text())
    float32, int8 = saved["variants"]
    assert saved["keras_top1"] >= 0.97
    assert int8["size_bytes"] <= 0.30 * float32["size_bytes"]
    parsed = read_tflite((tmp_path / int8["path"]).read_bytes())
    assert float_operators(parsed) == []
    assert parsed.input_tensors()[0].dtype == parsed.output_tensors()[0].dtype == "INT8"
    assert saved["keras_top1"] - int8["top1"] <= 0.01
    assert saved["eval_samples"] == 1000 and saved["calibration_samples"] == 200
    assert int8["top5"] >= int8["top1"]
    assert int8["latency_ms"]["p50"] <= int8["latency_ms"]["p90"] <= int8["latency_ms"]["p99"]
    assert int8["verdict"] == "good" and float32["verdict"] == "reference"
    assert report.chosen.variant == "int8" and int8["chosen"]
    assert (tmp_path / "report.md").is_file()
    assert (tmp_path / "tradeoff.png").is_file() and (tmp_path / "confusion.png").is_file()


@pytest.mark.slow
def test_default_model_pruned_to_80_percent_meets_the_targets(tmp_path):
    """Done-when of pruning: ≥75% zeros in the int8 file, gzip ≤ 1/10 of float32's, top-1 within 1 point."""
    run_convert(ConvertConfig(output_dir=tmp_path, prune=PruneConfig(target_sparsity=0.8)))
    report = json.loads((tmp_path / "report.json").read_text())
    float32, pruned = report["variants"]
    assert pruned["variant"] == "int8-pruned80"
    assert pruned["sparsity"] >= 0.75
    assert all(layer["sparsity_in_file"]["int8-pruned80"] >= 0.75 for layer in report["pruning"]["layers"])
    assert pruned["gzip_size_bytes"] <= float32["gzip_size_bytes"] / 10
    assert report["keras_top1"] - pruned["top1"] <= 0.01
    assert "compressed (gzip) size" in report["pruning"]["note"]
