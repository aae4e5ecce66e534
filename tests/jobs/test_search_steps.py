"""A search says which candidate starts, of about how many, since when."""

import logging

from tflite_opt.core.config import ClusterConfig, ConvertConfig, PruneConfig, SearchConfig
from tflite_opt.jobs.search_steps import SearchSteps


def test_the_estimate_counts_int8_the_levels_and_the_bisection_or_the_clustered_candidate():
    search = SearchConfig(1.0, sparsities=(0.5, 0.7, 0.9))
    assert SearchSteps.of(ConvertConfig(search=search, prune=PruneConfig())).expected == 5
    no_bisection = SearchConfig(1.0, sparsities=(0.5, 0.7, 0.9), refine=False)
    assert SearchSteps.of(ConvertConfig(search=no_bisection, prune=PruneConfig())).expected == 4
    assert SearchSteps.of(ConvertConfig(search=search, cluster=ClusterConfig())).expected == 2
    assert SearchSteps.of(ConvertConfig(search=search)).expected == 1


def test_each_start_is_one_line_and_the_estimate_grows_where_the_search_goes_past_it(caplog):
    steps = SearchSteps(2, started=0.0)
    with caplog.at_level(logging.INFO, logger="tflite_opt"):
        for variant in ("int8", "int8-qat", "int8-mixed1"):
            steps.start(variant)
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" (")[0] for line in lines] == [
        "search: candidate 1 of about 2: int8",
        "search: candidate 2 of about 2: int8-qat",
        "search: candidate 3 of about 3: int8-mixed1",
    ]
    assert all(line.endswith(" elapsed)") and ":" in line.split(" (")[1] for line in lines)
