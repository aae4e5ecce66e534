"""A reference app in Python: classify images using nothing but a pulled bundle.

It reads the manifest, checks the model's sha256, and applies the manifest's
preprocessing and quantization exactly as the generated Kotlin and Swift do. It
imports nothing else from tflite_opt, so an app developer can read it as the
specification of what their app must do: a model that normalizes inside
(``preprocessing.in_model``) gets the pixel bytes as they are; otherwise
``x = pixel * scale + offset`` in float32 and, for an integer input,
``q = round(x / scale) + zero_point`` rounding half away from zero.

It first checks the bundle's golden vectors (``golden_file``): for each image stored there at the model's size,
the input tensor it computes must have the recorded sha256, and the model's raw output must match the recorded
one within the stated tolerance. An app runs the same check to prove it feeds the model what the benchmark fed it.

    python -m tflite_opt.reference_runner BUNDLE_DIR/mnist_cnn.int8.manifest.json [IMAGE_OR_FOLDER]
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

# The line `tflite-opt --help` lists this command with, and the first of its own --help.
SUMMARY = "classify images with nothing but a pulled bundle, its golden vectors checked first"

_MODES = {"grayscale": "L", "RGB": "RGB", "RGBA": "RGBA"}
_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def round_half_away_from_zero(values: np.ndarray) -> np.ndarray:
    """The manifest's rounding rule, exactly: to the nearest integer, a half away from zero (-2.5 → -3)."""
    whole = np.trunc(values)
    return np.where(np.abs(values - whole) >= 0.5, whole + np.sign(values), whole)


class BundleClassifier:
    """The bundle's model with its manifest's pre- and post-processing."""

    def __init__(self, manifest_path: Path):
        manifest_path = Path(manifest_path)
        self.manifest = json.loads(manifest_path.read_text())
        folder = self.folder = manifest_path.parent
        content = (folder / self.manifest["file"]["name"]).read_bytes()
        if hashlib.sha256(content).hexdigest() != self.manifest["file"]["sha256"]:
            raise ValueError(f"{self.manifest['file']['name']} does not match its manifest's sha256")
        self.labels = (folder / self.manifest["labels_file"]).read_text().splitlines()
        self.interpreter = Interpreter(model_content=content)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """The input tensor (1, H, W, C) for a picture: converted, resized, then :meth:`input_tensor`."""
        prep = self.manifest["preprocessing"]
        image = image.convert(_MODES[prep["channel_order"]])
        width, height = prep["resize"]["width"], prep["resize"]["height"]
        if prep["resize"].get("policy") == "center-crop" and image.size != (width, height):
            crop_width = min(image.width, image.height * width // height)
            crop_height = min(image.height, image.width * height // width)
            left, top = (image.width - crop_width) // 2, (image.height - crop_height) // 2
            image = image.crop((left, top, left + crop_width, top + crop_height))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        return self.input_tensor(np.asarray(image, dtype=np.uint8))

    def input_tensor(self, pixels: np.ndarray) -> np.ndarray:
        """The input tensor (1, H, W, C) for pixels already at the model's size (0..255)."""
        prep, tensor = self.manifest["preprocessing"], self.manifest["input"]
        pixels = pixels.reshape(tensor["shape"][1:])
        if prep.get("in_model"):  # the model normalizes: the bytes as they are (int8: shifted by 128)
            return (pixels.astype(np.int16) + tensor["zero_point"]).astype(tensor["dtype"])[np.newaxis]
        x = pixels.astype(np.float32) * np.asarray(prep["scale"], np.float32) + np.asarray(prep["offset"], np.float32)
        if tensor["dtype"] in _RANGES:
            low, high = _RANGES[tensor["dtype"]]
            steps = x / np.float32(tensor["scale"])
            x = np.clip(round_half_away_from_zero(steps) + tensor["zero_point"], low, high)
        return x.astype(tensor["dtype"])[np.newaxis]

    def raw_output(self, tensor: np.ndarray) -> np.ndarray:
        """The model's output tensor for one input tensor, as it is (integer output stays integer)."""
        self.interpreter.set_tensor(self._input, tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)[0].copy()

    def scores(self, image: Image.Image) -> np.ndarray:
        raw = self.raw_output(self.preprocess(image))
        output = self.manifest["output"]
        if output["dtype"] in _RANGES:
            return (raw.astype(np.float32) - output["zero_point"]) * output["scale"]
        return raw.astype(np.float32)

    def check_golden(self) -> tuple[int, list[str]]:
        """(how many golden images there are, what differs): each stored image's input tensor against the recorded
        sha256 and the model's raw output against the recorded one."""
        name = self.manifest.get("golden_file")
        if not name:
            return 0, []
        golden = json.loads((self.folder / name).read_text())
        tolerance, problems = golden["tolerance"], []
        for k, image in enumerate(golden["images"]):
            with Image.open(io.BytesIO(base64.b64decode(image["pixels_png"]))) as png:
                pixels = np.asarray(png.convert(_MODES[self.manifest["preprocessing"]["channel_order"]]), np.uint8)
            tensor = self.input_tensor(pixels)
            if hashlib.sha256(tensor.tobytes()).hexdigest() != image["input_sha256"]:
                problems.append(f"golden image {k} ({image['source']}): the input tensor differs from the benchmark's")
            worst = np.max(np.abs(self.raw_output(tensor).astype(np.float64) - np.asarray(image["output_raw"])))
            if worst > tolerance["output_raw"]:
                problems.append(f"golden image {k} ({image['source']}): output off by {worst:g} {tolerance['unit']}")
        return len(golden["images"]), problems

    def classify(self, path: Path) -> str:
        with Image.open(path) as image:
            return self.labels[int(np.argmax(self.scores(image)))]


def top1_on_folder(classifier: BundleClassifier, folder: Path) -> float:
    """Top-1 on a folder with one subfolder per class, named as the labels."""
    hits = total = 0
    for class_folder in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        for path in sorted(class_folder.iterdir()):
            hits += classifier.classify(path) == class_folder.name
            total += 1
    return hits / total if total else 0.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if len(args) not in (1, 2):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    classifier = BundleClassifier(Path(args[0]))
    count, problems = classifier.check_golden()
    for problem in problems:
        print(problem, file=sys.stderr)
    if count:
        print(f"golden vectors: {count - len({p.split(':')[0] for p in problems})} of {count} agree")
    if problems:
        return 1
    target = Path(args[1]) if len(args) == 2 else None
    if target is not None and target.is_dir() and any(p.is_dir() for p in target.iterdir()):
        print(f"top-1 {top1_on_folder(classifier, target):.4f}")
    elif target is not None and target.is_dir():  # no class folders, so no truth: each image's class
        for path in sorted(p for p in target.iterdir() if p.is_file()):
            print(f"{path.name}\t{classifier.classify(path)}")
    elif target is not None:
        print(classifier.classify(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
