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

Precision: `x / step`, the added noise or dither, the rounding and the
reconstruction `(q - d) * step` are computed in float64 (`x`, `step` and the
float32 noise convert to float64 exactly), so the error bounds above hold for
every `|x / step|` up to 2**24 and beyond, within the clamp below: the float64
reconstruction (`dequantize(..., dtype=tf.float64)`) is within the bound up to
float64 rounding (a relative 2**-52 of `|x / step|`, under 2**-27 step at
2**24). The float32 reconstruction (the default) is that value rounded to
float32, which adds at most half a float32 ulp of the result (at most
`2**-24 |x_hat|`, the representation error of any float32 result: below
6e-5 step at `|x / step| = 1e3`, up to one step at 2**24). Computing in float32
instead broke the half-step bound of dithered rounding from about
`|x / step| = 1e3` on (by up to 2.5 steps at 2**22).

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
  # float64 throughout (module doc: the error bounds for large |x / step|).
  scaled = tf.cast(values, tf.float64) / tf.cast(step, tf.float64)
  if rounding == 'uniform':
    rounded = tf.round(scaled)
  elif rounding == 'stochastic':
    noise = tf.random.stateless_uniform(
        tf.shape(values), seed=seed, dtype=tf.float32
    )
    rounded = tf.floor(scaled + tf.cast(noise, tf.float64))
  else:
    rounded = tf.round(scaled + tf.cast(dither(tf.shape(values), seed), tf.float64))
  return tf.cast(tf.clip_by_value(rounded, -_INT_LIMIT, _INT_LIMIT), tf.int32)


def dequantize(
    integers: tf.Tensor, step: tf.Tensor, rounding: str, seed: tf.Tensor,
    dtype=tf.float32,
) -> tf.Tensor:
  """The reconstruction of `quantize`'s integers (same arguments), in `dtype`.

  Computed in float64 and then cast to `dtype` (float32 by default; float64
  gives the reconstruction before its final rounding, see the module doc).
  """
  check_rounding(rounding)
  levels = tf.cast(integers, tf.float64)
  if rounding == 'dithered':
    levels -= tf.cast(dither(tf.shape(integers), seed), tf.float64)
  return tf.cast(levels * tf.cast(step, tf.float64), dtype)
