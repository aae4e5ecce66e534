"""The interpreter runner: integer I/O quantized as the model says, batches padded, XNNPACK or not."""

import numpy as np
import pytest
from helpers import CORPUS

from tflite_opt.core.interpreter import TfliteRunner, dequantize, quantize

VALID = (CORPUS / "tflite" / "valid.tflite").read_bytes()


def test_quantize_rounds_clips_and_casts():
    values = np.array([-10.0, -0.26, 0.24, 0.26, 10.0])
    assert quantize(values, 0.5, -1, np.int8).tolist() == [-21, -2, -1, 0, 19]
    assert quantize(np.array([-1000.0, 1000.0]), 1.0, 0, np.int8).tolist() == [-128, 127]
    assert quantize(np.array([-1.0, 300.0]), 1.0, 0, np.uint8).tolist() == [0, 255]


def test_dequantize_inverts_quantize_within_half_a_step():
    values = np.linspace(-3, 3, 41)
    back = dequantize(quantize(values, 0.1, 3, np.int8), 0.1, 3)
    assert np.max(np.abs(back - values)) <= 0.05 + 1e-6


def test_batches_with_a_padded_last_one_score_as_one_image_at_a_time():
    images = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    batched = TfliteRunner(VALID, batch_size=2)
    assert batched.batch_size == 2  # the batch dimension is dynamic, so the runner resizes it
    scores = batched.predict(images)
    assert scores.shape == (5, 10) and scores.dtype == np.float32
    np.testing.assert_array_equal(scores, TfliteRunner(VALID, batch_size=1).predict(images))
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=0.05)  # a softmax, dequantized


@pytest.mark.parametrize(("use_xnnpack", "delegate"), [(True, "xnnpack"), (False, "none")])
def test_the_delegate_is_recorded_and_gives_the_same_scores(use_xnnpack, delegate):
    images = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    runner = TfliteRunner(VALID, use_xnnpack=use_xnnpack)
    assert runner.delegate == delegate and runner.init_ms > 0
    np.testing.assert_array_equal(runner.predict(images), TfliteRunner(VALID).predict(images))


def test_timed_invokes_are_positive_milliseconds():
    times = TfliteRunner(VALID).time_invokes(np.zeros((8, 8, 1), np.float32), runs=5, warmup=1)
    assert times.shape == (5,) and np.all(times > 0) and np.all(times < 1000)
