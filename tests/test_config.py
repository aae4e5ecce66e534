import pytest

from tflite_opt.config import ConvertConfig, IoType, Mode, Preprocessing
from tflite_opt.errors import UsageError


def test_mean_std_becomes_scale_and_offset():
    spec = Preprocessing.from_mean_std(mean=(127.5,), std=(127.5,))
    assert spec.scale == pytest.approx((1 / 127.5,))
    assert spec.offset == pytest.approx((-1.0,))
    assert spec.expected_range() == pytest.approx((-1.0, 1.0))


def test_per_channel_mean_std_broadcasts_a_single_std():
    spec = Preprocessing.from_mean_std(mean=(123.7, 116.3, 103.5), std=(58.4,))
    assert len(spec.scale) == len(spec.offset) == 3
    assert spec.channel_count_fits(3) and not spec.channel_count_fits(1)


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_non_positive_std_is_refused(std):
    with pytest.raises(UsageError, match="std must be positive"):
        Preprocessing.from_mean_std(mean=0.0, std=std)


def test_preprocessing_round_trips_through_dict():
    spec = Preprocessing(scale=(0.5, 0.25, 0.125), offset=(1.0,))
    assert Preprocessing.from_dict(spec.to_dict()) == spec


def test_float32_reference_is_always_first_and_modes_do_not_repeat():
    config = ConvertConfig(modes=(Mode.FULL_INT8, Mode.FLOAT16, Mode.FULL_INT8))
    assert config.modes == (Mode.FLOAT32, Mode.FLOAT16, Mode.FULL_INT8)


def test_io_type_without_full_int8_is_refused():
    with pytest.raises(UsageError, match="--io-type only applies to --full-int8"):
        ConvertConfig(modes=(Mode.FLOAT16,), io_type=IoType.UINT8)


def test_model_name_comes_from_the_file_name(tmp_path):
    assert ConvertConfig(model_path=tmp_path / "cats.v2.keras").model_name == "cats"
