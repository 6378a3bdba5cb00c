"""The vectorized encoder of the blocked format: an int32 fast path and a general one."""

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs.elias_gamma.fast_path import _bit_length32
from tff_rdq.codecs.elias_gamma.fast_path import _fast_sizes
from tff_rdq.codecs.elias_gamma.fast_path import _fast_values
from tff_rdq.codecs.elias_gamma.format import _gamma_fields
from tff_rdq.codecs.elias_gamma.format import _INT32_MAX
from tff_rdq.codecs.elias_gamma.format import DEFAULT_BLOCK_SIZE
from tff_rdq.codecs.elias_gamma.format import header_bytes


def encode_to_bytes(
    values: tf.Tensor, block_size: int = DEFAULT_BLOCK_SIZE
) -> tf.Tensor:
  """Encodes an `int32` vector in the blocked format.

  Args:
    values: A rank-1 `int32` tensor.
    block_size: Python int >= 1, the number of values per block.

  Returns:
    A `uint8` vector, the encoded bytes.
  """
  if block_size < 1:
    raise ValueError(f'block_size must be >= 1, got {block_size}.')
  values = tf.convert_to_tensor(values)
  if values.dtype != tf.int32:
    raise TypeError(f'Expected int32 values, got {values.dtype}.')
  values = tf.reshape(values, [-1])
  where = tf.where(values)  # [N, 1]: the nonzero positions
  nonzero = tf.gather_nd(values, where)
  index = tf.reshape(where, [-1])
  if not _fast_sizes(values.shape[0], block_size):
    return _encode_general(values, block_size, index, nonzero)
  return tf.cond(
      _fast_values(nonzero),
      lambda: _encode_fast(values, index, nonzero, block_size),
      lambda: _encode_general(values, block_size, index, nonzero),
  )


def _pad_to(x: tf.Tensor, size) -> tf.Tensor:
  """`x` (a vector no longer than `size`) padded with zeros to `size`."""
  return tf.pad(x, [[0, size - tf.shape(x, out_type=tf.convert_to_tensor(size).dtype)[0]]])


def _write_sorted(fields: tf.Tensor, offsets: tf.Tensor, num_words) -> tf.Tensor:
  """Unsigned fields at non-decreasing int bit offsets, as words of their type.

  Like `bitstream.write_fields` for one vector of fields (`uint32` or
  `uint64`, each at most the word size long), with fewer passes: each field
  is split into its part in word `offset // size` and the part in the next
  word; both are summed per word (sum equals OR: fields do not overlap) and
  the high parts moved up one word.
  """
  bits = 32 if fields.dtype == tf.uint32 else 64
  word = tf.bitwise.right_shift(offsets, bits.bit_length() - 1)
  shift = tf.cast(tf.bitwise.bitwise_and(offsets, bits - 1), fields.dtype)
  low = tf.bitwise.left_shift(fields, shift)
  # `v >> (bits - s)` without a shift by `bits`: `(v >> 1) >> (bits - 1 - s)`.
  high = tf.bitwise.right_shift(
      tf.bitwise.right_shift(fields, tf.constant(1, fields.dtype)),
      tf.bitwise.bitwise_xor(shift, tf.constant(bits - 1, fields.dtype)))
  # An empty field may start at the very end (word `num_words`).
  size = num_words + 2
  low_words = _pad_to(tf.math.segment_sum(low, word), size)
  high_words = _pad_to(
      tf.concat([tf.zeros([1], fields.dtype), tf.math.segment_sum(high, word)], 0), size)
  return (low_words + high_words)[:num_words]


def _write32(fields: tf.Tensor, offsets: tf.Tensor, num_words) -> tf.Tensor:
  """`uint32` fields at non-decreasing int32 bit offsets, as `uint32` words.

  One sorted segment sum: a field shifted within its 32-bit slot fits 64
  bits, so the sums per slot hold the slot's bits (low half) and what spills
  into the next slot (high half).
  """
  slot = tf.bitwise.right_shift(offsets, 5)
  shift = tf.cast(tf.bitwise.bitwise_and(offsets, 31), tf.uint64)
  spread = tf.bitwise.left_shift(tf.cast(fields, tf.uint64), shift)
  # An empty field may start at the very end (slot `num_words`).
  sums = _pad_to(tf.math.segment_sum(spread, slot), num_words + 1)
  spill = tf.cast(tf.bitwise.right_shift(sums, tf.constant(32, tf.uint64)), tf.uint32)
  return tf.cast(sums[:num_words], tf.uint32) + tf.concat(
      [tf.zeros([1], tf.uint32), spill[:num_words - 1]], 0)


def _fast_runs(index, block_size):
  """int32 `(idx, block_of, run)` of the nonzero positions `index` (fast path).

  `run` is one more than the zeros since the previous nonzero value or the
  start of its block: the value whose gamma code precedes the value's own.
  """
  i32 = tf.int32
  idx = tf.cast(index, i32)
  if block_size & (block_size - 1) == 0:
    block_of = tf.bitwise.right_shift(idx, block_size.bit_length() - 1)
    block_start = tf.bitwise.bitwise_and(idx, -block_size)
  else:
    block_of = idx // block_size
    block_start = block_of * block_size
  # The previous nonzero's index (-1 before the first): a rolled copy.
  previous = tf.tensor_scatter_nd_update(
      tf.roll(idx, 1, 0), tf.zeros([1, 1], i32), tf.constant([-1], i32))
  return idx, block_of, idx - tf.maximum(previous, block_start - 1)


def _fast_blocks(n, idx, block_of, length, block_size):
  """Per block of the fast path: its codeword bits, trailing run and bytes.

  Returns:
    `(nonzero_bits, first, trailing, trail_field, block_bytes)`: per block
    the bits of its nonzero values' codewords, the index of its first
    codeword (`num_blocks + 1` entries), its trailing zeros (int64),
    gamma(trailing + 1), and its stream's bytes.
  """
  i32 = tf.int32
  num_blocks = -(-n // block_size)
  nonzero_bits = _pad_to(tf.math.segment_sum(length, block_of), num_blocks)
  first = tf.searchsorted(block_of, tf.range(num_blocks + 1), out_type=i32)
  blocks = tf.range(num_blocks)
  has_nonzero = first[1:] > first[:-1]
  last_plus_one = tf.where(
      has_nonzero, tf.gather(idx, tf.maximum(first[1:] - 1, 0)) + 1 - blocks * block_size, 0)
  block_len = tf.minimum(block_size, n - blocks * block_size)
  trailing = tf.cast(block_len - last_plus_one, tf.int64)
  trail_field, trail_len = _gamma_fields(tf.maximum(trailing + 1, 1))
  trail_len = tf.cast(tf.where(trailing > 0, trail_len, 0), i32)
  block_bytes = (nonzero_bits + trail_len + 7) // 8
  return nonzero_bits, first, trailing, trail_field, block_bytes


def _encode_fast(values, index, nonzero, block_size):
  """`encode_to_bytes` in int32 arithmetic (notes at `fast_path._FAST_MAX_MAGNITUDE`).

  Needs: a static length with int32 offsets (`_index_dtypes`), a block size
  of at most `_FAST_MAX_BLOCK`, at least one nonzero value and all
  `|v| <= _FAST_MAX_MAGNITUDE`.
  """
  i32, u32 = tf.int32, tf.uint32
  n = int(values.shape[0])
  num_blocks = -(-n // block_size)
  one = tf.constant(1, u32)
  idx, block_of, run = _fast_runs(index, block_size)
  magnitude = tf.abs(nonzero)
  a = _bit_length32(run)
  b = _bit_length32(magnitude)
  negative = tf.bitwise.right_shift(tf.bitcast(nonzero, u32), tf.constant(31, u32))
  # gamma(run) then the sign, LSB-first: (2 run + 1) << (a - 1) has the
  # marker at bit a - 1, the run's low bits above it and its top bit at
  # 2a - 1, the sign bit's place; a negative value clears that bit.
  low = tf.bitwise.left_shift(
      tf.bitwise.bitwise_or(tf.bitwise.left_shift(tf.bitcast(run, u32), one), one)
      - tf.bitwise.left_shift(negative, a), a - one)
  # gamma(|v|) at bit 2a: (2|v| + 1 - 2**b) << (b - 1), shifted by 2a.
  high = (tf.bitwise.bitwise_or(tf.bitwise.left_shift(tf.bitcast(magnitude, u32), one), one)
          - tf.bitwise.left_shift(one, b))
  high_shift = (b - one) + (a + a)
  length = tf.bitcast(high_shift + b, i32)

  # Per block: codeword bits, the trailing run and the byte length.
  nonzero_bits, first, trailing, trail_field, block_bytes = _fast_blocks(
      n, idx, block_of, length, block_size)
  blocks = tf.range(num_blocks)
  width = tf.cast(bitstream.bit_length(tf.reduce_max(block_bytes)), i32)
  start = header_bytes(num_blocks, width)
  block_start_bit = 8 * (start + tf.math.cumsum(block_bytes, exclusive=True))
  total_bytes = start + tf.reduce_sum(block_bytes)

  # Bit offsets: one cumsum of the lengths, with the gap before each block
  # (trailing runs, padding, empty blocks) added to the codeword before it.
  gap = block_start_bit - tf.math.cumsum(nonzero_bits, exclusive=True)
  after = first[1:num_blocks] - 1
  valid = after >= 0
  longest = tf.reduce_max(length)
  # After the other reads of `length`, so that the update can reuse its buffer.
  with tf.control_dependencies([longest, nonzero_bits]):
    lengths_with_gaps = tf.tensor_scatter_nd_add(
        length, tf.where(valid, after, 0)[:, tf.newaxis],
        tf.where(valid, gap[1:] - gap[:-1], 0))
  offsets = tf.math.cumsum(lengths_with_gaps, exclusive=True) + tf.gather(gap, block_of[0])

  side_values = [
      tf.reshape(tf.cast(width, tf.uint64), [1]),
      tf.cast(block_bytes, tf.uint64),
      tf.where(trailing > 0, trail_field, tf.zeros_like(trail_field)),
  ]
  side_offsets = tf.concat(
      [[0], 8 + blocks * width, block_start_bit + nonzero_bits], 0)

  def write32():
    codeword = tf.bitwise.bitwise_or(low, tf.bitwise.left_shift(high, high_shift))
    num_words = (total_bytes + 3) // 4
    words = _write32(codeword, offsets, num_words) + _write32(
        tf.cast(tf.concat(side_values, 0), u32), side_offsets, num_words)
    return tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:total_bytes]

  def write64():
    codeword = tf.bitwise.bitwise_or(
        tf.cast(low, tf.uint64),
        tf.bitwise.left_shift(tf.cast(high, tf.uint64), tf.cast(high_shift, tf.uint64)))
    num_words = (total_bytes + 7) // 8
    words = _write_sorted(codeword, offsets, num_words) + _write_sorted(
        tf.concat(side_values, 0), side_offsets, num_words)
    return bitstream.words_to_bytes(words, total_bytes)

  # Side fields fit 32 bits for these block sizes; codewords mostly do too.
  return tf.cond(longest <= 32, write32, write64)


def _encode_general(values: tf.Tensor, block_size: int, index=None,
                    nonzero=None) -> tf.Tensor:
  """`encode_to_bytes` for any values and block size (int64 arithmetic).

  `index` and `nonzero`: the positions (`int64`) and values of the nonzero
  values, when already known.
  """
  if index is None:
    index = tf.where(tf.not_equal(values, 0))[:, 0]
    nonzero = tf.gather(values, index)
  nonzero = tf.cast(tf.maximum(nonzero, -_INT32_MAX), tf.int64)
  n = tf.size(values, out_type=tf.int64)
  block = tf.constant(block_size, tf.int64)
  num_blocks = (n + block - 1) // block

  block_of = index // block
  pos = index - block_of * block
  first_in_block = tf.not_equal(
      block_of, tf.concat([[-1], block_of[:-1]], 0)
  )
  previous_pos = tf.concat([[-1], pos[:-1]], 0)
  run = tf.where(first_in_block, pos + 1, pos - previous_pos)
  run_field, run_len = _gamma_fields(run)
  mag_field, mag_len = _gamma_fields(tf.abs(nonzero))
  sign = tf.cast(nonzero > 0, tf.uint64)
  value_field = tf.bitwise.bitwise_or(
      sign, tf.bitwise.left_shift(mag_field, bitstream.one())
  )
  codeword_len = run_len + mag_len + 1

  nonzero_bits = bitstream.sorted_segment(
      tf.math.segment_sum, codeword_len, block_of, num_blocks
  )
  last_plus_one = bitstream.sorted_segment(
      tf.math.segment_max, pos + 1, block_of, num_blocks
  )
  block_len = tf.minimum(block, n - tf.range(num_blocks) * block)
  trailing = block_len - last_plus_one
  trail_field, trail_len = _gamma_fields(tf.maximum(trailing + 1, 1))
  trail_len = tf.where(trailing > 0, trail_len, tf.zeros_like(trail_len))
  trail_field = tf.where(trailing > 0, trail_field, tf.zeros_like(trail_field))

  block_bytes = (nonzero_bits + trail_len + 7) // 8
  width = bitstream.bit_length(tf.reduce_max(tf.concat([block_bytes, [0]], 0)))
  start = header_bytes(num_blocks, width)
  block_start_bit = 8 * (start + tf.math.cumsum(block_bytes, exclusive=True))
  nonzero_bits_before = tf.math.cumsum(nonzero_bits, exclusive=True)
  codeword_offset = (
      tf.gather(block_start_bit, block_of)
      + tf.math.cumsum(codeword_len, exclusive=True)
      - tf.gather(nonzero_bits_before, block_of)
  )
  total_bytes = start + tf.reduce_sum(block_bytes)
  words = bitstream.write_fields(
      values=[
          tf.reshape(tf.cast(width, tf.uint64), [1]),
          tf.cast(block_bytes, tf.uint64),
          run_field,
          value_field,
          trail_field,
      ],
      offsets=[
          tf.zeros([1], tf.int64),
          8 + tf.range(num_blocks) * width,
          codeword_offset,
          codeword_offset + run_len,
          block_start_bit + nonzero_bits,
      ],
      num_words=(total_bytes + 7) // 8,
  )
  return bitstream.words_to_bytes(words, total_bytes)
