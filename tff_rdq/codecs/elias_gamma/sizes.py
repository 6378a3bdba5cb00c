"""The closed-form coded size of the blocked format, without writing any bits."""

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs.elias_gamma.encoder import _fast_blocks
from tff_rdq.codecs.elias_gamma.encoder import _fast_runs
from tff_rdq.codecs.elias_gamma.fast_path import _bit_length32
from tff_rdq.codecs.elias_gamma.fast_path import _fast_sizes
from tff_rdq.codecs.elias_gamma.fast_path import _fast_values
from tff_rdq.codecs.elias_gamma.format import _INT32_MAX
from tff_rdq.codecs.elias_gamma.format import header_bytes


def coded_bits(integers: tf.Tensor, block_size: int) -> tf.Tensor:
  """Bits of `encode_to_bytes(v, block_size)` for each vector `v` of a batch.

  `coded_size(integers, block_size)[0]`.
  """
  return coded_size(integers, block_size)[0]


# Batches of at most this many vectors (with a static batch shape) are counted
# vector by vector, each on the fast path where it qualifies.
_MAX_FAST_COUNT_ROWS = 64


def coded_size(integers: tf.Tensor, block_size: int) -> tuple[tf.Tensor, tf.Tensor]:
  """`(bits, header bits)` of `encode_to_bytes(v, block_size)` for each vector `v`.

  Closed form, without writing any bits: per block, the sum over nonzero
  values of `(2 * bitlen(run) - 1) + 1 + (2 * bitlen(|v|) - 1)`, plus
  `2 * bitlen(r + 1) - 1` for a trailing run of `r > 0` zeros, rounded up to
  whole bytes; plus the format's header, `1 + ceil(m * w / 8)` bytes with `m`
  blocks and `w` the bit length of the largest block byte count. The bits
  equal `8 * len(encode_to_bytes(v, block_size))` and the header bits
  `side_info_bits` of those bytes, for every `v`. Where the encoder would take
  its int32 path, so does the count (a vector at a time); else int64.

  Args:
    integers: An `int32` tensor `[..., n]` with a static `n` (the last axis
      holds the values; leading axes, possibly none, are the batch).
    block_size: The codec's block size (Python int >= 1).

  Returns:
    Two `int64` tensors shaped like `integers.shape[:-1]`.
  """
  if block_size < 1:
    raise ValueError(f'block_size must be >= 1, got {block_size}.')
  integers = tf.convert_to_tensor(integers)
  if integers.shape.rank is None or integers.shape.rank < 1:
    raise ValueError(
        f'The coded size needs integers of rank >= 1 (values on the last axis), got '
        f'shape {integers.shape}.')
  if integers.shape[-1] is None:
    raise ValueError(
        f'The coded size needs a static last dimension (the vector length), got shape '
        f'{integers.shape}.')
  n = int(integers.shape[-1])
  batch = integers.shape[:-1]
  if (n > 0 and batch.is_fully_defined() and batch.num_elements() <= _MAX_FAST_COUNT_ROWS
      and _fast_sizes(n, block_size)):
    rows = tf.unstack(tf.reshape(integers, [-1, n])) if batch.rank else [integers]
    sizes = [_coded_size_of_vector(row, block_size) for row in rows]
    if not batch.rank:
      return sizes[0]
    return tuple(tf.reshape(tf.stack(part), batch) for part in zip(*sizes))
  return _coded_size_general(integers, block_size)


def _coded_size_of_vector(values, block_size):
  """`coded_size` of one vector: `_fast_coded_bits` where `_encode_fast` applies."""
  where = tf.where(values)
  nonzero = tf.gather_nd(values, where)
  return tf.cond(
      _fast_values(nonzero),
      lambda: _fast_coded_bits(values, tf.reshape(where, [-1]), nonzero, block_size),
      lambda: _coded_size_general(values, block_size))


def _fast_coded_bits(values, index, nonzero, block_size):
  """`(bits, header bits)` of `_encode_fast`'s bytes, without writing them (int64).

  The same conditions as `_encode_fast`; the codeword lengths are `2 a + 2 b
  - 1` with `a`, `b` the bit lengths of the run and of `|v|`.
  """
  n = int(values.shape[0])
  idx, block_of, run = _fast_runs(index, block_size)
  length = tf.bitcast(_bit_length32(run) + _bit_length32(tf.abs(nonzero)), tf.int32) * 2 - 1
  block_bytes = tf.cast(_fast_blocks(n, idx, block_of, length, block_size)[-1], tf.int64)
  header = header_bytes(-(-n // block_size), bitstream.bit_length(tf.reduce_max(block_bytes)))
  return 8 * (header + tf.reduce_sum(block_bytes)), 8 * header


def _coded_size_general(integers, block_size):
  """`coded_size` in int64 arithmetic, for any values and batch."""
  n = int(integers.shape[-1])
  batch_shape = tf.shape(integers, out_type=tf.int64)[:-1]
  integers = tf.reshape(integers, [-1, n])
  num_rows = tf.shape(integers, out_type=tf.int64)[0]
  if n == 0:
    eight = tf.reshape(tf.fill([num_rows], tf.constant(8, tf.int64)), batch_shape)
    return eight, eight
  num_blocks = -(-n // block_size)
  integers = tf.maximum(integers, -_INT32_MAX)
  index = tf.where(tf.not_equal(integers, 0))  # [N, 2], row-major order
  magnitude = tf.abs(tf.gather_nd(integers, index))
  row, col = index[:, 0], index[:, 1]
  block_of = col // block_size
  pos = col - block_of * block_size
  segment = row * num_blocks + block_of  # non-decreasing
  first = tf.not_equal(segment, tf.concat([[-1], segment[:-1]], 0))
  run = tf.where(first, pos + 1, pos - tf.concat([[-1], pos[:-1]], 0))
  codeword = (
      2 * bitstream.bit_length(run) + 2 * bitstream.bit_length(magnitude) - 1
  )
  num_segments = num_rows * num_blocks
  nonzero_bits = bitstream.sorted_segment(
      tf.math.segment_sum, codeword, segment, num_segments)
  last_plus_one = bitstream.sorted_segment(
      tf.math.segment_max, pos + 1, segment, num_segments)
  block_len = [min(block_size, n - i * block_size) for i in range(num_blocks)]
  trailing = tf.tile(tf.constant(block_len, tf.int64), [num_rows]) - last_plus_one
  trail_bits = tf.where(
      trailing > 0,
      2 * bitstream.bit_length(trailing + 1) - 1,
      tf.zeros_like(trailing),
  )
  block_bytes = tf.reshape((nonzero_bits + trail_bits + 7) // 8, [-1, num_blocks])
  width = bitstream.bit_length(tf.reduce_max(block_bytes, axis=1))
  header = header_bytes(num_blocks, width)
  total_bytes = header + tf.reduce_sum(block_bytes, axis=1)
  return tf.reshape(8 * total_bytes, batch_shape), tf.reshape(8 * header, batch_shape)
