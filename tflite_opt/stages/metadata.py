"""TFLite Metadata in every file: what the model is, how to feed it, its labels; and which app runtimes take it.

:func:`with_metadata` adds a ``TFLITE_METADATA`` buffer (the TFLite Metadata schema, ``M001``) to a converted
model and appends its labels after the flatbuffer as a zip (``ZIP_STORED``), as tflite-support's and MediaPipe's
metadata writers do: MediaPipe Tasks and Android Studio read the labels from there, and the interpreter ignores
both, so inference is unchanged. :func:`clients` tells from a file's input and output tensors (and its metadata)
which clients take it as it is.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as tflite_schema

from tflite_opt.core.errors import ConversionError
from tflite_opt.core.preprocessing import Preprocessing
from tflite_opt.core.shipping import ModelCard
from tflite_opt.core.tflite_file import FILE_IDENTIFIER, Tensor, TfliteFile, read_tflite
from tflite_opt.core.variant import VariantSpec
from tflite_opt.core.version import __version__
from tflite_opt.results.clients import Client, ClientKind
from tflite_opt.results.files import Check, labels_file_name
from tflite_opt.vendor import tflite_metadata_schema as md

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
# The newest metadata schema MediaPipe 1.2.3 parses; it refuses a file whose min_parser_version is higher.
NEWEST_PARSER = (1, 5, 0)
_FIRST_VERSION = (1, 0, 0)
_COLOR_SPACES = {1: md.ColorSpaceType.GRAYSCALE, 3: md.ColorSpaceType.RGB}
_COLOR_SPACE_NAMES = {md.ColorSpaceType.GRAYSCALE: "GRAYSCALE", md.ColorSpaceType.RGB: "RGB"}
_CHANNEL_WORDS = {1: "grayscale", 3: "RGB", 4: "RGBA"}
_CLIENT_TYPES = ("UINT8", "FLOAT32")


def labels_text(labels: Iterable[str]) -> bytes:
    """The labels file's bytes: one label per line, UTF-8."""
    return ("\n".join(labels) + "\n").encode("utf-8")


@dataclass(frozen=True)
class MetadataSpec:
    """What a run's files say of themselves: the model's name and version, what the user said of it
    (``--model-description``, ``--author``, ``--license``), its labels, and how pixels become its input."""

    model: str
    version: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    card: ModelCard = ModelCard()

    @property
    def labels_file(self) -> str:
        return labels_file_name(self.model)


@dataclass(frozen=True)
class FileMetadata:
    """What a file's TFLite Metadata says, read back from the file."""

    name: str | None
    version: str | None
    description: str | None
    author: str | None
    license: str | None
    min_parser_version: str | None
    color_space: str | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    labels_file: str | None

    def to_dict(self) -> dict[str, Any]:
        fields = ("name", "version", "description", "author", "license", "min_parser_version", "color_space")
        normalization = {"mean": list(self.mean), "std": list(self.std)} if self.mean is not None else None
        return {
            **{name: getattr(self, name) for name in fields},
            "normalization": normalization,
            "labels_file": self.labels_file,
        }


def with_metadata(content: bytes, spec: MetadataSpec, variant: VariantSpec) -> bytes:
    """``content`` with TFLite Metadata describing ``variant`` and the labels file zipped after it.

    Raises:
        ConversionError: the model stores buffers past its flatbuffer (over 2 GB), which repacking would lose.
    """
    parsed = read_tflite(content, source=f"the {variant.name} model")
    metadata = _model_metadata(parsed, spec, variant)
    builder = flatbuffers.Builder(1024)
    builder.Finish(metadata.Pack(builder), METADATA_IDENTIFIER)
    return _populate(content, bytes(builder.Output()), {spec.labels_file: labels_text(spec.labels)})


def _model_metadata(parsed: TfliteFile, spec: MetadataSpec, variant: VariantSpec) -> md.ModelMetadataT:
    image, scores = parsed.input_tensors()[0], parsed.output_tensors()[0]
    subgraph = md.SubGraphMetadataT(
        inputTensorMetadata=[_image_metadata(image, spec, variant)],
        outputTensorMetadata=[_scores_metadata(scores, spec)],
    )
    metadata = md.ModelMetadataT(
        name=f"{spec.model} ({variant.name})",
        description=spec.card.description or _description(image, spec, variant),
        version=spec.version,
        author=spec.card.author,
        license=spec.card.license,
        subgraphMetadata=[subgraph],
    )
    metadata.minParserVersion = min_parser_version(metadata)
    return metadata


def _description(image: Tensor, spec: MetadataSpec, variant: VariantSpec) -> str:
    height, width, channels = image.shape[1:4]
    return (
        f"Image classifier of {len(spec.labels)} classes ({spec.labels_file}), the {variant.name} variant of "
        f"{spec.model}, converted by tflite_opt {__version__}. Input: {height}x{width} "
        f"{_CHANNEL_WORDS.get(channels, f'{channels}-channel')} images as {image.dtype.lower()}, as the input's "
        "description says."
    )


def _image_metadata(image: Tensor, spec: MetadataSpec, variant: VariantSpec) -> md.TensorMetadataT:
    """The input: its colour space, how pixels become it, and (float input only) the normalization."""
    tensor = md.TensorMetadataT(name="image", description=_input_description(image, spec.preprocessing, variant))
    if image.shape[-1] in _COLOR_SPACES:
        tensor.content = md.ContentT(
            contentPropertiesType=md.ContentProperties.ImageProperties,
            contentProperties=md.ImagePropertiesT(colorSpace=_COLOR_SPACES[image.shape[-1]]),
        )
    if image.dtype == "FLOAT32":
        mean, std = _mean_std(spec.preprocessing)
        unit = md.ProcessUnitT(
            optionsType=md.ProcessUnitOptions.NormalizationOptions,
            options=md.NormalizationOptionsT(mean=mean, std=std),
        )
        tensor.processUnits = [unit]
    return tensor


def _mean_std(preprocessing: Preprocessing) -> tuple[list[float], list[float]]:
    """x = (pixel - mean) / std: one value each where every channel has the same, else one per channel (which
    MediaPipe Tasks refuses)."""
    scales, offsets = preprocessing.per_channel()
    mean = [-offset / scale + 0.0 for scale, offset in zip(scales, offsets, strict=True)]  # + 0.0: no -0.0
    std = [1.0 / scale for scale in scales]
    if len(set(mean)) == 1 and len(set(std)) == 1:
        return mean[:1], std[:1]
    return mean, std


def _input_description(image: Tensor, preprocessing: Preprocessing, variant: VariantSpec) -> str:
    colour = _CHANNEL_WORDS.get(image.shape[-1], f"{image.shape[-1]}-channel")
    if variant.pixel_input:
        feed = "the pixels as they are" if image.dtype == "UINT8" else "pixel - 128"
        inside = preprocessing.describe()
        return f"{colour} pixels (0..255), {image.dtype.lower()}: {feed}; the model normalizes inside ({inside})."
    if image.quantization is not None and image.dtype != "FLOAT32":
        q = image.quantization
        return (
            f"{colour} pixels, {image.dtype.lower()}: {preprocessing.describe()}, then q = round(x / {q.scale!r}) "
            f"+ {q.zero_point}, rounding half away from zero, clamped to the type's range."
        )
    return f"{colour} pixels, {image.dtype.lower()}: {preprocessing.describe()}."


def _scores_metadata(scores: Tensor, spec: MetadataSpec) -> md.TensorMetadataT:
    """The output: one score per label, the labels as the associated file MediaPipe and Android Studio read."""
    how = "float32"
    if scores.quantization is not None and scores.dtype != "FLOAT32":
        q = scores.quantization
        how = f"{scores.dtype.lower()}, score = (q - {q.zero_point}) * {q.scale!r}"
    labels = md.AssociatedFileT(
        name=spec.labels_file,
        description="The class names, one per line, in the model's output order.",
        type=md.AssociatedFileType.TENSOR_AXIS_LABELS,
    )
    return md.TensorMetadataT(
        name="score",
        description=f"One score per label of {spec.labels_file}, {how}; top-1 is the first highest score.",
        content=md.ContentT(
            contentPropertiesType=md.ContentProperties.FeatureProperties,
            contentProperties=md.FeaturePropertiesT(),
        ),
        associatedFiles=[labels],
    )


def _populate(content: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """The model with ``metadata`` as its TFLITE_METADATA buffer (one already there is replaced) and ``files``
    zipped after the flatbuffer, as tflite-support's MetadataPopulator writes them."""
    root = tflite_schema.Model.GetRootAs(content, 0)
    model = tflite_schema.ModelT.InitFromObj(root)
    if any(buffer.offset > 1 for buffer in model.buffers or []):
        raise ConversionError("the model stores its weights past the flatbuffer (over 2 GB): no metadata can be added")
    model.buffers.append(tflite_schema.BufferT(data=np.frombuffer(metadata, dtype=np.uint8)))
    entry = tflite_schema.MetadataT(name=METADATA_NAME, buffer=len(model.buffers) - 1)
    model.metadata = [m for m in model.metadata or [] if m.name != METADATA_NAME.encode()] + [entry]
    builder = flatbuffers.Builder(len(content) + len(metadata) + 1024)
    builder.Finish(model.Pack(builder), FILE_IDENTIFIER)
    out = io.BytesIO()
    out.write(builder.Output())
    # Written after the flatbuffer; entry offsets count from the file's start, as MediaPipe's reader expects.
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def min_parser_version(metadata: md.ModelMetadataT) -> str:
    """The oldest metadata parser that understands every field of ``metadata``: the rule of MediaPipe's (and
    tflite-support's) metadata_version.cc, the schema's members added after 1.0.0 and the version that added each."""
    versions = [_subgraph_version(subgraph) for subgraph in metadata.subgraphMetadata or []]
    versions += [_file_version(file) for file in metadata.associatedFiles or []]
    return ".".join(str(part) for part in max(versions, default=_FIRST_VERSION))


_FILE_TYPE_VERSIONS = {md.AssociatedFileType.VOCABULARY: (1, 0, 1), md.AssociatedFileType.SCANN_INDEX_FILE: (1, 4, 0)}
_UNIT_VERSIONS = {
    md.ProcessUnitOptions.BertTokenizerOptions: (1, 1, 0),
    md.ProcessUnitOptions.SentencePieceTokenizerOptions: (1, 1, 0),
    md.ProcessUnitOptions.RegexTokenizerOptions: (1, 2, 1),
}


def _file_version(file: md.AssociatedFileT) -> tuple[int, int, int]:
    return max(_FILE_TYPE_VERSIONS.get(file.type, _FIRST_VERSION), (1, 4, 1) if file.version is not None else (1, 0, 0))


def _units_version(units: list[md.ProcessUnitT] | None) -> tuple[int, int, int]:
    return max((_UNIT_VERSIONS.get(unit.optionsType, _FIRST_VERSION) for unit in units or []), default=_FIRST_VERSION)


def _tensor_version(tensor: md.TensorMetadataT) -> tuple[int, int, int]:
    versions = [_file_version(file) for file in tensor.associatedFiles or []] + [_units_version(tensor.processUnits)]
    if tensor.content is not None and tensor.content.contentPropertiesType == md.ContentProperties.AudioProperties:
        versions.append((1, 3, 0))
    return max(versions)


def _subgraph_version(subgraph: md.SubGraphMetadataT) -> tuple[int, int, int]:
    tensors = [*(subgraph.inputTensorMetadata or []), *(subgraph.outputTensorMetadata or [])]
    versions = [_tensor_version(tensor) for tensor in tensors] + [
        _file_version(f) for f in subgraph.associatedFiles or []
    ]
    for units in (subgraph.inputProcessUnits, subgraph.outputProcessUnits):
        if units is not None:  # present, even empty
            versions += [(1, 1, 0), _units_version(units)]
    if subgraph.inputTensorGroups is not None or subgraph.outputTensorGroups is not None:
        versions.append((1, 2, 0))
    if subgraph.customMetadata is not None:
        versions.append((1, 5, 0))
    return max(versions, default=_FIRST_VERSION)


def file_metadata(parsed: TfliteFile) -> FileMetadata | None:
    """The file's TFLite Metadata, or None where it has none (or none that parses)."""
    data = parsed.metadata_buffer(METADATA_NAME)
    if data is None or data[4:8] != METADATA_IDENTIFIER:
        return None
    try:
        metadata = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(data, 0))
    except Exception:  # a malformed flatbuffer surfaces as any of several errors
        return None
    subgraph = (metadata.subgraphMetadata or [md.SubGraphMetadataT()])[0]
    image = (subgraph.inputTensorMetadata or [md.TensorMetadataT()])[0]
    scores = (subgraph.outputTensorMetadata or [md.TensorMetadataT()])[0]
    normalization = _normalization(image)
    return FileMetadata(
        name=_text(metadata.name),
        version=_text(metadata.version),
        description=_text(metadata.description),
        author=_text(metadata.author),
        license=_text(metadata.license),
        min_parser_version=_text(metadata.minParserVersion),
        color_space=_color_space(image),
        mean=normalization[0] if normalization else None,
        std=normalization[1] if normalization else None,
        labels_file=next(
            (
                _text(file.name)
                for file in scores.associatedFiles or []
                if file.type == md.AssociatedFileType.TENSOR_AXIS_LABELS
            ),
            None,
        ),
    )


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _color_space(image: md.TensorMetadataT) -> str | None:
    content = image.content
    if content is None or content.contentPropertiesType != md.ContentProperties.ImageProperties:
        return None
    return _COLOR_SPACE_NAMES.get(content.contentProperties.colorSpace, "UNKNOWN")


def _normalization(image: md.TensorMetadataT) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    for unit in image.processUnits or []:
        if unit.optionsType == md.ProcessUnitOptions.NormalizationOptions:
            options = unit.options
            return tuple(float(v) for v in options.mean), tuple(float(v) for v in options.std)
    return None


def associated_files(content: bytes) -> dict[str, bytes]:
    """The files zipped after the flatbuffer, by name; none where there is no zip."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except (zipfile.BadZipFile, OSError, KeyError):
        return {}


def metadata_check(content: bytes, parsed: TfliteFile, spec: MetadataSpec) -> Check:
    """The metadata read back from the file: a parser MediaPipe has reads it, and its labels file is the bundle's,
    one label per output class."""
    metadata = file_metadata(parsed)
    if metadata is None:
        return Check("metadata", False, f"no readable {METADATA_NAME} in the file")
    labels = associated_files(content).get(metadata.labels_file or "")
    classes = parsed.output_tensors()[0].shape[-1]
    version = tuple(int(part) for part in (metadata.min_parser_version or "0").split("."))
    problems = [
        *([f"needs metadata parser {metadata.min_parser_version}"] if version > NEWEST_PARSER else []),
        *([f"{spec.labels_file} is not the bundle's labels file"] if labels != labels_text(spec.labels) else []),
        *([f"{len(spec.labels)} labels for {classes} output classes"] if len(spec.labels) != classes else []),
    ]
    if problems:
        return Check("metadata", False, "; ".join(problems))
    return Check(
        "metadata",
        True,
        f"{METADATA_NAME} (parser {metadata.min_parser_version}), {classes} labels in {metadata.labels_file}",
    )


def clients(parsed: TfliteFile) -> tuple[Client, ...]:
    """Which app runtimes take the file as it is and feed it what it expects, read from its input and output tensors
    (type, channels, quantization) and its metadata: the LiteRT Interpreter, the LiteRT Support Library, MediaPipe
    Tasks' ImageClassifier."""
    image, scores = parsed.input_tensors()[0], parsed.output_tensors()[0]
    return (
        Client(
            ClientKind.INTERPRETER,
            True,
            f"the bundle's Kotlin and Swift helpers feed it {image.dtype.lower()} input as the manifest says",
        ),
        _support_library(image, scores),
        _mediapipe(image, scores, file_metadata(parsed)),
    )


def _takes_pixels(image: Tensor) -> bool:
    """uint8 input that is the pixels themselves (input scale 1, zero point 0): the normalization is inside."""
    q = image.quantization
    return image.dtype == "UINT8" and q is not None and q.scale == 1.0 and q.zero_point == 0


def _support_library(image: Tensor, scores: Tensor) -> Client:
    problems = []
    if image.dtype not in _CLIENT_TYPES:
        problems.append(
            f"{image.dtype.lower()} input: the Support Library's TensorImage and TensorBuffer hold uint8 or float32"
        )
    if image.shape[-1] not in (1, 3):
        problems.append(f"{image.shape[-1]}-channel input: TensorImage holds RGB or grayscale images")
    if scores.dtype not in _CLIENT_TYPES:
        problems.append(f"{scores.dtype.lower()} output: TensorBuffer holds uint8 or float32")
    if problems:
        return Client(ClientKind.LITERT_SUPPORT_LIBRARY, False, "; ".join(problems))
    if _takes_pixels(image):
        why = "TensorImage.load(bitmap) gives the uint8 pixels it takes (it normalizes inside)"
    elif image.dtype == "UINT8":
        why = (
            "an ImageProcessor with NormalizeOp, QuantizeOp and CastOp(UINT8) feeds it, but TensorBuffer truncates "
            "where the manifest rounds: --raw-pixel-input makes the input the pixels themselves"
        )
    else:
        why = "an ImageProcessor with NormalizeOp(mean, std) as the manifest says feeds it"
    return Client(ClientKind.LITERT_SUPPORT_LIBRARY, True, why)


def _mediapipe(image: Tensor, scores: Tensor, metadata: FileMetadata | None) -> Client:
    problems = _mediapipe_refuses(image, scores, metadata)
    if problems:
        return Client(ClientKind.MEDIAPIPE_TASKS, False, "; ".join(problems))
    if image.dtype == "FLOAT32":
        feed = f"feeds (pixel - {metadata.mean[0]:g}) / {metadata.std[0]:g} as float32, from the file's metadata"
    else:
        feed = "feeds the uint8 pixels as they are (the model normalizes inside)"
    if metadata is None or metadata.labels_file is None:
        return Client(ClientKind.MEDIAPIPE_TASKS, True, f"{feed}; no labels in the file: categories have no names")
    return Client(ClientKind.MEDIAPIPE_TASKS, True, f"{feed}; category names from {metadata.labels_file}")


def _mediapipe_refuses(image: Tensor, scores: Tensor, metadata: FileMetadata | None) -> list[str]:
    """Why MediaPipe Tasks' ImageClassifier refuses the file, or would feed it other input than it expects."""
    problems = []
    if image.dtype not in _CLIENT_TYPES:
        problems.append(f"{image.dtype.lower()} input: MediaPipe Tasks takes uint8 or float32 input")
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[-1] not in (3, 4):
        word = _CHANNEL_WORDS.get(image.shape[-1], "")
        problems.append(f"{image.shape[-1]}-channel {word} input: MediaPipe Tasks takes RGB or RGBA images")
    elif metadata is not None and metadata.color_space not in (None, "RGB"):
        problems.append(f"{metadata.color_space} colour space: MediaPipe Tasks takes RGB")
    if scores.dtype not in _CLIENT_TYPES:
        problems.append(f"{scores.dtype.lower()} output: MediaPipe Tasks reads uint8 or float32 scores")
    if image.dtype == "UINT8" and not _takes_pixels(image):
        problems.append(
            "uint8 input quantized from the normalized image: MediaPipe Tasks feeds the pixels as they are "
            "(convert with --raw-pixel-input)"
        )
    if image.dtype == "FLOAT32":
        problems += _mediapipe_normalization(metadata)
    return problems


def _mediapipe_normalization(metadata: FileMetadata | None) -> list[str]:
    if metadata is None or metadata.mean is None:
        return ["float32 input without NormalizationOptions in its metadata: MediaPipe Tasks needs them"]
    if len(set(metadata.mean)) > 1 or len(set(metadata.std)) > 1:
        return [
            f"per-channel normalization (mean {list(metadata.mean)}, std {list(metadata.std)}): MediaPipe Tasks "
            "takes one mean and std for all channels"
        ]
    if metadata.std[0] == 0.0:
        return ["a std of 0 in its NormalizationOptions: MediaPipe Tasks refuses it"]
    return []
