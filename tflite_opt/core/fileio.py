"""Atomic file output: a file is either absent or complete, never half-written."""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tflite_opt.core.errors import OutputExistsError, UsageError


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


@contextlib.contextmanager
def staging_folder(destination: Path, prefix: str) -> Iterator[Path]:
    """A temporary folder inside ``destination`` (created if missing), removed at the end; on failure, the folders
    this created are removed too, so a failed transaction leaves nothing new behind.

    Raises:
        UsageError: ``destination`` is a file.
    """
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"{destination} is a file; it must be a folder")
    missing = [folder for folder in (destination, *destination.parents) if not folder.exists()]
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=destination))
    succeeded = False
    try:
        yield staging
        succeeded = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in [] if succeeded else missing:
            with contextlib.suppress(OSError):
                folder.rmdir()


def identical_or_refused(final: Path, staged: Path, overwrite: bool) -> bool:
    """Whether ``final`` already holds ``staged``'s bytes (nothing to move); where it differs, OutputExistsError
    unless ``overwrite``."""
    if not final.exists() and not final.is_symlink():
        return False
    if final.is_dir():
        raise OutputExistsError(f"{final} is a folder; move it away to write {final.name}")
    if final.is_file() and filecmp.cmp(final, staged, shallow=False):
        return True
    if not overwrite:
        raise OutputExistsError(f"{final} exists and differs from the pulled file; pass --overwrite to replace it")
    return False


def replace_all(moves: list[tuple[Path, Path]], staging: Path) -> None:
    """Rename each staged file over its destination; if one rename fails, undo those before it (a replaced file is
    kept as a hard link, or a copy, in ``staging`` until all are done)."""
    saved_folder = Path(tempfile.mkdtemp(prefix=".replaced.", dir=staging))
    undo: list[tuple[Path, Path | None]] = []
    try:
        for staged, final in moves:
            saved = None
            if final.exists():
                saved = saved_folder / final.name
                try:
                    os.link(final, saved)
                except OSError:  # a file system without hard links
                    shutil.copy2(final, saved)
            undo.append((final, saved))
            os.replace(staged, final)
    except BaseException:
        for final, saved in reversed(undo):
            if saved is None:
                final.unlink(missing_ok=True)
            else:
                os.replace(saved, final)
        raise
