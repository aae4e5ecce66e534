"""Representative (calibration) and labelled evaluation data from images or arrays.

Images are read with Pillow, converted to the model's channel count and resized
to its input size; arrays come from ``.npy``/``.npz`` files. Raw values are
pixels (0..255) and become model input through a :class:`Preprocessing` spec.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tflite_opt.core.errors import DataError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import Resize, center_box
from tflite_opt.results.inputs import ClassMapping, MappingKind

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
ARRAY_SUFFIXES = frozenset({".npy", ".npz"})
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageSize:
    """The model's input size, and how a picture of another shape is brought to it."""

    height: int
    width: int
    channels: int
    resize: Resize = Resize.STRETCH


@dataclass(frozen=True)
class Dataset:
    """Raw samples (N, H, W, C) in the pixel domain, with labels when the source has them."""

    raw: np.ndarray
    labels: np.ndarray | None
    sources: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    mapping: ClassMapping | None = None

    def __len__(self) -> int:
        return len(self.raw)

    def model_input(self, preprocessing: Preprocessing) -> np.ndarray:
        """The samples as float32 model input."""
        return apply_preprocessing(self.raw, preprocessing)


def apply_preprocessing(raw: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """``pixel * scale + offset`` as float32, per channel where the spec has several values."""
    scale = np.asarray(preprocessing.scale, dtype=np.float32)
    offset = np.asarray(preprocessing.offset, dtype=np.float32)
    return raw.astype(np.float32) * scale + offset


def _image_files(folder: Path) -> tuple[list[Path], list[str] | None]:
    """Image files of a flat folder, or of one subfolder per class (then with class names)."""
    loose = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_dirs = [d for d in class_dirs if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())]
    if loose and class_dirs:
        raise DataError(
            f"{folder} holds both images and class subfolders; use a flat folder or one subfolder per class"
        )
    if class_dirs:
        files, names = [], []
        for directory in class_dirs:
            for file in sorted(directory.iterdir()):
                if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(file)
                    names.append(directory.name)
        return files, names
    if not loose:
        raise DataError(f"{folder} contains no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return loose, None


def class_mapping(folder_names: Sequence[str], labels: Sequence[str] | None, source: Path) -> ClassMapping:
    """How the class folders ``folder_names`` map to class indices: by ``labels`` (the model's class names,
    in its order) where given, else by number, else by sorted name.

    Raises:
        DataError: a folder whose name is not among ``labels``.
    """
    distinct = sorted(set(folder_names))
    if labels is not None:
        unknown = [name for name in distinct if name not in labels]
        if unknown:
            raise DataError(
                f"{source}: class folder {unknown[0]!r} is not in --labels; the labels are: {', '.join(labels)}"
            )
        return ClassMapping(MappingKind.BY_LABELS, tuple(labels), len(distinct))
    if all(n.isdigit() for n in distinct):
        # Integer folder names are their own index; a gap is named by its number.
        return ClassMapping(
            MappingKind.BY_NUMBER, tuple(str(i) for i in range(max(int(n) for n in distinct) + 1)), len(distinct)
        )
    return ClassMapping(MappingKind.BY_SORTED_NAME, tuple(distinct), len(distinct))


def read_labels(path: Path) -> list[str]:
    """Class names, one per line (blank lines skipped), as ``--labels`` gives them.

    Raises:
        DataError: the file cannot be read, or names a class twice.
    """
    try:
        names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read --labels {path}: {exc}") from exc
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"--labels {path} names {repeated[0]!r} more than once")
    return names


def _class_indices(folder_names: Sequence[str], mapping: ClassMapping) -> np.ndarray:
    """Class index per sample, from its folder's name."""
    if mapping.how is MappingKind.BY_NUMBER:
        return np.asarray([int(n) for n in folder_names], dtype=np.int64)
    position = {n: i for i, n in enumerate(mapping.names)}
    return np.asarray([position[n] for n in folder_names], dtype=np.int64)


def load_image(path: Path, size: ImageSize) -> np.ndarray:
    """One image as uint8 (H, W, C), converted to the channel count and resized.

    Raises:
        DataError: unreadable, truncated or oversized image.
    """
    try:
        with warnings.catch_warnings():
            # Past Pillow's pixel limit a file is a likely decompression bomb: refuse it, do not just warn.
            # Image.open checks the size, so the filter comes first.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                mode = _PIL_MODES[size.channels]
                if image.mode != mode:
                    image = image.convert(mode)
                if size.resize is Resize.CENTER_CROP and image.size != (size.width, size.height):
                    left, top, width, height = center_box(*image.size, size.width, size.height)
                    image = image.crop((left, top, left + width, top + height))
                if image.size != (size.width, size.height):
                    image = image.resize((size.width, size.height), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: image is too large to load safely ({exc})") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc
    return array.reshape(size.height, size.width, size.channels)


def _load_arrays(path: Path, size: ImageSize) -> tuple[np.ndarray, np.ndarray | None]:
    """x (memory-mapped for .npy, so a large file is not read at once) and y, shape-checked."""
    try:
        x, y = _read_arrays(path)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read arrays ({exc})") from exc
    if x.dtype.kind not in "uif":
        raise DataError(f"{path}: array has dtype {x.dtype}; expected numbers")
    expected = (size.height, size.width, size.channels)
    if x.ndim == 3 and size.channels == 1:
        x = x[..., np.newaxis]
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise DataError(f"{path}: array has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, expected))})")
    return x, None if y is None else _checked_labels(path, y, len(x))


def _read_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False, mmap_mode="r"), None
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.keys())
        if "x" not in keys and len(keys) != 1:
            raise DataError(f"{path}: expected an array named 'x' (and optionally 'y'), found {keys}")
        x = archive["x"] if "x" in keys else archive[keys[0]]
        return x, archive["y"] if "y" in keys else None


def _checked_labels(path: Path, y: np.ndarray, samples: int) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != samples:
        raise DataError(f"{path}: {samples} samples but {len(y)} labels")
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: labels have dtype {y.dtype}; expected integer class indices")
    return y.astype(np.int64)


class DataSource:
    """Samples read on demand, so evaluation can stream a large set in batches.

    A folder keeps its file list (and labels from class subfolders); an array file
    its (for .npy memory-mapped) array.
    """

    def __init__(
        self,
        path: Path,
        size: ImageSize,
        labels: np.ndarray | None,
        files: Sequence[Path] | None = None,
        array: np.ndarray | None = None,
        mapping: ClassMapping | None = None,
    ):
        self.path, self.size, self.labels = path, size, labels
        self._files, self._array = files, array
        self.mapping = mapping

    @property
    def class_names(self) -> list[str] | None:
        """The class name of each index, where the source has class folders."""
        return list(self.mapping.names) if self.mapping is not None else None

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._array)

    def name(self, index: int) -> str:
        return str(self._files[index]) if self._files is not None else f"{self.path}[{index}]"

    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Raw samples (N, H, W, C) at ``indices``.

        Raises:
            DataError: an unreadable image, or a sample with NaN or inf (named).
        """
        if self._files is not None:
            return np.stack([load_image(self._files[i], self.size) for i in indices])
        raw = np.asarray(self._array[np.asarray(indices)])
        if raw.dtype.kind == "f":
            finite = np.isfinite(raw.reshape(len(raw), -1)).all(axis=1)
            if not finite.all():
                raise DataError(
                    f"{self.path}: sample {int(np.asarray(indices)[np.argmin(finite)])} contains NaN or inf"
                )
        return raw

    def in_memory(self) -> DataSource:
        """The same samples, labels and class mapping, read into memory: what travels to a worker that does not see
        this machine's files.

        Raises:
            DataError: an unreadable image.
        """
        if self._files is None and isinstance(self._array, np.ndarray) and not isinstance(self._array, np.memmap):
            return self
        array = self.read(np.arange(len(self)))
        return DataSource(self.path, self.size, self.labels, array=array, mapping=self.mapping)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(raw samples, their indices) in order, ``batch_size`` at a time.

        The next batch is read in a background thread while the caller works on
        this one, so image decoding overlaps inference; at most two batches are
        in memory.
        """
        starts = range(0, len(self), batch_size)
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = None
            for start in starts:
                indices = np.arange(start, min(start + batch_size, len(self)))
                upcoming = reader.submit(self.read, indices), indices
                if pending is not None:
                    yield pending[0].result(), pending[1]
                pending = upcoming
            if pending is not None:
                yield pending[0].result(), pending[1]


def open_source(
    source: Path, size: ImageSize, require_labels: bool = False, labels: Sequence[str] | None = None
) -> DataSource:
    """Open a folder of images (flat, or one subfolder per class) or a ``.npy``/``.npz`` file.

    Args:
        source: the folder or file.
        size: the model's input size; images are converted and resized to it.
        require_labels: refuse a source without labels.
        labels: the model's class names in its order (``--labels``); class folders are looked up in them.

    Raises:
        DataError: missing, empty or malformed source, an unknown class folder, or no labels where required.
    """
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist")
    if source.is_dir():
        files, folder_names = _image_files(source)
        mapping = class_mapping(folder_names, labels, source) if folder_names is not None else None
        indices = _class_indices(folder_names, mapping) if mapping is not None else None
        opened = DataSource(source, size, indices, files=tuple(files), mapping=mapping)
    elif source.suffix in ARRAY_SUFFIXES:
        x, y = _load_arrays(source, size)
        if len(x) == 0:
            raise DataError(f"{source} contains no samples")
        opened = DataSource(source, size, y, array=x)
    else:
        raise DataError(f"{source}: expected a folder of images or a .npy/.npz file")
    if require_labels and opened.labels is None:
        raise DataError(f"{source} has no labels; use one subfolder per class, or an .npz file with arrays 'x' and 'y'")
    return opened


def load_dataset(
    source: Path,
    size: ImageSize,
    limit: int | None = None,
    seed: int = 0,
    require_labels: bool = False,
    labels: Sequence[str] | None = None,
) -> Dataset:
    """Load samples from a folder of images or a ``.npy``/``.npz`` file.

    Args:
        source: folder (flat, or one subfolder per class) or array file.
        size: the model's input size; images are converted and resized to it.
        limit: draw at most this many samples, deterministically from ``seed``.
        seed: seed of the draw.
        require_labels: refuse a source without labels.
        labels: the model's class names in its order; class folders are looked up in them.

    Raises:
        DataError: missing, empty, unreadable or malformed data, or an unknown class folder.
    """
    opened = open_source(source, size, require_labels, labels)
    warnings: list[str] = []
    indices = _draw(len(opened), limit, seed, Path(source), warnings)
    return Dataset(
        raw=opened.read(indices),
        labels=opened.labels[indices] if opened.labels is not None else None,
        sources=tuple(opened.name(i) for i in indices),
        warnings=tuple(warnings),
        mapping=opened.mapping,
    )


def _draw(available: int, limit: int | None, seed: int, source: Path, warnings: list[str]) -> np.ndarray:
    if limit is None or limit >= available:
        if limit is not None and limit > available:
            warnings.append(f"{source} has {available} samples, fewer than the {limit} asked for; using all of them")
        return np.arange(available)
    return np.sort(np.random.default_rng(seed).choice(available, size=limit, replace=False))


def range_warnings(dataset: Dataset, preprocessing: Preprocessing, source: Path) -> list[str]:
    """Warn when preprocessed values fall far outside what pixels 0..255 map to."""
    values = dataset.model_input(preprocessing)
    low, high = preprocessing.expected_range()
    span = high - low
    found_low, found_high = float(values.min()), float(values.max())
    if found_low < low - 0.1 * span or found_high > high + 0.1 * span:
        return [
            f"{source}: preprocessed values span [{found_low:.3g}, {found_high:.3g}], far outside the "
            f"[{low:.3g}, {high:.3g}] the preprocessing maps pixels 0..255 to; check --input-scale/--input-offset "
            "or --mean/--std"
        ]
    if found_high - found_low < 0.1 * span:
        return [
            f"{source}: preprocessed values only span [{found_low:.3g}, {found_high:.3g}] of the expected "
            f"[{low:.3g}, {high:.3g}]; were the samples already normalized? Raw samples must be pixels 0..255"
        ]
    return []


def calibration_generator(samples: np.ndarray) -> Iterator[list[np.ndarray]]:
    """Yield each sample as ``[float32 array of shape (1, H, W, C)]``, as the converter expects."""
    for sample in samples:
        yield [np.ascontiguousarray(sample[np.newaxis], dtype=np.float32)]
