"""Every finished search candidate kept on disk as it arrives, so that an interrupted search (killed, Ctrl-C, a lost
Ray driver) resumes with ``--resume`` and builds nothing twice.

``<output>/search/`` holds ``run.json`` (what the candidates were built from: a digest of the model, the data and
the settings) and, per candidate, ``<variant>.from-<parent>.json`` (its figures, recipe, verification and what
fine-tuning did), its ``.tflite`` and its pruned and clustered Keras models (``.keras``, loaded back with
``safe_mode``). The JSON is written last: a candidate without it was not finished. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt.core.config import within_budget
from tflite_opt.core.errors import OutputExistsError, UsageError
from tflite_opt.core.fileio import atomic_save, atomic_write_bytes, atomic_write_json
from tflite_opt.core.records import from_record, to_record
from tflite_opt.core.tflite_file import read_tflite
from tflite_opt.results.files import Verification, Verified
from tflite_opt.results.measures import AccuracyStats, Scored, SizeStats
from tflite_opt.results.search import Candidate
from tflite_opt.results.tuning import (
    NOT_TUNED,
    ClusterResult,
    ClusterStats,
    FineTuned,
    PruneResult,
    PruneStats,
    QatResult,
    QatStats,
)
from tflite_opt.stages.load import load_keras_model

log = logging.getLogger(__name__)

SEARCH_FOLDER = "search"
RUN_FILE = "run.json"
# What a record holds beyond the candidate's own fields; bumped when that changes, so an old folder is refused.
FORMAT = 1


@dataclass(frozen=True)
class CandidateStore:
    """The finished candidates of one search, in ``folder``; ``budget`` judges them (it may differ from the run
    that built them: a candidate's figures do not depend on it)."""

    folder: Path
    budget: float

    @classmethod
    def open(cls, output_dir: Path, digest: str, budget: float, resume: bool, overwrite: bool) -> CandidateStore:
        """The store of a search into ``output_dir``: the one an earlier run of the same search left, with
        ``resume``; a new one otherwise.

        Raises:
            UsageError: ``resume`` where the folder holds another search's candidates.
            OutputExistsError: candidates of an earlier run, without ``resume`` or ``overwrite``.
        """
        folder = Path(output_dir) / SEARCH_FOLDER
        run = folder / RUN_FILE
        refuse_earlier_search(output_dir, resume, overwrite)
        if run.exists() and resume:
            kept = json.loads(run.read_text())
            if kept != {"format": FORMAT, "digest": digest}:
                raise UsageError(
                    f"--resume: {folder} holds the candidates of another search (the model, the data or the settings "
                    "differ); run without --resume and with --overwrite to start again"
                )
            return cls(folder, budget)
        if folder.exists():
            shutil.rmtree(folder)
        elif resume:
            log.info("--resume: %s holds no earlier search; starting one", folder)
        atomic_write_json(run, {"format": FORMAT, "digest": digest})
        return cls(folder, budget)

    def _files(self, variant: str, parent: str | None) -> _CandidateFiles:
        return _CandidateFiles(self.folder / f"{variant}.from-{parent or 'float'}")

    def has(self, variant: str, parent: str | None) -> bool:
        """Whether an earlier run finished the candidate ``variant`` built from ``parent`` (nothing loaded)."""
        return self._files(variant, parent).record.exists()

    def get(self, variant: str, parent: str | None) -> Candidate | None:
        """The candidate ``variant`` built from ``parent``, where an earlier run finished it, marked ``resumed``."""
        if not self.has(variant, parent):
            return None
        files = self._files(variant, parent)
        record = json.loads(files.record.read_text())
        found = from_record(Candidate, record["candidate"])
        scored = None
        if record["scored"] is not None:
            content = files.tflite.read_bytes()
            file = Verified(
                content,
                read_tflite(content, source=str(files.tflite)),
                from_record(Verification, record["scored"]["verification"]),
                record["scored"]["pixel_input"],
            )
            accuracy = from_record(AccuracyStats | None, record["scored"]["accuracy"])
            scored = Scored(file, from_record(SizeStats, record["scored"]["size"]), accuracy)
        within = found.failure is None and within_budget(found.drop, self.budget)
        return replace(found, scored=scored, tuned=_tuned(files, record["tuned"]), within_budget=within, resumed=True)

    def put(self, found: Candidate) -> None:
        """Keep ``found``: its file and models first, its record last."""
        files = self._files(found.variant, found.parent)
        scored = None
        if found.scored is not None:
            atomic_write_bytes(files.tflite, found.scored.file.content, overwrite=True)
            scored = {
                "verification": to_record(found.scored.file.verification),
                "pixel_input": found.scored.file.pixel_input,
                "size": to_record(found.scored.size),
                "accuracy": to_record(found.scored.accuracy),
            }
        tuned = {}
        for step, result in (
            ("pruned", found.tuned.pruned),
            ("clustered", found.tuned.clustered),
            ("qat", found.tuned.qat),
        ):
            if result is None:
                continue
            if step != "qat" and result.model is not None:
                atomic_save(files.model(step), result.model.save, overwrite=True)
            tuned[step] = to_record(result.stats)
        bare = replace(found, scored=None, measured=None, tuned=NOT_TUNED)  # kept in files and fields of their own
        record = {"candidate": to_record(bare), "scored": scored, "tuned": tuned}
        atomic_write_json(files.record, record, overwrite=True)


def _tuned(files: _CandidateFiles, tuned: dict[str, Any]) -> FineTuned:
    """What fine-tuning made, its models loaded back (safe mode); the quantization-aware model is not kept (the file
    converted from it is)."""

    def model(step: str) -> Any:
        path = files.model(step)
        return load_keras_model(path) if path.exists() else None

    return FineTuned(
        pruned=PruneResult(model("pruned"), from_record(PruneStats, tuned["pruned"])) if "pruned" in tuned else None,
        clustered=(
            ClusterResult(model("clustered"), from_record(ClusterStats, tuned["clustered"]))
            if "clustered" in tuned
            else None
        ),
        qat=QatResult(None, from_record(QatStats, tuned["qat"])) if "qat" in tuned else None,
    )


@dataclass(frozen=True)
class _CandidateFiles:
    """One kept candidate's files, named ``<variant>.from-<parent>`` and a suffix."""

    stem: Path

    @property
    def record(self) -> Path:
        return Path(f"{self.stem}.json")

    @property
    def tflite(self) -> Path:
        return Path(f"{self.stem}.tflite")

    def model(self, step: str) -> Path:
        return Path(f"{self.stem}.{step}.keras")


def refuse_earlier_search(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """Checked before any work: an earlier search's candidates are continued (``resume``) or replaced
    (``overwrite``), never silently mixed with a new search's.

    Raises:
        OutputExistsError: candidates of an earlier run, without ``resume`` or ``overwrite``.
    """
    folder = Path(output_dir) / SEARCH_FOLDER
    if not resume and not overwrite and folder.is_dir() and any(folder.iterdir()):
        raise OutputExistsError(
            f"{folder} holds the candidates of an earlier search; pass --resume to continue it or --overwrite to "
            "start again"
        )


def resumable_search(output_dir: Path, resume: bool) -> bool:
    """``resume`` where ``output_dir`` holds an earlier search to resume."""
    return resume and (Path(output_dir) / SEARCH_FOLDER / RUN_FILE).exists()


def search_digest(model: Any, arrays: list[np.ndarray | None], settings: list[Any]) -> str:
    """What a search's candidates depend on, as one digest: the model's weights, the data, the settings."""
    digest = hashlib.sha256()
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    for array in arrays:
        digest.update(b"-" if array is None else np.ascontiguousarray(array).tobytes())
    digest.update(repr(settings).encode())
    return digest.hexdigest()
