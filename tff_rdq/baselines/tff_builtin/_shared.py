"""Helpers shared by the measured TFF built-ins (see the package doc)."""

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import validation
from tff_rdq.aggregators import compressed

SEED_BYTES = 16  # A TFF / tensor_encoding seed: int64 [2].


def flat_sizes(value_type) -> list[int]:
  """Tensor sizes of `value_type` in `compressed`'s order (checked floats)."""
  compressed.tensor_types(value_type)
  specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(value_type))
  return [int(np.prod(s.shape, dtype=np.int64)) for s in specs]


def to_bytes(tensor: tf.Tensor) -> tf.Tensor:
  """The raw (host order: little-endian) bytes of a numeric tensor, `uint8`."""
  return tf.reshape(tf.bitcast(tensor, tf.uint8), [-1])


def reconstruction_zeros(values: tf.Tensor) -> tf.Tensor:
  """The int64 count of exact zeros in a reconstruction (the `zeros` of decode)."""
  return tf.reduce_sum(tf.cast(tf.equal(values, 0.0), tf.int64))


def check_bits(bits, high=16):
  return validation.check_number('bits', bits, integer=True, low=1, high=high)


class PreparingMeanFactory(compressed.CompressedMeanFactory):
  """`CompressedMeanFactory` whose compressor is prepared for the value type."""

  def create(self, value_type, weight_type):
    self.compressor.prepare(value_type)
    return super().create(value_type, weight_type)


class PreparingSumFactory(compressed.CompressedSumFactory):
  """`CompressedSumFactory` whose compressor is prepared for the value type."""

  def create(self, value_type):
    self.compressor.prepare(value_type)
    return super().create(value_type)
