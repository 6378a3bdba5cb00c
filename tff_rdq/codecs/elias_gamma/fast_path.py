"""Where the int32 fast paths of the encoder, the coded size and the decoder apply."""

import tensorflow as tf

from tff_rdq.codecs.elias_gamma.format import _max_valid_bits

# The fast encoder and decoder work in 32-bit integers: runs below 2**15
# (blocks of at most _FAST_MAX_BLOCK values: gamma(run) and the sign fit 30
# bits) and |v| below 2**16 (gamma(|v|) fits 31 bits); anything else takes the
# general path (same bytes).
_FAST_MAX_MAGNITUDE = 2**16 - 1
_FAST_MAX_BLOCK = 2**15 - 2
# The fast decoder reads gamma(run) and the sign from one 64-bit window:
# runs below 2**15.
_FAST_MAX_RUN_BLOCK = 2**15 - 2


def _index_dtypes(n_static, block_size):
  """`(index dtype, bit offset dtype)`: int32 where a static size allows it."""
  if n_static is None:
    return tf.int64, tf.int64
  index_type = tf.int32 if n_static + 2 * block_size < 2**31 else tf.int64
  max_bits = _max_valid_bits(n_static, block_size)
  # A margin below 2**31: the fast decoder's lanes may run past their data.
  offset_type = tf.int32 if max_bits < 2**31 - 2**23 else tf.int64
  return index_type, offset_type


def _fast_sizes(n_static, block_size) -> bool:
  """Whether a length and block size allow the int32 fast path (static)."""
  _, offset_type = _index_dtypes(n_static, block_size)
  return block_size <= _FAST_MAX_BLOCK and offset_type == tf.int32


def _fast_values(nonzero: tf.Tensor) -> tf.Tensor:
  """Whether a vector's nonzero values allow the fast path: some, all within its magnitude."""
  # (The max of no values is INT32_MIN, the min INT32_MAX.)
  return (tf.size(nonzero) > 0) & (tf.reduce_max(nonzero) <= _FAST_MAX_MAGNITUDE) & (
      tf.reduce_min(nonzero) >= -_FAST_MAX_MAGNITUDE)


def _bit_length32(x: tf.Tensor) -> tf.Tensor:
  """`uint32` bit lengths of int32 values in `1 .. 2**24 - 1` (float32 exact)."""
  return tf.bitwise.right_shift(
      tf.bitcast(tf.cast(x, tf.float32), tf.uint32), tf.constant(23, tf.uint32)
  ) - tf.constant(126, tf.uint32)
