"""A converted file and the checks run on it."""

from __future__ import annotations

from dataclasses import dataclass

from tflite_opt.core.errors import VerificationError
from tflite_opt.core.tflite_file import TfliteFile


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.passed else '✗'} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Verification:
    """Every check run on one variant; ``raise_for_failures`` turns ✗ into an error."""

    variant: str
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def raise_for_failures(self) -> None:
        failures = [c for c in self.checks if not c.passed]
        if failures:
            raise VerificationError(
                f"the {self.variant} model failed verification: " + "; ".join(f"{c.name}: {c.detail}" for c in failures)
            )

    def with_check(self, check: Check) -> Verification:
        """These checks and one more."""
        return Verification(self.variant, (*self.checks, check))


@dataclass(frozen=True)
class Verified:
    """A converted file, parsed, and the checks run on it.

    ``pixel_input``: the model normalizes inside and takes camera pixels as they are (its input scale is 1).
    """

    content: bytes
    parsed: TfliteFile
    verification: Verification
    pixel_input: bool = False
