"""The constants of the run-length rANS format and its class symbols.

The byte format itself is documented in the package docstring
(`tff_rdq.codecs.run_length_rans`).
"""

import numpy as np
import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import rans_core

PRECISION = 12
PROB_SCALE = 1 << PRECISION
WORD_BITS = rans_core.WORD_BITS
STATE_LOWER = rans_core.STATE_LOWER
STATE_BITS = rans_core.STATE_BITS
CARRY_BITS = 35
CARRY_BASE = 1 << CARRY_BITS
DIRECT = 4  # Class symbols 0..3 are the values 0..3 themselves.
ALPHABET = DIRECT + 31  # Class symbols are below this.
MAX_PRECISION = PRECISION
PRECISION_FIELD_BITS = 4
THRESHOLD_BITS = 6
MARKER = 0x80
HEADER_BITS = 104
ORDER_SAMPLE_VALUES = 1 << 18
MAX_COLUMNS = 65535
COLUMN_CLASSES = 16  # The encoder's K when it groups columns.
_HUGE = 1 << 60
MAX_ROW_LENGTH = 65535
ROW_LENGTH_SAMPLES = 2048
EMPTY_BYTES = 5  # The format of a vector without nonzero values.
RUN_CONTEXT_CHOICES = (1, 2, 4, 8)
VALUE_CONTEXT_CHOICES = (1, 2, 4)
MAX_RUN_CONTEXTS = 8
MAX_VALUE_CONTEXTS = 8  # G_v * (1 + S)
VALUE_ALPHABET = 2 * ALPHABET
DEFAULT_LANE_OVERHEAD = 0.003
MIN_LANE_SIZE = 32
_NOOP_FREQUENCY = PROB_SCALE  # F = 2**12, C = 0 leaves the rANS state as is.
_LOG_BITS = 16
# round(log2(f) * 2**16) for f = 0..4096 (0 for f = 0): size estimates are
# exact integers, so the encoder's choices do not depend on float rounding.
LOG2_TABLE = np.concatenate(
    [[0], np.round(np.log2(np.arange(1, PROB_SCALE + 1)) * (1 << _LOG_BITS))]
).astype(np.int64)

# `experimental_attributes` of a `tf.function` that stays one library function
# (called by a function-call op) instead of being inlined into its caller.
_NOINLINE = {'_noinline': True}


def _i64(value) -> tf.Tensor:
  return tf.cast(value, tf.int64)


def class_symbol(values: tf.Tensor):
  """Class symbol, mantissa and mantissa length of non-negative `int64` values.

  `x < 4`: `(x, 0, 0)`. Otherwise `u = x - 3`, `e = bit_length(u) - 1`:
  `(4 + e, u - 2**e, e)`. Exact for `x < 2**31`.
  """
  u = tf.maximum(values - (DIRECT - 1), 1)
  e = bitstream.bit_length(u) - 1
  direct = values < DIRECT
  symbol = tf.where(direct, values, DIRECT + e)
  mantissa = tf.where(direct, tf.zeros_like(u),
                      u - tf.bitwise.left_shift(tf.ones_like(u), e))
  return symbol, mantissa, tf.where(direct, tf.zeros_like(e), e)


def class_value(symbol: tf.Tensor, mantissa: tf.Tensor) -> tf.Tensor:
  """Inverse of `class_symbol`: the value of a class symbol and its mantissa."""
  e = tf.maximum(symbol - DIRECT, 0)
  return tf.where(symbol < DIRECT, symbol,
                  DIRECT - 1 + tf.bitwise.left_shift(tf.ones_like(e), e) + mantissa)


def mantissa_bits(symbol: tf.Tensor) -> tf.Tensor:
  """Number of mantissa bits of class symbols."""
  return tf.maximum(symbol - DIRECT, 0)


def _read(words, offset, width):
  """The `width`-bit fields at bit `offset` of `bitstream` words, as `int64`."""
  return _i64(bitstream.low_bits(bitstream.read_bits(words, offset), width))


def _num_columns(n, row_length, transposed):
  """Columns of the coded matrix: `W`, or `n / W` if transposed."""
  width = tf.maximum(row_length, 1)
  return tf.where(transposed, n // width, width)
