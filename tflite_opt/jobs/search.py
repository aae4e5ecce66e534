"""The accuracy-budget search as a job: build, verify and measure each candidate the search logic
(:mod:`tflite_opt.stages.search`) asks for, each realized as a verified file
(:func:`tflite_opt.stages.realize.realize`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tflite_opt.core.config import ConvertConfig, Mode, SearchConfig
from tflite_opt.core.errors import TfliteOptError
from tflite_opt.core.variant import VariantSpec
from tflite_opt.jobs.measure import Bench
from tflite_opt.results.files import Verified
from tflite_opt.results.measures import drop_points
from tflite_opt.results.search import Candidate, LayerError, SearchOutcome, SearchPhase, choose
from tflite_opt.results.tuning import NOT_TUNED, FineTuned
from tflite_opt.stages.cluster import clustered_with
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.layer_errors import quantization_errors
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.qat import quantization_aware
from tflite_opt.stages.realize import Calibration, Target, calibrate, realize, source_model
from tflite_opt.stages.search import search_float_layers, search_int8, search_sparsity

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
    """

    model: Any
    config: ConvertConfig
    calibration: Calibration
    target: Target
    train: Dataset | None
    bench: Bench
    keras_top1: float
    pixel_input: bool = False

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
        """The post-training candidate of ``spec``, quantized from ``calibrated``, verified and measured."""
        file = realize(spec, tuned.model(self.model), self.calibration, self.target, tuned, calibrated)
        return self._measured(file, spec, phase, parent, tuned)

    def quantization_aware(self, tuned: FineTuned, phase: SearchPhase, sparsity: float, parent: str) -> Candidate:
        """The candidate fine-tuned quantization-aware from ``tuned``'s model, in the scheme that keeps its
        zeros and shared values, converted to full int8."""
        tuned = quantization_aware(tuned, self.model, *self._training(), self.config.qat)
        spec = self.quantization_aware_spec(tuned, sparsity)
        file = realize(spec, source_model(spec, self.model, tuned), self.calibration, self.target, tuned)
        return self._measured(file, spec, phase, parent, tuned)

    def _measured(
        self, file: Verified, spec: VariantSpec, phase: SearchPhase, parent: str | None, tuned: FineTuned
    ) -> Candidate:
        _, measured = self.bench.measure({spec.name: file})
        result = measured[spec.name]
        drop = drop_points(self.keras_top1, result.accuracy.top1)
        found = Candidate(
            spec=spec,
            phase=phase,
            top1=result.accuracy.top1,
            drop=drop,
            gzip_bytes=result.size.gzip_bytes,
            within_budget=self.search.within(drop),
            parent=parent,
            measured=result,
            tuned=tuned,
        )
        log.info(
            "search: %s: top-1 %.2f%% (drop %.2f, %s the %g-point budget), gzip %.1f KiB, p50 %.3f ms",
            spec.name,
            100 * found.top1,
            drop,
            "within" if found.within_budget else "over",
            self.search.max_accuracy_drop,
            found.gzip_bytes / 1024,
            result.latency.p50,
        )
        return found

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

    def tuned(
        self, phase: SearchPhase, tuned: FineTuned, float_layers: tuple[str, ...], parent: str
    ) -> list[Candidate]:
        """The candidate of a fine-tuned model (clustered first with ``--cluster``); where its post-training
        quantization misses the budget and ``--qat`` is given, its quantization-aware one too."""
        if self.config.cluster is not None:
            tuned = clustered_with(tuned, self.model, *self._training(), self.config.cluster)
        sparsity = tuned.pruned.stats.config.target_sparsity if tuned.pruned is not None else 0.0
        calibrated = self.calibrate(tuned.model(self.model))
        spec = self.spec(sparsity, float_layers, tuned.clusters)
        found = [self.candidate(spec, calibrated, phase, parent, tuned)]
        # Float layers mean quantization-aware training already missed: it is not tried again.
        if not found[0].within_budget and self.config.qat is not None and not float_layers:
            failed = Candidate.failed(self.quantization_aware_spec(tuned, sparsity), phase, found[0].variant, "")
            found += self.attempt(failed, lambda: [self.quantization_aware(tuned, phase, sparsity, found[0].variant)])
        return found

    def attempt(self, failed: Candidate, build: Callable[[], list[Candidate]]) -> list[Candidate]:
        """The candidates ``build`` makes; where it fails (tfmot refuses the model, conversion or verification
        fails), ``failed`` (a :meth:`Candidate.failed` row) with the reason, and the search goes on."""
        try:
            return build()
        except TfliteOptError as exc:
            log.warning("search: %s failed: %s", failed.variant, exc)
            return [replace(failed, failure=str(exc))]

    def clustered(self, float_layers: tuple[str, ...]) -> list[Candidate]:
        """The model clustered (``--cluster`` without ``--prune``), measured against post-training int8 with the
        same layers in float."""
        parent = self.spec(float_layers=float_layers).name
        failed = Candidate.failed(
            self.spec(float_layers=float_layers, clusters=self.config.cluster.clusters),
            SearchPhase.CLUSTERING,
            parent,
            "",
        )
        return self.attempt(failed, lambda: self.tuned(SearchPhase.CLUSTERING, FineTuned(), float_layers, parent))

    def first_quantization_aware(self, parent: str) -> Candidate:
        """``int8-qat``: the float model fine-tuned quantization-aware (or the row saying why it could not be)."""
        failed = Candidate.failed(self.quantization_aware_spec(FineTuned(), 0.0), SearchPhase.QAT, parent, "")
        return self.attempt(failed, lambda: [self.quantization_aware(FineTuned(), SearchPhase.QAT, 0.0, parent)])[0]

    def pruned(self, sparsity: float, previous: Candidate | None, float_layers: tuple[str, ...]) -> list[Candidate]:
        """The candidates pruned to ``sparsity``, fine-tuned from the previous level's pruned model."""
        base = self.config.prune
        start = previous.pruned if previous is not None else None
        settings = replace(
            base,
            target_sparsity=sparsity,
            # Continuing from a pruned model needs less fine-tuning than starting from the dense one.
            epochs=base.epochs if start is None else max(1, base.epochs // 2),
            initial_sparsity=previous.sparsity if start is not None else 0.0,
        )
        parent = previous.variant if previous is not None else self.spec(float_layers=float_layers).name
        clusters = self.config.cluster.clusters if self.config.cluster is not None else None
        failed = Candidate.failed(self.spec(sparsity, float_layers, clusters), SearchPhase.SPARSITY, parent, "")

        def build() -> list[Candidate]:
            result = prune_model(start.model if start is not None else self.model, *self._training(), settings)
            return self.tuned(SearchPhase.SPARSITY, FineTuned(pruned=result), float_layers, parent)

        return self.attempt(failed, build)


def run_search(builder: CandidateBuilder) -> SearchOutcome:
    """Search (full int8: post-training, quantization-aware, layers in float; then sparsity with ``config.prune``,
    clustering with ``config.cluster``) for the smallest model within budget.

    Raises:
        TfliteOptError: a candidate failed to convert or verify.
    """
    config, layer_names = builder.config, builder.target.classifier.layer_names
    search = config.search
    calibrated = builder.calibrate(builder.model)
    first = builder.candidate(builder.spec(), calibrated, SearchPhase.INT8, None)
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
            failed, lambda: [builder.candidate(spec, calibrated, SearchPhase.FLOAT_LAYERS, parent.variant)]
        )[0]

    candidates = search_int8(
        first,
        (lambda: builder.first_quantization_aware(first.variant)) if config.qat is not None else None,
        lambda start: search_float_layers(start, rank, keep_in_float, search.max_float_layers),
    )
    unpruned = choose(candidates)
    skipped = None
    if config.tuned and not unpruned.within_budget:
        skipped = "even the unpruned int8 candidates miss the budget, and pruning or clustering only loses more"
    elif config.prune is not None:
        candidates += search_sparsity(
            search.sparsities,
            lambda level, previous: builder.pruned(level, previous, unpruned.float_layers),
            refine=search.refine,
            bad_drop=config.benchmark.bad_drop,
        )
    elif config.cluster is not None:
        candidates += builder.clustered(unpruned.float_layers)
    return SearchOutcome(
        config=search,
        keras_top1=builder.keras_top1,
        eval_samples=len(builder.bench.evaluation),
        per_tensor=config.per_tensor,
        candidates=tuple(candidates),
        ranking=first_ranking[0] if first_ranking else (),
        skipped_pruning=skipped,
        qat_not_tried=_qat_not_tried(config, first),
    )


def _qat_not_tried(config: ConvertConfig, first: Candidate) -> str | None:
    """Why quantization-aware training was not tried, where post-training quantization missed."""
    if first.within_budget or config.qat is not None:
        return None
    return "--qat (with --train-data) tries it, which stays full-integer, before keeping layers in float"
