"""Pruning: sparsity after strip and in the file, reload mid-pruning, skipped layers, refusals."""

import json

import numpy as np
import pytest
from conftest import INPUT_SIZE, build_functional, build_sequential

from tflite_opt import prune
from tflite_opt.config import IoType, Mode, Preprocessing, PruneConfig, Schedule
from tflite_opt.convert import convert_keras
from tflite_opt.convert import main as convert_main
from tflite_opt.errors import UsageError
from tflite_opt.load import load_keras_model
from tflite_opt.representative import ImageSize, load_dataset
from tflite_opt.tflite_file import read_tflite
from tflite_opt.verify import file_layer_sparsity, sparsity_check

pytestmark = pytest.mark.slow
FAST = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def digits(digit_folders):
    """Real labelled digits at the tiny models' input size."""
    _, evaluation = digit_folders
    data = load_dataset(evaluation, ImageSize(INPUT_SIZE, INPUT_SIZE, 1), require_labels=True)
    return data.model_input(Preprocessing()), data.labels


@pytest.mark.parametrize("schedule", list(Schedule))
@pytest.mark.parametrize("builder", [build_sequential, build_functional], ids=["sequential", "functional"])
def test_each_pruned_layer_is_within_one_point_of_the_target_after_strip(digits, builder, schedule):
    model = builder()
    result = prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.6, schedule=schedule, **FAST), verbose=0)
    assert result.stats.layers, "no layer was pruned"
    for layer in result.stats.layers:
        assert abs(layer.sparsity - 0.6) <= 0.01, layer
    kept = {layer.name for layer in result.model.layers}
    assert not any(name.startswith("prune_low_magnitude") for name in kept)


def test_pruning_leaves_the_callers_model_untouched(digits):
    model = build_sequential()
    before = [w.copy() for w in model.get_weights()]
    prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.5, **FAST), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def test_zeros_survive_into_the_int8_weights(digits):
    model = build_sequential()
    result = prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.7, **FAST), verbose=0)
    parsed = read_tflite(convert_keras(result.model, Mode.FULL_INT8, digits[0], IoType.INT8, progress=False))
    in_file = file_layer_sparsity(parsed, result.stats.pruned_layer_names)
    assert set(in_file) == set(result.stats.pruned_layer_names)
    for layer in result.stats.layers:
        weights, nonzero = in_file[layer.layer]
        assert weights == layer.weights
        assert 1 - nonzero / weights >= layer.sparsity - 0.01
    assert sparsity_check(parsed, {layer.layer: layer.sparsity for layer in result.stats.layers}).passed


def test_sparsity_check_fails_when_the_file_has_fewer_zeros_than_keras(digits):
    parsed = read_tflite(convert_keras(build_sequential(), Mode.FULL_INT8, digits[0], progress=False))
    check = sparsity_check(parsed, {"hidden": 0.8})
    assert not check.passed and "pruning did not survive conversion: hidden" in check.detail


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_model_saved_mid_pruning_reloads_stripped(digits, tmp_path, suffix):
    from tflite_opt.keras2 import keras

    model = build_sequential()
    wrapped, _ = prune.wrap_for_pruning(model, PruneConfig(target_sparsity=0.5), steps=10)
    wrapped.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy())
    wrapped.fit(
        *digits, batch_size=8, epochs=1, verbose=0, callbacks=[prune._tfmot().sparsity.keras.UpdatePruningStep()]
    )
    path = tmp_path / f"mid_pruning{suffix}"
    wrapped.save(path)
    loaded = load_keras_model(path)
    assert not any(isinstance(layer, prune._wrapper_class()) for layer in loaded.layers)
    np.testing.assert_allclose(
        loaded.predict(digits[0][:4], verbose=0), wrapped.predict(digits[0][:4], verbose=0), atol=1e-5
    )


def test_two_by_four_skips_the_single_channel_first_conv_with_a_note(digits):
    result = prune.prune_model(build_sequential(), *digits, PruneConfig(m_by_n=(2, 4), **FAST), verbose=0)
    skipped = dict(result.stats.skipped)
    assert "1 input channels cannot form groups of 4" in skipped["conv"]
    assert "conv" not in result.stats.pruned_layer_names
    assert result.stats.config.target_sparsity == 0.5
    hidden = next(layer for layer in result.model.layers if layer.name == "hidden").kernel.numpy()
    groups = hidden.T.reshape(-1, 4)  # groups run along the input channels
    assert np.all((groups == 0).sum(axis=1) >= 2)


def test_an_unsupported_layer_is_skipped_with_a_note(digits):
    from tflite_opt.keras2 import keras

    class Doubler(keras.layers.Layer):
        def call(self, inputs):
            return inputs * 2.0

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    x = keras.layers.Flatten()(inputs)
    x = Doubler(name="doubler")(x)
    x = keras.layers.Dense(32, name="hidden")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="scores")(x))
    result = prune.prune_model(model, *digits, PruneConfig(target_sparsity=0.5, **FAST), verbose=0)
    assert "Doubler is not supported" in dict(result.stats.skipped)["doubler"]
    assert set(result.stats.pruned_layer_names) == {"hidden", "scores"}


def test_a_model_with_nothing_to_prune_is_refused_with_the_reasons(digits):
    from tflite_opt.keras2 import keras

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 1))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(UsageError, match="no layer that can be pruned"):
        prune.prune_model(model, *digits, PruneConfig(**FAST), verbose=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_sparsity": 1.0}, "between 0 and 1"),
        ({"epochs": 0}, "--pruning-epochs"),
        ({"m_by_n": (4, 2)}, "0 < m < n"),
        ({"learning_rate": 0.0}, "--learning-rate"),
    ],
)
def test_bad_pruning_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        PruneConfig(**kwargs)


def test_pruning_a_user_model_without_training_data_is_refused(saved_tiny_model, digit_folders, tmp_path, capsys):
    calibration, _ = digit_folders
    args = ["--model", str(saved_tiny_model), "--representative-data", str(calibration), "--prune"]
    assert convert_main([*args, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --train-data" in err
    assert prune.main(["--model", str(saved_tiny_model)]) == 2
    assert "pass --train-data" in capsys.readouterr().err


def test_prune_cli_saves_a_stripped_sparse_model(saved_tiny_model, digit_folders, tmp_path, capsys):
    _, evaluation = digit_folders
    output = tmp_path / "tiny.pruned.keras"
    args = ["--model", str(saved_tiny_model), "--train-data", str(evaluation), "--output", str(output)]
    assert prune.main([*args, "--target-sparsity", "0.5", "--pruning-epochs", "2", "--batch-size", "8"]) == 0
    reloaded = {layer.layer: layer.sparsity for layer in prune.layer_sparsity(load_keras_model(output))}
    assert reloaded.pop("depthwise") == 0.0  # tfmot does not prune DepthwiseConv2D
    assert set(reloaded) == {"conv", "hidden", "scores"}
    assert all(abs(sparsity - 0.5) <= 0.01 for sparsity in reloaded.values())
    assert "skipped depthwise: tensorflow-model-optimization does not prune" in capsys.readouterr().out
    assert prune.main([*args]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


def test_default_model_pruned_to_80_percent_meets_the_targets(tmp_path):
    """Done-when of pruning: ≥75% zeros in the int8 file, gzip ≤ 1/10 of float32's, top-1 within 1 point."""
    assert convert_main(["--full-int8", "--prune", "--target-sparsity", "0.8", "--output-dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    float32, pruned = report["variants"]
    assert pruned["variant"] == "int8-pruned80"
    assert pruned["sparsity"] >= 0.75
    assert all(layer["sparsity_in_file"]["int8-pruned80"] >= 0.75 for layer in report["pruning"]["layers"])
    assert pruned["gzip_size_bytes"] <= float32["gzip_size_bytes"] / 10
    assert report["keras_top1"] - pruned["top1"] <= 0.01
    assert "compressed (gzip) size" in report["pruning"]["note"]


def test_sparse_format_is_read_back_and_runs_without_xnnpack(digits):
    from tflite_opt.benchmark import TfliteRunner

    result = prune.prune_model(build_sequential(), *digits, PruneConfig(target_sparsity=0.8, **FAST), verbose=0)
    dense = convert_keras(result.model, Mode.FULL_INT8, digits[0], progress=False)
    sparse = convert_keras(result.model, Mode.FULL_INT8, digits[0], progress=False, sparse_weights=True)
    parsed = read_tflite(sparse)
    assert any(t.is_sparse for t in parsed.tensors)
    assert len(sparse) < len(dense)
    expected = {layer.layer: layer.sparsity for layer in result.stats.layers}
    assert sparsity_check(parsed, expected).passed
    runner = TfliteRunner(sparse, batch_size=4)
    scores = runner.predict(digits[0][:6])
    np.testing.assert_array_equal(
        np.argmax(scores, axis=1), np.argmax(TfliteRunner(dense, batch_size=4).predict(digits[0][:6]), axis=1)
    )
    assert runner.delegate.startswith("none")


def test_sparse_format_without_prune_is_refused(capsys):
    assert convert_main(["--sparse-format"]) == 2
    assert "needs --prune" in capsys.readouterr().err
