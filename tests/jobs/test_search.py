"""The accuracy-budget search on real models: one that quantizes badly, and the embedded default."""

import json
import logging
import re

import numpy as np
import pytest
from helpers import build_outlier_model, outlier_run

from tflite_opt.core.config import ClusterConfig, ConvertConfig, PruneConfig, QatConfig, SearchConfig
from tflite_opt.core.errors import VerificationError
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.jobs import search as jobs_search
from tflite_opt.jobs.convert import run_convert
from tflite_opt.stages.report import format_table
from tflite_opt.stages.verify import float_operators

pytestmark = pytest.mark.slow
# Fine-tuning at given rates and epochs (no minimum of steps): these tests are about the search, and the fine-tuning
# policy has its own (tests/stages/test_fine_tune.py).


def test_selective_quantization_keeps_the_outlier_layer_in_float_and_restores_accuracy(
    outlier_model, outlier_data, tmp_path
):
    report = run_convert(outlier_run(outlier_data, outlier_model, tmp_path, search=SearchConfig(1.0)))
    outcome = report.search
    first, chosen = outcome.candidates[0], outcome.chosen
    assert first.variant == "int8" and first.drop > 30, "the model was meant to quantize badly"
    assert chosen.float_layers == ("squash",)
    assert chosen.within_budget and chosen.drop <= 1.0
    assert outcome.met

    written = read_tflite((tmp_path / f"outlier_model.{chosen.variant}.tflite").read_bytes())
    float_ops = {op.name for op in written.operators if any(written.tensors[i].is_float for i in op.outputs)}
    assert {"FULLY_CONNECTED", "TANH"} <= float_ops
    assert [t.dtype for t in written.input_tensors()] == ["INT8"]

    saved = json.loads((tmp_path / "report.json").read_text())
    rows = {row["variant"]: row for row in saved["search"]["candidates"]}
    assert saved["search"]["budget"] == 1.0 and saved["search"]["met"]
    assert rows[chosen.variant]["chosen"] and rows[chosen.variant]["float_layers"] == ["squash"]
    cost = rows[chosen.variant]["step_cost"]
    assert cost["top1_points"] > 30 and cost["size_bytes"] > 0  # float weights cost bytes, win the accuracy back
    assert [v["variant"] for v in saved["variants"] if v["chosen"]] == [chosen.variant]
    assert saved["search"]["layer_ranking"][0]["layer"] == "squash"
    assert "--qat (with --train-data) tries it" in saved["search"]["qat_not_tried"]
    assert (tmp_path / "search.png").stat().st_size > 10_000


def test_the_sparsity_search_returns_the_highest_sparsity_within_budget(outlier_model, outlier_data, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tflite_opt")
    config = outlier_run(
        outlier_data,
        outlier_model,
        tmp_path,
        search=SearchConfig(2.0, sparsities=(0.5, 0.75, 0.95)),
        prune=PruneConfig(epochs=2, batch_size=64, learning_rate=1e-3, min_steps=0),
    )
    report = run_convert(config)
    outcome = report.search
    pruned = [c for c in outcome.candidates if c.sparsity]
    assert len(outcome.candidates) >= 3
    assert all(c.float_layers == ("squash",) for c in pruned), "the float layer found unpruned is kept"
    chosen = outcome.chosen
    assert chosen.within_budget and chosen.sparsity > 0
    assert chosen.sparsity == max(c.sparsity for c in pruned if c.within_budget)
    # The level after the chosen one on the grid was tried and missed, unless the chosen is the last.
    above = [c for c in pruned if c.sparsity > chosen.sparsity]
    assert all(not c.within_budget for c in above)
    # Its zeros are in the file, and the report describes the pruning of the chosen model.
    assert report.variant(chosen.variant).sparsity >= chosen.sparsity - 0.02
    assert report.pruning.config.target_sparsity == chosen.sparsity
    # Each candidate said it started, counted against the schedule's estimate (int8, 3 levels, bisection: 5).
    steps = [r.getMessage() for r in caplog.records if re.match(r"search: candidate \d+ of about", r.getMessage())]
    started = [c.variant for c in outcome.candidates]
    assert len(steps) == len(started) and steps[0].startswith("search: candidate 1 of about 5: int8 (0:")
    assert [m.split(": ")[2].split(" (")[0] for m in steps] == started


def test_quantization_aware_training_comes_before_float_layers_and_clustering_keeps_full_integer(
    outlier_model, outlier_data, tmp_path
):
    config = outlier_run(
        outlier_data,
        outlier_model,
        tmp_path,
        search=SearchConfig(2.0),
        cluster=ClusterConfig(16, learning_rate=1e-4, min_steps=0),
        qat=QatConfig(learning_rate=1e-3, min_steps=0),
        pixel_input=True,
    )
    report = run_convert(config)
    outcome = report.search
    # Post-training candidates take camera pixels; quantization-aware ones keep the input their ranges were
    # learnt on, and are measured (and described in their manifest) with it.
    assert report.variant("int8").pixel_input and not report.variant(outcome.chosen.variant).pixel_input
    rows = {c.variant: c for c in outcome.candidates}
    assert list(rows)[:2] == ["int8", "int8-qat"] and rows["int8-qat"].within_budget
    assert not any(c.float_layers for c in outcome.candidates), "full int8 was within reach: nothing kept in float"
    assert outcome.ranking == ()  # the layers were never ranked for float
    clustered = rows["int8-clustered16"]
    assert clustered.parent == "int8" and clustered.remedy == "none"  # clustered from the float model
    if not clustered.within_budget:  # post-training quantization of the clustered model: its cluster-keeping QAT
        assert rows["int8-clustered16-cqat"].parent == "int8-clustered16"
    chosen = outcome.chosen
    assert chosen.within_budget and chosen.remedy in ("qat", "cqat")
    assert float_operators(read_tflite((tmp_path / f"outlier_model.{chosen.variant}.tflite").read_bytes())) == []
    saved = {row["variant"]: row for row in json.loads((tmp_path / "report.json").read_text())["search"]["candidates"]}
    assert saved["int8-qat"]["remedy"] == "qat" and saved["int8-qat"]["fine_tuning_seconds"]["qat"] > 0
    assert set(saved["int8-clustered16"]["fine_tuning_seconds"]) == {"clustering"}
    assert saved["int8"]["fine_tuning_seconds"] == {} and saved["int8"]["remedy"] == "none"


def test_a_pruned_level_whose_int8_misses_gets_the_scheme_that_keeps_its_zeros_and_clusters(
    outlier_model, outlier_data, tmp_path
):
    config = outlier_run(
        outlier_data,
        outlier_model,
        tmp_path,
        # Pruned by half and clustered, this small model loses 2.5 points even with PCQAT: a 3-point budget.
        search=SearchConfig(3.0, sparsities=(0.5,)),
        prune=PruneConfig(epochs=2, batch_size=64, learning_rate=1e-3, min_steps=0),
        cluster=ClusterConfig(16, learning_rate=1e-4, min_steps=0),
        qat=QatConfig(learning_rate=1e-3, min_steps=0),
    )
    report = run_convert(config)
    rows = {c.variant: c for c in report.search.candidates}
    ptq = rows["int8-pruned50-clustered16"]
    assert ptq.drop > 30, "the outlier survives pruning and clustering: post-training int8 still fails"
    pcqat = rows["int8-pruned50-clustered16-pcqat"]
    assert pcqat.parent == ptq.variant and pcqat.within_budget and report.search.chosen is pcqat
    # Verified in the file: its zeros and at most 16 (+ the zero) values per channel survived the QAT.
    checks = {c.name for c in report.variant(pcqat.variant).verification.checks if c.passed}
    assert {"integer-only", "sparsity kept", "clusters kept"} <= checks
    assert report.variant(pcqat.variant).sparsity >= 0.45
    assert report.pruning.config.target_sparsity == 0.5 and report.clustering.preserved_sparsity
    assert report.qat is not None and set(pcqat.tuned.seconds()) == {"pruning", "clustering", "qat"}


def test_per_tensor_weights_show_their_accuracy_cost_next_to_per_channel(outlier_data, tmp_path):
    with np.load(outlier_data / "train.npz") as archive:
        model = build_outlier_model(archive["x"], archive["y"], outlier="weight")
    path = tmp_path / "wide_weights.keras"
    model.save(path)

    report = run_convert(outlier_run(outlier_data, path, tmp_path / "out", per_tensor=True))
    assert report.chosen.variant == "int8-per-tensor"
    per_channel, per_tensor = report.variant("int8"), report.variant("int8-per-tensor")
    assert report.top1_drop_points(per_channel) < 2.0
    assert report.top1_drop_points(per_tensor) > 20.0
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {v["variant"] for v in saved["variants"]} == {"float32", "int8", "int8-per-tensor"}


def test_default_model_search_returns_a_pruned_model_within_a_third_of_a_point(tmp_path):
    """The issue's done-when on the default grid's path without bisection (the whole grid takes about 4 minutes):
    plain int8, 50% from the dense model, 70% and 90% each continuing from the level before (70% straight from the
    dense model dropped 0.5 points on an AMD EPYC, 0.0 from 50%; the Intel machine before it kept 70% from dense
    within the budget). At the learning rate the default's measurement
    chooses (5e-4, see the prune run's report), so each candidate fine-tunes once: the choice itself is tested in
    tests/stages/test_fine_tune.py."""
    report = run_convert(
        ConvertConfig(
            output_dir=tmp_path,
            prune=PruneConfig(learning_rate=PruneConfig.START_LEARNING_RATE),
            search=SearchConfig(0.3, sparsities=(0.5, 0.7, 0.9), refine=False),
        )
    )
    outcome = report.search
    chosen = outcome.chosen
    assert [c.variant for c in outcome.candidates] == ["int8", "int8-pruned50", "int8-pruned70", "int8-pruned90"]
    assert chosen.sparsity >= 0.7 and chosen.within_budget
    assert 100 * (report.keras_top1 - report.variant(chosen.variant).top1) <= 0.3 + 1e-9
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["search"]["budget"] == 0.3 and len(saved["search"]["candidates"]) >= 3


def test_a_candidate_that_fails_is_a_row_with_its_reason_and_the_search_still_ships(
    outlier_model, outlier_data, tmp_path, monkeypatch
):
    real = jobs_search.prune_model

    def failing_at_75(model, train_x, train_y, settings, progress=False):
        if settings.target_sparsity == 0.75:
            raise VerificationError("the int8-pruned75 model failed verification: sparsity kept: conv 33.0% zeros")
        return real(model, train_x, train_y, settings, progress)

    monkeypatch.setattr(jobs_search, "prune_model", failing_at_75)
    config = outlier_run(
        outlier_data,
        outlier_model,
        tmp_path,
        search=SearchConfig(2.0, sparsities=(0.5, 0.75), refine=False),
        prune=PruneConfig(epochs=2, batch_size=64, learning_rate=1e-3, min_steps=0),
    )
    report = run_convert(config)
    rows = {row["variant"]: row for row in json.loads((tmp_path / "report.json").read_text())["search"]["candidates"]}
    failed = rows["int8-pruned75-mixed1"]
    assert "sparsity kept: conv 33.0% zeros" in failed["failure"] and failed["top1"] is None
    assert report.search.chosen.within_budget and report.search.chosen.failure is None
    assert (tmp_path / f"outlier_model.{report.search.chosen.variant}.tflite").exists()
    assert "failed" in format_table(report)
