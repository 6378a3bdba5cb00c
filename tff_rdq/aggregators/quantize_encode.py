"""Factories for the mean and sum of quantized, entropy-coded client updates.

This is the method of this project. Each client quantizes every tensor of its
update with a step size (optionally normalized per tensor; see
`tff_rdq.quantizers.uniform`), codes the integers with a lossless codec
(run-length Elias-gamma by default; see `tff_rdq.codecs`) and sends one
`tf.string` per tensor. The server decodes each client inside
`tff.federated_aggregate`'s accumulate and dequantizes it with that client's
own step before summing (`tff_rdq.aggregators.compressed` does the federated
plumbing and the measurements).

Payload of one tensor (all counted as uplink bits):

  bytes 0-3   the tensor's effective step size, float32 little-endian
  bytes 4-7   (dithered rounding only) the client's dither seed, int32
              little-endian; the dither of tensor `i` uses seed `[seed, i]`
  then        the codec's bytes of the tensor's integers, flattened row-major

Side information: the step and seed bytes plus the codec's header bits.

`QuantizeEncodeFactory` is the weighted mean (a drop-in `model_aggregator` of
`tff.learning.algorithms.build_weighted_fed_avg`); `QuantizeEncodeSumFactory`
the sum (for example inside `tff.aggregators.UnweightedMeanFactory`). Both
compose with TFF's `clipping_factory` and `zeroing_factory` as inner factories.
State: `OrderedDict(step_size=float32)`. Besides the common measurements of
`compressed`, they report `step_size` and `step_size_std` (the clients'
un-normalized step sizes).
"""

import collections

import numpy as np
import tensorflow as tf

from tff_rdq import codecs
from tff_rdq.aggregators import compressed
from tff_rdq.codecs import bitstream
from tff_rdq.quantizers import uniform

_STEP_BYTES = 4
_SEED_BYTES = 4


def _check_step_size(step_size) -> float:
  if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
    raise TypeError(f'step_size must be a positive number, got {step_size!r}.')
  if not np.isfinite(step_size) or step_size <= 0:
    raise ValueError(f'step_size must be positive and finite, got {step_size!r}.')
  return float(step_size)


def client_seed(flat_values: list[tf.Tensor]) -> tf.Tensor:
  """A per-client `int32` seed derived from the update itself.

  The bit pattern of the update's float32 L1 norm: deterministic for a given
  update (reproducible runs) and different across clients and rounds.
  """
  total = tf.add_n([tf.reduce_sum(tf.abs(v)) for v in flat_values])
  return tf.bitcast(tf.cast(total, tf.float32), tf.int32)


def _scalar_bytes(value: tf.Tensor) -> tf.Tensor:
  return tf.reshape(tf.bitcast(value, tf.uint8), [-1])


class QuantizeEncodeCompressor:
  """Quantize with a step size, then code the integers (see module doc)."""

  diagnostic_names = ('squared_error', 'step_size')

  def __init__(self, step_size, *, rounding='uniform', normalization='none',
               codec='elias_gamma'):
    self.step_size = _check_step_size(step_size)
    uniform.check_rounding(rounding)
    uniform.check_normalization(normalization)
    self.rounding = rounding
    self.normalization = normalization
    self.codec = codecs.get_codec(codec)

  def __repr__(self):
    return (f'QuantizeEncodeCompressor(step_size={self.step_size}, rounding='
            f'{self.rounding!r}, normalization={self.normalization!r}, '
            f'codec={self.codec.name!r})')

  @property
  def header_size(self) -> int:
    """Bytes before the codec's bytes in each tensor's payload."""
    return _STEP_BYTES + (_SEED_BYTES if self.rounding == 'dithered' else 0)

  def initial_state(self):
    return collections.OrderedDict(step_size=tf.constant(self.step_size, tf.float32))

  def client_params(self, state):
    return state['step_size']

  def update_state(self, state, diagnostic_means):
    del diagnostic_means  # A fixed step.
    return state

  def encode(self, flat_values, step):
    seed = client_seed(flat_values)
    streams, squared_error = [], tf.constant(0.0, tf.float64)
    for i, values in enumerate(flat_values):
      tensor_step = uniform.normalized_step(values, step, self.normalization)
      tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
      integers = uniform.quantize(values, tensor_step, self.rounding, tensor_seed)
      reconstruction = uniform.dequantize(
          integers, tensor_step, self.rounding, tensor_seed)
      squared_error += tf.reduce_sum(
          tf.square(tf.cast(reconstruction - values, tf.float64)))
      parts = [_scalar_bytes(tensor_step)]
      if self.rounding == 'dithered':
        parts.append(_scalar_bytes(seed))
      parts.append(self.codec.encode_to_bytes(integers))
      streams.append(bitstream.bytes_to_string(tf.concat(parts, 0)))
    return streams, collections.OrderedDict(
        squared_error=squared_error, step_size=tf.cast(step, tf.float64))

  def decode(self, streams, sizes):
    header = self.header_size
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    side_bits = tf.constant(0, tf.int64)
    for i, (stream, size) in enumerate(zip(streams, sizes)):
      data = bitstream.string_to_bytes(stream)
      # Zero padding keeps the fixed-size header reads in bounds for any input.
      padded = tf.concat([data, tf.zeros([_STEP_BYTES + _SEED_BYTES], tf.uint8)], 0)
      step = tf.bitcast(padded[:_STEP_BYTES], tf.float32)
      seed = tf.bitcast(padded[_STEP_BYTES:_STEP_BYTES + _SEED_BYTES], tf.int32)
      body = data[header:]
      integers, decoded_ok = self.codec.decode_from_bytes(body, size)
      step_ok = tf.math.is_finite(step) & (step > 0)
      ok &= decoded_ok & (tf.size(data) > header) & step_ok
      tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
      values.append(uniform.dequantize(
          integers, tf.where(step_ok, step, 1.0), self.rounding, tensor_seed))
      zeros += tf.reduce_sum(tf.cast(tf.equal(integers, 0), tf.int64))
      side_bits += 8 * header + tf.cast(self.codec.side_info_bits(body, size), tf.int64)
    return collections.OrderedDict(
        values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


class QuantizeEncodeFactory(compressed.CompressedMeanFactory):
  """Weighted mean of quantized, coded client updates (see module doc)."""

  def __init__(self, step_size: float, *, rounding: str = 'uniform',
               normalization: str = 'none', codec='elias_gamma'):
    """Initializes the factory.

    Args:
      step_size: The quantization step (multiplied by the per-tensor statistic
        when `normalization` is not `none`).
      rounding: `uniform`, `stochastic` or `dithered`.
      normalization: `none`, `mean_abs`, `rms` or `max_abs`.
      codec: A name from `tff_rdq.codecs.CODEC_NAMES` or a codec object.
    """
    super().__init__(QuantizeEncodeCompressor(
        step_size, rounding=rounding, normalization=normalization, codec=codec))


class QuantizeEncodeSumFactory(compressed.CompressedSumFactory):
  """Sum of quantized, coded client updates (see module doc)."""

  def __init__(self, step_size: float, *, rounding: str = 'uniform',
               normalization: str = 'none', codec='elias_gamma'):
    """Initializes the factory; arguments as for `QuantizeEncodeFactory`."""
    super().__init__(QuantizeEncodeCompressor(
        step_size, rounding=rounding, normalization=normalization, codec=codec))
