"""The shape of the code, checked: short functions, imports at the top, a test file for every module.

The import layering itself (commands > jobs > stages > core, stages in data-flow order, no cycles) is checked by
import-linter in ``make lint`` (.importlinter).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tflite_opt"
TESTS = Path(__file__).resolve().parent
MAX_FUNCTION_LINES = 60
# Functions that are mostly a code template for another language, exempt from the length limit.
TEMPLATES = {"kotlin_source", "swift_source"}
# Modules that are not a stage, job or command of their own: package markers, and the shared command edge
# (tested in tests/commands/test_command.py).
NOT_MIRRORED = {"__init__", "command"}
# Third-party generated code kept as published (each file's header names its source and licence): not ours to
# shape, so the function rules skip it; it needs no test file (what uses it is tested).
VENDORED = PACKAGE / "vendor"


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if VENDORED not in path.parents)


def functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_function_is_longer_than_sixty_lines(path):
    long = [
        f"{f.name} ({f.end_lineno - f.lineno + 1} lines)"
        for f in functions(path)
        if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES and f.name not in TEMPLATES
    ]
    assert not long, long


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_inside_functions_are_only_deferred_third_party_ones_with_a_reason(path):
    lines = path.read_text().splitlines()
    problems = []
    for function in functions(path):
        for node in ast.walk(function):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            nearby = " ".join(lines[max(0, node.lineno - 3) : node.end_lineno]).lower()
            if module.split(".")[0] == "tflite_opt":
                problems.append(f"line {node.lineno}: {module} is ours: import it at the top")
            elif "deferred" not in nearby:
                problems.append(f"line {node.lineno}: {module} needs a '# deferred: why' comment")
    assert not problems, problems


@pytest.mark.parametrize(
    ("layer", "tests"),
    [("stages", "stages"), ("jobs", "jobs"), ("core", "core"), (".", "commands")],
)
def test_every_module_has_its_test_file(layer, tests):
    folder = PACKAGE / layer
    names = {p.stem for p in folder.glob("*.py")} - NOT_MIRRORED
    if layer == "core":  # plumbing without behaviour of its own is tested through its users
        names -= {"errors", "quiet", "tf_env", "version", "default_data", "tfmot"}
    missing = sorted(name for name in names if not (TESTS / tests / f"test_{name}.py").is_file())
    assert not missing, f"no tests/{tests}/test_<module>.py for: {', '.join(missing)}"
