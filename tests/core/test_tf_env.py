"""The environment TensorFlow sees: Keras 2, and no oneDNN kernel that kills fine-tuning natively."""

import os
import subprocess
import sys

import pytest

from tflite_opt.core import tf_env

# A 1x1 stride-2 convolution of one input channel: TensorFlow 2.21's oneDNN gradient of it corrupts the heap on
# AVX-512 CPUs (SIGSEGV or "double free or corruption", exit 139 or 134, on this project's machines).
FIT_THE_CRASHING_CONVOLUTION = """
import numpy as np
from tflite_opt.core import keras2
keras = keras2.keras
inputs = keras.Input((64, 64, 1))
x = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)(inputs)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x))
model.compile("adam", "sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
model.fit(rng.random((64, 64, 64, 1), dtype=np.float32), rng.integers(0, 7, 64), batch_size=32, epochs=2, verbose=0)
print("fitted")
"""


@pytest.mark.slow
def test_fine_tuning_a_one_channel_strided_pointwise_convolution_does_not_crash_natively():
    env = {k: v for k, v in os.environ.items() if k not in (tf_env.ONEDNN, "TF_USE_LEGACY_KERAS")}
    done = subprocess.run([sys.executable, "-c", FIT_THE_CRASHING_CONVOLUTION], capture_output=True, text=True, env=env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() == "fitted"


def test_a_users_own_onednn_setting_is_kept(monkeypatch):
    monkeypatch.setenv(tf_env.ONEDNN, "1")
    tf_env.prepare_tensorflow_environment()
    assert os.environ[tf_env.ONEDNN] == "1"
    monkeypatch.delenv(tf_env.ONEDNN)
    tf_env.prepare_tensorflow_environment()
    assert os.environ[tf_env.ONEDNN] == "0"
