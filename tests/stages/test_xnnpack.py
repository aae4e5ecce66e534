"""int8 HARD_SWISH rewritten into operators XNNPACK runs: one partition, integer only, as faithful as before."""

import numpy as np
import pytest
from helpers import mnist_digits

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.core.variant import VariantSpec
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.load import describe_classifier
from tflite_opt.stages.metadata import MetadataSpec, file_metadata, with_metadata
from tflite_opt.stages.realize import Calibration, Target, realize
from tflite_opt.stages.verify import float_operators
from tflite_opt.stages.xnnpack import (
    HARD_SWISH,
    faster_hard_swish,
    gap_advice,
    int8_hard_swish_count,
    rewrite_hard_swish,
)


def _hard_swish(keras, x):
    """MobileNetV3's hard-swish as keras.applications writes it; the converter fuses it into HARD_SWISH."""
    return keras.layers.Multiply()([x, keras.layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])


@pytest.fixture(scope="module")
def trained():
    """A small digit classifier with hard-swish after a convolution and a depthwise one, trained to ~90% top-1,
    its int8 file, and 400 held-out digits."""
    keras = keras2.keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((14, 14, 1))
    x = _hard_swish(keras, keras.layers.Conv2D(16, 3, strides=2)(inputs))
    x = _hard_swish(keras, keras.layers.DepthwiseConv2D(3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x)))
    images, labels = mnist_digits(1400)
    x14 = (images[:, ::2, ::2][..., np.newaxis] / 255.0).astype(np.float32)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x14[:1000], labels[:1000], epochs=15, batch_size=32, verbose=0)
    content = convert_keras(model, Mode.FULL_INT8, x14[:100], IoType.INT8)
    return model, content, x14[1000:], labels[1000:]


def _scores(content: bytes, images: np.ndarray) -> tuple[np.ndarray, float]:
    runner = TfliteRunner(content, batch_size=1)
    return runner.predict(images), runner.output_quantization[0]


def test_the_rewrite_runs_in_one_xnnpack_part_integer_only_with_no_hard_swish_left(trained):
    _, content, _, _ = trained
    before = read_tflite(content)
    assert int8_hard_swish_count(before) == 2
    assert (HARD_SWISH, 2) in TfliteRunner(content, batch_size=1).delegation()[1]
    rewritten = rewrite_hard_swish(content)
    after = read_tflite(rewritten)
    assert int8_hard_swish_count(after) == 0 and not float_operators(after)
    assert [op.name for op in after.operators].count("MUL") == 2 * 2
    parts, left = TfliteRunner(rewritten, batch_size=1).delegation()
    assert parts == 1 and HARD_SWISH not in dict(left)


def test_the_rewrite_keeps_top1_and_stays_as_close_to_the_float_model_on_held_out_digits(trained):
    model, content, images, labels = trained
    reference = model.predict(images, verbose=0)
    (before, step), (after, _) = _scores(content, images), _scores(rewrite_hard_swish(content), images)
    top1_before, top1_after = (float(np.mean(s.argmax(1) == labels)) for s in (before, after))
    assert top1_before > 0.8  # a model that learnt something, so that top-1 can tell
    assert abs(top1_after - top1_before) <= 0.01
    error_before, error_after = (float(np.mean(np.abs(s - reference))) / step for s in (before, after))
    assert error_after <= error_before + 0.1


def test_the_rewritten_file_runs_the_same_on_the_built_in_kernels_as_an_app_without_xnnpack_would(trained):
    _, content, images, _ = trained

    def runtimes_apart(file: bytes) -> tuple[float, float]:
        """(mean distance in output steps, top-1 agreement) between XNNPACK's and the built-in kernels' scores."""
        with_xnnpack = TfliteRunner(file, batch_size=1).tensors(images)[1].astype(int)
        built_in = TfliteRunner(file, batch_size=1, use_xnnpack=False).tensors(images)[1].astype(int)
        return float(np.mean(np.abs(with_xnnpack - built_in))), float(
            np.mean(with_xnnpack.argmax(1) == built_in.argmax(1))
        )

    (converted_apart, converted_agree), (rewritten_apart, rewritten_agree) = map(
        runtimes_apart, (content, rewrite_hard_swish(content))
    )
    assert rewritten_apart <= max(converted_apart, 0.05) + 0.05 and rewritten_agree >= 0.98


def test_the_check_says_what_was_kept_with_its_figures(trained):
    model, content, images, _ = trained
    kept, check = faster_hard_swish(content, read_tflite(content), images[:32], model.predict(images[:32], verbose=0))
    assert check.passed and check.name == "XNNPACK"
    assert "2 int8 HARD_SWISH" in check.detail and "instead of 3" in check.detail
    rewritten = "rewritten as" in check.detail
    assert (kept == rewrite_hard_swish(content)) is rewritten and (kept == content) is (not rewritten)


def test_realize_names_the_rewrite_in_the_full_int8_variants_checks_only(trained):
    model, _, images, _ = trained
    calibration = Calibration.of(Dataset((images[:64] * 255).astype(np.uint8), None, ()), Preprocessing())
    target = Target(IoType.INT8, describe_classifier(model))
    int8 = realize(VariantSpec(Mode.FULL_INT8), model, calibration, target)
    assert [c.name for c in int8.verification.checks].count("XNNPACK") == 1
    float32 = realize(VariantSpec(Mode.FLOAT32), model, calibration, target)
    assert "XNNPACK" not in [c.name for c in float32.verification.checks]


def test_operators_left_to_the_built_in_kernels_get_a_sentence_where_one_is_known():
    advice = gap_advice((("SOFTMAX", 1), ("SHAPE", 1), ("SOME_NEW_OP", 2), ("PACK", 1)))
    assert len(advice) == 2 and advice[0].startswith("SOFTMAX: float-only in XNNPACK")
    assert advice[1].startswith("SHAPE, PACK: a shape computed at run time")


@pytest.mark.slow
def test_mediapipe_tasks_runs_the_rewritten_file_as_it_is_and_scores_as_our_interpreter(tmp_path):
    """An RGB pixel-input MobileNetV3-style file with TFLite Metadata, HARD_SWISH rewritten, in MediaPipe Tasks'
    ImageClassifier (the C++ task Android and iOS run)."""
    pytest.importorskip("mediapipe")
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    keras = keras2.keras
    keras.utils.set_random_seed(1)
    inputs = keras.Input((24, 24, 3))
    x = _hard_swish(keras, keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, strides=2)(inputs)))
    x = keras.layers.GlobalAveragePooling2D()(_hard_swish(keras, keras.layers.DepthwiseConv2D(3)(x)))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    pixels = np.random.default_rng(0).integers(0, 256, (40, 24, 24, 3), dtype=np.uint8)
    preprocessing = Preprocessing((1 / 127.5,), (-1.0,))
    metadata = MetadataSpec("hs", "1", ("a", "b", "c", "d"), preprocessing)
    spec = VariantSpec(Mode.FULL_INT8, pixel_input=True)
    calibration = Calibration.of(Dataset(pixels[:32], None, ()), preprocessing)
    verified = realize(spec, model, calibration, Target(IoType.UINT8, describe_classifier(model)))
    # Rewritten whether or not that was faster on this tiny model; the metadata goes on last, as realize does.
    content = with_metadata(rewrite_hard_swish(verified.content), metadata, spec)
    assert int8_hard_swish_count(read_tflite(content)) == 0 and file_metadata(read_tflite(content)) is not None
    path = tmp_path / "hs.int8.tflite"
    path.write_bytes(content)
    ours = TfliteRunner(content, batch_size=1).predict(pixels[32:].astype(np.float32))
    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image, expected in zip(pixels[32:], ours, strict=True):
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            scores = np.zeros(4, np.float32)
            for category in result.classifications[0].categories:
                scores[category.index] = category.score
            np.testing.assert_allclose(scores, expected, atol=1e-6)
