"""Keras 2 is set up in one place, and only when it is first used."""

import subprocess
import sys


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_keras2_imports_no_tensorflow():
    assert run_python("import sys; from tflite_opt.core import keras2; print('tensorflow' in sys.modules)") == "False"


def test_first_use_sets_up_keras_2_before_tensorflow_is_imported():
    code = (
        "import os; from tflite_opt.core import keras2; keras = keras2.keras; "
        "print(os.environ['TF_USE_LEGACY_KERAS'], keras.__name__, keras2.tf.keras.__name__.split('.')[0])"
    )
    assert run_python(code) == "1 tf_keras tf_keras"


def test_an_unknown_attribute_is_an_attribute_error():
    code = "from tflite_opt.core import keras2\ntry:\n    keras2.torch\nexcept AttributeError as e:\n    print(e)"
    assert "has no attribute 'torch'" in run_python(code)
