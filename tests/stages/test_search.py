"""The accuracy-budget search's logic, on given figures (the job on real models: tests/jobs/test_search.py)."""

import pytest

from tflite_opt.core.config import SearchConfig
from tflite_opt.stages.search import (
    Candidate,
    SearchOutcome,
    candidate_name,
    choose,
    search_float_layers,
    search_int8,
    search_sparsity,
)

GRID = (0.5, 0.6, 0.7, 0.8, 0.9)


def given(variant, drop, gzip_bytes, budget=1.0, sparsity=0.0, parent=None, float_layers=(), scheme=None):
    return Candidate(
        variant=variant,
        phase="test",
        sparsity=sparsity,
        float_layers=tuple(float_layers),
        top1=0.99 - drop / 100,
        drop=drop,
        gzip_bytes=gzip_bytes,
        within_budget=SearchConfig(budget).within(drop),
        parent=parent,
        scheme=scheme,
    )


def monotone_maker(threshold, calls):
    """Drop grows with sparsity and crosses the 1-point budget at ``threshold``."""

    def make(level, previous):
        calls.append((level, previous.sparsity if previous else None))
        drop = 0.5 if level <= threshold else 3.0 + 10 * (level - threshold)
        return [given(f"s{level}", drop, int(1000 * (1 - level)), sparsity=level, parent=previous and previous.variant)]

    return make


@pytest.mark.parametrize("threshold", [0.5, 0.55, 0.62, 0.7, 0.79, 0.85, 0.9, 0.97])
def test_the_sparsity_search_lands_within_one_grid_step_of_the_best(threshold):
    calls = []
    tried = search_sparsity(GRID, monotone_maker(threshold, calls))
    best = choose(tried)
    assert best.within_budget
    assert best.sparsity <= threshold + 1e-9
    assert best.sparsity >= threshold - 0.1 - 1e-9, (threshold, [c.sparsity for c in tried])


def test_each_sparsity_continues_from_the_previous_level_and_stops_after_two_misses():
    calls = []
    tried = search_sparsity(GRID, monotone_maker(0.62, calls))
    # 0.5 from the dense model, then each level from the last; 0.7 and 0.8 miss, 0.9 is not tried;
    # then the bisection between 0.6 (within) and 0.7 (over), from 0.6.
    assert calls == [(0.5, None), (0.6, 0.5), (0.7, 0.6), (0.8, 0.7), (0.65, 0.6)]
    assert [c.within_budget for c in tried] == [True, True, False, False, False]
    assert choose(tried).sparsity == 0.6


def test_a_drop_beyond_bad_stops_the_sparsity_search_at_once():
    calls = []
    search_sparsity(GRID, monotone_maker(0.45, calls), refine=False, bad_drop=5.0)
    assert [level for level, _ in calls] == [0.5, 0.6]  # two misses of 3.5 and 4.5 points end it
    calls.clear()

    def collapse(level, previous):
        calls.append(level)
        return [given(f"s{level}", 40.0, 100, sparsity=level)]

    search_sparsity(GRID, collapse, refine=False, bad_drop=5.0)
    assert calls == [0.5]


def test_a_level_whose_post_training_quantization_misses_is_judged_by_its_quantization_aware_candidate():
    calls = []

    def make(level, previous):
        calls.append((level, previous and previous.variant))
        ptq = given(f"p{level}", 0.5 if level <= 0.5 else 3.0, int(1000 * (1 - level)), sparsity=level)
        pqat = given(
            f"p{level}-pqat", 0.5 if level <= 0.7 else 2.5, int(990 * (1 - level)), sparsity=level, scheme="pqat"
        )
        return [ptq] if level <= 0.5 else [ptq, pqat]

    tried = search_sparsity(GRID, make)
    # 0.5 is within with post-training quantization; 0.6 and 0.7 only quantization-aware, and the next level
    # continues from that candidate; 0.8 and 0.9 miss both ways; the bisection starts from 0.7's.
    assert calls == [
        (0.5, None),
        (0.6, "p0.5"),
        (0.7, "p0.6-pqat"),
        (0.8, "p0.7-pqat"),
        (0.9, "p0.8-pqat"),
        (0.75, "p0.7-pqat"),
    ]
    assert choose(tried).variant == "p0.7-pqat" and choose(tried).remedy == "pqat"
    assert given("p0.5", 3.0, 500).remedy == "none" and given("m", 1.0, 9, float_layers=("x",)).remedy == "float layers"


def test_full_int8_tries_quantization_aware_training_before_any_layer_in_float():
    first = given("int8", 30.0, 100)
    float_searches = []

    def float_layers(start):
        float_searches.append(start.variant)
        return [start, given("int8-mixed1", 0.5, 150, float_layers=("x",))]

    good_qat = search_int8(first, lambda: given("int8-qat", 0.8, 100, scheme="qat"), float_layers)
    assert [c.variant for c in good_qat] == ["int8", "int8-qat"] and float_searches == []
    bad_qat = search_int8(first, lambda: given("int8-qat", 9.0, 100, scheme="qat"), float_layers)
    assert [c.variant for c in bad_qat] == ["int8", "int8-qat", "int8-mixed1"] and float_searches == ["int8"]
    assert [c.variant for c in search_int8(first, None, float_layers)] == ["int8", "int8-mixed1"]
    assert search_int8(given("int8", 0.2, 100), lambda: pytest.fail("not needed"), float_layers)[-1].variant == "int8"


def test_the_float_layer_search_keeps_one_more_layer_per_step_and_reranks():
    drops = {(): 30.0, ("b",): 4.0, ("b", "a"): 0.4}
    rankings = []

    def rank(float_layers):
        rankings.append(float_layers)
        return ["a", "b", "c"] if "b" in float_layers else ["b", "a", "c"]

    def make(float_layers, parent):
        return given("-".join(float_layers), drops[float_layers], 200, parent=parent.variant, float_layers=float_layers)

    tried = search_float_layers(given("int8", drops[()], 100), rank, make, max_float_layers=3)
    assert [c.float_layers for c in tried] == [(), ("b",), ("b", "a")]
    assert rankings == [(), ("b",)]
    assert tried[-1].within_budget and choose(tried) is tried[-1]


def test_the_float_layer_search_stops_at_the_limit_and_reports_the_best_miss():
    tried = search_float_layers(
        given("int8", 30.0, 100),
        lambda kept: ["x", "y"],
        lambda kept, parent: given("+".join(kept), 30.0 - 5 * len(kept), 200, float_layers=kept),
        max_float_layers=1,
    )
    assert len(tried) == 2
    assert not any(c.within_budget for c in tried)
    assert choose(tried).float_layers == ("x",)  # the least drop, named as the best found


def test_choose_takes_the_smallest_within_budget_not_the_most_accurate():
    candidates = [given("a", 0.0, 500), given("b", 0.9, 100), given("c", 1.2, 50)]
    assert choose(candidates).variant == "b"


def test_a_drop_at_the_budget_counts_as_within_it_despite_float_rounding():
    drop = 100.0 * (0.986 - 0.983)  # 0.30000000000000027
    assert SearchConfig(0.3).within(drop)
    assert not SearchConfig(0.3).within(0.4)


def test_candidate_names_say_what_was_done():
    assert candidate_name(0.0, (), False) == "int8"
    assert candidate_name(0.8, ("squash",), False) == "int8-pruned80-mixed1"
    assert candidate_name(0.65, (), True) == "int8-per-tensor-pruned65"
    assert candidate_name(0.0, (), False, scheme="qat") == "int8-qat"
    assert candidate_name(0.8, (), False, clusters=16, scheme="pcqat") == "int8-pruned80-clustered16-pcqat"
    assert candidate_name(0.0, ("a",), False, clusters=8) == "int8-clustered8-mixed1"


def test_the_outcome_names_the_chosen_candidate_or_the_best_miss():
    met = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (given("int8", 3.0, 100), given("int8-mixed1", 0.5, 120)))
    assert met.met and met.chosen.variant == "int8-mixed1"
    assert met.message().startswith("search: int8-mixed1 is the smallest of 2 candidates within the 1-point budget")
    missed = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (given("int8", 3.0, 100),))
    assert not missed.met
    assert "no candidate of 1 is within the 1-point budget; the best was int8 (drop 3.00 points)" in missed.message()


def test_the_outcome_as_json_records_every_candidate_and_the_choice():
    first = given("int8", 3.0, 100)
    second = given("int8-mixed1", 0.5, 120, parent="int8", float_layers=("squash",))
    row = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (first, second)).to_dict({"int8-mixed1": "m.tflite"})
    assert row["budget"] == 1.0 and row["met"] and row["chosen"] == "int8-mixed1"
    assert [c["variant"] for c in row["candidates"]] == ["int8", "int8-mixed1"]
    chosen = row["candidates"][1]
    assert chosen["chosen"] and chosen["from"] == "int8" and chosen["float_layers"] == ["squash"]
    assert chosen["path"] == "m.tflite" and row["candidates"][0]["path"] is None
    assert chosen["within_budget"] and not row["candidates"][0]["within_budget"]
    assert chosen["remedy"] == "float layers" and row["candidates"][0]["remedy"] == "none"
    assert chosen["fine_tuning_seconds"] == {} and row["qat_not_tried"] is None


def test_a_failed_candidate_is_a_row_never_chosen_and_the_search_goes_on_from_the_last_level_made():
    calls = []

    def make(level, previous):
        calls.append((level, previous.sparsity if previous else None))
        if level == 0.6:
            return [Candidate.failed("s0.6", "test", level, (), previous.variant, "verification failed: conv")]
        return [given(f"s{level}", 0.5 if level <= 0.7 else 3.0, int(1000 * (1 - level)), sparsity=level)]

    tried = search_sparsity(GRID, make, refine=False)
    assert calls[:3] == [(0.5, None), (0.6, 0.5), (0.7, 0.5)]  # 0.7 continues from 0.5, the last level made
    failed = next(c for c in tried if c.variant == "s0.6")
    assert failed.failure == "verification failed: conv" and not failed.within_budget
    assert choose(tried).variant == "s0.7"
    outcome = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, tuple(tried))
    row = next(r for r in outcome.to_dict()["candidates"] if r["variant"] == "s0.6")
    assert row["failure"] == "verification failed: conv" and row["top1"] is None and not row["chosen"]
