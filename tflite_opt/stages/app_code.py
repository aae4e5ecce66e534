"""What the generated Kotlin (:mod:`~tflite_opt.stages.kotlin_code`) and Swift (:mod:`~tflite_opt.stages.swift_code`)
share: a drop-in class per variant that loads the model, checks its sha256, feeds it what the benchmark fed it, and
returns the best classes with the manifest's tie rule, named so that variants and versions live side by side.
Every constant comes from the manifest, never retyped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tflite_opt.core.interpreter import INTEGER_RANGES
from tflite_opt.core.shipping import AppCode


@dataclass(frozen=True)
class CodeFacts:
    """What both generated languages need from a manifest."""

    type_name: str
    input_dtype: str
    output_dtype: str
    integer_in: bool
    integer_out: bool
    pixel_input: bool
    low: int
    high: int


def type_name(manifest: dict[str, Any], names: AppCode) -> str:
    """The generated type: the prefix, then model, variant and version in words, e.g. ``MnistCnnInt8V1``, so two
    variants or versions of one model live side by side in an app."""
    words = re.split(r"[^A-Za-z0-9]+", f"{manifest['model']}_{manifest['variant']}")
    version = re.sub(r"[^A-Za-z0-9]+", "_", str(manifest.get("version", "1")))
    name = "".join(word[:1].upper() + word[1:] for word in words if word) + f"V{version}"
    return names.class_prefix + (name if names.class_prefix or not name[0].isdigit() else f"M{name}")


def code_facts(manifest: dict[str, Any], names: AppCode) -> CodeFacts:
    dtype = manifest["input"]["dtype"]
    low, high = INTEGER_RANGES.get(dtype, (0, 0))
    return CodeFacts(
        type_name=type_name(manifest, names),
        input_dtype=dtype,
        output_dtype=manifest["output"]["dtype"],
        integer_in=dtype in INTEGER_RANGES,
        integer_out=manifest["output"]["dtype"] in INTEGER_RANGES,
        pixel_input=bool(manifest["preprocessing"].get("in_model")),
        low=low,
        high=high,
    )


def center_crop(prep: dict[str, Any]) -> bool:
    return prep["resize"].get("policy") == "center-crop"


def resize_doc(prep: dict[str, Any]) -> str:
    if center_crop(prep):
        return "Pictures of another aspect ratio: the largest centred box of the model's, then scaled."
    return "Pictures of another aspect ratio: scaled whole (stretched)."


def floats(values: list[float], suffix: str = "") -> str:
    return ", ".join(f"{v!r}{suffix}" for v in values)


def constants(manifest: dict[str, Any], facts: CodeFacts) -> dict[str, str | int | float | bool | list[float]]:
    """The manifest's constants both languages declare, by their Swift name (Kotlin's is its UPPER_SNAKE form);
    floats are float32 in the code."""
    prep, tensor_in, tensor_out = manifest["preprocessing"], manifest["input"], manifest["output"]
    return {
        "modelFile": manifest["file"]["name"],
        "modelSHA256": manifest["file"]["sha256"],
        "labelsFile": manifest["labels_file"],
        "inputHeight": prep["resize"]["height"],
        "inputWidth": prep["resize"]["width"],
        "inputChannels": tensor_in["shape"][-1],
        "scale": list(prep["scale"]),
        "offset": list(prep["offset"]),
        "inputQuantScale": float(tensor_in["scale"]) if facts.integer_in else 1.0,
        "inputZeroPoint": tensor_in["zero_point"] if facts.integer_in else 0,
        "outputQuantScale": float(tensor_out["scale"]) if facts.integer_out else 1.0,
        "outputZeroPoint": tensor_out["zero_point"] if facts.integer_out else 0,
        "numClasses": len(manifest["labels"]),
        "centerCrop": center_crop(prep),
    }


def upper_snake(name: str) -> str:
    """``modelSHA256`` → ``MODEL_SHA256``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


DEFAULT_NAMES = AppCode()
