"""Elias-gamma fields, and the sizes of the blocked format's header.

The format is described in the package docstring.
"""

import tensorflow as tf

from tff_rdq.codecs import bitstream

DEFAULT_BLOCK_SIZE = 1024
_INT32_MAX = 2**31 - 1
# Longest codeword: gamma(run) + sign + gamma(|v|) with run <= 2**31 and
# |v| <= 2**31 - 1.
_MAX_CODEWORD_BITS = 63 + 1 + 61


def _gamma_fields(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """`(field, length)` of gamma(v) for `int64` values `v >= 1`."""
  k = bitstream.bit_length(values)
  top = tf.bitwise.left_shift(bitstream.one(), tf.cast(k - 1, tf.uint64))
  rest = tf.bitwise.bitwise_xor(tf.cast(values, tf.uint64), top)
  field = tf.bitwise.bitwise_or(
      top, tf.bitwise.left_shift(rest, tf.cast(k, tf.uint64))
  )
  return field, 2 * k - 1


def header_bytes(num_blocks: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  """Bytes of the blocked format before the first block stream."""
  return 1 + (num_blocks * width + 7) // 8


def side_info_bits(data: tf.Tensor, num_elements, block_size: int) -> tf.Tensor:
  """Bits of the blocked format that are not block streams (header + table)."""
  n = tf.cast(num_elements, tf.int64)
  num_blocks = (n + block_size - 1) // block_size
  width = tf.cast(tf.concat([tf.reshape(data, [-1]), [0]], 0)[0], tf.int64)
  return 8 * header_bytes(num_blocks, width)


def _max_valid_bits(n: int, block_size: int) -> int:
  """An upper bound on the bits of valid blocked data of `n` values."""
  num_blocks = -(-n // block_size)
  return _MAX_CODEWORD_BITS * n + 64 * (num_blocks + 2) + 8 * (num_blocks + 1)
