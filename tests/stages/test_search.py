"""The accuracy-budget search's logic, on given figures (the job on real models: tests/jobs/test_search.py)."""

import types
from dataclasses import replace

import pytest

from tflite_opt.core.config import Mode, SearchConfig
from tflite_opt.core.variant import QatScheme, VariantSpec
from tflite_opt.results.measures import PairedDrop
from tflite_opt.results.search import Candidate, SearchOutcome, SearchPhase, choose
from tflite_opt.stages.search import search_float_layers, search_int8, search_sparsity, search_sparsity_parallel

GRID = (0.5, 0.6, 0.7, 0.8, 0.9)


def int8(sparsity=0.0, float_layers=(), qat=None):
    """A full-int8 candidate's recipe; its name is the candidate's."""
    return VariantSpec(Mode.FULL_INT8, sparsity, qat=qat, float_layers=tuple(float_layers))


def given(spec, drop, gzip_bytes, budget=1.0, parent=None, phase=SearchPhase.INT8):
    return Candidate(
        spec=spec,
        phase=phase,
        top1=0.99 - drop / 100,
        drop=drop,
        gzip_bytes=gzip_bytes,
        within_budget=SearchConfig(budget).within(drop),
        parent=parent,
    )


def monotone_maker(threshold, calls):
    """Drop grows with sparsity and crosses the 1-point budget at ``threshold``."""

    def make(level, previous):
        calls.append((level, previous.sparsity if previous else None))
        drop = 0.5 if level <= threshold else 3.0 + 10 * (level - threshold)
        parent = previous and previous.variant
        return [given(int8(level), drop, int(1000 * (1 - level)), parent=parent, phase=SearchPhase.SPARSITY)]

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
    assert [c.variant for c in tried] == [
        "int8-pruned50",
        "int8-pruned60",
        "int8-pruned70",
        "int8-pruned80",
        "int8-pruned65",
    ]
    assert [c.within_budget for c in tried] == [True, True, False, False, False]
    assert choose(tried).sparsity == 0.6


def test_the_parallel_schedule_asks_for_every_level_at_once_from_the_float_model_then_bisects():
    rounds, named_ahead = [], []

    def make(levels, ahead):
        rounds.append(list(levels))
        named_ahead.append(list(ahead))
        calls = []
        made = [monotone_maker(0.62, calls)(level, None) for level in levels]
        assert all(previous is None for _, previous in calls)
        return made

    tried = search_sparsity_parallel(GRID, make)
    # Every level in one round (no early stop: workers build them side by side), then the same bisection between
    # the highest level within the budget and the next one as the chained schedule.
    assert rounds == [list(GRID), [0.65]]
    # The first round names the middles the bisection may ask for, highest first, so idle workers can start them.
    assert named_ahead == [[0.85, 0.75, 0.65, 0.55], []]
    assert [c.sparsity for c in tried] == [*GRID, 0.65]
    assert choose(tried).sparsity == 0.6
    named_ahead.clear()
    assert search_sparsity_parallel(GRID, make, refine=False)[-1].sparsity == 0.9
    assert named_ahead == [[]], "without a bisection nothing is started ahead"


@pytest.mark.parametrize("threshold", [0.45, 0.5, 0.62, 0.79, 0.97])
def test_the_parallel_and_chained_schedules_choose_the_same_level_on_the_same_figures(threshold):
    chained = choose(search_sparsity(GRID, monotone_maker(threshold, [])))
    parallel = choose(
        search_sparsity_parallel(GRID, lambda levels, _: [monotone_maker(threshold, [])(x, None) for x in levels])
    )
    assert (chained.sparsity, chained.within_budget) == (parallel.sparsity, parallel.within_budget)


def test_a_drop_beyond_bad_stops_the_sparsity_search_at_once():
    calls = []
    search_sparsity(GRID, monotone_maker(0.45, calls), refine=False, bad_drop=5.0)
    assert [level for level, _ in calls] == [0.5, 0.6]  # two misses of 3.5 and 4.5 points end it
    calls.clear()

    def collapse(level, previous):
        calls.append(level)
        return [given(int8(level), 40.0, 100, phase=SearchPhase.SPARSITY)]

    search_sparsity(GRID, collapse, refine=False, bad_drop=5.0)
    assert calls == [0.5]


def test_a_level_whose_post_training_quantization_misses_is_judged_by_its_quantization_aware_candidate():
    calls = []

    def make(level, previous):
        calls.append((level, previous and previous.variant))
        ptq = given(int8(level), 0.5 if level <= 0.5 else 3.0, int(1000 * (1 - level)), phase=SearchPhase.SPARSITY)
        pqat = given(
            int8(level, qat=QatScheme.PQAT),
            0.5 if level <= 0.7 else 2.5,
            int(990 * (1 - level)),
            parent=ptq.variant,
            phase=SearchPhase.SPARSITY,
        )
        return [ptq] if level <= 0.5 else [ptq, pqat]

    tried = search_sparsity(GRID, make)
    # 0.5 is within with post-training quantization; 0.6 and 0.7 only quantization-aware, and the next level
    # continues from that candidate; 0.8 and 0.9 miss both ways; the bisection starts from 0.7's.
    assert calls == [
        (0.5, None),
        (0.6, "int8-pruned50"),
        (0.7, "int8-pruned60-pqat"),
        (0.8, "int8-pruned70-pqat"),
        (0.9, "int8-pruned80-pqat"),
        (0.75, "int8-pruned70-pqat"),
    ]
    assert choose(tried).variant == "int8-pruned70-pqat" and choose(tried).remedy == "pqat"
    assert given(int8(0.5), 3.0, 500).remedy == "none"
    assert given(int8(float_layers=("x",)), 1.0, 9).remedy == "float layers"


def test_full_int8_tries_quantization_aware_training_before_any_layer_in_float():
    first = given(int8(), 30.0, 100)
    float_searches = []

    def float_layers(start):
        float_searches.append(start.variant)
        return [start, given(int8(float_layers=("x",)), 0.5, 150, parent=start.variant, phase=SearchPhase.FLOAT_LAYERS)]

    def qat(drop):
        return lambda: given(int8(qat=QatScheme.QAT), drop, 100, parent="int8", phase=SearchPhase.QAT)

    good_qat = search_int8(first, qat(0.8), float_layers)
    assert [c.variant for c in good_qat] == ["int8", "int8-qat"] and float_searches == []
    bad_qat = search_int8(first, qat(9.0), float_layers)
    assert [c.variant for c in bad_qat] == ["int8", "int8-qat", "int8-mixed1"] and float_searches == ["int8"]
    assert [c.variant for c in search_int8(first, None, float_layers)] == ["int8", "int8-mixed1"]
    assert search_int8(given(int8(), 0.2, 100), lambda: pytest.fail("not needed"), float_layers)[-1].variant == "int8"


def test_the_float_layer_search_keeps_one_more_layer_per_step_and_reranks():
    drops = {(): 30.0, ("b",): 4.0, ("b", "a"): 0.4}
    rankings = []

    def rank(float_layers):
        rankings.append(float_layers)
        return ["a", "b", "c"] if "b" in float_layers else ["b", "a", "c"]

    def make(float_layers, parent):
        spec = int8(float_layers=float_layers)
        return given(spec, drops[float_layers], 200, parent=parent.variant, phase=SearchPhase.FLOAT_LAYERS)

    tried = search_float_layers(given(int8(), drops[()], 100), rank, make, max_float_layers=3)
    assert [c.float_layers for c in tried] == [(), ("b",), ("b", "a")]
    assert [c.variant for c in tried] == ["int8", "int8-mixed1", "int8-mixed2"]
    assert [c.parent for c in tried] == [None, "int8", "int8-mixed1"]
    assert rankings == [(), ("b",)]
    assert tried[-1].within_budget and choose(tried) is tried[-1]


def test_the_float_layer_search_stops_at_the_limit_and_reports_the_best_miss():
    tried = search_float_layers(
        given(int8(), 30.0, 100),
        lambda kept: ["x", "y"],
        lambda kept, parent: given(int8(float_layers=kept), 30.0 - 5 * len(kept), 200, phase=SearchPhase.FLOAT_LAYERS),
        max_float_layers=1,
    )
    assert len(tried) == 2
    assert not any(c.within_budget for c in tried)
    assert choose(tried).float_layers == ("x",)  # the least drop, named as the best found
    assert choose(tried).variant == "int8-mixed1"


def test_choose_takes_the_smallest_within_budget_not_the_most_accurate():
    candidates = [given(int8(), 0.0, 500), given(int8(0.5), 0.9, 100), given(int8(0.7), 1.2, 50)]
    assert choose(candidates).variant == "int8-pruned50"


def test_a_drop_at_the_budget_counts_as_within_it_despite_float_rounding():
    drop = 100.0 * (0.986 - 0.983)  # 0.30000000000000027
    assert SearchConfig(0.3).within(drop)
    assert not SearchConfig(0.3).within(0.4)


def test_the_outcome_names_the_chosen_candidate_or_the_best_miss():
    mixed = given(int8(float_layers=("squash",)), 0.5, 120, parent="int8", phase=SearchPhase.FLOAT_LAYERS)
    met = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (given(int8(), 3.0, 100), mixed))
    assert met.met and met.chosen.variant == "int8-mixed1"
    assert met.message().startswith("search: int8-mixed1 is the smallest of 2 candidates within the 1-point budget")
    missed = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (given(int8(), 3.0, 100),))
    assert not missed.met
    assert "no candidate of 1 is within the 1-point budget; the best was int8 (drop 3.00 points)" in missed.message()


def test_the_outcome_as_json_records_every_candidate_and_the_choice():
    first = given(int8(), 3.0, 100)
    second = given(int8(float_layers=("squash",)), 0.5, 120, parent="int8", phase=SearchPhase.FLOAT_LAYERS)
    row = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (first, second)).to_dict({"int8-mixed1": "m.tflite"})
    assert row["budget"] == 1.0 and row["met"] and row["chosen"] == "int8-mixed1"
    assert [c["variant"] for c in row["candidates"]] == ["int8", "int8-mixed1"]
    assert [c["phase"] for c in row["candidates"]] == ["int8", "float layers"]
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
            return [Candidate.failed(int8(level), SearchPhase.SPARSITY, previous.variant, "verification failed: conv")]
        drop = 0.5 if level <= 0.7 else 3.0
        return [given(int8(level), drop, int(1000 * (1 - level)), phase=SearchPhase.SPARSITY)]

    tried = search_sparsity(GRID, make, refine=False)
    assert calls[:3] == [(0.5, None), (0.6, 0.5), (0.7, 0.5)]  # 0.7 continues from 0.5, the last level made
    failed = next(c for c in tried if c.variant == "int8-pruned60")
    assert failed.failure == "verification failed: conv" and not failed.within_budget
    assert failed.sparsity == 0.6 and failed.phase is SearchPhase.SPARSITY and failed.parent == "int8-pruned50"
    assert choose(tried).variant == "int8-pruned70"
    outcome = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, tuple(tried))
    row = next(r for r in outcome.to_dict()["candidates"] if r["variant"] == "int8-pruned60")
    assert row["failure"] == "verification failed: conv" and row["top1"] is None and not row["chosen"]


def paired(candidate, samples, low, high):
    """``candidate`` scored image by image on ``samples`` images, its drop's 95% interval ``low`` to ``high``."""
    lost = round(candidate.drop * samples / 100)
    drop = PairedDrop(samples, lost, 0, low, high, "given")
    return replace(candidate, scored=types.SimpleNamespace(accuracy=types.SimpleNamespace(paired=drop)))


def test_a_choice_the_evaluation_cannot_tell_from_the_budget_is_said_to_be_within_noise():
    pruned = int8(0.8)
    clear = SearchOutcome(SearchConfig(1.0), 0.99, 1000, False, (paired(given(int8(), 0.0, 100), 1000, -0.2, 0.4),))
    assert clear.noise() is None and clear.to_dict()["within_noise"] is None
    assert clear.to_dict()["candidates"][0]["top1_drop_ci95_points"] == [-0.2, 0.4]
    # The chosen one's interval reaches beyond the budget; a smaller one that missed reaches inside it.
    chosen = paired(given(int8(0.7), 1.0, 60, phase=SearchPhase.SPARSITY), 100, -1.2, 5.4)
    missed = paired(given(pruned, 3.0, 40, phase=SearchPhase.SPARSITY), 100, 0.6, 8.5)
    unsure = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (given(int8(), 0.0, 100), chosen, missed))
    assert unsure.chosen.variant == "int8-pruned70"
    noise = unsure.noise()
    assert noise.startswith("within noise: on 100 images the evaluation cannot tell these from the 1-point budget")
    assert "int8-pruned70 drop 1.00 points, 95% interval -1.20 to 5.40" in noise
    assert "int8-pruned80 drop 3.00 points, 95% interval 0.60 to 8.50" in noise
    # A smaller miss whose interval stays beyond the budget is not noise.
    far = paired(given(pruned, 6.0, 40, phase=SearchPhase.SPARSITY), 100, 1.5, 12.0)
    unpaired = replace(chosen, scored=None)
    sure = SearchOutcome(SearchConfig(1.0), 0.99, 100, False, (given(int8(), 0.0, 100), unpaired, far))
    assert sure.noise() is None
