"""A variant's recipe: its name, its file name, the legal combinations, and a run's plan."""

from pathlib import Path

import pytest

from tflite_opt.core.config import ClusterConfig, ConvertConfig, Mode, PruneConfig, QatConfig, SearchConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.core.variant import QatScheme, VariantSpec, first_int8, plan_variants, split_file_names

INT8 = Mode.FULL_INT8


def test_a_name_says_what_was_done():
    assert VariantSpec(INT8).name == "int8"
    assert VariantSpec(INT8, 0.8, float_layers=("squash",)).name == "int8-pruned80-mixed1"
    assert VariantSpec(INT8, 0.65, per_tensor=True).name == "int8-per-tensor-pruned65"
    assert VariantSpec(INT8, qat=QatScheme.QAT).name == "int8-qat"
    assert VariantSpec(INT8, 0.8, 16, qat=QatScheme.PCQAT).name == "int8-pruned80-clustered16-pcqat"
    assert VariantSpec(INT8, clusters=8, float_layers=("a",)).name == "int8-clustered8-mixed1"
    assert VariantSpec(Mode.FLOAT16, 0.5, sparse_weights=True).name == "float16-pruned50-sparse"
    assert VariantSpec(INT8, pixel_input=True).name == "int8"  # how the input is fed is in the manifest


def test_the_file_name_is_the_model_and_the_variant_and_reads_back():
    spec = VariantSpec(INT8, 0.8)
    assert spec.path(Path("out"), "mnist") == Path("out/mnist.int8-pruned80.tflite")
    names = [Path("out/mnist.int8-pruned80.tflite"), Path("mnist.float32.tflite")]
    assert split_file_names(names) == ("mnist", ["int8-pruned80", "float32"])
    assert split_file_names([Path("a.tflite"), Path("b.tflite")]) == ("benchmark", ["a", "b"])
    with pytest.raises(UsageError, match="same name"):
        split_file_names([Path("x/a.tflite"), Path("y/a.tflite")])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (dict(mode=Mode.FLOAT16, per_tensor=True), "only apply to full-int8"),
        (dict(mode=Mode.FLOAT32, qat=QatScheme.QAT), "only apply to full-int8"),
        (dict(mode=INT8, qat=QatScheme.QAT, float_layers=("a",)), "quantization-aware variant"),
        (dict(mode=INT8, qat=QatScheme.QAT, pixel_input=True), "quantization-aware variant"),
        (dict(mode=INT8, sparse_weights=True), "must be pruned"),
    ],
)
def test_a_recipe_that_cannot_be_made_is_refused(spec, message):
    with pytest.raises(UsageError, match=message):
        VariantSpec(**spec)


def test_the_collaborative_schemes_are_named_after_what_they_keep():
    names = {
        (prune, cluster): plan_variants(
            ConvertConfig(
                prune=PruneConfig(0.8) if prune else None,
                cluster=ClusterConfig(16) if cluster else None,
                qat=QatConfig(),
            )
        )
        .specs[-1]
        .name
        for prune in (False, True)
        for cluster in (False, True)
    }
    assert names == {
        (False, False): "int8-qat",
        (True, False): "int8-pruned80-pqat",
        (False, True): "int8-clustered16-cqat",
        (True, True): "int8-pruned80-clustered16-pcqat",
    }


def test_the_plan_puts_the_float32_reference_first_and_ships_by_the_rule():
    plan = plan_variants(ConvertConfig(modes=(Mode.FULL_INT8, Mode.FLOAT16)))
    assert plan.specs == (VariantSpec(Mode.FLOAT32), VariantSpec(Mode.FLOAT16), VariantSpec(INT8))
    assert plan.ships is None


def test_a_pruned_plan_converts_the_pruned_model_beside_plain_int8():
    plan = plan_variants(ConvertConfig(prune=PruneConfig(target_sparsity=0.8), sparse_format=True))
    assert [(s.name, s.fine_tuned, s.sparse_weights) for s in plan.specs] == [
        ("float32", False, False),
        ("int8", False, False),
        ("int8-pruned80", True, False),
        ("int8-pruned80-sparse", True, True),
    ]


def test_per_tensor_adds_the_variant_that_ships_and_a_search_plans_only_the_reference():
    plan = plan_variants(ConvertConfig(per_tensor=True))
    assert plan.names == ["float32", "int8", "int8-per-tensor"]
    assert plan.ships == VariantSpec(INT8, per_tensor=True)
    pruned = plan_variants(ConvertConfig(per_tensor=True, prune=PruneConfig(0.5)))
    assert pruned.names == ["float32", "int8", "int8-per-tensor-pruned50"] and pruned.ships.sparsity == 0.5
    search = ConvertConfig(search=SearchConfig(1.0), per_tensor=True)
    assert plan_variants(search).names == ["float32"] and first_int8(search).name == "int8-per-tensor"


def test_pixel_input_goes_to_post_training_int8_only():
    plan = plan_variants(ConvertConfig(cluster=ClusterConfig(16), qat=QatConfig(), per_tensor=False))
    taking = plan.with_pixel_input(True)
    assert [(s.name, s.pixel_input) for s in taking.specs] == [
        ("float32", False),
        ("int8", True),
        ("int8-clustered16", True),
        ("int8-clustered16-cqat", False),
    ]
    assert plan.with_pixel_input(False) is plan
