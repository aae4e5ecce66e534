"""How pixels become model input: the one formula the benchmark and every app apply."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tflite_opt.core.errors import UsageError


def _as_floats(values: float | Sequence[float], name: str) -> tuple[float, ...]:
    floats = (float(values),) if isinstance(values, (int, float)) else tuple(float(v) for v in values)
    if not floats:
        raise UsageError(f"{name} needs at least one value")
    if not all(math.isfinite(v) for v in floats):
        raise UsageError(f"{name} must be finite numbers, got {floats}")
    return floats


@dataclass(frozen=True)
class Preprocessing:
    """How raw pixels (0..255) become model input: ``x = pixel * scale + offset``.

    scale and offset hold one value, or one per channel. The app must apply the
    same formula, so the spec is written next to every artifact.
    """

    scale: tuple[float, ...] = (1.0 / 255.0,)
    offset: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _as_floats(self.scale, "input scale"))
        object.__setattr__(self, "offset", _as_floats(self.offset, "input offset"))
        if any(s == 0.0 for s in self.scale):
            raise UsageError("input scale must not be 0 (std must not be infinite)")
        if len(self.scale) != len(self.offset) and 1 not in (len(self.scale), len(self.offset)):
            raise UsageError(
                f"input scale has {len(self.scale)} values and offset {len(self.offset)}; "
                "give one value or one per channel for each"
            )

    @classmethod
    def from_mean_std(cls, mean: float | Sequence[float], std: float | Sequence[float]) -> Preprocessing:
        """The spec for ``x = (pixel - mean) / std``."""
        means = _as_floats(mean, "mean")
        stds = _as_floats(std, "std")
        if any(s <= 0.0 for s in stds):
            raise UsageError(f"std must be positive, got {stds}")
        if len(means) != len(stds) and 1 not in (len(means), len(stds)):
            raise UsageError(f"mean has {len(means)} values and std {len(stds)}; they must match")
        count = max(len(means), len(stds))
        means = means * count if len(means) == 1 else means
        stds = stds * count if len(stds) == 1 else stds
        return cls(scale=tuple(1.0 / s for s in stds), offset=tuple(-m / s for m, s in zip(means, stds, strict=True)))

    def channel_count_fits(self, channels: int) -> bool:
        """True when every per-channel list has 1 or ``channels`` values."""
        return all(len(v) in (1, channels) for v in (self.scale, self.offset))

    def expected_range(self) -> tuple[float, float]:
        """The range of model input values that pixels 0..255 map to."""
        scales, offsets = self.per_channel()
        ends = [255.0 * s + o for s, o in zip(scales, offsets, strict=True)]
        return min([*offsets, *ends]), max([*offsets, *ends])

    def describe(self) -> str:
        """The formula in words an app developer recognizes: ``x = (pixel - 127.5) / 127.5``."""
        scales, offsets = self.per_channel()
        means = ", ".join(f"{-o / s + 0.0:g}" for s, o in zip(scales, offsets, strict=True))  # + 0.0: no "-0"
        stds = ", ".join(f"{1 / s:g}" for s in scales)
        if len(scales) > 1:
            return f"x = (pixel - [{means}]) / [{stds}] per channel"
        return f"x = (pixel - {means}) / {stds}"

    def per_channel(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(scale, offset) with the same number of values each: a single value repeated where the other has more."""
        count = max(len(self.scale), len(self.offset))

        def broadcast(values: tuple[float, ...]) -> tuple[float, ...]:
            return values * count if len(values) == 1 else values

        return broadcast(self.scale), broadcast(self.offset)

    def to_dict(self) -> dict[str, Any]:
        return {
            "formula": "x = pixel * scale + offset, pixel in 0..255",
            "scale": list(self.scale),
            "offset": list(self.offset),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(scale=tuple(data["scale"]), offset=tuple(data["offset"]))


# Model input that is the pixels themselves (x = pixel): a model that normalizes inside takes it.
PIXELS = Preprocessing(scale=(1.0,), offset=(0.0,))


def app_input(pixel_input: bool, preprocessing: Preprocessing | None) -> Preprocessing:
    """What an app computes from pixels before quantizing: nothing for a model that normalizes inside."""
    return PIXELS if pixel_input or preprocessing is None else preprocessing
