"""A variant is a typed recipe: what one .tflite file is made of and how. It owns its name, its file name and
their parsing; a run's plan is a list of them, with the one that ships named by one rule."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tflite_opt.core.config import ConvertConfig, Mode
from tflite_opt.core.errors import UsageError

TFLITE_SUFFIX = ".tflite"


class QatScheme(str, enum.Enum):
    """Quantization-aware training's scheme: plain, or after pruning (p) and clustering (c) the collaborative one
    that keeps their zeros and shared values."""

    QAT = "qat"
    PQAT = "pqat"
    CQAT = "cqat"
    PCQAT = "pcqat"

    @classmethod
    def after(cls, pruned: bool, clustered: bool) -> QatScheme:
        """The scheme that keeps what pruning and clustering made."""
        return cls(("p" if pruned else "") + ("c" if clustered else "") + "qat")


@dataclass(frozen=True)
class VariantSpec:
    """One .tflite file's recipe.

    Attributes:
        mode: the conversion mode.
        sparsity: the pruning level (0: not pruned).
        clusters: shared values per layer (None: not clustered).
        qat: converted from the model fine-tuned quantization-aware in this scheme (None: post-training).
        float_layers: Keras layers kept in float (full int8 otherwise).
        per_tensor: one int8 scale per weight tensor instead of one per output channel.
        pixel_input: the normalization inside the model, camera pixels in (full int8 with integer input).
        sparse_weights: pruned weights stored in the sparse format.
    """

    mode: Mode
    sparsity: float = 0.0
    clusters: int | None = None
    qat: QatScheme | None = None
    float_layers: tuple[str, ...] = ()
    per_tensor: bool = False
    pixel_input: bool = False
    sparse_weights: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", Mode(self.mode))
        if self.qat is not None:
            object.__setattr__(self, "qat", QatScheme(self.qat))
        int8_only = {
            "quantization-aware training": self.qat is not None,
            "float layers": bool(self.float_layers),
            "per-tensor weights": self.per_tensor,
            "pixel input": self.pixel_input,
        }
        if self.mode is not Mode.FULL_INT8 and any(int8_only.values()):
            asked = ", ".join(what for what, on in int8_only.items() if on)
            raise UsageError(f"{asked} only apply to full-int8 models, not {self.mode.value}")
        if self.qat is not None and (self.float_layers or self.per_tensor or self.pixel_input):
            # tfmot trains per-channel weights on normalized input, and quantization-aware training is what
            # keeps every layer integer.
            raise UsageError("a quantization-aware variant is per-channel, all-integer and takes normalized input")
        if self.sparse_weights and not self.sparsity:
            raise UsageError("sparse weights store pruned weights; the variant must be pruned")

    @property
    def name(self) -> str:
        """``int8``, ``int8-per-tensor``, ``int8-pruned80``, ``int8-pruned80-mixed1`` (one layer kept in float),
        ``int8-qat``, ``int8-pruned80-clustered16-pcqat``, ``float16-pruned80-sparse``."""
        name = self.mode.value + ("-per-tensor" if self.per_tensor else "")
        if self.sparsity:
            name += f"-pruned{round(100 * self.sparsity)}"
        if self.clusters:
            name += f"-clustered{self.clusters}"
        if self.float_layers:
            name += f"-mixed{len(self.float_layers)}"
        if self.qat is not None:
            name += f"-{self.qat.value}"
        return name + ("-sparse" if self.sparse_weights else "")

    @property
    def fine_tuned(self) -> bool:
        """Converted from a pruned or clustered model (post-training or quantization-aware)."""
        return bool(self.sparsity) or self.clusters is not None

    def file_name(self, model_name: str) -> str:
        """``<model>.<variant>.tflite``."""
        return f"{model_name}.{self.name}{TFLITE_SUFFIX}"

    def path(self, output_dir: Path, model_name: str) -> Path:
        return Path(output_dir) / self.file_name(model_name)


def split_file_names(paths: Sequence[Path]) -> tuple[str, list[str]]:
    """(model name, variant per file) from ``<model>.<variant>.tflite`` names; where the files are not one model's
    variants so named, ``benchmark`` and each file's stem.

    Raises:
        UsageError: two files with the same name.
    """
    stems = [p.name[: -len(TFLITE_SUFFIX)] if p.name.endswith(TFLITE_SUFFIX) else p.stem for p in paths]
    models = {s.split(".")[0] for s in stems}
    if len(models) == 1 and all("." in s for s in stems):
        variants = [s.split(".", 1)[1] for s in stems]
        if len(set(variants)) == len(variants):
            return models.pop(), variants
    if len(set(stems)) != len(stems):
        raise UsageError("two --model files have the same name; give each variant its own file name")
    return "benchmark", stems


@dataclass(frozen=True)
class Plan:
    """The variants a run converts itself, float32 reference first, and the one it ships whatever the verdicts
    (None: the ship rule decides on the figures)."""

    specs: tuple[VariantSpec, ...]
    ships: VariantSpec | None = None

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def with_pixel_input(self, chosen: bool) -> Plan:
        """The plan with its full-int8 variants taking pixels, where that was chosen (a quantization-aware model
        learnt its input range on normalized input: it keeps it)."""
        if not chosen:
            return self

        def taking_pixels(spec: VariantSpec) -> VariantSpec:
            return replace(spec, pixel_input=spec.mode is Mode.FULL_INT8 and spec.qat is None)

        ships = taking_pixels(self.ships) if self.ships is not None else None
        return Plan(tuple(taking_pixels(spec) for spec in self.specs), ships)


def first_int8(config: ConvertConfig) -> VariantSpec:
    """The full-int8 model as it came, as the run asked for it (per-tensor or not): a search's first candidate."""
    return VariantSpec(Mode.FULL_INT8, per_tensor=config.per_tensor)


def plan_variants(config: ConvertConfig) -> Plan:
    """The variants a run converts itself (a search adds its own candidates). A fine-tuned run also converts the
    same modes from the model as it came, so that each fine-tuning step's cost is one subtraction.

    The one rule for what ships regardless of verdicts: the per-tensor variant where ``--per-tensor`` asked for it.
    """
    specs = [VariantSpec(Mode.FLOAT32)]
    if config.search is not None:
        return Plan(tuple(specs))
    if not config.tuned:
        specs += [VariantSpec(m) for m in config.modes if m is not Mode.FLOAT32]
        if config.per_tensor:
            specs.append(VariantSpec(Mode.FULL_INT8, per_tensor=True))
    else:
        pruned = config.pruned_modes
        specs += [VariantSpec(m) for m in pruned if m is not Mode.FLOAT32]
        specs += [_tuned(config, m, per_tensor=config.per_tensor and m is Mode.FULL_INT8) for m in pruned]
        if config.sparse_format:
            specs += [replace(_tuned(config, m), sparse_weights=True) for m in pruned]
    if config.qat is not None:
        qat = QatScheme.after(config.prune is not None, config.cluster is not None)
        specs.append(replace(_tuned(config, Mode.FULL_INT8), qat=qat))
    ships = next((spec for spec in specs if spec.per_tensor), None)
    return Plan(tuple(specs), ships)


def _tuned(config: ConvertConfig, mode: Mode, per_tensor: bool = False) -> VariantSpec:
    """``mode`` converted from the pruned and/or clustered model."""
    sparsity = config.prune.target_sparsity if config.prune is not None else 0.0
    clusters = config.cluster.clusters if config.cluster is not None else None
    return VariantSpec(mode, sparsity, clusters, per_tensor=per_tensor)
