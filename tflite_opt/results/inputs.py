"""How the inputs were read: the class folders' mapping to class indices, and whether int8 models take pixels."""

from __future__ import annotations

from dataclasses import dataclass

from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.results import NamedEnum


class MappingKind(NamedEnum):
    """How class folders became class indices (ClassMapping.how)."""

    BY_LABELS = "labels"
    BY_NUMBER = "numbers"
    BY_SORTED_NAME = "sorted names"


@dataclass(frozen=True)
class ClassMapping:
    """How the class folders of a data set became the model's class indices.

    Attributes:
        how: ``labels`` (each folder looked up in the model's class names), ``numbers`` (folders named
            0, 1, ... are their own index) or ``sorted names`` (the n-th folder in sorted order is class n:
            a guess, right only if the model was trained that way).
        names: the class name of each index that the folders cover.
        folders: how many class folders there were.
    """

    how: MappingKind
    names: tuple[str, ...]
    folders: int

    @property
    def guessed(self) -> bool:
        """True when the order is an assumption (sorted folder names) rather than given."""
        return self.how is MappingKind.BY_SORTED_NAME

    def describe(self) -> str:
        """One line for the report."""
        if self.how is MappingKind.BY_LABELS:
            return f"{self.folders} class folders, each looked up by name in --labels"
        if self.how is MappingKind.BY_NUMBER:
            return f"{self.folders} class folders named by class index"
        order = ", ".join(f"{name} = {i}" for i, name in enumerate(self.names[:3]))
        return f"{self.folders} class folders numbered in sorted order ({order}{', ...' if self.folders > 3 else ''})"

    def to_dict(self) -> dict:
        return {"how": self.how.value, "folders": self.folders, "names": list(self.names)}


@dataclass(frozen=True)
class PixelInputChoice:
    """Whether the full-int8 models take camera pixels as they are, and why.

    Attributes:
        chosen: they do.
        ties: how many (channel, pixel value) pairs quantizing the normalized input would put on a rounding tie.
        asked: what --raw-pixel-input said (None: nothing, the choice followed the ties).
        preprocessing: the normalization (inside the model when chosen).
        channels: the input's channels.
        uint8_input: the models take uint8, which apps and MediaPipe Tasks fill with camera bytes as they are.
        compared: where the ties alone chose, the plain int8 file's held-out score taking pixels and taking the
            normalized input, measured side by side (the better ships; pixels on a tie).
    """

    chosen: bool
    ties: int
    asked: bool | None
    preprocessing: Preprocessing
    channels: int
    uint8_input: bool = False
    compared: tuple[float, float] | None = None
    # Held-out images the compared scores were counted on.
    compared_on: int = 0

    def to_dict(self) -> dict:
        return {
            "chosen": self.chosen,
            "rounding_ties": self.ties,
            "of_pixel_values": 256 * self.channels,
            "asked": self.asked,
            "uint8_input": self.uint8_input,
            "measured": (
                {"pixels": self.compared[0], "normalized": self.compared[1], "images": self.compared_on}
                if self.compared
                else None
            ),
        }
