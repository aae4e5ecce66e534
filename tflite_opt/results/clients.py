"""Which app runtimes take a converted file as it is: one line and one manifest entry per client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tflite_opt.results import NamedEnum


class ClientKind(NamedEnum):
    """An app runtime that runs image classifiers; its value is the manifest's key."""

    INTERPRETER = "interpreter"
    LITERT_SUPPORT_LIBRARY = "litert_support_library"
    MEDIAPIPE_TASKS = "mediapipe_tasks"

    @property
    def title(self) -> str:
        return _TITLES[self]


_TITLES = {
    ClientKind.INTERPRETER: "LiteRT Interpreter / TensorFlowLiteSwift",
    ClientKind.LITERT_SUPPORT_LIBRARY: "LiteRT Support Library",
    ClientKind.MEDIAPIPE_TASKS: "MediaPipe Tasks ImageClassifier",
}


@dataclass(frozen=True)
class Client:
    """Whether a client takes the file as it is and feeds it what the file expects, so that it predicts what the
    benchmark measured; ``why`` says how it feeds the file, or what it refuses."""

    kind: ClientKind
    runs: bool
    why: str

    def line(self) -> str:
        return f"{'✓' if self.runs else '✗'} {self.kind.title}: {self.why}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.kind.title, "runs": self.runs, "why": self.why}
