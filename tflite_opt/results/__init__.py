"""Every result type the stages share, and the enums that name their kinds: the project's ``qtyping``.

Stages make these and read each other's through here, never through the stage that made them; the package
imports nothing of tflite_opt but :mod:`tflite_opt.core`.
"""

from __future__ import annotations

import enum


class NamedEnum(str, enum.Enum):
    """An enum whose members read as their values, in text and in JSON: ``f"{SearchPhase.INT8}"`` is ``int8``."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)
