"""The interpreter runner: integer I/O quantized as the model says, batches padded, XNNPACK or not."""

import numpy as np
import pytest
from helpers import CORPUS

from tflite_opt.core.interpreter import TfliteRunner, dequantize, quantize, round_half_away_from_zero

VALID = (CORPUS / "tflite" / "valid.tflite").read_bytes()


def test_rounding_is_half_away_from_zero_exactly():
    values = np.array([2.5, -2.5, 0.5, -0.5, 1.49999, -1.50001, 0.0], dtype=np.float32)
    assert round_half_away_from_zero(values).tolist() == [3, -3, 1, -1, 1, -2, 0]
    # floor(x + 0.5) gets this one wrong in float32: 0.49999997 + 0.5 rounds up to 1.0.
    assert round_half_away_from_zero(np.array([0.49999997], dtype=np.float32)).tolist() == [0]


def test_quantize_rounds_half_away_from_zero_clips_and_casts():
    values = np.array([-10.0, -0.25, 0.25, 0.26, 10.0])
    assert quantize(values, 0.5, -1, np.int8).tolist() == [-21, -2, 0, 0, 19]  # ±0.5 steps go away from zero
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


def test_a_timed_invoke_gives_wall_and_thread_cpu_milliseconds():
    runner = TfliteRunner(VALID, batch_size=1)
    runner.load(np.zeros((8, 8, 1), np.float32))
    runner.invoke()
    times = np.array([runner.invoke_timed() for _ in range(20)])
    assert times.shape == (20, 2) and np.all(times > 0) and np.all(times < 1000)
    # The CPU-time interval lies within the wall-time one.
    assert np.all(times[:, 1] <= times[:, 0] + 1e-3)
