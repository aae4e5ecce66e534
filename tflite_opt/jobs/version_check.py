"""Tell users, before they convert, whether their stack can do it (``python -m tflite_opt.version_check``).

Each check is OK, WARN or FAIL with the fix in words. It never crashes: a check
that cannot run is reported as such. It imports TensorFlow only for the checks
that need it.
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tflite_opt.core.errors import StackError
from tflite_opt.core.quiet import native_stderr_silenced
from tflite_opt.core.tf_env import prepare_tensorflow_environment
from tflite_opt.stages.translate import TESTED_KERAS3

SUPPORTED_PYTHON = ((3, 10), (3, 13))
TESTED_TF = "2.21"
UPGRADE_TF = "pip install 'tensorflow~=2.21.0' 'tf-keras~=2.21.0'"


class Status(str, enum.Enum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status.value:<4}  {self.name}: {self.detail}" + (f" → {self.fix}" if self.fix else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}


def installed_version(module: str, distribution: str) -> str | None:
    """The version of an installed package, or None when it is absent; imports nothing.

    A module already in ``sys.modules`` speaks for itself (``None`` there means
    "blocked", as Python's import system treats it).
    """
    if module in sys.modules:
        loaded = sys.modules[module]
        return None if loaded is None else str(getattr(loaded, "__version__", "unknown"))
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except (ImportError, ValueError):
        return None
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _parse(version: str | None) -> tuple[int, ...]:
    """Leading numeric components: '2.21.0rc1' → (2, 21, 0)."""
    if not version:
        return ()
    numbers = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group()))
    return tuple(numbers)


def check_python() -> CheckResult:
    found = sys.version_info[:2]
    low, high = SUPPORTED_PYTHON
    text = f"Python {found[0]}.{found[1]}"
    if low <= found <= high:
        return CheckResult("python", Status.OK, text)
    return CheckResult(
        "python",
        Status.FAIL,
        f"{text} is outside the supported {low[0]}.{low[1]}–{high[0]}.{high[1]}",
        f"use Python {low[0]}.{low[1]}–{high[0]}.{high[1]} (tested on 3.11)",
    )


def _import_tensorflow() -> Any:
    prepare_tensorflow_environment()
    with native_stderr_silenced():
        return importlib.import_module("tensorflow")


def _make_converter(lite: Any) -> Any:
    """A real converter instance: TF 2 takes a list of functions, TF 1 a graph and tensors."""
    try:
        return lite.TFLiteConverter([])
    except TypeError:
        return lite.TFLiteConverter(None, [], [])


def check_converter(tf: Any) -> CheckResult:
    """Probe a converter instance for everything full-integer conversion uses."""
    version = getattr(tf, "__version__", "unknown")
    lite = getattr(tf, "lite", None)
    if lite is None or not hasattr(lite, "TFLiteConverter"):
        return CheckResult(
            "tflite converter",
            Status.FAIL,
            f"TensorFlow {version} has no tf.lite.TFLiteConverter (before 1.13 it lived in tf.contrib.lite)",
            UPGRADE_TF,
        )
    converter = _make_converter(lite)
    missing = []
    if not hasattr(converter, "optimizations"):
        missing.append("optimizations")
    if not hasattr(getattr(lite, "Optimize", None), "DEFAULT"):
        missing.append("tf.lite.Optimize.DEFAULT")
    if not hasattr(converter, "representative_dataset"):
        missing.append("representative_dataset")
    if not hasattr(getattr(converter, "target_spec", None), "supported_ops"):
        missing.append("target_spec.supported_ops")
    if not hasattr(getattr(lite, "OpsSet", None), "TFLITE_BUILTINS_INT8"):
        missing.append("tf.lite.OpsSet.TFLITE_BUILTINS_INT8")
    missing += [a for a in ("inference_input_type", "inference_output_type") if not hasattr(converter, a)]
    if not missing:
        return CheckResult("tflite converter", Status.OK, "supports full-integer int8 conversion")
    legacy = " (it only has post_training_quantize)" if hasattr(converter, "post_training_quantize") else ""
    return CheckResult(
        "tflite converter",
        Status.FAIL,
        f"TFLiteConverter of TensorFlow {version} has no {', '.join(missing)}{legacy}: "
        "it cannot do full-integer quantization",
        f"upgrade to TensorFlow {TESTED_TF}: {UPGRADE_TF}",
    )


def check_tensorflow() -> list[CheckResult]:
    """TensorFlow's presence and version, then its converter (which needs the import)."""
    try:
        tf = _import_tensorflow()
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "tensorflow":
            return [CheckResult("tensorflow", Status.FAIL, "TensorFlow is not installed", UPGRADE_TF)]
        return [CheckResult("tensorflow", Status.FAIL, f"TensorFlow fails to import: {exc}", UPGRADE_TF)]
    version = str(getattr(tf, "__version__", "unknown"))
    parsed = _parse(version)
    if parsed[:2] == _parse(TESTED_TF):
        result = CheckResult("tensorflow", Status.OK, f"TensorFlow {version}")
    elif parsed and parsed[0] >= 2:
        result = CheckResult(
            "tensorflow", Status.WARN, f"TensorFlow {version}; tflite_opt is tested with {TESTED_TF}", UPGRADE_TF
        )
    else:
        result = CheckResult("tensorflow", Status.FAIL, f"TensorFlow {version} is too old", UPGRADE_TF)
    return [result, check_converter(tf)]


def check_tf_keras(tf_version: str | None) -> CheckResult:
    """tflite_opt loads and prunes models with tf_keras (Keras 2)."""
    version = installed_version("tf_keras", "tf-keras")
    want = ".".join(map(str, _parse(tf_version)[:2])) or TESTED_TF
    if version is None:
        keras = installed_version("keras", "keras")
        why = f"tf.keras is Keras {keras}" if keras and _parse(keras)[:1] == (3,) else "Keras 2 is missing"
        return CheckResult(
            "tf-keras",
            Status.FAIL,
            f"tf-keras is not installed and {why}: tflite_opt loads and prunes models with Keras 2",
            f"pip install 'tf-keras~={want}.0'",
        )
    if _parse(version)[:2] != _parse(want)[:2]:
        # tf-keras exists for TensorFlow 2.16 and later; an older TensorFlow is what needs upgrading.
        fix = f"pip install 'tf-keras~={want}.0'" if _parse(want) >= (2, 16) else UPGRADE_TF
        return CheckResult("tf-keras", Status.WARN, f"tf-keras {version} does not match TensorFlow {tf_version}", fix)
    return CheckResult("tf-keras", Status.OK, f"tf-keras {version}")


def check_tfmot() -> CheckResult:
    version = installed_version("tensorflow_model_optimization", "tensorflow-model-optimization")
    fix = "pip install 'tensorflow-model-optimization~=0.8.0'"
    if version is None:
        return CheckResult("model optimization", Status.FAIL, "tensorflow-model-optimization is not installed", fix)
    if installed_version("tf_keras", "tf-keras") is None:
        keras = installed_version("keras", "keras") or "missing"
        return CheckResult(
            "model optimization",
            Status.WARN,
            f"tensorflow-model-optimization {version} needs Keras 2, but tf.keras is Keras {keras} "
            "and tf-keras is not installed",
            f"pip install 'tf-keras~={TESTED_TF}.0'",
        )
    if _parse(version)[:2] < (0, 8):
        return CheckResult("model optimization", Status.WARN, f"tensorflow-model-optimization {version} is old", fix)
    return CheckResult("model optimization", Status.OK, f"tensorflow-model-optimization {version}")


def check_interpreter() -> CheckResult:
    version = installed_version("ai_edge_litert", "ai-edge-litert")
    problem = "ai-edge-litert is not installed"
    if version is not None:
        try:
            importlib.import_module("ai_edge_litert.interpreter")
            return CheckResult("interpreter", Status.OK, f"ai-edge-litert {version}")
        except ImportError as exc:
            problem = f"ai-edge-litert {version} fails to import: {exc}"
    fix = "pip install 'ai-edge-litert>=2,<3'"
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(getattr(tf, "lite", None), "Interpreter"):
        return CheckResult(
            "interpreter", Status.WARN, f"{problem}; falling back to the deprecated tf.lite.Interpreter", fix
        )
    return CheckResult("interpreter", Status.FAIL, f"{problem}, and TensorFlow has no tf.lite.Interpreter", fix)


def check_keras3() -> CheckResult:
    """Keras 3 model files: read with the installed Keras 3, translated to tf_keras for pruning."""
    version = installed_version("keras", "keras")
    tested = ", ".join(TESTED_KERAS3)
    if version is None or _parse(version)[:1] != (3,):
        found = "not installed" if version is None else f"Keras {version}"
        return CheckResult(
            "keras 3",
            Status.WARN,
            f"Keras 3 is {found}: model files saved by Keras 3 cannot be read (tf_keras files can)",
            f"pip install 'keras~={TESTED_KERAS3[-1]}.0'",
        )
    if ".".join(map(str, _parse(version)[:2])) in TESTED_KERAS3:
        return CheckResult(
            "keras 3",
            Status.OK,
            f"keras {version}: Keras 3 models convert; --prune translates them (checked: {tested})",
        )
    return CheckResult(
        "keras 3",
        Status.WARN,
        f"keras {version}: Keras 3 models convert, but their translation to tf_keras for --prune was checked with "
        f"Keras {tested} only (each translation is still checked against the model's outputs before use)",
        f"pip install 'keras~={TESTED_KERAS3[-1]}.0'",
    )


# Versions that run code carried by a model file although safe_mode is on.
KERAS3_ADVISORIES = (
    ((3, 9), "CVE-2025-1550: config.json can import and call arbitrary functions"),
    ((3, 11), "CVE-2025-8747/CVE-2025-9906: a .keras archive can turn safe_mode off"),
    ((3, 11, 3), "CVE-2025-9905: safe_mode is ignored for .h5 files"),
    ((3, 13, 2), "CVE-2026-1462: TFSMLayer loads an external SavedModel"),
)


def check_keras_safety() -> CheckResult:
    notes = []
    keras = installed_version("keras", "keras")
    parsed = _parse(keras)
    if parsed[:1] == (3,):
        notes += [f"keras {keras}: {text}" for fixed, text in KERAS3_ADVISORIES if parsed < fixed]
    elif parsed and parsed < (2, 13):
        notes.append(f"keras {keras}: CVE-2024-3660: Lambda layers run code despite safe_mode")
    tf_keras = installed_version("tf_keras", "tf-keras")
    mitigated = (
        f"tf-keras {tf_keras} ignores safe_mode for .h5 files (the behaviour of CVE-2025-9905); tflite_opt reads "
        "each file's stored configuration before loading it and refuses code, so its own loads are safe"
    )
    if not notes:
        # tf-keras is a required part of the stack and the tool guards every load itself: not a warning.
        detail = mitigated if tf_keras is not None else "no installed Keras is known to bypass safe_mode"
        return CheckResult("model-file safety", Status.OK, detail)
    if tf_keras is not None:
        notes.append(mitigated)
    return CheckResult(
        "model-file safety",
        Status.WARN,
        "; ".join(notes),
        "tflite_opt reads every model file's stored configuration before loading it and refuses Lambda layers, "
        "modules outside Keras and unregistered classes (override: --allow-unsafe-deserialization)"
        + (
            "; other Keras code on this machine: upgrade keras to 3.13.2 or later"
            if parsed[:1] == (3,) and parsed < (3, 13, 2)
            else ""
        ),
    )


def _guarded(name: str, check: Callable[[], CheckResult | list[CheckResult]]) -> list[CheckResult]:
    try:
        result = check()
    except Exception as exc:  # a check must never take the tool down; say it could not run
        return [CheckResult(name, Status.WARN, f"check could not run: {type(exc).__name__}: {exc}")]
    return result if isinstance(result, list) else [result]


def run_checks() -> list[CheckResult]:
    """Every check, in the order a fix should be applied."""
    results = _guarded("python", check_python)
    results += _guarded("tensorflow", check_tensorflow)
    tf = sys.modules.get("tensorflow")
    tf_version = getattr(tf, "__version__", None) if tf is not None else None
    results += _guarded("tf-keras", lambda: check_tf_keras(tf_version))
    results += _guarded("model optimization", check_tfmot)
    results += _guarded("keras 3", check_keras3)
    results += _guarded("interpreter", check_interpreter)
    results += _guarded("model-file safety", check_keras_safety)
    return results


def exit_code(results: Sequence[CheckResult], strict: bool = False) -> int:
    """0 when nothing fails (and, with strict, nothing warns); 1 otherwise."""
    bad = {Status.FAIL, Status.WARN} if strict else {Status.FAIL}
    return 1 if any(r.status in bad for r in results) else 0


def format_results(results: Sequence[CheckResult]) -> str:
    lines = [r.line() for r in results]
    failures = [r for r in results if r.status is Status.FAIL]
    warnings = [r for r in results if r.status is Status.WARN]
    if failures:
        lines.append("version-check: FAIL: " + "; ".join(r.detail for r in failures))
    else:
        lines.append(f"version-check: ready to convert ({len(warnings)} warning{'s' * (len(warnings) != 1)})")
    return "\n".join(lines)


def preflight() -> list[str]:
    """The checks convert runs first: silent when all is well.

    Returns the warnings worth showing before a conversion; the model-file
    advisory is left out, because tflite_opt inspects every model file itself.

    Raises:
        StackError: a check failed; the message says which and how to fix it.
    """
    results = run_checks()
    failures = [r for r in results if r.status is Status.FAIL]
    if failures:
        raise StackError("; ".join(f"{r.detail} ({r.fix})" if r.fix else r.detail for r in failures))
    return [f"{r.name}: {r.detail}" for r in results if r.status is Status.WARN and r.name != "model-file safety"]
