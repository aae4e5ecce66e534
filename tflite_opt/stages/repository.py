"""A versioned artifact repository of plain files: <repo>/<model>/<version>/... and index.json.

Any static file server or bucket can host it. Publishing never overwrites a
version and records every file's sha256 in index.json; pulling checks every
file against it before anything is moved into place.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

from tflite_opt.core.errors import DataError, OutputExistsError, UsageError
from tflite_opt.core.fileio import atomic_write_json, identical_or_refused, replace_all, staging_folder
from tflite_opt.results.files import BundlePaths
from tflite_opt.stages.package import sha256_of

INDEX_SCHEMA_VERSION = 1
MAX_DOWNLOAD_BYTES = 2 * 1024**3
CHUNK_BYTES = 1024**2

# The files of a variant in an index entry, in the order pull writes them: the role (a BundlePaths field) → the keys
# of its repository path and its sha256. The first two pairs and "labels" are what older indexes hold; an entry
# with "manifest_sha256" was published since every file's sha256 is recorded.
INDEX_KEYS = {
    "model": ("file", "sha256"),
    "manifest": ("manifest", "manifest_sha256"),
    "labels": ("labels", "labels_sha256"),
    "kotlin": ("kotlin", "kotlin_sha256"),
    "swift": ("swift", "swift_sha256"),
    "golden": ("golden", "golden_sha256"),
}
_REQUIRED = ("model", "manifest")
_HELPERS = ("kotlin", "swift")
UNVERIFIED_REASON = "index.json, written by an older tflite_opt, records no sha256 for it"


class IntegrityError(DataError):
    """A fetched file does not match the sha256 the index (or, for the model, its manifest) records."""


@dataclass(frozen=True)
class Published:
    model: str
    version: str
    folder: Path
    variants: tuple[str, ...]


@dataclass(frozen=True)
class Pulled:
    """A file of a pulled variant: where it is, whether its sha256 was checked, whether an identical copy was
    already there (and was kept)."""

    path: Path
    verified: bool
    unchanged: bool = False


_REPUBLISH = "restore it or publish again"


def _parse_json(data: bytes, where: str, remedy: str = _REPUBLISH) -> dict[str, Any]:
    """A JSON object, or a DataError naming ``where`` when the bytes are not one."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not text
        raise DataError(f"{where} is damaged: not valid JSON ({exc}); {remedy}") from exc
    return _mapping(parsed, where, "its content", remedy)


def _mapping(value: Any, where: str, what: str, remedy: str = _REPUBLISH) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"{where} is damaged: {what} is not a JSON object; {remedy}")
    return value


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- publish


def _read_manifest(path: Path) -> dict[str, Any]:
    manifest = _parse_json(path.read_bytes(), str(path), "convert again")
    file = manifest.get("file")
    if not all(isinstance(manifest.get(key), str) for key in ("model", "version", "variant")) or not (
        isinstance(file, dict) and all(key in file for key in ("name", "sha256", "size_bytes"))
    ):
        raise DataError(f"{path} is damaged: it lacks the model, version, variant or file fields; convert again")
    return manifest


def _bundles(source: Path) -> dict[str, list[dict[str, Any]]]:
    """Manifests in a convert output folder, by model, each checked against its .tflite file."""
    manifests: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(source).glob("*.manifest.json")):
        manifest = _read_manifest(path)
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


def _copy_bundle(files: BundlePaths, staging: Path, folder: str) -> dict[str, Any]:
    """Copy a variant's files into ``staging``; its index entry: each copied file's path (under ``folder``) and
    sha256, hashed from the copy, and the model's size."""
    entry: dict[str, Any] = {}
    for role, (path_key, hash_key) in INDEX_KEYS.items():
        path = getattr(files, role)
        if path.exists():
            copy = Path(shutil.copy2(path, staging / path.name))
            entry[path_key] = f"{folder}/{path.name}"
            entry[hash_key] = _sha256_file(copy)
            if role == "model":
                entry["size_bytes"] = copy.stat().st_size
    return entry


def publish(source: Path, repository: Path, version: str | None = None) -> list[Published]:
    """Copy every bundle of ``source`` into ``repository`` and record it in index.json.

    A version folder appears whole (built aside, then renamed into place); an
    existing version is never overwritten; index.json is replaced atomically
    under a lock, so concurrent publishers do not lose each other's entries.
    Each variant's entry holds the path and sha256 of every file copied: the
    model, manifest, labels and the Kotlin and Swift helpers.

    Raises:
        OutputExistsError: the version is already published.
        DataError: no bundles, a bundle whose .tflite does not match its manifest, a damaged manifest or index.json.
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
                    entry[manifest["variant"]] = _copy_bundle(files, staging, f"{model}/{chosen}")
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
    """The index to publish into; a damaged one is refused rather than replaced (that would lose its entries)."""
    path = repository / "index.json"
    if not path.exists():
        return {"schema_version": INDEX_SCHEMA_VERSION, "models": {}}
    remedy = "restore it from a backup before publishing (nothing was published)"
    index = _parse_json(path.read_bytes(), str(path), remedy)
    models = _mapping(index.get("models"), str(path), "models", remedy)
    for name, record in models.items():
        versions = _mapping(record, str(path), f"model {name!r}", remedy).get("versions")
        _mapping(versions, str(path), f"{name!r} versions", remedy)
    return index


# ---------------------------------------------------------------------------------------------- pull


class _Missing(DataError):
    """The repository has no such file."""


class _Source:
    """Reads repository files from a folder or over http(s), by repository-relative path."""

    def __init__(self, location: str):
        self.location = location
        self.is_url = urllib.parse.urlparse(location).scheme in ("http", "https")

    def describe(self, relative: str) -> str:
        """Where a repository file is: its path or its URL."""
        parts = PurePosixPath(relative).parts
        if not self.is_url:
            return str(Path(self.location, *parts))
        return self.location.rstrip("/") + "/" + "/".join(urllib.parse.quote(p) for p in parts)

    @contextlib.contextmanager
    def _open(self, relative: str) -> Iterator[IO[bytes]]:
        parts = PurePosixPath(relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts:
            raise DataError(f"the repository index points outside the repository: {relative!r}")
        where = self.describe(relative)
        try:
            stream = open(where, "rb") if not self.is_url else urllib.request.urlopen(where, timeout=30)
        except FileNotFoundError as exc:
            raise _Missing(f"{where} does not exist") from exc
        except urllib.error.HTTPError as exc:
            error = _Missing if exc.code == 404 else DataError
            raise error(f"{where}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DataError(f"cannot fetch {where}: {getattr(exc, 'reason', None) or exc}") from exc
        with stream:
            yield stream

    def chunks(self, relative: str) -> Iterator[bytes]:
        """A file's bytes, a chunk at a time; a read error or a file over MAX_DOWNLOAD_BYTES is a DataError."""
        size = 0
        with self._open(relative) as stream:
            while True:
                try:
                    chunk = stream.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise DataError(f"cannot read {self.describe(relative)}: {exc}") from exc
                if not chunk:
                    return
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DataError(f"{self.describe(relative)} is larger than {MAX_DOWNLOAD_BYTES} bytes")
                yield chunk

    def read(self, relative: str) -> bytes:
        return b"".join(self.chunks(relative))

    def fetch(self, relative: str, target: Path) -> str:
        """Copy a repository file to ``target``; the sha256 of what arrived."""
        digest = hashlib.sha256()
        with open(target, "wb") as out:
            for chunk in self.chunks(relative):
                digest.update(chunk)
                out.write(chunk)
        return digest.hexdigest()


def _find_entry(source: _Source, model: str, variant: str, version: str | None) -> dict[str, Any]:
    """The index entry of a variant; a DataError naming what is missing, or saying the index is damaged."""
    where = source.describe("index.json")
    try:
        index = _parse_json(source.read("index.json"), where)
    except _Missing as exc:
        raise DataError(f"{source.location} is not a model repository: {exc}") from exc
    models = _mapping(index.get("models"), where, "models")
    if model not in models:
        raise DataError(f"{source.location} has no model {model!r}; it has {', '.join(sorted(models)) or 'none'}")
    record = _mapping(models[model], where, f"model {model!r}")
    versions = _mapping(record.get("versions"), where, f"{model!r} versions")
    chosen = version or record.get("latest")
    if not isinstance(chosen, str):
        raise DataError(f"{where} is damaged: {model!r} has no latest version; name the version to pull")
    if chosen not in versions:
        raise DataError(f"{model} has no version {chosen!r}; published: {', '.join(versions)}")
    variants = _mapping(_mapping(versions[chosen], where, f"{model} {chosen}").get("variants"), where, "variants")
    if variant not in variants:
        raise DataError(f"{model} {chosen} has no variant {variant!r}; it has {', '.join(variants)}")
    return _mapping(variants[variant], where, f"{model} {chosen} {variant}")


@dataclass(frozen=True)
class _Wanted:
    """A file to pull: its role, repository path and the sha256 the index records (None: not recorded)."""

    role: str
    relative: str
    sha256: str | None
    optional: bool = False  # guessed beside the model for an older index: fetched where present

    @property
    def name(self) -> str:
        return PurePosixPath(self.relative).name


def _index_field(entry: dict[str, Any], key: str, where: str, sha256: bool) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    usable = isinstance(value, str) and (
        len(value) == 64 and all(c in "0123456789abcdef" for c in value)
        if sha256
        else PurePosixPath(value).name not in ("", ".", "..")
    )
    if not usable:
        raise DataError(f"{where} is damaged: {key} is not a {'sha256' if sha256 else 'file path'}; {_REPUBLISH}")
    return value


def _wanted_files(entry: dict[str, Any], where: str) -> list[_Wanted]:
    """The files an index entry lists, in the order they are written, each with its recorded sha256; for an entry
    of an older index, which lists no helpers, the Kotlin and Swift files publish copied beside the model."""
    every_file_hashed = "manifest_sha256" in entry
    wanted = []
    for role, (path_key, hash_key) in INDEX_KEYS.items():
        relative = _index_field(entry, path_key, where, sha256=False)
        recorded = _index_field(entry, hash_key, where, sha256=True)
        if relative is not None:
            wanted.append(_Wanted(role, relative, recorded))
        elif role in _REQUIRED:
            raise DataError(f"{where} is damaged: the entry has no {path_key!r}; {_REPUBLISH}")
        elif role in _HELPERS and not every_file_hashed:
            guessed = getattr(BundlePaths.beside(PurePosixPath(wanted[0].relative)), role)
            wanted.append(_Wanted(role, str(guessed), None, optional=True))
    if wanted[0].sha256 is None:
        raise DataError(f"{where} is damaged: the entry has no 'sha256' for its model; {_REPUBLISH}")
    if len({item.name for item in wanted}) != len(wanted):
        raise DataError(f"{where} is damaged: two files of the entry share a name; {_REPUBLISH}")
    return wanted


@dataclass(frozen=True)
class _Fetched:
    wanted: _Wanted
    staged: Path
    sha256: str


def _mismatch(relative: str, actual: str, authority: str, expected: str) -> IntegrityError:
    return IntegrityError(
        f"{relative} has sha256 {actual}, but {authority} says {expected}: "
        "one of them was altered or damaged; nothing was written"
    )


def _fetch_verified(source: _Source, wanted: list[_Wanted], staging: Path) -> list[_Fetched]:
    """Download each file into ``staging`` and check it against the index; the model also against its manifest."""
    fetched = []
    for item in wanted:
        staged = staging / item.name
        try:
            digest = source.fetch(item.relative, staged)
        except _Missing:
            if item.optional:
                continue
            raise
        if item.sha256 is not None and digest != item.sha256:
            raise _mismatch(item.relative, digest, "index.json", item.sha256)
        fetched.append(_Fetched(item, staged, digest))
    by_role = {item.wanted.role: item for item in fetched}
    model, manifest_file = by_role["model"], by_role["manifest"]
    manifest = _parse_json(manifest_file.staged.read_bytes(), source.describe(manifest_file.wanted.relative))
    recorded = _mapping(manifest.get("file"), manifest_file.wanted.relative, "file").get("sha256")
    if not isinstance(recorded, str):
        raise DataError(f"{manifest_file.wanted.relative} is damaged: it records no sha256 for the model")
    if recorded != model.sha256:
        raise _mismatch(model.wanted.relative, model.sha256, manifest_file.wanted.relative, recorded)
    return fetched


def pull(
    location: str,
    model: str,
    variant: str,
    destination: Path,
    version: str | None = None,
    overwrite: bool = False,
) -> list[Pulled]:
    """Fetch a variant's .tflite, manifest, labels and Kotlin and Swift helpers, verify them, then move them into
    ``destination``.

    Every file is downloaded into a temporary folder inside ``destination`` and checked against the sha256 the
    index records for it (the model also against its manifest's). Only when all passed are they renamed into
    place, and a rename that fails undoes the ones before it: a failed pull leaves ``destination`` as it was.
    A file already there is kept where identical and refused where it differs, unless ``overwrite``. Files an
    older index records no sha256 for are pulled and returned as not verified.

    Raises:
        IntegrityError: a file's sha256 differs from the index's, or the model's from its manifest's.
        OutputExistsError: a file in ``destination`` differs from the pulled one and ``overwrite`` is False.
        DataError: unknown model, version or variant, a damaged index or manifest, an unreachable repository.
    """
    source = _Source(location)
    entry = _find_entry(source, model, variant, version)
    wanted = _wanted_files(entry, source.describe("index.json"))
    destination = Path(destination)
    with staging_folder(destination, ".pull.") as staging:
        fetched = _fetch_verified(source, wanted, staging)
        pulled, moves = [], []
        for item in fetched:
            final = destination / item.wanted.name
            unchanged = identical_or_refused(final, item.staged, overwrite)
            if not unchanged:
                moves.append((item.staged, final))
            pulled.append(Pulled(final, verified=item.wanted.sha256 is not None, unchanged=unchanged))
        replace_all(moves, staging)
    return pulled
