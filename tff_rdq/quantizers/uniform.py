"""Uniform scalar quantization with a step size, in core TensorFlow ops.

`quantize(x, step)` maps each value to an integer `q`; `dequantize(q, step)`
maps it back to `q * step` (minus the dither, for dithered rounding). Three
roundings:

- `uniform`: `q = round(x / step)`, nearest integer (ties to even). Error in
  `[-step/2, step/2]`, deterministic, biased for a given `x`.
- `stochastic`: `q = floor(x / step + u)`, `u ~ U[0, 1)`: unbiased,
  `E[q * step] = x`; error in `(-step, step)`. The randomness stays on the
  client (the server needs no seed).
- `dithered`: subtractive dither, `q = round(x / step + d)`, reconstruction
  `(q - d) * step`, `d ~ U[-1/2, 1/2)` drawn from a seed that the server also
  gets. The error is uniform in `[-step/2, step/2]` and independent of `x`.

Integers are clamped to `[-(2**31 - 128), 2**31 - 128]`, the widest range of
float32 values that convert to int32 exactly.

Step normalization scales the step per tensor by a statistic of the values
(`mean_abs`, `rms`, `max_abs`), so that one step setting fits tensors of very
different magnitudes; the scaled step is side information that the server
must receive.
"""

import tensorflow as tf

from tff_rdq import validation

ROUNDINGS = ('uniform', 'stochastic', 'dithered')
NORMALIZATIONS = ('none', 'mean_abs', 'rms', 'max_abs')
# The largest float32 below 2**31 (float32(2**31 - 1) rounds up to 2**31).
_INT_LIMIT = 2.0**31 - 128


def check_rounding(rounding: str) -> str:
  return validation.check_choice('rounding', rounding, ROUNDINGS)


def check_normalization(normalization: str) -> str:
  return validation.check_choice('normalization', normalization, NORMALIZATIONS)


def normalized_step(
    values: tf.Tensor, step: tf.Tensor, normalization: str
) -> tf.Tensor:
  """`step` times the normalization statistic of `values` (float32 scalar).

  A zero statistic (an all-zero tensor) leaves the step unchanged.
  """
  check_normalization(normalization)
  step = tf.cast(step, tf.float32)
  if normalization == 'none':
    return step
  values = tf.reshape(tf.cast(values, tf.float32), [-1])
  if normalization == 'mean_abs':
    scale = tf.reduce_mean(tf.abs(values))
  elif normalization == 'rms':
    scale = tf.sqrt(tf.reduce_mean(tf.square(values)))
  else:
    scale = tf.reduce_max(tf.abs(values))
  return step * tf.where(scale > 0, scale, 1.0)


def dither(shape, seed: tf.Tensor) -> tf.Tensor:
  """Dither `d ~ U[-1/2, 1/2)` from a stateless `int32` seed of shape [2]."""
  return tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32) - 0.5


def quantize(
    values: tf.Tensor, step: tf.Tensor, rounding: str, seed: tf.Tensor
) -> tf.Tensor:
  """Quantizes `float32` values to `int32` with step `step`.

  Args:
    values: A `float32` tensor.
    step: A positive `float32` scalar.
    rounding: One of `ROUNDINGS`.
    seed: An `int32` tensor of shape [2]: the dither seed (`dithered`) or the
      seed of the rounding noise (`stochastic`); unused for `uniform`.

  Returns:
    An `int32` tensor shaped like `values`.
  """
  check_rounding(rounding)
  scaled = values / step
  if rounding == 'uniform':
    rounded = tf.round(scaled)
  elif rounding == 'stochastic':
    noise = tf.random.stateless_uniform(
        tf.shape(values), seed=seed, dtype=tf.float32
    )
    rounded = tf.floor(scaled + noise)
  else:
    rounded = tf.round(scaled + dither(tf.shape(values), seed))
  return tf.cast(tf.clip_by_value(rounded, -_INT_LIMIT, _INT_LIMIT), tf.int32)


def dequantize(
    integers: tf.Tensor, step: tf.Tensor, rounding: str, seed: tf.Tensor
) -> tf.Tensor:
  """The `float32` reconstruction of `quantize`'s integers (same arguments)."""
  check_rounding(rounding)
  levels = tf.cast(integers, tf.float32)
  if rounding == 'dithered':
    levels -= dither(tf.shape(integers), seed)
  return levels * step
