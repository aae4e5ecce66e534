"""How pixels become model input: mean/std, per-channel values, the dict the manifest holds."""

import pytest

from tflite_opt.core.errors import UsageError
from tflite_opt.core.preprocessing import PIXELS, Preprocessing, app_input


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


def test_per_channel_repeats_a_single_value_to_the_channel_count():
    spec = Preprocessing(scale=(0.5, 0.25, 0.125), offset=(1.0,))
    assert spec.per_channel() == ((0.5, 0.25, 0.125), (1.0, 1.0, 1.0))
    assert Preprocessing().per_channel() == ((1 / 255,), (0.0,))


def test_preprocessing_round_trips_through_dict():
    spec = Preprocessing(scale=(0.5, 0.25, 0.125), offset=(1.0,))
    assert Preprocessing.from_dict(spec.to_dict()) == spec


def test_the_formula_in_words_never_says_minus_zero():
    assert Preprocessing().describe() == "x = (pixel - 0) / 255"
    assert Preprocessing.from_mean_std(127.5, 127.5).describe() == "x = (pixel - 127.5) / 127.5"


def test_an_app_feeds_a_pixel_input_model_the_pixels_and_any_other_the_normalization():
    normalization = Preprocessing.from_mean_std(127.5, 127.5)
    assert app_input(True, normalization) is PIXELS and app_input(False, normalization) is normalization
    assert app_input(False, None) is PIXELS
