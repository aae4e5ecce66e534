"""The search's candidates as Ray tasks on a local instance of 2 CPUs: shipped within budget from several workers,
a killed worker's task run again, a task that keeps dying a row with its reason."""

import json
import os
import signal

import pytest
from helpers import outlier_run

from tflite_opt.core.config import ConvertConfig, PruneConfig, SearchConfig
from tflite_opt.core.errors import UsageError
from tflite_opt.jobs import ray_search
from tflite_opt.jobs.convert import run_convert
from tflite_opt.stages.report import format_table

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local instance for the module (starting one takes about 10 s); the job keeps a connection it finds."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def outlier_search(data, model_path, output):
    return outlier_run(
        data,
        model_path,
        output,
        search=SearchConfig(2.0, sparsities=(0.5, 0.75), refine=False, ray_address="local"),
        prune=PruneConfig(epochs=2, batch_size=64, learning_rate=1e-3, min_steps=0),
    )


def killing(variant, times, killed):
    """A ``task_started`` hook that kills the worker building ``variant``, the first ``times`` times it starts."""
    real = ray_search.RayRunner.task_started

    def task_started(self, start):
        real(self, start)
        if start.variant == variant and len(killed) < times:
            killed.append(start.pid)
            os.kill(start.pid, signal.SIGKILL)

    return task_started


RAY_BUDGET = 1.0


def test_the_default_search_on_ray_ships_a_pruned_model_within_budget_built_by_two_workers(tmp_path, monkeypatch):
    """The issue's done-when on two levels and their bisection (the whole default grid takes about 4 minutes), each
    level from the float model, within the 1-point budget: 70% straight from the dense model drops 0.0 points on one
    CPU and 0.5 on another (an AMD EPYC), below the ±0.38 the 1,000 images can tell, so the third of a point is
    held by the serial search, which goes level by level (tests/jobs/test_search.py)."""
    events, real_started, real_run = [], ray_search.RayRunner.task_started, ray_search.RayRunner.run

    def task_started(self, start):
        events.append(("started", start.variant))
        real_started(self, start)

    def run(self, builder, requests, ahead=()):
        found = real_run(self, builder, requests, ahead)
        events.append(("round done", len(requests)))
        return found

    monkeypatch.setattr(ray_search.RayRunner, "task_started", task_started)
    monkeypatch.setattr(ray_search.RayRunner, "run", run)
    report = run_convert(
        ConvertConfig(
            output_dir=tmp_path,
            prune=PruneConfig(learning_rate=PruneConfig.START_LEARNING_RATE),
            search=SearchConfig(RAY_BUDGET, sparsities=(0.7, 0.9), ray_address="local"),
        )
    )
    chosen = report.search.chosen
    assert chosen.sparsity >= 0.7 and chosen.within_budget
    assert 100 * (report.keras_top1 - report.variant(chosen.variant).top1) <= RAY_BUDGET + 1e-9
    saved = json.loads((tmp_path / "report.json").read_text())["search"]
    assert saved["engine"] == "ray" and saved["schedule"] == "parallel" and saved["cpus"] == 2
    rows = {r["variant"]: r for r in saved["candidates"]}
    assert rows["int8-pruned70"]["from"] == rows["int8-pruned90"]["from"] == "int8", "each level from the float model"
    pruned_workers = {rows[v]["worker"] for v in ("int8-pruned70", "int8-pruned90")}
    assert len(pruned_workers) == 2 and saved["workers"] >= 2, "the two levels were built side by side"
    assert all(r["wall_seconds"] > 0 for r in rows.values())
    # Latency was measured on the driver for every candidate, side by side.
    assert all(report.search.candidates[i].measured.latency.p50 > 0 for i in range(3))
    assert (tmp_path / "search" / "int8-pruned70.from-int8.json").exists(), "kept on the driver as it arrived"
    assert "ray" in format_table(report)
    # 90% misses the budget, so the bisection asks for 80%, which the worker 70% left idle had started ahead:
    # built once, begun before the first round was over.
    assert "int8-pruned80" in rows and not rows["int8-pruned90"]["within_budget"]
    assert events.count(("started", "int8-pruned80")) == 1
    assert events.index(("started", "int8-pruned80")) < events.index(("round done", 2))


def test_a_worker_killed_mid_task_is_replaced_and_its_candidate_built_again(
    outlier_model, outlier_data, tmp_path, monkeypatch
):
    killed = []
    monkeypatch.setattr(ray_search.RayRunner, "task_started", killing("int8-pruned75-mixed1", 1, killed))
    report = run_convert(outlier_search(outlier_data, outlier_model, tmp_path))
    assert len(killed) == 1
    rows = {c.variant: c for c in report.search.candidates}
    assert {"int8", "int8-mixed1", "int8-pruned50-mixed1", "int8-pruned75-mixed1"} <= set(rows)
    retried = rows["int8-pruned75-mixed1"]
    assert retried.failure is None and retried.top1 > 0.5
    assert not retried.worker.endswith(f"/{killed[0]}"), "built again by another worker process"
    assert all(c.failure is None for c in rows.values())
    assert report.search.chosen.within_budget


def test_a_task_whose_worker_dies_every_time_is_a_row_and_the_other_candidates_are_kept(
    outlier_model, outlier_data, tmp_path, monkeypatch
):
    killed = []
    retries = ray_search.MAX_RETRIES
    monkeypatch.setattr(ray_search.RayRunner, "task_started", killing("int8-pruned50-mixed1", retries + 1, killed))
    report = run_convert(outlier_search(outlier_data, outlier_model, tmp_path))
    assert len(killed) == retries + 1
    rows = {c.variant: c for c in report.search.candidates}
    assert "the Ray task failed" in rows["int8-pruned50-mixed1"].failure
    assert rows["int8-pruned75-mixed1"].failure is None, "a worker's crash loses no other candidate"
    assert report.search.chosen.failure is None and report.search.chosen.within_budget
    kept = {p.name for p in (tmp_path / "search").glob("*.json")}
    assert "int8-pruned75-mixed1.from-int8-mixed1.json" in kept


def test_a_local_instance_keeps_token_authentication_on(monkeypatch):
    """Ray 2.59+ starts local instances with token authentication; a user who turned it off is told, not obeyed."""
    assert os.environ.get("RAY_AUTH_MODE") == "token", "the module's local instance started with token auth"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(UsageError, match="token authentication"), ray_search.connect("local"):
        pass
