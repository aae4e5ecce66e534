from dataclasses import replace

import numpy as np
import pytest
from helpers import CORPUS

from tflite_opt.core.errors import ModelLoadError
from tflite_opt.core.tflite_file import (
    _schema,
    distinct_per_channel,
    kernel_tensor,
    read_tflite,
    set_input_range,
    weight_counts,
)


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is text", b"\x00\x00\x00\x00TFL3", b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40],
    ids=["empty", "text", "header-only", "garbage-after-header"],
)
def test_non_models_are_refused_with_model_load_error(content):
    with pytest.raises(ModelLoadError):
        read_tflite(content, source="x.tflite")


def test_the_corpus_model_reads_back_its_tensors_operators_and_weights():
    """valid.tflite: Conv2D(4, 3x3) on 8x8x1, Flatten, Dense(10), full int8 (fuzz/make_corpus.py)."""
    model = read_tflite((CORPUS / "tflite" / "valid.tflite").read_bytes())
    assert [op.name for op in model.operators if op.name in ("CONV_2D", "FULLY_CONNECTED")] == [
        "CONV_2D",
        "FULLY_CONNECTED",
    ]
    assert model.input_tensors()[0].shape == (1, 8, 8, 1) and model.input_tensors()[0].dtype == "INT8"
    assert model.output_tensors()[0].shape == (1, 10)
    kernels = [kernel_tensor(model, op) for op in model.operators]
    conv, dense = [k for k in kernels if k is not None]
    assert conv.shape == (4, 3, 3, 1) and conv.dtype == "INT8"
    assert dense.shape == (10, 144)
    weights, nonzero = weight_counts(model, dense)
    assert weights == 1440 and 0 < nonzero <= weights
    assert model.constant_array(dense).shape == (10, 144)


def test_the_models_named_metadata_buffers_are_read_and_trailing_bytes_are_ignored():
    content = (CORPUS / "tflite" / "valid.tflite").read_bytes()
    model = read_tflite(content + b"PK\x05\x06 anything appended, as a zip of associated files is")
    assert [name for name, _ in model.metadata] == ["min_runtime_version", "CONVERSION_METADATA"]
    assert model.metadata_buffer("min_runtime_version").rstrip(b"\x00") == b"1.14.0"
    assert model.metadata_buffer("TFLITE_METADATA") is None and model.tensors == read_tflite(content).tensors


def test_setting_the_input_range_changes_only_those_two_floats():
    from helpers import build_sequential

    from tflite_opt.stages.convert import calibrate_keras

    samples = np.random.default_rng(0).random((8, 12, 12, 1), dtype=np.float32)
    calibrated = calibrate_keras(build_sequential(), samples, False)
    moved = set_input_range(calibrated, 0.0, 255.0)
    assert len(moved) == len(calibrated)
    assert sum(a != b for a, b in zip(moved, calibrated, strict=True)) <= 8  # two float32 values
    q = _schema().Model.GetRootAs(moved, 0).Subgraphs(0)
    tensor = q.Tensors(int(q.InputsAsNumpy()[0])).Quantization()
    assert (tensor.MinAsNumpy().tolist(), tensor.MaxAsNumpy().tolist()) == ([0.0], [255.0])
    with pytest.raises(ModelLoadError, match="records no calibrated range"):
        set_input_range((CORPUS / "tflite" / "valid.tflite").read_bytes(), 0.0, 255.0)


def test_distinct_values_are_counted_per_output_channel_the_first_axis_or_a_depthwise_kernels_last():
    model = read_tflite((CORPUS / "tflite" / "valid.tflite").read_bytes())
    conv_op = next(op for op in model.operators if op.name == "CONV_2D")
    conv = kernel_tensor(model, conv_op)
    values = model.constant_array(conv).reshape(conv.shape)
    expected = max(len(np.unique(values[channel])) for channel in range(conv.shape[0]))
    assert distinct_per_channel(model, conv_op, conv) == expected <= 9  # 3x3 weights per output channel
    # Read as a depthwise kernel, the last axis (one channel here) holds all 36 weights.
    depthwise = replace(conv_op, name="DEPTHWISE_CONV_2D")
    assert distinct_per_channel(model, depthwise, conv) == len(np.unique(values))
