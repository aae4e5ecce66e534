"""Every finished search candidate is kept as it arrives, so an interrupted search resumes with --resume and
builds nothing twice."""

import json
from dataclasses import replace

import numpy as np
import pytest
from helpers import outlier_run

from tflite_opt.core.config import Mode, PruneConfig, SearchConfig
from tflite_opt.core.errors import OutputExistsError, UsageError
from tflite_opt.core.variant import VariantSpec
from tflite_opt.jobs import search as jobs_search
from tflite_opt.jobs.convert import run_convert
from tflite_opt.jobs.search_store import CandidateStore
from tflite_opt.results.search import Candidate, SearchPhase

pytestmark = pytest.mark.slow


def pruning_search(data, model_path, output, **search):
    return outlier_run(
        data,
        model_path,
        output,
        search=SearchConfig(2.0, sparsities=(0.5, 0.75), refine=False, **search),
        prune=PruneConfig(epochs=2, batch_size=64, learning_rate=1e-3, min_steps=0),
    )


def zeros(model):
    kernels = [w for w in model.get_weights() if w.ndim > 1]
    return sum(int((k == 0).sum()) for k in kernels) / sum(k.size for k in kernels)


def test_an_interrupted_search_resumes_without_building_a_finished_candidate_again(
    outlier_model, outlier_data, tmp_path, monkeypatch
):
    real, pruned = jobs_search.prune_model, []

    def interrupted_at_75(model, train_x, train_y, settings, progress=False):
        pruned.append((settings.target_sparsity, zeros(model)))
        if settings.target_sparsity == 0.75 and len(pruned) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second level fine-tunes
        return real(model, train_x, train_y, settings, progress)

    monkeypatch.setattr(jobs_search, "prune_model", interrupted_at_75)
    config = pruning_search(outlier_data, outlier_model, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_convert(config)
    kept = sorted(p.name for p in (tmp_path / "search").glob("*.json"))
    assert kept == ["int8-mixed1.from-int8.json", "int8-pruned50-mixed1.from-int8-mixed1.json", "run.json"]
    assert not list(tmp_path.glob("*.tflite")), "nothing shipped from an interrupted search"

    with pytest.raises(OutputExistsError, match="--resume"):
        run_convert(config)
    pruned.clear()
    report = run_convert(pruning_search(outlier_data, outlier_model, tmp_path, resume=True))
    # Only the 75% level is built again, continuing from the 50% model read back from disk (its zeros in it).
    assert [level for level, _ in pruned] == [0.75] and pruned[0][1] >= 0.45
    rows = {c.variant: c for c in report.search.candidates}
    assert rows["int8-pruned50-mixed1"].resumed and rows["int8-mixed1"].resumed
    assert not rows["int8-pruned75-mixed1"].resumed and rows["int8-pruned75-mixed1"].parent == "int8-pruned50-mixed1"
    assert rows["int8-pruned50-mixed1"].measured.latency.p50 > 0, "a resumed candidate is timed with the rest"
    saved = json.loads((tmp_path / "report.json").read_text())["search"]
    assert saved["resumed"] == 2 and saved["engine"] == "local" and saved["schedule"] == "chained"
    assert {r["variant"]: r["resumed"] for r in saved["candidates"]}["int8-pruned75-mixed1"] is False


def test_a_candidate_without_its_record_is_built_again_and_another_search_is_not_resumed_into(
    outlier_model, outlier_data, tmp_path, monkeypatch
):
    run_convert(pruning_search(outlier_data, outlier_model, tmp_path))
    # A record is written last: a candidate whose record is missing (the run died while writing it) is unfinished.
    (tmp_path / "search" / "int8-pruned75-mixed1.from-int8-pruned50-mixed1.json").unlink()
    built = []
    real = jobs_search.prune_model
    monkeypatch.setattr(
        jobs_search, "prune_model", lambda m, x, y, s, p=False: built.append(s.target_sparsity) or real(m, x, y, s, p)
    )
    run_convert(pruning_search(outlier_data, outlier_model, tmp_path, resume=True))
    assert built == [0.75]

    other = pruning_search(outlier_data, outlier_model, tmp_path, resume=True)
    other = replace(other, prune=PruneConfig(epochs=1, batch_size=64, learning_rate=1e-3))
    with pytest.raises(UsageError, match="another search"):
        run_convert(other)


def test_a_kept_candidate_is_judged_by_the_budget_of_the_run_that_reads_it(tmp_path):
    store = CandidateStore.open(tmp_path, "digest", 1.0, resume=False, overwrite=False)
    spec = VariantSpec(Mode.FULL_INT8, 0.5)
    store.put(Candidate(spec, SearchPhase.SPARSITY, 0.9, 1.5, 100, False, "int8"))
    assert store.get("int8-pruned50", "int8").within_budget is False
    looser = CandidateStore.open(tmp_path, "digest", 2.0, resume=True, overwrite=False)
    found = looser.get("int8-pruned50", "int8")
    assert found.within_budget and found.resumed and found.drop == 1.5
    assert looser.get("int8-pruned50", "float") is None, "a candidate is kept under its parent too"
    assert np.isclose(found.top1, 0.9)
