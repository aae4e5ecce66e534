"""The search's candidates as Ray tasks (``--ray-address``): every candidate of the parallel schedule built on a
worker of a Ray cluster, its quantization-aware remedy a task that depends on it, the figures and files back to
the driver, which keeps each as it arrives and times them all on one machine.

Nothing assumes a shared file system: the model, the calibration, training and evaluation data travel through
Ray's object store (pickled by this driver, for its own workers), and the candidates come back the same way.
A worker that dies is replaced and its task run again (``max_retries``); a task that still fails is a row with
its reason. Ray's token authentication is left on, and ``local`` starts an instance without a dashboard.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tflite_opt.core.config import RAY_LOCAL, SearchSchedule
from tflite_opt.core.errors import UsageError
from tflite_opt.core.tf_env import prepare_tensorflow_environment
from tflite_opt.jobs.search import CandidateBuilder, CandidateRequest
from tflite_opt.jobs.search_store import CandidateStore
from tflite_opt.results.search import Candidate, SearchEngine

log = logging.getLogger(__name__)

# A worker that dies (killed, out of memory, its node lost) is replaced and the task run again this many times.
MAX_RETRIES = 2
# How often the driver says how far the search is while nothing arrives.
STATUS_SECONDS = 30.0


@dataclass(frozen=True)
class TaskStart:
    """A task began on a worker: which candidate (its row), where, and the worker's process id."""

    variant: str
    worker: str
    pid: int


@dataclass
class RayRunner:
    """Builds the requests of a parallel schedule as Ray tasks on the connected cluster."""

    engine: SearchEngine
    store: CandidateStore | None = None
    max_retries: int = MAX_RETRIES
    running: dict[str, str] = field(default_factory=dict)
    # Post-training tasks started ahead of a call that may ask for them (a bisection's middles), by request.
    ahead: dict[CandidateRequest, Any] = field(default_factory=dict)

    def task_started(self, start: TaskStart) -> None:
        """Called on the driver as a task reports that it began (the progress counts it as running)."""
        self.running[start.variant] = start.worker

    def run(
        self, builder: CandidateBuilder, requests: Sequence[CandidateRequest], ahead: Sequence[CandidateRequest] = ()
    ) -> list[list[Candidate]]:
        """Each request's candidates (post-training, then the quantization-aware one where that missed), built on
        the cluster side by side; each kept in the store as it arrives. The post-training candidates of ``ahead``
        are queued behind them, for workers the requests leave idle; a later call that asks for one waits for
        that task instead of starting another, and the others stop (:meth:`settle`)."""
        ray = _ray()
        self._stop_ahead(keep=set(requests))
        events = _remote("events").options(num_cpus=0).remote()
        shipped = ray.put(pickle.dumps(builder.portable()))
        cpus = _cpus_per_task(len(requests))
        options = {"max_retries": self.max_retries, "retry_exceptions": False, "num_cpus": cpus}
        rows = [builder.request_row(request) for request in requests]
        found: list[list[Candidate | None]] = [[None, None] for _ in requests]
        pending: dict[Any, tuple[int, int]] = {}
        for index, (request, row) in enumerate(zip(requests, rows, strict=True)):
            kept = self._kept(row)
            if kept is not None:
                found[index][0] = kept
                remedy = self._kept_remedy(builder, kept)
                if remedy is not None or not builder.needs_remedy(kept):
                    found[index][1] = remedy
                    continue
                post = ray.put(pickle.dumps(kept))
            else:
                post = self.ahead.pop(request, None)
                if post is None:
                    post = self._build(shipped, request, row.variant, events, options)
                pending[post] = (index, 0)
            if builder.config.qat is not None:  # only --qat has remedies
                pending[_remote("remedy").options(**options).remote(shipped, post, events)] = (index, 1)
        for request in ahead:
            row = builder.request_row(request)
            kept = self.store is not None and self.store.has(row.variant, row.parent)
            if request not in self.ahead and not kept:  # a kept one is taken from the store when asked for
                self.ahead[request] = self._build(shipped, request, row.variant, events, options)
        self._collect(builder, pending, rows, found, events)
        self.running.clear()
        return [[c for c in pair if c is not None] for pair in found]

    def settle(self) -> None:
        """Stop the tasks started ahead that no call asked for (before the driver times the candidates)."""
        self._stop_ahead(keep=set())

    def _build(self, shipped: Any, request: CandidateRequest, variant: str, events: Any, options: dict) -> Any:
        return _remote("build").options(**options).remote(shipped, request, variant, events)

    def _stop_ahead(self, keep: set[CandidateRequest]) -> None:
        ray = _ray()
        for request in [r for r in self.ahead if r not in keep]:
            with contextlib.suppress(Exception):  # a task that finished meanwhile has nothing to stop
                ray.cancel(self.ahead.pop(request), force=True)

    def _kept(self, row: Candidate) -> Candidate | None:
        kept = self.store.get(row.variant, row.parent) if self.store is not None else None
        if kept is not None:
            log.info("search: %s: kept from the earlier run", kept.variant)
        return kept

    def _kept_remedy(self, builder: CandidateBuilder, kept: Candidate) -> Candidate | None:
        if not builder.needs_remedy(kept):
            return None
        spec = builder.quantization_aware_spec(kept.tuned, kept.sparsity)
        return self._kept(Candidate.failed(spec, kept.phase, kept.variant, ""))

    def _collect(
        self,
        builder: CandidateBuilder,
        pending: dict[Any, tuple[int, int]],
        rows: list[Candidate],
        found: list[list[Candidate | None]],
        events: Any,
    ) -> None:
        """Wait for every task, keeping each candidate as it arrives and saying how far the search is."""
        ray, started, said = _ray(), time.perf_counter(), 0.0
        total = len(pending)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for start in ray.get(events.drain.remote()):
                self.task_started(start)
            for ref in done:
                index, step = pending.pop(ref)
                self._arrived(builder, ref, index, step, rows, found)
            elapsed = time.perf_counter() - started
            if done or elapsed - said >= STATUS_SECONDS:
                said = elapsed
                running = min(len(self.running), len(pending))
                log.info(
                    "search on Ray: %d of %d tasks done, %d running, %d queued, %.0f s",
                    total - len(pending),
                    total,
                    running,
                    len(pending) - running,
                    elapsed,
                )

    def _arrived(
        self,
        builder: CandidateBuilder,
        ref: Any,
        index: int,
        step: int,
        rows: list[Candidate],
        found: list[list[Candidate | None]],
    ) -> None:
        """Take one finished task's candidate: keep it, or, where the task failed, make its row say why."""
        ray = _ray()
        try:
            result = ray.get(ref)
        except ray.exceptions.RayError as exc:
            post = found[index][0]
            if step == 1 and (post is None or post.failure is not None):
                return  # the remedy of a candidate that could not be built: its candidate's row says why
            row = rows[index] if step == 0 else _remedy_row(builder, post)
            found[index][step] = replace(row, failure=f"the Ray task failed: {_reason(exc)}")
            log.warning(builder.describe(found[index][step]))
            return
        if result is None:
            return
        candidate = pickle.loads(result)
        self.running.pop(candidate.variant, None)
        found[index][step] = candidate
        log.info(builder.describe(candidate))
        if self.store is not None:
            self.store.put(candidate)


def _remedy_row(builder: CandidateBuilder, post: Candidate) -> Candidate:
    spec = builder.quantization_aware_spec(post.tuned, post.sparsity)
    return Candidate.failed(spec, post.phase, post.variant, "")


def _reason(exc: Exception) -> str:
    """The first line of what Ray says, which names the error (a worker that died, the exception raised)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextlib.contextmanager
def connect(address: str, store: CandidateStore | None = None) -> Iterator[RayRunner]:
    """A runner on the Ray cluster at ``address`` (``local``: a new instance on this machine for the run, without a
    dashboard), disconnected (a local instance stopped) at the end. A process already connected to Ray keeps its
    connection.

    Raises:
        UsageError: Ray is not installed, or the cluster cannot be reached.
    """
    ray = _ray()
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled" and address == RAY_LOCAL:
        raise UsageError("RAY_AUTH_MODE=disabled: the local Ray instance keeps token authentication on; unset it")
    owned = not ray.is_initialized()
    if owned:
        log.info("connecting to Ray at %s", address)
        try:
            if address == RAY_LOCAL:
                ray.init(address="local", include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"--ray-address {address}: cannot connect to Ray: {_reason(exc)}") from exc
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        log.info("Ray: %d CPUs on %d nodes", cpus, len([n for n in ray.nodes() if n.get("Alive")]))
        yield RayRunner(SearchEngine("ray", SearchSchedule.PARALLEL.value, address, cpus), store)
    finally:
        if owned:
            ray.shutdown()


def _cpus_per_task(tasks: int) -> int:
    """The CPUs each of ``tasks`` candidates gets: the cluster's shared out (a bisection's one candidate uses them
    all), at most as many as its largest node has (a task asking for more would wait for ever)."""
    ray = _ray()
    total = int(ray.cluster_resources().get("CPU", 1))
    largest = max((int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")), default=1)
    return max(1, min(largest, total // max(1, tasks)))


def _ray() -> Any:
    try:
        import ray  # deferred: importing Ray takes seconds, and only a run with --ray-address needs it
    except ImportError as exc:
        raise UsageError("--ray-address needs Ray: pip install 'tflite-opt[ray]'") from exc
    return ray


def _worker_name() -> str:
    ray = _ray()
    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}:{context.get_node_id()[:8]}/{os.getpid()}"


def _limit_threads() -> None:
    """TensorFlow in a task uses the CPUs Ray gave it, not every core of the node (other tasks run beside it)."""
    prepare_tensorflow_environment()
    import tensorflow as tf  # deferred: the driver imports this module before it knows it needs TensorFlow

    cpus = max(1, int(_ray().get_runtime_context().get_assigned_resources().get("CPU", 1)))
    with contextlib.suppress(RuntimeError):  # a reused worker: TensorFlow is set up already
        tf.config.threading.set_intra_op_parallelism_threads(cpus)
        tf.config.threading.set_inter_op_parallelism_threads(cpus)


def _build_candidate(shipped: bytes, request: CandidateRequest, variant: str, events: Any) -> bytes:
    """On a worker: the post-training candidate of ``request``, pickled (a ``bytes`` result travels as is)."""
    _limit_threads()
    events.started.remote(TaskStart(variant, _worker_name(), os.getpid()))
    builder: CandidateBuilder = pickle.loads(shipped)
    found = builder.build(request)
    return pickle.dumps(_travelling(replace(found, worker=_worker_name())))


def _build_remedy(shipped: bytes, post: bytes, events: Any) -> bytes | None:
    """On a worker: the quantization-aware candidate of the candidate ``post``, where it needs one; else None."""
    builder: CandidateBuilder = pickle.loads(shipped)
    found: Candidate = pickle.loads(post)
    if not builder.needs_remedy(found):
        return None
    _limit_threads()
    spec = builder.quantization_aware_spec(found.tuned, found.sparsity)
    events.started.remote(TaskStart(spec.name, _worker_name(), os.getpid()))
    remedies = builder.remedy(found)
    return pickle.dumps(_travelling(replace(remedies[0], worker=_worker_name()))) if remedies else None


def _travelling(found: Candidate) -> Candidate:
    """The candidate as it goes back to the driver: without the quantization-aware Keras model (its file is what
    ships, and tfmot's wrappers do not pickle)."""
    qat = found.tuned.qat
    return found if qat is None else replace(found, tuned=replace(found.tuned, qat=replace(qat, model=None)))


class _EventLog:
    """An actor the tasks tell when they start, so the driver knows which are running (and where)."""

    def __init__(self) -> None:
        self.events: list[TaskStart] = []

    def started(self, start: TaskStart) -> None:
        self.events.append(start)

    def drain(self) -> list[TaskStart]:
        events, self.events = self.events, []
        return events


@functools.cache
def _remote(name: str) -> Any:
    """The Ray task or actor class of one of this module's functions, made on first use (importing Ray takes
    seconds, and only a run with ``--ray-address`` needs it)."""
    return _ray().remote({"build": _build_candidate, "remedy": _build_remedy, "events": _EventLog}[name])
