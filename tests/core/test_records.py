"""Frozen dataclasses to JSON records and back: how a search keeps its finished candidates without pickle."""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tflite_opt.core.config import Mode, PruneConfig
from tflite_opt.core.records import from_record, to_record
from tflite_opt.core.variant import QatScheme, VariantSpec
from tflite_opt.results.search import Candidate, SearchPhase
from tflite_opt.results.tuning import FineTuningRecord, HeldOutScore, LayerSparsity, PruneStats, Trial


def through_json(value):
    return json.loads(json.dumps(to_record(value)))


def test_a_candidate_with_enums_tuples_and_a_nested_config_comes_back_equal():
    mixed = VariantSpec(Mode.FULL_INT8, 0.7, 16, float_layers=("dense", "squash"))
    found = Candidate(
        mixed, SearchPhase.SPARSITY, 0.97, 1.25, 12345, False, "int8-pruned60", failure=None, worker="n/1", seconds=3.5
    )
    back = from_record(Candidate, through_json(found))
    assert back == found and back.variant == found.variant
    assert back.phase is SearchPhase.SPARSITY and back.spec.clusters == 16
    assert back.float_layers == ("dense", "squash") and isinstance(back.float_layers, tuple)
    trained = VariantSpec(Mode.FULL_INT8, 0.7, 16, qat=QatScheme.PCQAT)
    assert from_record(VariantSpec, through_json(trained)).qat is QatScheme.PCQAT


def test_fine_tuning_figures_nested_three_deep_come_back_equal():
    score = HeldOutScore(0.9, 0.31)
    tuning = FineTuningRecord(40, 10, 32, 4, 1e-4, False, 3, (Trial(1e-4, 3, score),), score, score, "kept", 2.5)
    stats = PruneStats(
        PruneConfig(target_sparsity=0.5), (LayerSparsity("conv", 72, 36),), (("bn", "not prunable"),), 9.0, tuning
    )
    back = from_record(PruneStats, through_json(stats))
    assert back == stats
    assert back.tuning.trials[0].score.loss == 0.31 and back.skipped == (("bn", "not prunable"),)


@dataclass(frozen=True)
class _WithArrays:
    confusion: np.ndarray
    where: Path
    limit: float
    model: Any = None


def test_arrays_keep_dtype_and_shape_infinities_survive_and_fields_typed_any_are_left_to_the_caller():
    value = _WithArrays(np.arange(6, dtype=np.int32).reshape(2, 3), Path("/tmp/x"), math.inf, model=object())
    record = through_json(value)
    assert "model" not in record
    back = from_record(_WithArrays, record, model="the model")
    assert back.confusion.dtype == np.int32 and back.confusion.shape == (2, 3)
    assert np.array_equal(back.confusion, value.confusion)
    assert back.where == Path("/tmp/x") and back.limit == math.inf and back.model == "the model"


def test_what_a_record_cannot_hold_or_a_record_that_does_not_fit_is_refused():
    with pytest.raises(TypeError, match="bytes"):
        to_record(_WithArrays(b"raw", Path("."), 1.0))
    with pytest.raises(ValueError, match="does not fit HeldOutScore"):
        from_record(HeldOutScore, {"top1": 0.5})
