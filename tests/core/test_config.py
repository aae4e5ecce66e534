import pytest

from tflite_opt.core.config import ConvertConfig, IoType, Mode, Preprocessing, PruneConfig, SearchConfig
from tflite_opt.core.errors import UsageError


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


def test_float32_reference_is_always_first_and_modes_do_not_repeat():
    config = ConvertConfig(modes=(Mode.FULL_INT8, Mode.FLOAT16, Mode.FULL_INT8))
    assert config.modes == (Mode.FLOAT32, Mode.FLOAT16, Mode.FULL_INT8)


def test_io_type_without_full_int8_is_refused():
    with pytest.raises(UsageError, match="--io-type only applies to --full-int8"):
        ConvertConfig(modes=(Mode.FLOAT16,), io_type=IoType.UINT8)


def test_model_name_comes_from_the_file_name(tmp_path):
    assert ConvertConfig(model_path=tmp_path / "cats.v2.keras").model_name == "cats"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"modes": ()}, "choose at least one mode"),
        ({"model_version": "../1"}, "--model-version must be a plain name"),
        ({"num_calibration_samples": 0}, "--num-calibration-samples must be at least 1"),
        ({"sparse_format": True}, "needs --prune"),
        ({"modes": (Mode.FLOAT16,), "per_tensor": True}, "apply to --full-int8"),
    ],
)
def test_impossible_configurations_are_refused_with_the_flag_named(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ConvertConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target_sparsity": 1.0}, "between 0 and 1"),
        ({"epochs": 0}, "--pruning-epochs"),
        ({"m_by_n": (4, 2)}, "0 < m < n"),
        ({"learning_rate": 0.0}, "--learning-rate"),
        ({"target_sparsity": 0.5, "initial_sparsity": 0.6}, "initial sparsity 0.6 must be between 0 and the target"),
    ],
)
def test_bad_pruning_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        PruneConfig(**kwargs)


def test_m_by_n_fixes_the_sparsity():
    assert PruneConfig(m_by_n=(2, 4)).target_sparsity == 0.5
    assert PruneConfig(target_sparsity=0.8).percent == 80


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"search": SearchConfig(1.0), "modes": (Mode.FLOAT16,)}, "apply to --full-int8"),
        ({"search": SearchConfig(1.0), "modes": (Mode.FULL_INT8, Mode.FLOAT16)}, "searches full-int8"),
        ({"search": SearchConfig(1.0), "prune": PruneConfig(m_by_n=(2, 4))}, "nothing to search"),
    ],
)
def test_searches_that_cannot_work_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        ConvertConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_accuracy_drop": -1.0}, "top-1 points"),
        ({"max_accuracy_drop": 1.0, "sparsities": (0.5, 1.0)}, "between 0 and 1"),
        ({"max_accuracy_drop": 1.0, "max_float_layers": -1}, "must not be negative"),
    ],
)
def test_bad_search_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message):
        SearchConfig(**kwargs)
