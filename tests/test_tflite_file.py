import pytest

from tflite_opt.errors import ModelLoadError
from tflite_opt.tflite_file import read_tflite
from tflite_opt.verify import layer_for_tensor_name


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is text", b"\x00\x00\x00\x00TFL3", b"\x1c\x00\x00\x00TFL3" + b"\xff" * 40],
    ids=["empty", "text", "header-only", "garbage-after-header"],
)
def test_non_models_are_refused_with_model_load_error(content):
    with pytest.raises(ModelLoadError):
        read_tflite(content, source="x.tflite")


def test_layer_is_told_from_fused_tensor_names():
    names = ["conv", "bn", "scores"]
    assert layer_for_tensor_name("tiny/bn/FusedBatchNormV3;tiny/conv/Conv2D", names) == "bn"
    assert layer_for_tensor_name("StatefulPartitionedCall:0", names) is None
