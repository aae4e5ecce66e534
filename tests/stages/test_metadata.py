"""TFLite Metadata: inference unchanged, the labels zipped after the flatbuffer as the bundle has them, the upstream
parser-version rule; which clients take a file, checked against the real MediaPipe Tasks where it is installed (the
Makefile installs it for ``make test``)."""

import json

import numpy as np
import pytest
from helpers import CORPUS
from PIL import Image

from tflite_opt.core import keras2
from tflite_opt.core.config import BenchmarkSettings, ConvertConfig, IoType, Mode
from tflite_opt.core.interpreter import TfliteRunner
from tflite_opt.core.preprocessing import PIXELS, Preprocessing
from tflite_opt.core.shipping import ModelCard
from tflite_opt.core.tflite_file import Quantization, Tensor, TfliteFile, read_tflite
from tflite_opt.core.variant import VariantSpec
from tflite_opt.jobs.convert import run_convert
from tflite_opt.results.clients import ClientKind
from tflite_opt.stages.data import ImageSize, load_image
from tflite_opt.stages.metadata import (
    METADATA_NAME,
    MetadataSpec,
    associated_files,
    clients,
    file_metadata,
    labels_text,
    metadata_check,
    min_parser_version,
    with_metadata,
)
from tflite_opt.vendor import tflite_metadata_schema as md

VALID = (CORPUS / "tflite" / "valid.tflite").read_bytes()  # int8 in and out, 8x8x1, 10 classes
DIGITS = MetadataSpec("tiny", "3", tuple("zero one two three four five six seven eight nine".split()), Preprocessing())
# Not in alphabetical order: class folders are looked up by name in the labels file.
COLOURS = ("red", "green", "blue", "yellow")
TINTS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.float32)
SIZE = 16


def test_metadata_changes_no_output_and_the_reader_still_parses_the_file_with_the_zip_after_it():
    content = with_metadata(VALID, DIGITS, VariantSpec(Mode.FULL_INT8))
    samples = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype(np.float32)
    assert np.array_equal(TfliteRunner(VALID).predict(samples), TfliteRunner(content).predict(samples))
    before, after = read_tflite(VALID), read_tflite(content)
    assert after.tensors == before.tensors and after.operators == before.operators
    assert [name for name, _ in after.metadata] == [*(name for name, _ in before.metadata), METADATA_NAME]
    assert content[4:8] == b"TFL3" and 0 < len(content) - len(VALID) < 2048


def test_the_labels_are_zipped_after_the_flatbuffer_byte_for_byte_as_the_bundle_writes_them():
    content = with_metadata(VALID, DIGITS, VariantSpec(Mode.FULL_INT8))
    assert associated_files(content) == {"tiny.labels.txt": labels_text(DIGITS.labels)}
    assert associated_files(VALID) == {}
    metadata = file_metadata(read_tflite(content))
    assert metadata.labels_file == "tiny.labels.txt" and metadata.min_parser_version == "1.0.0"
    assert (metadata.name, metadata.version, metadata.author, metadata.license) == ("tiny (int8)", "3", None, None)
    assert "10 classes" in metadata.description and metadata.color_space == "GRAYSCALE" and metadata.mean is None
    assert metadata_check(content, read_tflite(content), DIGITS).passed


def test_the_metadata_check_fails_when_the_labels_in_the_file_are_not_the_bundles():
    content = with_metadata(VALID, DIGITS, VariantSpec(Mode.FULL_INT8))
    other = MetadataSpec("tiny", "3", tuple(str(i) for i in range(10)), Preprocessing())
    check = metadata_check(content, read_tflite(content), other)
    assert not check.passed and "not the bundle's labels file" in check.detail
    assert not metadata_check(VALID, read_tflite(VALID), DIGITS).passed


def test_adding_metadata_again_replaces_it_and_the_user_card_is_written_as_given():
    card = ModelCard("Digits, for the tests.", "Ann Author", "Apache-2.0")
    twice = with_metadata(
        with_metadata(VALID, DIGITS, VariantSpec(Mode.FULL_INT8)), DIGITS, VariantSpec(Mode.FULL_INT8)
    )
    card_spec = MetadataSpec("tiny", "4", DIGITS.labels, Preprocessing(), card)
    content = with_metadata(twice, card_spec, VariantSpec(Mode.FULL_INT8, 0.5))
    parsed = read_tflite(content)
    assert [name for name, _ in parsed.metadata].count(METADATA_NAME) == 1
    metadata = file_metadata(parsed)
    assert (metadata.name, metadata.version) == ("tiny (int8-pruned50)", "4")
    assert (metadata.description, metadata.author, metadata.license) == (card.description, card.author, card.license)
    assert list(associated_files(content)) == ["tiny.labels.txt"]


@pytest.mark.parametrize(
    ("change", "version"),
    [
        (lambda sg: None, "1.0.0"),
        (lambda sg: sg.associatedFiles.append(md.AssociatedFileT(type=md.AssociatedFileType.VOCABULARY)), "1.0.1"),
        (lambda sg: setattr(sg, "inputProcessUnits", []), "1.1.0"),
        (lambda sg: setattr(sg, "outputTensorGroups", []), "1.2.0"),
        (lambda sg: sg.associatedFiles.append(md.AssociatedFileT(version="2")), "1.4.1"),
        (lambda sg: setattr(sg, "customMetadata", []), "1.5.0"),
    ],
)
def test_the_minimum_parser_version_follows_the_upstream_rule(change, version):
    subgraph = md.SubGraphMetadataT(associatedFiles=[md.AssociatedFileT(type=md.AssociatedFileType.TENSOR_AXIS_LABELS)])
    change(subgraph)
    assert min_parser_version(md.ModelMetadataT(subgraphMetadata=[subgraph])) == version


def io_file(dtype: str, channels: int = 3, scale: float = 1.0, zero_point: int = 0, output: str = "UINT8"):
    """A parsed file with only an input and an output tensor."""
    image_q = Quantization((scale,), (zero_point,), 0) if dtype != "FLOAT32" else None
    scores_q = Quantization((1 / 256,), (0 if output == "UINT8" else -128,), 0) if output != "FLOAT32" else None
    image = Tensor(0, "image", dtype, (1, 8, 8, channels), 0, image_q, False)
    scores = Tensor(1, "scores", output, (1, 4), 0, scores_q, False)
    return TfliteFile((image, scores), (), (0,), (1,), (b"",))


@pytest.mark.parametrize(
    ("parsed", "mediapipe", "support_library"),
    [
        (
            io_file("INT8", zero_point=-128, output="INT8"),
            "✗ int8 input: MediaPipe Tasks takes uint8 or float32",
            "✗ int8",
        ),
        (io_file("UINT8"), "✓ feeds the uint8 pixels as they are", "✓ TensorImage.load(bitmap)"),
        (io_file("UINT8", scale=1 / 255), "✗ uint8 input quantized", "✓ an ImageProcessor"),
        (io_file("UINT8", channels=1), "✗ 1-channel grayscale input: MediaPipe Tasks takes RGB or RGBA", "✓"),
        (io_file("UINT8", channels=4), "✓", "✗ 4-channel input"),
        (io_file("UINT8", output="INT8"), "✗ int8 output: MediaPipe Tasks reads uint8 or float32", "✗ int8 output"),
        (io_file("FLOAT32", output="FLOAT32"), "✗ float32 input without NormalizationOptions", "✓"),
    ],
    ids=["int8", "uint8 pixels", "uint8 normalized", "grey", "rgba", "int8 output", "float32 without metadata"],
)
def test_which_clients_take_a_file_follows_from_its_input_and_output_tensors(parsed, mediapipe, support_library):
    interpreter, support, tasks = clients(parsed)
    assert (interpreter.kind, support.kind, tasks.kind) == tuple(ClientKind)
    assert interpreter.runs
    for client, expected in ((tasks, mediapipe), (support, support_library)):
        mark, text = expected[0], expected[2:]
        assert client.runs == (mark == "✓") and text in client.why, client.line()
        assert client.line().startswith(f"{mark} {client.kind.title}: ")


def colour_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images tinted by their class's colour, so that a tiny model learns most but not all of them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(COLOURS)
    noise = rng.uniform(0, 255, (count, SIZE, SIZE, 3))
    return np.clip(0.8 * noise + 0.2 * TINTS[labels][:, None, None, :], 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> dict:
    """A tiny RGB classifier (input pixel / 255) saved as .keras, its labels, calibration and held-out PNGs."""
    root = tmp_path_factory.mktemp("colours")
    keras = keras2.keras
    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential(
        [
            layers.Input((SIZE, SIZE, 3)),
            layers.Conv2D(8, 3, activation="relu", name="conv"),
            layers.MaxPooling2D(name="pool"),
            layers.Conv2D(8, 3, activation="relu", name="conv2"),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(len(COLOURS), activation="softmax", name="scores"),
        ],
        name="colours",
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    images, labels = colour_images(480, seed=0)
    model.fit(images[:320] / 255.0, labels[:320], epochs=4, batch_size=32, verbose=0)
    model.save(root / "colours.keras")
    (root / "labels.txt").write_bytes(labels_text(COLOURS))
    for i, image in enumerate(images[320:360]):
        (root / "calibration").mkdir(exist_ok=True)
        Image.fromarray(image).save(root / "calibration" / f"c_{i:03d}.png")
    for i, (image, label) in enumerate(zip(images[360:], labels[360:], strict=True)):
        folder = root / "eval" / COLOURS[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"e_{i:03d}.png")
    return root


def convert_colours(root, out, **options):
    return run_convert(
        ConvertConfig(
            modes=(Mode.FULL_INT8,),
            model_path=root / "colours.keras",
            representative_data=root / "calibration",
            eval_data=root / "eval",
            labels_file=root / "labels.txt",
            output_dir=out,
            benchmark=BenchmarkSettings(num_runs=3, warmup_runs=1),
            **options,
        )
    )


@pytest.fixture(scope="module")
def default_rgb(colours, tmp_path_factory):
    """The colour classifier converted with the defaults and a model card: an RGB model, so uint8 input and output
    taking the pixels as they are."""
    out = tmp_path_factory.mktemp("default_rgb")
    card = ModelCard("Tells red, green, blue and yellow apart.", "tflite_opt tests", "Apache-2.0")
    report = convert_colours(colours, out, card=card)
    assert report.pixel_input.chosen and report.pixel_input.uint8_input and report.pixel_input.asked is None
    return out


@pytest.fixture(scope="module")
def int8_asked(colours, tmp_path_factory):
    """The colour classifier converted with ``--io-type int8``."""
    out = tmp_path_factory.mktemp("int8_asked")
    convert_colours(colours, out, io_type=IoType.INT8)
    return out


def held_out(root) -> list[tuple[str, np.ndarray]]:
    """(class name, pixels) of every held-out image, read as the convert job reads it: at the model's size."""
    size = ImageSize(SIZE, SIZE, 3)
    return [(path.parent.name, load_image(path, size)) for path in sorted((root / "eval").glob("*/*.png"))]


def variant(out, name: str) -> dict:
    report = json.loads((out / "report.json").read_text())
    return next(v for v in report["variants"] if v["variant"] == name)


@pytest.mark.slow
def test_the_written_file_carries_the_card_labels_and_the_check_and_is_the_file_hashed(default_rgb):
    content = (default_rgb / "colours.int8.tflite").read_bytes()
    manifest = json.loads((default_rgb / "colours.int8.manifest.json").read_text())
    assert manifest["file"]["size_bytes"] == len(content)
    metadata = file_metadata(read_tflite(content))
    assert metadata.name == "colours (int8)" and metadata.author == "tflite_opt tests"
    assert metadata.description.startswith("Tells red") and metadata.license == "Apache-2.0"
    assert metadata.color_space == "RGB" and metadata.mean is None  # normalization only for float input
    assert associated_files(content) == {"colours.labels.txt": (default_rgb / "colours.labels.txt").read_bytes()}
    assert manifest["tflite_metadata"]["labels_file"] == "colours.labels.txt"
    assert any(line.startswith("✓ metadata: TFLITE_METADATA") for line in variant(default_rgb, "int8")["checks"])
    reference = file_metadata(read_tflite((default_rgb / "colours.float32.tflite").read_bytes()))
    assert (reference.mean, reference.std) == ((0.0,), (255.0,))  # x = pixel / 255
    clients_of = manifest["clients"]
    assert clients_of["mediapipe_tasks"]["runs"] and clients_of["litert_support_library"]["runs"]
    assert clients_of["interpreter"]["runs"] and clients_of["interpreter"]["name"] == ClientKind.INTERPRETER.title


@pytest.mark.slow
def test_an_int8_input_file_is_said_not_to_run_in_mediapipe_and_mediapipe_refuses_it(int8_asked):
    manifest = json.loads((int8_asked / "colours.int8.manifest.json").read_text())
    refusal = manifest["clients"]["mediapipe_tasks"]
    assert not refusal["runs"] and "int8 input: MediaPipe Tasks takes uint8 or float32 input" in refusal["why"]
    assert "int8 output" in refusal["why"] and "channel" not in refusal["why"]
    pytest.importorskip("mediapipe")
    with pytest.raises(Exception, match="uint8/float32, got INT8"):
        with image_classifier(int8_asked / "colours.int8.tflite"):
            pass


def image_classifier(path):
    """MediaPipe Tasks' ImageClassifier on ``path`` as it is, every category returned."""
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    return vision.ImageClassifier.create_from_options(options)


def mediapipe_scores(classifier, pixels: np.ndarray) -> tuple[np.ndarray, list]:
    """MediaPipe's scores by class index for one SRGB uint8 image at the model's size (MediaPipe resizes nothing),
    and its categories, best first."""
    import mediapipe as mp

    result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels)))
    categories = result.classifications[0].categories
    scores = np.full(len(COLOURS), np.nan, np.float32)
    for category in categories:
        scores[category.index] = category.score
    return scores, categories


@pytest.mark.slow
@pytest.mark.parametrize(("name", "pixels_to_input"), [("int8", PIXELS), ("float32", Preprocessing())])
def test_mediapipe_takes_the_file_as_it_is_and_predicts_what_our_interpreter_and_the_benchmark_did(
    default_rgb, colours, name, pixels_to_input
):
    """The uint8 pixel-input int8 variant, and the float32 reference through its NormalizationOptions."""
    pytest.importorskip("mediapipe")
    path = default_rgb / f"colours.{name}.tflite"
    images = held_out(colours)
    pixels = np.stack([image for _, image in images])
    ours = TfliteRunner(path.read_bytes()).predict(pixels * np.float32(pixels_to_input.scale[0]))
    hits = 0
    with image_classifier(path) as classifier:
        for k, (truth, image) in enumerate(images):
            scores, categories = mediapipe_scores(classifier, image)
            assert all(c.category_name == COLOURS[c.index] for c in categories), categories
            assert categories[0].index == int(np.argmax(ours[k])), (k, scores, ours[k])
            np.testing.assert_allclose(scores, ours[k], atol=1e-6 if name == "int8" else 1e-5)
            hits += categories[0].category_name == truth
    assert hits / len(images) == variant(default_rgb, name)["top1"]


@pytest.mark.slow
def test_per_channel_normalization_is_said_not_to_run_in_mediapipe_and_mediapipe_refuses_it(default_rgb):
    reference = (default_rgb / "colours.float32.tflite").read_bytes()
    per_channel = MetadataSpec("colours", "1", COLOURS, Preprocessing.from_mean_std((120, 110, 100), (60, 60, 60)))
    content = with_metadata(reference, per_channel, VariantSpec(Mode.FLOAT32))
    metadata = file_metadata(read_tflite(content))
    assert metadata.mean == (120.0, 110.0, 100.0) and metadata.std == pytest.approx((60.0, 60.0, 60.0))
    tasks = clients(read_tflite(content))[-1]
    assert not tasks.runs and "per-channel normalization" in tasks.why
    pytest.importorskip("mediapipe")
    (default_rgb / "per_channel.tflite").write_bytes(content)
    with pytest.raises(Exception, match="Per-channel image normalization is not available"):
        with image_classifier(default_rgb / "per_channel.tflite"):
            pass
