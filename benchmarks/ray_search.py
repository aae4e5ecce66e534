"""The accuracy-budget search in one process (chained) against the same search on Ray (parallel), side by side.

    python benchmarks/ray_search.py [--budget 0.3] [--candidate-minutes 60] [--workers 1,2,4,8]
                                    [--runs chained,ray] [--work DIR]

Each run is the command a user types, in its own process, on the embedded default model and data:
``python -m tflite_opt.convert --prune --max-accuracy-drop BUDGET`` (chained: each sparsity fine-tuned from the
previous level's model, one after the other) and the same with ``--ray-address local`` (parallel: every level from
the float model as a Ray task, on a local instance with this machine's CPUs). ``parallel-local`` (the parallel
schedule without Ray) can be added to ``--runs`` to separate the schedule from the engine.

Printed per run: wall time of the whole command (start-up, data, the search, latency, writing), the chosen variant
and its drop, the number of candidates, the workers that built them, and each candidate's wall seconds from
report.json. Then the expected search time for a MobileNet-sized model, where the parallel run's median fine-tuned
candidate takes ``--candidate-minutes`` on one worker: every measured candidate time is scaled by that one factor.
The chained search is the sum of its candidates (each starts from the one before, on one machine like this one);
the parallel search places its first wave of levels on N workers, longest first, and queues the bisection's
middle behind them (the search starts the middles ahead on idle workers, highest first). A worker is one of this
machine's Ray workers (one core each, two side by side); start-up and the driver's latency measurement (minutes,
not hours) are left out.
"""

from __future__ import annotations

import argparse
import heapq
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = {
    "chained": [],
    "ray": ["--ray-address", "local"],
    "parallel-local": ["--search-schedule", "parallel"],
}


def run(name: str, budget: float, work: Path) -> dict:
    """One search as a user runs it; its wall time and report.json's search section."""
    out = work / name
    command = [sys.executable, "-m", "tflite_opt.convert", "--full-int8", "--prune"]
    command += ["--max-accuracy-drop", str(budget), "--output-dir", str(out), "--overwrite", *RUNS[name]]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"{name}: exit {done.returncode}\n{tail}")
    search = json.loads((out / "report.json").read_text())["search"]
    return {"wall": wall, "search": search}


def candidate_seconds(search: dict) -> list[tuple[str, bool, float]]:
    """(variant, in the first wave, wall seconds) of every candidate built in the run. The first wave is plain int8
    and the grid's levels, submitted together; bisection steps and remedies depend on their figures."""
    grid = set(search["settings"]["sparsities"])
    return [
        (c["variant"], c["phase"] == "int8" or (c["phase"] == "sparsity" and c["sparsity"] in grid), c["wall_seconds"])
        for c in search["candidates"]
        if c["wall_seconds"]
    ]


def parallel_hours(rows: list[tuple[str, bool, float]], workers: int, unit: float) -> float:
    """The parallel search on ``workers``: the first wave longest first, each on the earliest free worker, then the
    later candidates (a bisection's middle) in the queue behind them. The search starts the middles ahead, highest
    first, so the needed one takes the first worker the levels leave idle where it is the highest (as on the
    default); a lower one would queue behind the unneeded middles above it."""
    queue = sorted((s * unit for _, first_wave, s in rows if first_wave), reverse=True)
    queue += [s * unit for _, first_wave, s in rows if not first_wave]
    free = [0.0] * workers
    for seconds in queue:
        heapq.heappush(free, heapq.heappop(free) + seconds)
    return max(free) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--candidate-minutes", type=float, default=60.0)
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--runs", default="chained,ray")
    parser.add_argument("--work", type=Path, default=Path("/tmp/tflite_opt_ray_search"))
    args = parser.parse_args()
    names = args.runs.split(",")
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {sorted(RUNS)}")

    results = {}
    for name in names:
        print(f"{name}: running ...", flush=True)
        results[name] = run(name, args.budget, args.work)

    print(f"\nsearch --prune --max-accuracy-drop {args.budget:g} on the embedded default, one run each")
    print(f"{'run':<15} {'wall s':>7} {'chosen':<18} {'drop':>5} {'cands':>5} {'workers':>7}  per-candidate s")
    for name, result in results.items():
        search, rows = result["search"], candidate_seconds(result["search"])
        chosen = next(c for c in search["candidates"] if c["chosen"])
        per = " ".join(f"{v.removeprefix('int8-')}={s:.0f}" for v, _, s in rows)
        print(
            f"{name:<15} {result['wall']:>7.0f} {chosen['variant']:<18} {chosen['top1_drop_points']:>5.2f} "
            f"{len(search['candidates']):>5} {search['workers']:>7}  {per}"
        )
    if "chained" in results and "ray" in results:
        print(f"ray / chained wall time: {results['ray']['wall'] / results['chained']['wall']:.2f}")

    workers = [int(n) for n in args.workers.split(",")]
    # One scale for every run: the median fine-tuned candidate of the parallel run (a level from the float model,
    # built by one of this machine's workers while the other built another) is a --candidate-minutes candidate.
    reference = next((r for n, r in results.items() if n != "chained"), next(iter(results.values())))
    tuned = [s for v, _, s in candidate_seconds(reference["search"]) if v != "int8"]
    scale = args.candidate_minutes * 60 / statistics.median(tuned)
    print(
        f"\nexpected search hours when the median parallel candidate takes {args.candidate_minutes:g} minutes on "
        f"one worker (x{scale:.0f} the figures above); N workers as fast as one of the {reference['search']['cpus']} "
        "here, the chained search on one machine like this one whatever N"
    )
    print(f"{'run':<15} " + " ".join(f"{'N=' + str(n):>7}" for n in workers))
    for name, result in results.items():
        rows = candidate_seconds(result["search"])
        if name == "chained":
            hours = [sum(s for _, _, s in rows) * scale / 3600] * len(workers)
        else:
            hours = [parallel_hours(rows, n, scale) for n in workers]
        print(f"{name:<15} " + " ".join(f"{h:>7.1f}" for h in hours))
    levels = max(sum(1 for _, first, _ in candidate_seconds(r["search"]) if first) for r in results.values())
    print(f"(the parallel first wave has {levels} candidates; the bisection's middle starts on the first idle worker)")


if __name__ == "__main__":
    main()
