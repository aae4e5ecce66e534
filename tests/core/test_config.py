import pytest

from tflite_opt.core.config import ConvertConfig, IoType, Mode, PruneConfig, SearchConfig
from tflite_opt.core.errors import UsageError


def test_float32_reference_is_always_first_and_modes_do_not_repeat():
    config = ConvertConfig(modes=(Mode.FULL_INT8, Mode.FLOAT16, Mode.FULL_INT8))
    assert config.modes == (Mode.FLOAT32, Mode.FLOAT16, Mode.FULL_INT8)


def test_io_type_without_full_int8_is_refused():
    with pytest.raises(UsageError, match="--io-type only applies to --full-int8"):
        ConvertConfig(modes=(Mode.FLOAT16,), io_type=IoType.UINT8)


@pytest.mark.parametrize(
    ("config", "channels", "expected"),
    [
        (ConvertConfig(), 3, IoType.UINT8),
        (ConvertConfig(), 1, IoType.INT8),
        (ConvertConfig(), 4, IoType.INT8),
        (ConvertConfig(io_type=IoType.INT8), 3, IoType.INT8),
        (ConvertConfig(io_type=IoType.FLOAT32), 3, IoType.FLOAT32),
        (ConvertConfig(modes=(Mode.FLOAT16,)), 3, IoType.INT8),
    ],
)
def test_an_rgb_model_gets_uint8_io_unless_another_type_is_asked(config, channels, expected):
    assert config.io_type_for(channels) is expected


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
