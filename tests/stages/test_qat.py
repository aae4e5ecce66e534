"""Quantization-aware training: the model post-training quantization wrecks comes back in full int8."""

import numpy as np
import pytest
from helpers import build_keras3_sequential, build_outlier_model, mnist_digits

from tflite_opt.core import keras2
from tflite_opt.core.config import IoType, Mode, QatConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.core.variant import QatScheme
from tflite_opt.stages.convert import convert_keras
from tflite_opt.stages.qat import SAME_SCALE_REASON, quantization_aware_model, separable_as_depthwise_and_pointwise
from tflite_opt.stages.verify import file_layer_clusters, file_layer_sparsity, float_operators

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outlier_digits():
    images, labels = mnist_digits(2400, seed=1)
    model = build_outlier_model(images[:1900], labels[:1900])
    scaled = images[..., np.newaxis].astype(np.float32) / 255.0
    return model, (scaled[:1900], labels[:1900]), scaled[1900:2000], (scaled[2000:], labels[2000:])


def conv_bn_model():
    """Conv2D → BatchNormalization → ReLU → Dense, seeded: the pair tfmot trains as one operation."""
    keras = keras2.keras
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Input((28, 28, 1)),
            layers.Conv2D(8, 3, use_bias=False, name="conv"),
            layers.BatchNormalization(name="conv_bn"),
            layers.ReLU(name="relu"),
            layers.Flatten(name="flatten"),
            layers.Dense(10, name="scores"),
        ]
    )
    return model


def top1(content, inputs, labels):
    return float(np.mean(np.argmax(TfliteRunner(content).predict(inputs), axis=1) == labels))


def test_the_outlier_model_comes_back_within_two_points_in_full_int8(outlier_digits):
    model, (train_x, train_y), calibration, (held_x, held_y) = outlier_digits
    keras_top1 = float(np.mean(np.argmax(model.predict(held_x, verbose=0), axis=1) == held_y))
    ptq = convert_keras(model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False)
    result = quantization_aware_model(model, train_x, train_y, QatConfig())
    qat = convert_keras(result.model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False)
    assert top1(ptq, held_x, held_y) < keras_top1 - 0.5  # what post-training quantization does to it
    assert top1(qat, held_x, held_y) >= keras_top1 - 0.02
    assert float_operators(read_tflite(qat)) == []  # full integer: nothing kept in float
    assert result.stats.skipped == () and result.stats.seconds > 0


def test_a_layer_tfmot_cannot_annotate_is_skipped_with_a_note_not_a_traceback(outlier_digits):
    keras = keras2.keras
    _, (train_x, train_y), _, _ = outlier_digits
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.LayerNormalization(name="norm")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(keras.layers.Flatten()(x)))
    result = quantization_aware_model(model, train_x[:64], train_y[:64], QatConfig(epochs=1, min_steps=0))
    assert dict(result.stats.skipped) == {"norm": "LayerNormalization is not supported by tfmot's 8-bit scheme"}


def test_weightless_layers_left_in_float_while_training_are_named_too_with_their_reason(outlier_digits, caplog):
    keras = keras2.keras
    _, (train_x, train_y), _, _ = outlier_digits
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(4, 3, name="conv")(keras.layers.Rescaling(2.0, -1.0, name="rescale")(inputs))
    x = keras.layers.Multiply(name="hard_swish")([x, keras.layers.ReLU(6.0, name="relu6")(x + 3.0) * (1.0 / 6.0)])
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(keras.layers.Flatten()(x)))
    with caplog.at_level("INFO", logger="tflite_opt.stages.qat"):
        result = quantization_aware_model(model, train_x[:64], train_y[:64], QatConfig(epochs=1, min_steps=0))
    skipped = dict(result.stats.skipped)
    assert skipped.pop("rescale") == "Rescaling is not supported by tfmot's 8-bit scheme"
    assert len(skipped) == 2 and set(skipped.values()) == {"TFOpLambda is not supported by tfmot's 8-bit scheme"}
    lines = {r.message for r in caplog.records if "left in float arithmetic while training" in r.message}
    assert len(lines) == 2  # one line per reason, naming its layers (once per learning rate tried)


def test_a_keras3_model_trains_quantization_aware_through_its_translation(outlier_digits):
    _, (train_x, train_y), calibration, _ = outlier_digits
    result = quantization_aware_model(
        build_keras3_sequential(), train_x[:64], train_y[:64], QatConfig(epochs=1, min_steps=0)
    )
    assert type(result.model).__module__.startswith("tf_keras")
    content = convert_keras(result.model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False)
    assert float_operators(read_tflite(content)) == []


def test_too_little_training_data_is_refused(outlier_digits):
    model, (train_x, train_y), _, _ = outlier_digits
    with pytest.raises(UsageError, match="at least 10 labelled training samples"):
        quantization_aware_model(model, train_x[:8], train_y[:8], QatConfig())


def test_batch_normalization_after_a_convolution_folds_into_it_as_in_post_training_quantization(outlier_digits):
    _, (train_x, train_y), calibration, _ = outlier_digits
    model = conv_bn_model()
    result = quantization_aware_model(model, train_x[:64], train_y[:64], QatConfig(epochs=1, min_steps=0))
    ptq = read_tflite(convert_keras(model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False))
    qat = read_tflite(convert_keras(result.model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False))
    assert [op.name for op in qat.operators] == [op.name for op in ptq.operators]
    assert result.stats.skipped == ()
    # A convolution left out of training (pruned, not clustered: only the prune-cluster-preserving scheme has
    # such layers) takes its normalization with it.
    for scheme in (QatScheme.QAT, QatScheme.PCQAT):
        left_out = quantization_aware_model(
            model, train_x[:64], train_y[:64], QatConfig(epochs=1, min_steps=0), scheme, frozen=("conv",)
        )
        assert dict(left_out.stats.skipped) == {
            "conv": "pruned but not clustered: kept as it is, quantized after training",
            "conv_bn": "follows conv, left out: folded into it at conversion",
        }
        content = convert_keras(left_out.model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False)
        assert [op.name for op in read_tflite(content).operators] == [op.name for op in ptq.operators]


def separable_model(sequential: bool):
    """SeparableConv2D → BatchNormalization → ReLU, twice (strided, then with a bias), and a Dense head."""
    keras = keras2.keras
    keras.utils.set_random_seed(0)
    layers = keras.layers
    stack = [
        layers.SeparableConv2D(8, 3, strides=2, padding="same", use_bias=False, name="sep1"),
        layers.BatchNormalization(name="sep1_bn"),
        layers.ReLU(name="relu1"),
        layers.SeparableConv2D(16, 3, depth_multiplier=2, activation="relu", name="sep2"),
        layers.GlobalAveragePooling2D(name="pool"),
        layers.Dense(10, name="scores"),
    ]
    if sequential:
        return keras.Sequential([layers.Input((28, 28, 1)), *stack])
    inputs = x = keras.Input((28, 28, 1))
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("sequential", [True, False], ids=["sequential", "functional"])
def test_separable_convolutions_train_quantization_aware_as_depthwise_and_pointwise(outlier_digits, sequential):
    _, (train_x, train_y), calibration, _ = outlier_digits
    model = separable_model(sequential)
    split = separable_as_depthwise_and_pointwise(model, train_x[:16])
    kinds = {layer.name: type(layer).__name__ for layer in split.layers}
    assert {name: kinds[name] for name in ("sep1_depthwise", "sep1", "sep2_depthwise", "sep2")} == {
        "sep1_depthwise": "DepthwiseConv2D",
        "sep1": "Conv2D",
        "sep2_depthwise": "DepthwiseConv2D",
        "sep2": "Conv2D",
    }
    np.testing.assert_allclose(split(train_x[:64]), model(train_x[:64]), rtol=1e-4, atol=1e-5)
    result = quantization_aware_model(
        model, train_x[:200], train_y[:200], QatConfig(epochs=1, learning_rate=1e-3, min_steps=0)
    )
    assert result.stats.skipped == ()  # nothing left in float while training, the BatchNormalization included
    ptq = read_tflite(convert_keras(model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False))
    qat = read_tflite(convert_keras(result.model, Mode.FULL_INT8, calibration, IoType.INT8, progress=False))
    assert float_operators(qat) == []
    assert [op.name for op in qat.operators] == [op.name for op in ptq.operators]  # the same operators, BN folded


def test_average_pooling_between_concatenations_trains_quantization_aware_and_converts_full_integer():
    """DenseNet's transition (1x1 convolution, average pooling) before a block of concatenations: a range learnt
    for the pooling's output conflicted with the same scale TFLite's AVERAGE_POOL_2D keeps, and the converter
    refused the model."""
    keras = keras2.keras
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)))
    x = layers.AveragePooling2D(2, strides=2, name="transition_pool")(layers.Conv2D(8, 1, use_bias=False)(x))
    for _ in range(2):
        grown = layers.Conv2D(4, 3, padding="same", use_bias=False)(layers.ReLU()(layers.BatchNormalization()(x)))
        x = layers.Concatenate()([x, grown])
    x = layers.GlobalAveragePooling2D()(layers.ReLU()(layers.BatchNormalization()(x)))
    model = keras.Model(inputs, layers.Dense(10)(x))
    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 8, 8, 3), dtype=np.float32), rng.integers(0, 10, 64)
    result = quantization_aware_model(model, images, labels, QatConfig(epochs=2, learning_rate=1e-3, min_steps=0))
    content = convert_keras(result.model, Mode.FULL_INT8, images[:8], progress=False)
    assert float_operators(read_tflite(content)) == []
    assert ("transition_pool", SAME_SCALE_REASON) in result.stats.skipped


def squeeze_excite_model():
    """MobileNetV3's squeeze-and-excite: pooled, a 1x1 Conv2D then a ReLU layer, a 1x1 Conv2D, a hard sigmoid, the
    product; seeded. Both 1x1 kernels pruned and clustered by hand: every other weight zero, the others one of four
    values."""
    keras = keras2.keras
    layers = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    squeezed = layers.ReLU(name="squeeze_relu")(layers.Conv2D(4, 1, name="squeeze")(
        layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)))  # fmt: skip
    excited = layers.Activation("hard_sigmoid", name="gate")(layers.Conv2D(8, 1, name="excite")(squeezed))
    x = layers.GlobalAveragePooling2D(name="head_pool")(layers.Multiply(name="scale")([x, excited]))
    model = keras.Model(inputs, layers.Dense(2, name="scores")(x))
    rng = np.random.default_rng(0)
    for name in SQUEEZE_EXCITE_KERNELS:
        layer = model.get_layer(name)
        kernel, bias = layer.get_weights()
        shared = rng.choice([-0.6, -0.3, 0.3, 0.6], kernel.shape)
        every_other = np.arange(kernel.size).reshape(kernel.shape) % 2 == 0
        layer.set_weights([np.where(every_other, shared, 0.0).astype(np.float32), bias])
    return model


SQUEEZE_EXCITE_KERNELS = ("squeeze", "excite")


@pytest.mark.parametrize("scheme", [QatScheme.PQAT, QatScheme.PCQAT])
def test_a_convolution_before_a_relu_layer_keeps_its_zeros_and_shared_values_through_quantization_aware_training(
    scheme,
):
    """tfmot's layout rule for a Conv2D right before a ReLU layer took the convolution's quantization away, kernel
    included: the prune- and cluster-preserving schemes let its zeros and shared values drift while training."""
    rng = np.random.default_rng(1)
    images = rng.random((96, 8, 8, 3), dtype=np.float32)
    labels = (images[..., 0].mean(axis=(1, 2)) > images[..., 1].mean(axis=(1, 2))).astype(np.int64)
    result = quantization_aware_model(
        squeeze_excite_model(), images, labels, QatConfig(epochs=3, learning_rate=1e-2, min_steps=0), scheme
    )
    assert result.stats.tuning.epoch > 0  # trained, not the model as it came
    for name in SQUEEZE_EXCITE_KERNELS:
        wrapper = result.model.get_layer("quant_" + name)
        assert any("kernel_min" in weight.name for weight in wrapper.weights), f"{name}: kernel not quantized"
    parsed = read_tflite(convert_keras(result.model, Mode.FULL_INT8, images[:16], IoType.INT8, progress=False))
    assert float_operators(parsed) == []  # the hard sigmoid included: tfmot has no rule for it, so a range is learnt
    kept = file_layer_sparsity(parsed, SQUEEZE_EXCITE_KERNELS)
    assert {name: 1 - nonzero / weights for name, (weights, nonzero) in kept.items()} == dict.fromkeys(
        SQUEEZE_EXCITE_KERNELS, 0.5
    )
    if scheme is QatScheme.PCQAT:
        assert all(values <= 5 for values in file_layer_clusters(parsed, SQUEEZE_EXCITE_KERNELS).values())
