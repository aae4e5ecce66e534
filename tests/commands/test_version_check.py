"""``python -m tflite_opt.version_check``: a line per check, JSON for CI, exit codes, no TensorFlow to start."""

import json
import subprocess
import sys
import textwrap

from tflite_opt.version_check import main


def test_the_installed_stack_is_ready_to_convert(capsys):
    assert main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["OK"] * (len(lines) - 2) + ["WARN"]  # the .h5 advisory
    assert lines[-1] == "version-check: ready to convert (1 warning)"
    assert main(["--strict"]) == 1  # a warning fails under --strict


def test_json_output_lists_every_check(capsys):
    assert main(["--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["schema_version"] == 1 and payload["exit_code"] == 0
    assert {c["name"] for c in payload["checks"]} >= {"python", "tensorflow", "tflite converter", "interpreter"}
    assert {c["status"] for c in payload["checks"]} <= {"OK", "WARN"}


def test_tf_1_12_package_on_the_path_exits_1_with_one_line_naming_optimizations(tmp_path):
    """Done-when of the version check, as a user would run it."""
    package = tmp_path / "fake" / "tensorflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('__version__ = "1.12.0"\nfrom tensorflow import lite\n')
    (package / "lite.py").write_text(
        textwrap.dedent(
            """
            class TFLiteConverter:
                def __init__(self, graph_def, input_tensors, output_tensors):
                    self.post_training_quantize = False
            """
        )
    )
    env = {"PYTHONPATH": str(tmp_path / "fake"), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "tflite_opt.version_check"], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith("version-check: FAIL:") and "optimizations" in last


def test_importing_the_version_check_loads_no_tensorflow():
    code = "import sys, tflite_opt.version_check; print('tensorflow' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False"
