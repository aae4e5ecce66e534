"""Atomic file output: a file is either absent or complete, never half-written."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tflite_opt.core.errors import OutputExistsError


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """Raise OutputExistsError naming the first existing path, unless overwrite.

    Checked before any work starts, so a run that would collide fails at once.
    """
    if overwrite:
        return
    for path in paths:
        if path.exists():
            raise OutputExistsError(f"{path} exists; pass --overwrite to replace it")


def _current_umask() -> int:
    # mkstemp creates files readable by the owner only; artifacts are meant to be shared.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = False) -> Path:
    """Write data to path through a temporary file in the same folder and a rename.

    An exception or KeyboardInterrupt at any point removes the temporary file, so
    the destination keeps its old content or does not exist.
    """
    path = Path(path)
    refuse_existing([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, payload: Any, overwrite: bool = False) -> Path:
    """Write payload as indented JSON, atomically."""
    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def atomic_save(path: Path, save: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Let ``save`` write to a temporary path beside ``path`` (same suffix), then rename it into place."""
    path = Path(path)
    refuse_existing([path], overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        save(tmp)
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
