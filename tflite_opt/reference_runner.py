"""A reference app in Python: classify images using nothing but a pulled bundle.

It reads the manifest, checks the model's sha256, and applies the manifest's
preprocessing and quantization exactly as the generated Kotlin and Swift do. It
imports nothing else from tflite_opt, so an app developer can read it as the
specification of what their app must do: a model that normalizes inside
(``preprocessing.in_model``) gets the pixel bytes as they are; otherwise
``x = pixel * scale + offset`` in float32 and, for an integer input,
``q = round(x / scale) + zero_point`` rounding half away from zero.

    python -m tflite_opt.reference_runner BUNDLE_DIR/mnist_cnn.int8.manifest.json IMAGE_OR_FOLDER
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

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
        folder = manifest_path.parent
        content = (folder / self.manifest["file"]["name"]).read_bytes()
        if hashlib.sha256(content).hexdigest() != self.manifest["file"]["sha256"]:
            raise ValueError(f"{self.manifest['file']['name']} does not match its manifest's sha256")
        self.labels = (folder / self.manifest["labels_file"]).read_text().splitlines()
        self.interpreter = Interpreter(model_content=content)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        self._output = self.interpreter.get_output_details()[0]["index"]

    def preprocess(self, image: Image.Image) -> np.ndarray:
        prep, tensor = self.manifest["preprocessing"], self.manifest["input"]
        image = image.convert(_MODES[prep["channel_order"]])
        image = image.resize((prep["resize"]["width"], prep["resize"]["height"]), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.uint8).reshape(tensor["shape"][1:])
        if prep.get("in_model"):  # the model normalizes: the bytes as they are (int8: shifted by 128)
            return (pixels.astype(np.int16) + tensor["zero_point"]).astype(tensor["dtype"])[np.newaxis]
        x = pixels.astype(np.float32) * np.asarray(prep["scale"], np.float32) + np.asarray(prep["offset"], np.float32)
        if tensor["dtype"] in _RANGES:
            low, high = _RANGES[tensor["dtype"]]
            steps = x / np.float32(tensor["scale"])
            x = np.clip(round_half_away_from_zero(steps) + tensor["zero_point"], low, high)
        return x.astype(tensor["dtype"])[np.newaxis]

    def scores(self, image: Image.Image) -> np.ndarray:
        self.interpreter.set_tensor(self._input, self.preprocess(image))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._output)[0]
        output = self.manifest["output"]
        if output["dtype"] in _RANGES:
            return (raw.astype(np.float32) - output["zero_point"]) * output["scale"]
        return raw.astype(np.float32)

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
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    classifier = BundleClassifier(Path(args[0]))
    target = Path(args[1])
    if target.is_dir():
        print(f"top-1 {top1_on_folder(classifier, target):.4f}")
    else:
        print(classifier.classify(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
