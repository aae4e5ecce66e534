"""Configuration: string enums and frozen dataclasses, validated on creation."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from tflite_opt.core.errors import UsageError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import AppCode, ModelCard, Resize


class Mode(str, enum.Enum):
    """A conversion mode; its value is the variant name used in file names and reports."""

    FLOAT32 = "float32"
    DYNAMIC_RANGE = "dynamic-range"
    FLOAT16 = "float16"
    FULL_INT8 = "int8"


class IoType(str, enum.Enum):
    """Input and output tensor type of a full-integer model."""

    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT32 = "float32"


class Schedule(str, enum.Enum):
    POLYNOMIAL_DECAY = "polynomial-decay"
    CONSTANT = "constant"


# Fine-tuning takes at least this many optimizer steps: more epochs on a small training set. Measured on an
# Xception-style model pruned to 50% on 40 images (benchmarks/pretrained.py): 100 steps 80.4% held-out top-1,
# 300 steps 91.1%, dense 86.5%.
MIN_FINE_TUNING_STEPS = 300


def _check_fine_tuning(
    epochs_flag: str, epochs: int, batch_size: int, learning_rate: float | None, min_steps: int = 0
) -> None:
    """The fine-tuning settings pruning, clustering and quantization-aware training share.

    Raises:
        UsageError: naming the flag of a setting out of range.
    """
    if epochs < 1:
        raise UsageError(f"{epochs_flag} must be at least 1, got {epochs}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if min_steps < 0:
        raise UsageError(f"--min-fine-tuning-steps must not be negative, got {min_steps}")
    if learning_rate is not None and not learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {learning_rate}")


@dataclass(frozen=True)
class PruneConfig:
    """How to prune and fine-tune. ``learning_rate`` None: measured on held-out training data, starting from
    ``START_LEARNING_RATE`` (which suits the embedded MNIST CNN); epochs and batch size are at most and at least
    what small training sets allow (:mod:`tflite_opt.stages.fine_tune`)."""

    START_LEARNING_RATE: ClassVar[float] = 5e-4

    target_sparsity: float = 0.8
    schedule: Schedule = Schedule.POLYNOMIAL_DECAY
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float | None = None
    min_steps: int = MIN_FINE_TUNING_STEPS
    block_size: tuple[int, int] = (1, 1)
    m_by_n: tuple[int, int] | None = None
    seed: int = 0
    # Sparsity the model already has (a search continuing from a pruned model): the schedule starts there.
    initial_sparsity: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        if self.m_by_n is not None:
            m, n = self.m_by_n
            if not 0 < m < n:
                raise UsageError(f"--sparsity-m-by-n needs 0 < m < n, got {m}:{n}")
            # m zeros in every n weights fixes the sparsity at m/n.
            object.__setattr__(self, "target_sparsity", m / n)
        if not 0.0 < self.target_sparsity < 1.0:
            raise UsageError(f"--target-sparsity must be between 0 and 1 (exclusive), got {self.target_sparsity}")
        _check_fine_tuning("--pruning-epochs", self.epochs, self.batch_size, self.learning_rate, self.min_steps)
        if any(b < 1 for b in self.block_size):
            raise UsageError(f"--block-size values must be at least 1, got {self.block_size}")
        if not 0.0 <= self.initial_sparsity <= self.target_sparsity:
            raise UsageError(
                f"initial sparsity {self.initial_sparsity} must be between 0 and the target {self.target_sparsity}"
            )

    @property
    def percent(self) -> int:
        return round(100 * self.target_sparsity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target_sparsity": self.target_sparsity,
            "schedule": self.schedule.value,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "min_steps": self.min_steps,
            "block_size": list(self.block_size),
            "m_by_n": list(self.m_by_n) if self.m_by_n else None,
            "initial_sparsity": self.initial_sparsity,
        }


@dataclass(frozen=True)
class ClusterConfig:
    """Weight clustering: how many shared values per layer, and the fine-tuning after it."""

    START_LEARNING_RATE: ClassVar[float] = 1e-4

    clusters: int = 16
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float | None = None
    min_steps: int = MIN_FINE_TUNING_STEPS
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.clusters <= 256:
            raise UsageError(f"--cluster takes 2 to 256 shared values per layer, got {self.clusters}")
        _check_fine_tuning("--cluster-epochs", self.epochs, self.batch_size, self.learning_rate, self.min_steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": self.clusters,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "min_steps": self.min_steps,
        }


@dataclass(frozen=True)
class QatConfig:
    """Quantization-aware training: how long to fine-tune the model with int8 simulated in every layer.

    Defaults measured on the tests' outlier model (full-int8 post-training quantization loses 78 points there):
    10 epochs at 1e-3 bring int8 back above the float model's top-1 in 3 s. ``learning_rate`` None: measured on
    held-out training data, starting there.
    """

    START_LEARNING_RATE: ClassVar[float] = 1e-3

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float | None = None
    min_steps: int = MIN_FINE_TUNING_STEPS
    seed: int = 0

    def __post_init__(self) -> None:
        _check_fine_tuning("--qat-epochs", self.epochs, self.batch_size, self.learning_rate, self.min_steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "min_steps": self.min_steps,
        }


@dataclass(frozen=True)
class BenchmarkSettings:
    """How variants are measured; defaults give stable figures on a shared 2-core machine."""

    num_runs: int = 100
    warmup_runs: int = 10
    num_threads: int = 1
    use_xnnpack: bool = True
    batch_size: int = 128
    accuracy_budget: float = 1.0
    bad_drop: float = 5.0

    def __post_init__(self) -> None:
        if self.num_runs < 2:
            raise UsageError(f"--num-runs must be at least 2, got {self.num_runs}")
        if self.warmup_runs < 0:
            raise UsageError(f"--warmup-runs must not be negative, got {self.warmup_runs}")
        if self.num_threads < 1:
            raise UsageError(f"--num-threads must be at least 1, got {self.num_threads}")
        if self.batch_size < 1:
            raise UsageError(f"--eval-batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.accuracy_budget <= self.bad_drop:
            raise UsageError(
                f"--accuracy-budget must be between 0 and {self.bad_drop} points, got {self.accuracy_budget}"
            )


DEFAULT_SPARSITY_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)


def within_budget(drop_points: float, budget_points: float) -> bool:
    """True when a top-1 drop is at most the budget; a floating-point hair over it still counts
    (0.986 - 0.983 is 0.30000000000000027 points)."""
    return bool(drop_points <= budget_points + 1e-9)


class SearchSchedule(str, enum.Enum):
    """How the sparsity levels of a search are built: ``chained``, each fine-tuned from the previous level's pruned
    model, one after the other (the work is reused); ``parallel``, each from the float model, all at once (what
    several workers can share)."""

    CHAINED = "chained"
    PARALLEL = "parallel"


# Ray addresses that are not a host: a new local instance for the run, or the cluster this machine is part of.
RAY_LOCAL, RAY_AUTO = "local", "auto"


@dataclass(frozen=True)
class SearchConfig:
    """The accuracy budget and where to look for the smallest model within it.

    Attributes:
        schedule: None: parallel on Ray, chained otherwise.
        ray_address: build the candidates as Ray tasks there (``local``, ``auto``, ``host:port``,
            ``ray://host:10001``); None: in this process.
        resume: take the candidates an interrupted run of the same search finished instead of building them again.
    """

    max_accuracy_drop: float
    sparsities: tuple[float, ...] = DEFAULT_SPARSITY_GRID
    max_float_layers: int = 3
    refine: bool = True
    schedule: SearchSchedule | None = None
    ray_address: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_accuracy_drop <= 100.0:
            raise UsageError(f"--max-accuracy-drop is in top-1 points (0 to 100), got {self.max_accuracy_drop}")
        levels = tuple(sorted({float(s) for s in self.sparsities}))
        if not levels or not all(0.0 < s < 1.0 for s in levels):
            raise UsageError(f"--sparsity-grid needs sparsities between 0 and 1 (exclusive), got {self.sparsities}")
        object.__setattr__(self, "sparsities", levels)
        if self.max_float_layers < 0:
            raise UsageError(f"--max-float-layers must not be negative, got {self.max_float_layers}")
        schedule = self.schedule or (SearchSchedule.PARALLEL if self.ray_address else SearchSchedule.CHAINED)
        object.__setattr__(self, "schedule", SearchSchedule(schedule))
        if self.ray_address is not None and not self.ray_address.strip():
            raise UsageError("--ray-address needs an address: local, auto, host:port or ray://host:10001")

    def within(self, drop_points: float) -> bool:
        """True when a top-1 drop (points) is within the budget."""
        return within_budget(drop_points, self.max_accuracy_drop)

    def to_dict(self) -> dict[str, Any]:
        return {
            "budget": self.max_accuracy_drop,
            "sparsities": list(self.sparsities),
            "max_float_layers": self.max_float_layers,
            "refine": self.refine,
            "schedule": self.schedule.value,
        }


@dataclass(frozen=True)
class InputConfig:
    """The model a job reads and the data it reads with it; ``None`` paths mean the embedded default.

    ``needs_calibration``: the job quantizes to full int8. ``fine_tuning``: what fine-tunes the model (pruning,
    clustering ...), which needs labelled training data; None where nothing does.
    """

    model_path: Path | None = None
    model_name: str | None = None
    representative_data: Path | None = None
    eval_data: Path | None = None
    train_data: Path | None = None
    labels_file: Path | None = None
    preprocessing: Preprocessing | None = None
    num_calibration_samples: int = 200
    seed: int = 0
    allow_unsafe_deserialization: bool = False
    resize: Resize = Resize.STRETCH
    needs_calibration: bool = False
    fine_tuning: str | None = None

    def __post_init__(self) -> None:
        if self.num_calibration_samples < 1:
            raise UsageError(f"--num-calibration-samples must be at least 1, got {self.num_calibration_samples}")
        if self.model_path is not None and self.model_name is None:
            object.__setattr__(self, "model_name", Path(self.model_path).name.split(".")[0] or "model")


INPUT_FIELDS = tuple(f for f in InputConfig.__dataclass_fields__ if f not in ("needs_calibration", "fine_tuning"))


@dataclass(frozen=True)
class ConvertConfig:
    """Everything one convert run needs; ``None`` paths mean the embedded default."""

    modes: tuple[Mode, ...] = (Mode.FULL_INT8,)
    model_path: Path | None = None
    representative_data: Path | None = None
    eval_data: Path | None = None
    output_dir: Path = Path("artifacts")
    # None: chosen for the model (io_type_for), uint8 for an RGB model and int8 otherwise.
    io_type: IoType | None = None
    preprocessing: Preprocessing | None = None
    num_calibration_samples: int = 200
    seed: int = 0
    overwrite: bool = False
    model_name: str | None = None
    prune: PruneConfig | None = None
    train_data: Path | None = None
    # Weight clustering (after pruning, keeping its zeros): variants such as int8-pruned80-clustered16.
    cluster: ClusterConfig | None = None
    # Quantization-aware training: an int8-qat variant fine-tuned with int8 simulated (-pqat, -cqat, -pcqat after
    # pruning and clustering: the schemes that keep their zeros and shared values).
    qat: QatConfig | None = None
    sparse_format: bool = False
    benchmark: BenchmarkSettings = BenchmarkSettings()
    allow_unsafe_deserialization: bool = False
    model_version: str = "1"
    labels_file: Path | None = None
    search: SearchConfig | None = None
    per_tensor: bool = False
    # Full-int8 with int8/uint8 I/O: the normalization inside the model, camera pixels in. None: only where
    # quantizing the normalized input would put pixel values on rounding ties.
    pixel_input: bool | None = None
    card: ModelCard = ModelCard()
    app_code: AppCode = AppCode()
    resize: Resize = Resize.STRETCH

    def __post_init__(self) -> None:
        modes = tuple(Mode(m) for m in self.modes)
        if not modes:
            raise UsageError("choose at least one mode: --full-int8, --dynamic-range, --float16 or --float32")
        # float32 is always produced as the reference; keep a stable order without repeats.
        ordered = (Mode.FLOAT32,) + tuple(m for m in Mode if m in modes and m is not Mode.FLOAT32)
        object.__setattr__(self, "modes", ordered)
        object.__setattr__(self, "io_type", IoType(self.io_type) if self.io_type is not None else None)
        if not self.model_version or "/" in self.model_version or self.model_version.startswith("."):
            raise UsageError(f"--model-version must be a plain name such as 1 or 2.0.1, got {self.model_version!r}")
        # The inputs' own checks, and the model's name from its file where none is given.
        object.__setattr__(self, "model_name", self.inputs.model_name)
        self._check_combinations()

    def _check_combinations(self) -> None:
        """Options that only make sense with others."""
        if self.sparse_format and self.prune is None:
            raise UsageError("--sparse-format stores pruned weights sparsely; it needs --prune")
        if self.io_type not in (None, IoType.INT8) and Mode.FULL_INT8 not in self.modes:
            raise UsageError("--io-type only applies to --full-int8")
        if (self.search is not None or self.per_tensor) and Mode.FULL_INT8 not in self.modes:
            raise UsageError("--max-accuracy-drop and --per-tensor apply to --full-int8 models")
        if self.pixel_input and (Mode.FULL_INT8 not in self.modes or self.io_type is IoType.FLOAT32):
            raise UsageError("--raw-pixel-input applies to --full-int8 models with --io-type int8 or uint8")
        self._check_qat()
        if self.search is None:
            return
        if set(self.modes) - {Mode.FLOAT32, Mode.FULL_INT8}:
            raise UsageError("--max-accuracy-drop searches full-int8 models; run the other modes separately")
        if self.prune is not None and self.prune.m_by_n is not None:
            raise UsageError("--sparsity-m-by-n fixes the sparsity, so there is nothing to search; drop one of them")
        if self.sparse_format:
            raise UsageError("--sparse-format is not searched; drop it or --max-accuracy-drop")

    def _check_qat(self) -> None:
        if self.qat is not None and self.per_tensor and self.search is not None:
            # The search could choose a quantization-aware candidate, which is not what --per-tensor asks for.
            raise UsageError(
                "--per-tensor is not searched with --qat: tfmot trains convolutions with per-channel weights; "
                "drop one of them"
            )
        if self.qat is not None and Mode.FULL_INT8 not in self.modes:
            raise UsageError("--qat makes a full-int8 model (int8-qat); it needs --full-int8")

    @property
    def needs_calibration(self) -> bool:
        return Mode.FULL_INT8 in self.modes

    @property
    def inputs(self) -> InputConfig:
        """The model and data this run reads, and what it needs of them."""
        fine_tuning = "pruning" if self.prune else "clustering" if self.cluster else None
        fine_tuning = fine_tuning or ("quantization-aware training" if self.qat else None)
        return InputConfig(
            **{name: getattr(self, name) for name in INPUT_FIELDS},
            needs_calibration=self.needs_calibration,
            fine_tuning=fine_tuning,
        )

    def with_inputs(self, inputs: InputConfig) -> ConvertConfig:
        """This run reading ``inputs`` (the defaults filled in)."""
        return replace(self, **{name: getattr(inputs, name) for name in INPUT_FIELDS})

    @property
    def integer_io(self) -> bool:
        """Full-int8 with integer input: an app quantizes (or copies) what it feeds the model."""
        return Mode.FULL_INT8 in self.modes and self.io_type is not IoType.FLOAT32

    def io_type_for(self, channels: int) -> IoType:
        """The full-int8 models' input and output type: as asked, else uint8 for an RGB model, whose camera bytes
        MediaPipe Tasks and the LiteRT Support Library feed as they are (they refuse int8 input), else int8."""
        if self.io_type is not None:
            return self.io_type
        return IoType.UINT8 if Mode.FULL_INT8 in self.modes and channels == 3 else IoType.INT8

    @property
    def tuned(self) -> bool:
        """Pruned and/or clustered before conversion."""
        return self.prune is not None or self.cluster is not None

    @property
    def fine_tunes(self) -> bool:
        """Pruning, clustering or quantization-aware training: fine-tuning on labelled training data."""
        return self.tuned or self.qat is not None

    @property
    def pruned_modes(self) -> tuple[Mode, ...]:
        """Modes converted from the pruned (or clustered) model: all but the float32 reference, unless it is the
        only one."""
        if not self.tuned:
            return ()
        return tuple(m for m in self.modes if m is not Mode.FLOAT32) or (Mode.FLOAT32,)
