"""One road from a recipe to a verified file: float layers, pixel input, fine-tuning checked in the file."""

from dataclasses import replace

import numpy as np
import pytest
from helpers import build_functional, mnist_digits

from tflite_opt.core.config import IoType, Mode, PruneConfig
from tflite_opt.core.errors import VerificationError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.variant import QatScheme, VariantSpec
from tflite_opt.results.tuning import FineTuned, LayerSparsity, PruneResult, PruneStats
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.load import describe_classifier
from tflite_opt.stages.metadata import MetadataSpec, file_metadata
from tflite_opt.stages.realize import Calibration, Target, calibrate, realize, source_model
from tflite_opt.stages.verify import float_operators

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny():
    images, _ = mnist_digits(24)
    pixels = images[:, ::2, ::2][:, 1:13, 1:13][..., np.newaxis]
    model = build_functional()
    calibration = Calibration.of(Dataset(pixels, None, ()), Preprocessing())
    return model, calibration, Target(IoType.INT8, describe_classifier(model))


def test_a_layer_kept_in_float_is_the_only_float_arithmetic_and_the_file_says_so(tiny):
    model, calibration, target = tiny
    spec = VariantSpec(Mode.FULL_INT8, float_layers=("hidden",))
    verified = realize(spec, model, calibration, target, calibrated=calibrate(model, calibration, False))
    assert verified.verification.variant == "int8-mixed1" and verified.verification.passed
    assert {op.name for op in float_operators(verified.parsed)} - {"QUANTIZE", "DEQUANTIZE"} == {"FULLY_CONNECTED"}
    plain = realize(VariantSpec(Mode.FULL_INT8), model, calibration, target)
    assert not float_operators(plain.parsed) and not plain.pixel_input


def test_a_pixel_input_variant_takes_pixels_with_scale_one(tiny):
    model, calibration, target = tiny
    verified = realize(VariantSpec(Mode.FULL_INT8, pixel_input=True), model, calibration, target)
    quantization = verified.parsed.input_tensors()[0].quantization
    assert verified.pixel_input and quantization.scale == pytest.approx(1.0)
    assert any(c.name.startswith("pixel input") and c.passed for c in verified.verification.checks)


def test_with_a_metadata_spec_the_verified_bytes_carry_the_metadata_and_predict_the_same(tiny):
    model, calibration, target = tiny
    spec = MetadataSpec("tiny", "1", tuple(str(i) for i in range(10)), Preprocessing())
    plain = realize(VariantSpec(Mode.FULL_INT8), model, calibration, target)
    described = realize(VariantSpec(Mode.FULL_INT8), model, calibration, replace(target, metadata=spec))
    assert file_metadata(plain.parsed) is None and file_metadata(described.parsed).labels_file == "tiny.labels.txt"
    assert [c.line() for c in described.verification.checks if c.name == "metadata"] == [
        "✓ metadata: TFLITE_METADATA (parser 1.0.0), 10 labels in tiny.labels.txt"
    ]
    before, after = (TfliteRunner(v.content).predict(calibration.model_input[:8]) for v in (plain, described))
    assert np.array_equal(before, after)


def test_a_pruned_variant_whose_file_lost_the_zeros_is_refused(tiny):
    model, calibration, target = tiny
    weights = int(np.prod(model.get_layer("hidden").kernel.shape))
    # The model claims half its hidden kernel is zero; the untouched model has none.
    claimed = PruneStats(PruneConfig(0.5), (LayerSparsity("hidden", weights, weights // 2),), (), 0.0)
    tuned = FineTuned(pruned=PruneResult(model, claimed))
    spec = VariantSpec(Mode.FULL_INT8, 0.5)
    assert source_model(spec, "dense", tuned) is model
    with pytest.raises(VerificationError, match="int8-pruned50.*hidden"):
        realize(spec, source_model(spec, model, tuned), calibration, target, tuned)
    # The same file as plain int8 makes no claim, so nothing is checked against the stats.
    assert realize(VariantSpec(Mode.FULL_INT8), model, calibration, target, tuned).verification.passed


def test_a_quantization_aware_variant_is_converted_from_the_quantization_aware_model():
    tuned = FineTuned(qat=type("Qat", (), {"model": "qat model"})())
    assert source_model(VariantSpec(Mode.FULL_INT8, qat=QatScheme.QAT), "dense", tuned) == "qat model"
    assert source_model(VariantSpec(Mode.FULL_INT8), "dense", tuned) == "dense"
