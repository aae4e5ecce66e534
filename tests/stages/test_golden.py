"""Golden vectors: which images, their pixels kept exactly, the input tensor the benchmark fed and the output."""

import base64
import hashlib
import io

import numpy as np
import pytest
from helpers import INPUT_SIZE, build_sequential, mnist_digits, write_pngs
from PIL import Image

from tflite_opt.core.config import IoType, Mode
from tflite_opt.core.interpreter import TfliteRunner, quantize
from tflite_opt.core.preprocessing import PIXELS, Preprocessing
from tflite_opt.stages.convert import convert_keras, convert_pixel_input
from tflite_opt.stages.data import Dataset, ImageSize, open_source
from tflite_opt.stages.golden import GoldenSource, golden_source, golden_vectors, png_base64

SIZE = ImageSize(INPUT_SIZE, INPUT_SIZE, 1)


@pytest.fixture(scope="module")
def digits():
    images, labels = mnist_digits(20)
    return np.stack([np.asarray(image)[:INPUT_SIZE, :INPUT_SIZE, np.newaxis] for image in images]), labels


def test_three_images_spread_over_the_evaluation_folder_with_their_classes(tmp_path):
    images, labels = mnist_digits(12)
    root = write_pngs(tmp_path / "eval", images, labels)
    source = open_source(root, SIZE)
    golden = golden_source(source, None)
    assert len(golden.names) == 3 and golden.names[0] == source.name(0).removeprefix(f"{root}/")
    assert golden.truths == tuple(int(source.labels[i]) for i in (0, 6, 11))
    np.testing.assert_array_equal(golden.pixels, source.read([0, 6, 11]).astype(np.uint8))


def test_calibration_images_stand_in_without_evaluation_data_and_normalized_arrays_give_none(digits):
    pixels, _ = digits
    golden = golden_source(None, Dataset(pixels[:2].astype(np.float32), None, ()))
    assert golden.names == ("calibration sample 0", "calibration sample 1") and golden.truths == (None, None)
    assert golden_source(None, Dataset(pixels.astype(np.float32) / 255 + 0.001, None, ())) is None
    assert golden_source(None, None) is None


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_pixels_survive_the_png_exactly(channels):
    pixels = np.random.default_rng(channels).integers(0, 256, (5, 7, channels)).astype(np.uint8)
    with Image.open(io.BytesIO(base64.b64decode(png_base64(pixels)))) as image:
        decoded = np.asarray(image, dtype=np.uint8).reshape(5, 7, channels)
    np.testing.assert_array_equal(decoded, pixels)


def test_an_int8_file_records_the_quantized_input_and_its_integer_output(digits):
    pixels, labels = digits
    model = build_sequential()
    content = convert_keras(model, Mode.FULL_INT8, pixels.astype(np.float32) / 255, progress=False)
    source = GoldenSource(pixels[:3], ("a", "b", "c"), (int(labels[0]), None, 2))
    golden = golden_vectors(content, source, Preprocessing(), [str(k) for k in range(10)])
    runner = TfliteRunner(content)
    scale, zero_point = runner._input_quant
    for k, image in enumerate(golden["images"]):
        expected = quantize(pixels[k : k + 1].astype(np.float32) / 255, scale, zero_point, np.int8)
        assert image["input_sha256"] == hashlib.sha256(expected.tobytes()).hexdigest()
        assert all(isinstance(v, int) for v in image["output_raw"]) and image["input_dtype"] == "int8"
        scores = runner.predict(pixels[k : k + 1].astype(np.float32) / 255)[0]
        np.testing.assert_allclose(image["scores"], scores, rtol=0, atol=1e-7)
        assert image["top1"] == int(np.argmax(scores))
    assert [image["label"] for image in golden["images"]] == [str(labels[0]), None, "2"]
    assert golden["tolerance"] == {"output_raw": 1, "unit": "quantization steps"}


def test_a_pixel_input_file_records_the_bytes_as_they_are():
    pixels = np.random.default_rng(0).integers(0, 256, (2, INPUT_SIZE, INPUT_SIZE, 3)).astype(np.uint8)
    normalization = Preprocessing.from_mean_std(127.5, 127.5)
    content = convert_pixel_input(
        build_sequential(channels=3), normalization, pixels.astype(np.float32), IoType.UINT8, progress=False
    )
    golden = golden_vectors(content, GoldenSource(pixels, ("a", "b"), (None, None)), PIXELS, [])
    assert golden["images"][1]["input_sha256"] == hashlib.sha256(pixels[1:2].tobytes()).hexdigest()
    assert golden["images"][1]["top1_label"] == str(golden["images"][1]["top1"])
