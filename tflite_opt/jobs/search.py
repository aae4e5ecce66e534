"""The accuracy-budget search as a job: build, verify and measure each candidate the search logic
(:mod:`tflite_opt.stages.search`) asks for, each realized as a verified file
(:func:`tflite_opt.stages.realize.realize`)."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from tflite_opt.core.config import ConvertConfig, Mode, SearchConfig, SearchSchedule
from tflite_opt.core.errors import TfliteOptError
from tflite_opt.core.variant import VariantSpec
from tflite_opt.jobs.measure import Bench
from tflite_opt.jobs.search_steps import SearchSteps
from tflite_opt.jobs.search_store import CandidateStore, search_digest
from tflite_opt.results.files import Verified
from tflite_opt.results.measures import drop_points
from tflite_opt.results.search import Candidate, LayerError, SearchEngine, SearchOutcome, SearchPhase, choose
from tflite_opt.results.tuning import NOT_TUNED, FineTuned
from tflite_opt.stages.cluster import clustered_with
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.layer_errors import quantization_errors
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.qat import quantization_aware
from tflite_opt.stages.realize import Calibration, Target, calibrate, realize, source_model
from tflite_opt.stages.search import search_float_layers, search_int8, search_sparsity, search_sparsity_parallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateBuilder:
    """What candidates are built from and judged on; realizes and measures each.

    Attributes:
        model: the float Keras model.
        config: the run's configuration, with its search.
        calibration: the calibration samples.
        target: the I/O type and the model's layers (they name the operators).
        train: labelled data for fine-tuning (None unless the run prunes, clusters or trains quantization-aware).
        bench: the held-out data and settings every candidate is measured with.
        keras_top1: the Keras model's top-1 on the held-out data, the budget's reference.
        pixel_input: post-training candidates normalize inside and take pixels as they are (quantization-aware
            ones keep the normalized input their ranges were learnt on).
        store: keeps every finished candidate, and gives back those an interrupted run finished (``--resume``).
        steps: says which candidate starts, of about how many (None: silent, as on a Ray worker).
    """

    model: Any
    config: ConvertConfig
    calibration: Calibration
    target: Target
    train: Dataset | None
    bench: Bench
    keras_top1: float
    pixel_input: bool = False
    store: CandidateStore | None = None
    steps: SearchSteps | None = None

    @property
    def search(self) -> SearchConfig:
        return self.config.search

    def spec(
        self, sparsity: float = 0.0, float_layers: tuple[str, ...] = (), clusters: int | None = None
    ) -> VariantSpec:
        """A post-training full-int8 candidate's recipe."""
        return VariantSpec(
            Mode.FULL_INT8,
            sparsity,
            clusters,
            float_layers=float_layers,
            per_tensor=self.config.per_tensor,
            pixel_input=self.pixel_input,
        )

    def quantization_aware_spec(self, tuned: FineTuned, sparsity: float) -> VariantSpec:
        """The recipe of the candidate fine-tuned quantization-aware from ``tuned``."""
        return VariantSpec(Mode.FULL_INT8, sparsity, tuned.clusters, qat=tuned.scheme)

    def candidate(
        self,
        spec: VariantSpec,
        calibrated: bytes,
        phase: SearchPhase,
        parent: str | None,
        tuned: FineTuned = NOT_TUNED,
    ) -> Candidate:
        """The post-training candidate of ``spec``, quantized from ``calibrated``, verified and scored."""
        file = realize(spec, tuned.model(self.model), self.calibration, self.target, tuned, calibrated)
        return self._scored(file, spec, phase, parent, tuned)

    def quantization_aware(self, tuned: FineTuned, phase: SearchPhase, sparsity: float, parent: str) -> Candidate:
        """The candidate fine-tuned quantization-aware from ``tuned``'s model, in the scheme that keeps its
        zeros and shared values, converted to full int8."""
        tuned = quantization_aware(tuned, self.model, *self._training(), self.config.qat, self.bench.progress)
        spec = self.quantization_aware_spec(tuned, sparsity)
        file = realize(spec, source_model(spec, self.model, tuned), self.calibration, self.target, tuned)
        return self._scored(file, spec, phase, parent, tuned)

    def _scored(
        self, file: Verified, spec: VariantSpec, phase: SearchPhase, parent: str | None, tuned: FineTuned
    ) -> Candidate:
        """The candidate with its size and accuracy (its latency is timed with the others at the end)."""
        scored = self.bench.scored({spec.name: file})[spec.name]
        drop = drop_points(self.keras_top1, scored.accuracy.top1)
        return Candidate(
            spec=spec,
            phase=phase,
            top1=scored.accuracy.top1,
            drop=drop,
            gzip_bytes=scored.size.gzip_bytes,
            within_budget=self.search.within(drop),
            parent=parent,
            tuned=tuned,
            scored=scored,
        )

    def describe(self, found: Candidate) -> str:
        """The line the search logs for a candidate as it is done."""
        if found.failure is not None:
            return f"search: {found.variant} failed: {found.failure}"
        where = " (from the earlier run)" if found.resumed else f" in {found.seconds:.0f} s on {found.worker}"
        return (
            f"search: {found.variant}: top-1 {100 * found.top1:.2f}% (drop {found.drop:.2f}, "
            f"{'within' if found.within_budget else 'over'} the {self.search.max_accuracy_drop:g}-point budget), "
            f"gzip {found.gzip_bytes / 1024:.1f} KiB{where}"
        )

    def _training(self) -> tuple[np.ndarray, np.ndarray]:
        return self.train.model_input(self.config.preprocessing), self.train.labels

    def calibrate(self, model: Any) -> bytes:
        """``model`` calibrated (with the normalization in front, taking pixels, with ``pixel_input``)."""
        return calibrate(model, self.calibration, self.pixel_input, self.bench.progress)

    def rank(self, calibrated: bytes, float_layers: tuple[str, ...]) -> tuple[LayerError, ...]:
        return quantization_errors(
            calibrated,
            self.calibration.samples(self.pixel_input),
            self.target.classifier.layer_scopes,
            self.config.per_tensor,
            float_layers,
        )

    def post_training(
        self, phase: SearchPhase, tuned: FineTuned, float_layers: tuple[str, ...], parent: str
    ) -> Candidate:
        """The post-training candidate of a fine-tuned model (clustered first with ``--cluster``)."""
        if self.config.cluster is not None:
            tuned = clustered_with(tuned, self.model, *self._training(), self.config.cluster, self.bench.progress)
        sparsity = tuned.pruned.stats.config.target_sparsity if tuned.pruned is not None else 0.0
        calibrated = self.calibrate(tuned.model(self.model))
        return self.candidate(self.spec(sparsity, float_layers, tuned.clusters), calibrated, phase, parent, tuned)

    def needs_remedy(self, found: Candidate) -> bool:
        """A fine-tuned candidate whose post-training quantization missed the budget gets its quantization-aware
        one, with ``--qat`` (not with float layers: they mean quantization-aware training already missed)."""
        return (
            found.failure is None and not found.within_budget and self.config.qat is not None and not found.float_layers
        )

    def remedy(self, found: Candidate) -> list[Candidate]:
        """``found``'s quantization-aware candidate where it :meth:`needs_remedy`, else nothing."""
        if not self.needs_remedy(found):
            return []
        failed = Candidate.failed(
            self.quantization_aware_spec(found.tuned, found.sparsity), found.phase, found.variant, ""
        )
        return [
            self.attempt(
                failed, lambda: self.quantization_aware(found.tuned, found.phase, found.sparsity, found.variant)
            )
        ]

    def attempt(self, failed: Candidate, build: Callable[[], Candidate]) -> Candidate:
        """The candidate ``build`` makes, timed, with the worker that made it; where it fails (tfmot refuses the
        model, conversion or verification fails), ``failed`` (a :meth:`Candidate.failed` row) with the reason, and the
        search goes on. With a store, a candidate an earlier run finished is taken from it, and each new one is
        kept in it."""
        kept = self.store.get(failed.variant, failed.parent) if self.store is not None else None
        if kept is not None:
            log.info(self.describe(kept))
            return kept
        if self.steps is not None:
            self.steps.start(failed.variant)
        started = time.perf_counter()
        try:
            found = build()
        except TfliteOptError as exc:
            found = replace(failed, failure=str(exc))
        found = replace(found, worker=this_worker(), seconds=time.perf_counter() - started)
        (log.warning if found.failure else log.info)(self.describe(found))
        if self.store is not None:
            self.store.put(found)
        return found

    def clustered(self, float_layers: tuple[str, ...]) -> Candidate:
        """The model clustered (``--cluster`` without ``--prune``), measured against post-training int8 with the
        same layers in float."""
        failed = self.request_row(CandidateRequest(0.0, float_layers))
        return self.attempt(
            failed, lambda: self.post_training(SearchPhase.CLUSTERING, FineTuned(), float_layers, failed.parent)
        )

    def first_quantization_aware(self, parent: str) -> Candidate:
        """``int8-qat``: the float model fine-tuned quantization-aware (or the row saying why it could not be)."""
        failed = Candidate.failed(self.quantization_aware_spec(FineTuned(), 0.0), SearchPhase.QAT, parent, "")
        return self.attempt(failed, lambda: self.quantization_aware(FineTuned(), SearchPhase.QAT, 0.0, parent))

    def pruned(self, sparsity: float, previous: Candidate | None, float_layers: tuple[str, ...]) -> Candidate:
        """The post-training candidate pruned to ``sparsity``, fine-tuned from the previous level's pruned model
        (None: from the float model)."""
        base = self.config.prune
        start = previous.pruned if previous is not None else None
        settings = replace(
            base,
            target_sparsity=sparsity,
            # Continuing from a pruned model needs less fine-tuning than starting from the dense one.
            epochs=base.epochs if start is None else max(1, base.epochs // 2),
            initial_sparsity=previous.sparsity if start is not None else 0.0,
        )
        failed = self.request_row(CandidateRequest(sparsity, float_layers))
        parent = previous.variant if previous is not None else failed.parent
        failed = replace(failed, parent=parent)

        def build() -> Candidate:
            start_model = start.model if start is not None else self.model
            result = prune_model(start_model, *self._training(), settings, self.bench.progress)
            return self.post_training(SearchPhase.SPARSITY, FineTuned(pruned=result), float_layers, parent)

        return self.attempt(failed, build)

    def build(self, request: CandidateRequest) -> Candidate:
        """The post-training candidate of ``request``, from the float model."""
        if request.sparsity:
            return self.pruned(request.sparsity, None, request.float_layers)
        return self.clustered(request.float_layers)

    def request_row(self, request: CandidateRequest) -> Candidate:
        """The row ``request``'s candidate is, should it fail: its recipe and parent, no figures."""
        clusters = self.config.cluster.clusters if self.config.cluster is not None else None
        phase = SearchPhase.SPARSITY if request.sparsity else SearchPhase.CLUSTERING
        spec = self.spec(request.sparsity, request.float_layers, clusters)
        return Candidate.failed(spec, phase, self.spec(float_layers=request.float_layers).name, "")

    def digest(self) -> str:
        """What this search's candidates depend on (the model, the data, the settings), as one digest: an
        interrupted search resumes only into the same one."""
        config, train = self.config, self.train
        evaluation = self.bench.evaluation
        arrays = [
            self.calibration.model_input,
            train.raw if train is not None else None,
            train.labels if train is not None else None,
            evaluation.labels if evaluation is not None else None,
        ]
        names = [evaluation.name(i) for i in range(len(evaluation))] if evaluation is not None else []
        settings = [config.prune, config.cluster, config.qat, config.per_tensor, config.preprocessing, config.io_type]
        return search_digest(self.model, arrays, [*settings, self.pixel_input, config.seed, names])

    def portable(self) -> CandidateBuilder:
        """This builder as it travels to another machine: the evaluation set in memory (no shared file system), no
        progress bars, no store (the driver keeps the candidates)."""
        evaluation = self.bench.evaluation.in_memory() if self.bench.evaluation is not None else None
        return replace(
            self,
            bench=replace(self.bench, evaluation=evaluation, progress=False),
            target=replace(self.target, progress=False),
            store=None,
            steps=None,
        )


@dataclass(frozen=True)
class CandidateRequest:
    """A candidate built from the float model, with ``float_layers`` kept in float: pruned to ``sparsity`` (then
    clustered, with ``--cluster``), or, with ``sparsity`` 0, clustered only."""

    sparsity: float
    float_layers: tuple[str, ...] = ()


class SearchRunner(Protocol):
    """What builds the candidates a parallel schedule asks for, all at once: in this process, or on Ray."""

    engine: SearchEngine

    def run(
        self, builder: CandidateBuilder, requests: Sequence[CandidateRequest], ahead: Sequence[CandidateRequest] = ()
    ) -> list[list[Candidate]]:
        """Each request's candidates: its post-training one, then its quantization-aware one where that missed.
        ``ahead``: requests a later call may make, which idle workers may start now."""
        ...

    def settle(self) -> None:
        """Stop the work started ahead that no call asked for."""
        ...


@dataclass(frozen=True)
class LocalRunner:
    """Builds the requests one after the other in this process."""

    engine: SearchEngine = SearchEngine("local", SearchSchedule.PARALLEL.value)

    def run(
        self, builder: CandidateBuilder, requests: Sequence[CandidateRequest], ahead: Sequence[CandidateRequest] = ()
    ) -> list[list[Candidate]]:
        found = [builder.build(request) for request in requests]  # one process has no idle worker: nothing ahead
        return [[c, *builder.remedy(c)] for c in found]

    def settle(self) -> None:
        return None


def this_worker() -> str:
    """``host/pid`` of this process: where a candidate was built."""
    return f"{socket.gethostname()}/{os.getpid()}"


def run_search(builder: CandidateBuilder, runner: SearchRunner | None = None) -> SearchOutcome:
    """Search (full int8: post-training, quantization-aware, layers in float; then sparsity with ``config.prune``,
    clustering with ``config.cluster``) for the smallest model within budget, then time every candidate side by
    side on this machine.

    Args:
        runner: builds the candidates of the parallel schedule (the sparsity levels, clustering) where
            ``config.search.schedule`` is parallel, or clustering without pruning; default: in this process.

    Raises:
        TfliteOptError: the plain int8 candidate failed to convert or verify.
    """
    config, layer_names = builder.config, builder.target.classifier.layer_names
    search, runner = config.search, runner or LocalRunner(SearchEngine("local", config.search.schedule.value))
    if runner.engine.engine == "local":  # on Ray the driver counts the tasks instead
        builder = replace(builder, steps=SearchSteps.of(config))
        builder.steps.start(builder.spec().name)
    started = time.perf_counter()
    calibrated = builder.calibrate(builder.model)
    first = builder.candidate(builder.spec(), calibrated, SearchPhase.INT8, None)
    first = replace(first, worker=this_worker(), seconds=time.perf_counter() - started)
    log.info(builder.describe(first))
    first_ranking: list[tuple[LayerError, ...]] = []

    def rank(float_layers: tuple[str, ...]) -> list[str]:
        ranking = builder.rank(calibrated, float_layers)
        if not first_ranking:
            first_ranking.append(ranking)
        return [e.layer for e in ranking if e.layer in layer_names]

    def keep_in_float(float_layers: tuple[str, ...], parent: Candidate) -> Candidate:
        spec = builder.spec(float_layers=float_layers)
        failed = Candidate.failed(spec, SearchPhase.FLOAT_LAYERS, parent.variant, "")
        return builder.attempt(
            failed, lambda: builder.candidate(spec, calibrated, SearchPhase.FLOAT_LAYERS, parent.variant)
        )

    candidates = search_int8(
        first,
        (lambda: builder.first_quantization_aware(first.variant)) if config.qat is not None else None,
        lambda start: search_float_layers(start, rank, keep_in_float, search.max_float_layers),
    )
    unpruned = choose(candidates)
    skipped = None
    if config.tuned and not unpruned.within_budget:
        skipped = "even the unpruned int8 candidates miss the budget, and pruning or clustering only loses more"
    else:
        candidates += _fine_tuned_candidates(builder, runner, unpruned.float_layers)
    return SearchOutcome(
        config=search,
        keras_top1=builder.keras_top1,
        eval_samples=len(builder.bench.evaluation),
        per_tensor=config.per_tensor,
        candidates=tuple(_timed(builder.bench, candidates)),
        ranking=first_ranking[0] if first_ranking else (),
        skipped_pruning=skipped,
        qat_not_tried=_qat_not_tried(config, first),
        engine=runner.engine,
    )


def _fine_tuned_candidates(
    builder: CandidateBuilder, runner: SearchRunner, float_layers: tuple[str, ...]
) -> list[Candidate]:
    """The sparsity levels (``--prune``, chained or parallel) or the clustered candidate (``--cluster`` alone);
    none without either."""
    config, search = builder.config, builder.config.search
    if config.prune is None and config.cluster is None:
        return []
    if config.prune is None:
        return [c for found in runner.run(builder, [CandidateRequest(0.0, float_layers)]) for c in found]
    if search.schedule is SearchSchedule.PARALLEL:

        def requested(levels: Sequence[float]) -> list[CandidateRequest]:
            return [CandidateRequest(level, float_layers) for level in levels]

        tried = search_sparsity_parallel(
            search.sparsities,
            lambda levels, ahead: runner.run(builder, requested(levels), requested(ahead)),
            refine=search.refine,
        )
        runner.settle()
        return tried

    def level(sparsity: float, previous: Candidate | None) -> list[Candidate]:
        found = builder.pruned(sparsity, previous, float_layers)
        return [found, *builder.remedy(found)]

    return search_sparsity(search.sparsities, level, refine=search.refine, bad_drop=config.benchmark.bad_drop)


def _timed(bench: Bench, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates with their latency, every file timed side by side on this machine, wherever it was built."""
    scored = {c.variant: c.scored for c in candidates if c.scored is not None}
    if scored:
        log.info("timing the %d candidates side by side", len(scored))
    measured = bench.timed(scored) if scored else {}
    return [replace(c, measured=measured[c.variant]) if c.variant in measured else c for c in candidates]


def _qat_not_tried(config: ConvertConfig, first: Candidate) -> str | None:
    """Why quantization-aware training was not tried, where post-training quantization missed."""
    if first.within_budget or config.qat is not None:
        return None
    return "--qat (with --train-data) tries it, which stays full-integer, before keeping layers in float"
