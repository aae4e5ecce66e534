"""The accuracy-budget search as a job: build, verify and measure each candidate the search logic
(:mod:`tflite_opt.stages.search`) asks for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tflite_opt.core.config import ConvertConfig, Mode, SearchConfig
from tflite_opt.core.errors import TfliteOptError
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.jobs.measure import Bench
from tflite_opt.stages.convert import (
    PIXEL_RANGE,
    calibrate_keras,
    convert_keras,
    pixel_input_model,
    quantize_calibrated,
)
from tflite_opt.stages.data import Dataset
from tflite_opt.stages.layer_errors import LayerError, float_nodes, layer_nodes, quantization_errors
from tflite_opt.stages.load import ClassifierSpec
from tflite_opt.stages.prune import prune_model
from tflite_opt.stages.qat import FineTuned
from tflite_opt.stages.search import (
    PHASE_CLUSTERING,
    PHASE_FLOAT_LAYERS,
    PHASE_INT8,
    PHASE_QAT,
    PHASE_SPARSITY,
    Candidate,
    SearchOutcome,
    candidate_name,
    choose,
    search_float_layers,
    search_int8,
    search_sparsity,
)
from tflite_opt.stages.verify import Verified, fine_tuning_kept, pixel_input_check, verify_variant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateBuilder:
    """What candidates are built from and judged on; converts, verifies and measures each.

    Attributes:
        model: the float Keras model.
        spec: its description (layer names name the operators).
        config: the run's configuration, with its search.
        calibration: calibration samples as the candidates take them: normalized model input, or pixels
            with ``pixel_input``.
        train: labelled data for fine-tuning (None unless the run prunes, clusters or trains quantization-aware).
        bench: the held-out data and settings every candidate is measured with.
        keras_top1: the Keras model's top-1 on the held-out data, the budget's reference.
        pixel_input: candidates normalize inside and take pixels as they are (quantization-aware ones
            keep the normalized input their ranges were learnt on).
        model_calibration: calibration samples as the model takes them (normalized), for quantization-aware
            candidates; None: ``calibration`` is that already.
    """

    model: Any
    spec: ClassifierSpec
    config: ConvertConfig
    calibration: np.ndarray
    train: Dataset | None
    bench: Bench
    keras_top1: float
    pixel_input: bool = False
    model_calibration: np.ndarray | None = None

    @property
    def search(self) -> SearchConfig:
        return self.config.search

    def candidate(
        self,
        calibrated: bytes,
        phase: str,
        sparsity: float,
        float_layers: tuple[str, ...],
        parent: str | None,
        tuned: FineTuned | None = None,
    ) -> Candidate:
        """Quantize ``calibrated`` with ``float_layers`` kept in float, verify it, and measure it."""
        tuned = tuned or FineTuned()
        variant = candidate_name(sparsity, float_layers, self.config.per_tensor, tuned.clusters)
        file = self._quantized(calibrated, variant, float_layers, tuned)
        return self._measured(file, variant, phase, sparsity, float_layers, parent, tuned)

    def quantization_aware(self, tuned: FineTuned, phase: str, sparsity: float, parent: str) -> Candidate:
        """The candidate fine-tuned quantization-aware from ``tuned``'s model, in the scheme that keeps its
        zeros and shared values, converted to full int8."""
        tuned = tuned.quantization_aware(self.model, *self._training(), self.config.qat)
        variant = candidate_name(sparsity, (), False, tuned.clusters, tuned.scheme)
        calibration = self.calibration if self.model_calibration is None else self.model_calibration
        content = convert_keras(
            tuned.qat.model, Mode.FULL_INT8, calibration, self.config.io_type, progress=self.bench.progress
        )
        file = self._verified(content, variant, (), tuned, pixel_input=False)
        return self._measured(file, variant, phase, sparsity, (), parent, tuned)

    def _measured(
        self,
        file: Verified,
        variant: str,
        phase: str,
        sparsity: float,
        float_layers: tuple[str, ...],
        parent: str | None,
        tuned: FineTuned,
    ) -> Candidate:
        _, measured = self.bench.measure({variant: file})
        result = measured[variant]
        drop = float(100.0 * (self.keras_top1 - result.accuracy.top1))
        found = Candidate(
            variant=variant,
            phase=phase,
            sparsity=sparsity,
            float_layers=float_layers,
            top1=result.accuracy.top1,
            drop=drop,
            gzip_bytes=result.size.gzip_bytes,
            within_budget=self.search.within(drop),
            parent=parent,
            scheme=tuned.scheme if tuned.qat is not None else None,
            measured=result,
            tuned=tuned,
        )
        log.info(
            "search: %s: top-1 %.2f%% (drop %.2f, %s the %g-point budget), gzip %.1f KiB, p50 %.3f ms",
            variant,
            100 * found.top1,
            drop,
            "within" if found.within_budget else "over",
            self.search.max_accuracy_drop,
            found.gzip_bytes / 1024,
            result.latency.p50,
        )
        return found

    def _quantized(self, calibrated: bytes, variant: str, float_layers: tuple[str, ...], tuned: FineTuned) -> Verified:
        keep = []
        if float_layers:
            nodes = layer_nodes(read_tflite(calibrated, source="the calibrated model"), self.spec.layer_scopes)
            keep = float_nodes(nodes, float_layers)
        content = quantize_calibrated(calibrated, self.config.io_type, self.config.per_tensor, keep)
        return self._verified(content, variant, float_layers, tuned, self.pixel_input)

    def _verified(
        self, content: bytes, variant: str, float_layers: tuple[str, ...], tuned: FineTuned, pixel_input: bool
    ) -> Verified:
        parsed = read_tflite(content, source=f"the {variant} model")
        verification = replace(
            verify_variant(parsed, Mode.FULL_INT8, self.config.io_type, self.spec.layer_scopes, float_layers),
            variant=variant,
        )
        if pixel_input:
            verification = verification.with_check(pixel_input_check(parsed, self.config.io_type))
        verification = fine_tuning_kept(verification, parsed, tuned, self.spec)
        verification.raise_for_failures()
        return Verified(content, parsed, verification, pixel_input)

    def _training(self) -> tuple[np.ndarray, np.ndarray]:
        return self.train.model_input(self.config.preprocessing), self.train.labels

    def calibrate(self, model: Any) -> bytes:
        """``model`` calibrated (with the normalization in front, taking pixels, with ``pixel_input``)."""
        if self.pixel_input:
            wrapped = pixel_input_model(model, self.config.preprocessing)
            return calibrate_keras(wrapped, self.calibration, self.bench.progress, input_range=PIXEL_RANGE)
        return calibrate_keras(model, self.calibration, self.bench.progress)

    def rank(self, calibrated: bytes, float_layers: tuple[str, ...]) -> tuple[LayerError, ...]:
        return quantization_errors(
            calibrated, self.calibration, self.spec.layer_scopes, self.config.per_tensor, float_layers
        )

    def tuned(self, phase: str, tuned: FineTuned, float_layers: tuple[str, ...], parent: str) -> list[Candidate]:
        """The candidate of a fine-tuned model (clustered first with ``--cluster``); where its post-training
        quantization misses the budget and ``--qat`` is given, its quantization-aware one too."""
        if self.config.cluster is not None:
            tuned = tuned.clustered_with(self.model, *self._training(), self.config.cluster)
        sparsity = tuned.pruned.stats.config.target_sparsity if tuned.pruned is not None else 0.0
        calibrated = self.calibrate(tuned.model(self.model))
        found = [self.candidate(calibrated, phase, sparsity, float_layers, parent, tuned)]
        # Float layers mean quantization-aware training already missed: it is not tried again.
        if not found[0].within_budget and self.config.qat is not None and not float_layers:
            variant = candidate_name(sparsity, (), False, tuned.clusters, tuned.scheme)
            found += self.attempt(
                Candidate.failed(variant, phase, sparsity, (), found[0].variant, ""),
                lambda: [self.quantization_aware(tuned, phase, sparsity, found[0].variant)],
            )
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
        parent = candidate_name(0.0, float_layers, self.config.per_tensor)
        variant = candidate_name(0.0, float_layers, self.config.per_tensor, self.config.cluster.clusters)
        failed = Candidate.failed(variant, PHASE_CLUSTERING, 0.0, float_layers, parent, "")
        return self.attempt(failed, lambda: self.tuned(PHASE_CLUSTERING, FineTuned(), float_layers, parent))

    def first_quantization_aware(self, parent: str) -> Candidate:
        """``int8-qat``: the float model fine-tuned quantization-aware (or the row saying why it could not be)."""
        failed = Candidate.failed(candidate_name(0.0, (), False, None, "qat"), PHASE_QAT, 0.0, (), parent, "")
        return self.attempt(failed, lambda: [self.quantization_aware(FineTuned(), PHASE_QAT, 0.0, parent)])[0]

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
        parent = previous.variant if previous is not None else candidate_name(0.0, float_layers, self.config.per_tensor)
        clusters = self.config.cluster.clusters if self.config.cluster is not None else None
        variant = candidate_name(sparsity, float_layers, self.config.per_tensor, clusters)

        def build() -> list[Candidate]:
            result = prune_model(start.model if start is not None else self.model, *self._training(), settings)
            return self.tuned(PHASE_SPARSITY, FineTuned(pruned=result), float_layers, parent)

        return self.attempt(Candidate.failed(variant, PHASE_SPARSITY, sparsity, float_layers, parent, ""), build)


def run_search(builder: CandidateBuilder) -> SearchOutcome:
    """Search (full int8: post-training, quantization-aware, layers in float; then sparsity with ``config.prune``,
    clustering with ``config.cluster``) for the smallest model within budget.

    Raises:
        TfliteOptError: a candidate failed to convert or verify.
    """
    spec, config = builder.spec, builder.config
    search = config.search
    calibrated = builder.calibrate(builder.model)
    first = builder.candidate(calibrated, PHASE_INT8, 0.0, (), None)
    first_ranking: list[tuple[LayerError, ...]] = []

    def rank(float_layers: tuple[str, ...]) -> list[str]:
        ranking = builder.rank(calibrated, float_layers)
        if not first_ranking:
            first_ranking.append(ranking)
        return [e.layer for e in ranking if e.layer in spec.layer_names]

    def keep_in_float(float_layers: tuple[str, ...], parent: Candidate) -> Candidate:
        variant = candidate_name(0.0, float_layers, config.per_tensor)
        failed = Candidate.failed(variant, PHASE_FLOAT_LAYERS, 0.0, float_layers, parent.variant, "")
        return builder.attempt(
            failed, lambda: [builder.candidate(calibrated, PHASE_FLOAT_LAYERS, 0.0, float_layers, parent.variant)]
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
