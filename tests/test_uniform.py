"""Tests of the uniform quantizers: roundings, unbiasedness, dither, normalization."""

import numpy as np
import pytest
import tensorflow as tf

from tff_rdq.quantizers import uniform

SEED = tf.constant([3, 4], tf.int32)


def _round_trip(values, step, rounding, seed=SEED):
  q = uniform.quantize(tf.constant(values), step, rounding, seed)
  return q.numpy(), uniform.dequantize(q, step, rounding, seed).numpy()


def test_uniform_is_nearest_level():
  values = np.linspace(-3, 3, 1001).astype(np.float32)
  q, reconstruction = _round_trip(values, 0.25, 'uniform')
  np.testing.assert_array_equal(q, np.round(values / np.float32(0.25)).astype(np.int32))
  assert np.max(np.abs(reconstruction - values)) <= 0.125 + 1e-6


def test_stochastic_rounding_is_unbiased():
  # 0.3 sits 30 % of the way from level 0 to level 1.
  values = np.full(200_000, 0.3, np.float32)
  q, reconstruction = _round_trip(values, 1.0, 'stochastic')
  assert set(np.unique(q)) == {0, 1}
  # The mean of 200k Bernoulli(0.3) draws is within 0.005 of 0.3 (>4 sigma).
  assert abs(reconstruction.mean() - 0.3) < 0.005


def test_stochastic_rounding_changes_with_seed():
  values = np.full(1000, 0.5, np.float32)
  q1, _ = _round_trip(values, 1.0, 'stochastic', tf.constant([1, 2]))
  q2, _ = _round_trip(values, 1.0, 'stochastic', tf.constant([1, 3]))
  assert not np.array_equal(q1, q2)


def test_dithered_error_is_uniform_in_half_step():
  rng = np.random.default_rng(0)
  values = rng.normal(size=100_000).astype(np.float32)
  step = 0.5
  _, reconstruction = _round_trip(values, step, 'dithered')
  error = (reconstruction - values) / step
  assert np.all(np.abs(error) <= 0.5 + 1e-5)
  # Uniform on [-1/2, 1/2]: mean 0, variance 1/12, flat histogram.
  assert abs(error.mean()) < 0.005
  assert abs(error.var() - 1 / 12) < 0.002
  counts, _ = np.histogram(error, bins=10, range=(-0.5, 0.5))
  assert counts.min() > 0.9 * counts.mean()


def test_dither_is_reproducible_from_seed():
  a = uniform.dither([10], SEED).numpy()
  b = uniform.dither([10], SEED).numpy()
  np.testing.assert_array_equal(a, b)
  assert np.all((a >= -0.5) & (a < 0.5))


def test_clamps_to_int32_range():
  q, _ = _round_trip(np.array([1e12, -1e12], np.float32), 1e-3, 'uniform')
  np.testing.assert_array_equal(q, [2**31 - 128, -(2**31 - 128)])


@pytest.mark.parametrize('normalization,statistic', [
    ('none', lambda v: 1.0),
    ('mean_abs', lambda v: np.mean(np.abs(v))),
    ('rms', lambda v: np.sqrt(np.mean(v**2))),
    ('max_abs', lambda v: np.max(np.abs(v))),
])
def test_normalized_step(normalization, statistic):
  values = np.array([0.5, -2.0, 1.0, 0.0], np.float32)
  step = uniform.normalized_step(tf.constant(values), 0.1, normalization).numpy()
  assert step == pytest.approx(0.1 * statistic(values), rel=1e-6)
  zero_step = uniform.normalized_step(tf.zeros([4]), 0.1, normalization).numpy()
  assert zero_step == pytest.approx(0.1)


def test_bad_names_are_rejected():
  with pytest.raises(ValueError, match='rounding'):
    uniform.quantize(tf.constant([1.0]), 1.0, 'nearest', SEED)
  with pytest.raises(ValueError, match='normalization'):
    uniform.normalized_step(tf.constant([1.0]), 1.0, 'l2')


@pytest.mark.parametrize('magnitude', [1e3, 1e5, 2.0**22, 2.0**24])
@pytest.mark.parametrize('rounding', ['uniform', 'stochastic', 'dithered'])
def test_error_bounds_hold_for_large_values(rounding, magnitude):
  """The stated bounds hold up to |x / step| = 2**24: exactly for the float64
  reconstruction, and up to half a float32 ulp of the result for float32."""
  rng = np.random.default_rng(int(magnitude) % 1000)
  step = np.float32(0.37)  # Not a power of two: x / step has a fraction.
  levels = magnitude + rng.uniform(-50, 50, size=20_000)
  values = (np.float64(step) * levels * rng.choice([-1, 1], size=levels.size)).astype(np.float32)
  seed = tf.constant([7, 1], tf.int32)
  q = uniform.quantize(tf.constant(values), step, rounding, seed)
  exact = uniform.dequantize(q, step, rounding, seed, dtype=tf.float64).numpy()
  rounded = uniform.dequantize(q, step, rounding, seed).numpy()
  bound = np.float64(step) * (1.0 if rounding == 'stochastic' else 0.5)
  error = exact - values.astype(np.float64)
  assert np.max(np.abs(error)) <= bound * (1 + 1e-7)
  np.testing.assert_array_equal(rounded, exact.astype(np.float32))
  ulp = np.spacing(np.abs(rounded)).astype(np.float64)
  assert np.all(np.abs(rounded.astype(np.float64) - values) <= bound * (1 + 1e-7) + ulp / 2)
  if rounding == 'dithered':
    # Uniform in a half step, independent of x: mean 0, variance step**2 / 12.
    assert abs(np.mean(error / step)) < 0.01
    assert np.var(error / step) == pytest.approx(1 / 12, rel=0.05)
  if rounding == 'stochastic':
    assert abs(np.mean(error / step)) < 0.015  # Unbiased.
