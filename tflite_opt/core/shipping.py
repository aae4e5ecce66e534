"""What the shipped files say of themselves and how apps meet them: the model card written into the TFLite
Metadata, the names of the generated code, and how a picture becomes the model's input size."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tflite_opt.core.errors import UsageError


class Resize(str, enum.Enum):
    """How a picture of another shape becomes the model's height x width (``--resize``); the benchmark, the
    manifest, the reference runner and the generated code all apply it.

    STRETCH: the whole picture, scaled to the model's size whatever its aspect ratio (what Keras's
    ``image_dataset_from_directory`` does by default, ``crop_to_aspect_ratio=False``). CENTER_CROP: the largest
    centred box of the model's aspect ratio, then scaled (``crop_to_aspect_ratio=True``), so nothing is squashed.
    """

    STRETCH = "stretch"
    CENTER_CROP = "center-crop"

    def __str__(self) -> str:
        return self.value


def center_box(width: int, height: int, target_width: int, target_height: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the largest centred box of ``width`` x ``height`` with the aspect ratio of
    ``target_width`` x ``target_height``, in whole pixels: the integer rule the reference runner and the generated
    Kotlin and Swift repeat."""
    crop_width = min(width, (height * target_width) // target_height)
    crop_height = min(height, (width * target_height) // target_width)
    return (width - crop_width) // 2, (height - crop_height) // 2, crop_width, crop_height


@dataclass(frozen=True)
class ModelCard:
    """What the user says of the model, written into every file's TFLite Metadata (``--model-description``,
    ``--author``, ``--license``). Blank means not given: the description is then generated from the variant, and no
    author or licence is written, since nobody claimed one ("unknown" would read as a claim)."""

    description: str | None = None
    author: str | None = None
    license: str | None = None

    def __post_init__(self) -> None:
        for name in ("description", "author", "license"):
            object.__setattr__(self, name, (getattr(self, name) or "").strip() or None)

    def to_dict(self) -> dict[str, str | None]:
        return {"description": self.description, "author": self.author, "license": self.license}


_KOTLIN_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_IDENTIFIER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)?")


@dataclass(frozen=True)
class AppCode:
    """Where the generated Kotlin lives and what its types begin with (``--kotlin-package``, ``--class-prefix``)."""

    kotlin_package: str = "tflite_opt.generated"
    class_prefix: str = ""

    def __post_init__(self) -> None:
        if not _KOTLIN_PACKAGE.fullmatch(self.kotlin_package):
            raise UsageError(
                f"--kotlin-package must be dotted identifiers such as com.example.vision, got {self.kotlin_package!r}"
            )
        if not _IDENTIFIER.fullmatch(self.class_prefix):
            raise UsageError(
                f"--class-prefix must be letters, digits and _, not starting with a digit, got {self.class_prefix!r}"
            )
