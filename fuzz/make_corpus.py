"""Write the committed corpus of broken inputs under tests/corpus/ (seeded, reproducible).

Usage: python fuzz/make_corpus.py

tflite/: a small real model (valid.tflite), its truncations, bit-flipped copies,
header-only, empty and text files. images/: truncated, mislabelled, corrupted
and bomb-sized images. The tests run every file; fuzz/fuzz_tflite.py adds its
findings here as found_*.tflite.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "corpus"


def small_model_bytes() -> bytes:
    from tflite_opt.core.config import Mode
    from tflite_opt.core.keras2 import keras
    from tflite_opt.stages.convert import convert_keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.layers.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    samples = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    return convert_keras(model, Mode.FULL_INT8, samples, progress=False)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def main() -> None:
    from PIL import Image

    tflite = CORPUS / "tflite"
    images = CORPUS / "images"
    tflite.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    valid = small_model_bytes()
    (tflite / "valid.tflite").write_bytes(valid)
    (tflite / "empty.tflite").write_bytes(b"")
    (tflite / "text.tflite").write_text("this is not a model\n")
    (tflite / "header_only.tflite").write_bytes(valid[:8])
    for fraction in (0.1, 0.5, 0.9, 0.99):
        (tflite / f"truncated_{int(fraction * 100):02d}.tflite").write_bytes(valid[: int(len(valid) * fraction)])
    rng = np.random.default_rng(0)
    for i in range(8):
        flipped = bytearray(valid)
        for position in rng.integers(8, len(valid), size=2 ** (i % 4 + 1)):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        (tflite / f"bitflip_{i}.tflite").write_bytes(bytes(flipped))

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    png = buffer.getvalue()
    (images / "truncated.png").write_bytes(png[: len(png) // 2])
    (images / "text_named.png").write_text("not an image")
    (images / "empty.jpg").write_bytes(b"")
    bad_crc = bytearray(png)
    bad_crc[-20] ^= 0xFF
    (images / "bad_crc.png").write_bytes(bytes(bad_crc))
    # A header that claims 100000 x 100000 pixels with almost no data: a decompression bomb.
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")
    (images / "bomb.png").write_bytes(bomb)
    print(f"wrote {len(list(tflite.iterdir()))} .tflite and {len(list(images.iterdir()))} image files under {CORPUS}")


if __name__ == "__main__":
    main()
