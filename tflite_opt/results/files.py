"""A converted file, the checks run on it, and the files of its bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def labels_file_name(model: str) -> str:
    """The labels file of a model's bundle, and its name inside each of the model's files."""
    return f"{model}.labels.txt"


@dataclass(frozen=True)
class BundlePaths:
    """The files of one variant's bundle (labels are shared by a model's variants)."""

    model: Path
    manifest: Path
    labels: Path
    kotlin: Path
    swift: Path
    golden: Path

    @classmethod
    def beside(cls, tflite: Path) -> BundlePaths:
        stem = tflite.name[: -len(".tflite")]
        model_name = stem.split(".")[0]
        return cls(
            model=tflite,
            manifest=tflite.with_name(f"{stem}.manifest.json"),
            labels=tflite.with_name(labels_file_name(model_name)),
            kotlin=tflite.with_name(f"{stem}.kt"),
            swift=tflite.with_name(f"{stem}.swift"),
            golden=tflite.with_name(f"{stem}.golden.json"),
        )

    def extras(self) -> list[Path]:
        return [self.manifest, self.labels, self.kotlin, self.swift, self.golden]
