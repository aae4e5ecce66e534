"""A versioned artifact repository of plain files: <repo>/<model>/<version>/... and index.json.

Any static file server or bucket can host it. Publishing never overwrites a
version; pulling checks every file's sha256 before anything is written.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from tflite_opt.core.errors import DataError, OutputExistsError, UsageError
from tflite_opt.core.fileio import atomic_write_bytes, atomic_write_json
from tflite_opt.stages.package import BundlePaths, read_manifest, sha256_of

INDEX_SCHEMA_VERSION = 1
MAX_DOWNLOAD_BYTES = 2 * 1024**3


class IntegrityError(DataError):
    """A fetched file does not match the sha256 its manifest records."""


@dataclass(frozen=True)
class Published:
    model: str
    version: str
    folder: Path
    variants: tuple[str, ...]


def _bundles(source: Path) -> dict[str, list[dict[str, Any]]]:
    """Manifests in a convert output folder, by model, each checked against its .tflite file."""
    manifests: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(source).glob("*.manifest.json")):
        manifest = read_manifest(path)
        model_file = Path(source) / manifest["file"]["name"]
        if not model_file.is_file() or sha256_of(model_file.read_bytes()) != manifest["file"]["sha256"]:
            raise DataError(f"{model_file} is missing or does not match {path.name}; convert again before publishing")
        manifests.setdefault(manifest["model"], []).append(manifest)
    if not manifests:
        raise DataError(f"{source} holds no bundles (*.manifest.json); run python -m tflite_opt.convert first")
    return manifests


def _check_version(version: str) -> str:
    if not version or "/" in version or version.startswith(".") or version != version.strip():
        raise UsageError(f"a version must be a plain name such as 1 or 2.0.1, got {version!r}")
    return version


def publish(source: Path, repository: Path, version: str | None = None) -> list[Published]:
    """Copy every bundle of ``source`` into ``repository`` and record it in index.json.

    A version folder appears whole (built aside, then renamed into place); an
    existing version is never overwritten; index.json is replaced atomically
    under a lock, so concurrent publishers do not lose each other's entries.

    Raises:
        OutputExistsError: the version is already published.
        DataError: no bundles, or a bundle whose .tflite does not match its manifest.
    """
    repository = Path(repository)
    repository.mkdir(parents=True, exist_ok=True)
    done = []
    with open(repository / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = _read_local_index(repository)
        for model, manifests in _bundles(source).items():
            chosen = _check_version(version or manifests[0]["version"])
            target = repository / model / chosen
            if target.exists():
                raise OutputExistsError(
                    f"{model} version {chosen} is already published in {repository}; publish a new version"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{chosen}.", dir=target.parent))
            try:
                entry = {}
                for manifest in manifests:
                    files = BundlePaths.beside(Path(source) / manifest["file"]["name"])
                    for path in (files.model, *files.extras()):
                        if path.exists():
                            shutil.copy2(path, staging / path.name)
                    entry[manifest["variant"]] = {
                        "file": f"{model}/{chosen}/{files.model.name}",
                        "sha256": manifest["file"]["sha256"],
                        "size_bytes": manifest["file"]["size_bytes"],
                        "manifest": f"{model}/{chosen}/{files.manifest.name}",
                        "labels": f"{model}/{chosen}/{files.labels.name}",
                    }
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            record = index["models"].setdefault(model, {"versions": {}})
            record["versions"][chosen] = {
                "published": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
                "variants": entry,
            }
            record["latest"] = chosen
            done.append(Published(model, chosen, target, tuple(entry)))
            atomic_write_json(repository / "index.json", index, overwrite=True)
    return done


def _read_local_index(repository: Path) -> dict[str, Any]:
    path = repository / "index.json"
    if not path.exists():
        return {"schema_version": INDEX_SCHEMA_VERSION, "models": {}}
    return json.loads(path.read_text())


class _Source:
    """Reads repository files from a folder or over http(s), by repository-relative path."""

    def __init__(self, location: str):
        self.location = location
        self.is_url = urllib.parse.urlparse(location).scheme in ("http", "https")

    def read(self, relative: str) -> bytes:
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts:
            raise DataError(f"the repository index points outside the repository: {relative!r}")
        if not self.is_url:
            path = Path(self.location, *parts)
            try:
                return path.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
        url = self.location.rstrip("/") + "/" + "/".join(urllib.parse.quote(p) for p in parts)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                content = response.read(MAX_DOWNLOAD_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DataError(f"cannot fetch {url}: {getattr(exc, 'reason', exc)}") from exc
        if len(content) > MAX_DOWNLOAD_BYTES:
            raise DataError(f"{url} is larger than {MAX_DOWNLOAD_BYTES} bytes")
        return content


def pull(location: str, model: str, variant: str, destination: Path, version: str | None = None) -> list[Path]:
    """Fetch a variant's .tflite, manifest and labels, verify them, then write them to ``destination``.

    Everything is fetched and checked in memory first: on a mismatch nothing is
    written, and files already in ``destination`` stay as they were.

    Raises:
        IntegrityError: the .tflite's sha256 differs from the manifest's or the index's.
        DataError: unknown model, version or variant, or an unreachable repository.
    """
    source = _Source(location)
    index = json.loads(source.read("index.json"))
    models = index.get("models", {})
    if model not in models:
        raise DataError(f"{location} has no model {model!r}; it has {', '.join(sorted(models)) or 'none'}")
    chosen = version or models[model]["latest"]
    versions = models[model]["versions"]
    if chosen not in versions:
        raise DataError(f"{model} has no version {chosen!r}; published: {', '.join(versions)}")
    variants = versions[chosen]["variants"]
    if variant not in variants:
        raise DataError(f"{model} {chosen} has no variant {variant!r}; it has {', '.join(variants)}")
    entry = variants[variant]
    manifest_bytes = source.read(entry["manifest"])
    manifest = json.loads(manifest_bytes)
    content = source.read(entry["file"])
    digest = sha256_of(content)
    if digest != manifest["file"]["sha256"] or digest != entry["sha256"]:
        raise IntegrityError(
            f"{entry['file']} has sha256 {digest}, but its manifest says {manifest['file']['sha256']}: "
            "the file was altered or damaged; nothing was written"
        )
    labels = source.read(entry["labels"])
    destination = Path(destination)
    written = []
    for name, data in (
        (PurePosixPath(entry["file"]).name, content),
        (PurePosixPath(entry["manifest"]).name, manifest_bytes),
        (PurePosixPath(entry["labels"]).name, labels),
    ):
        written.append(atomic_write_bytes(destination / name, data, overwrite=True))
    return written
