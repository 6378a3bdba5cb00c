"""Run-length Elias-gamma code of integer vectors, in core TensorFlow ops.

This is the universal code of tensorflow-compression's
`run_length_gamma_encode`, written with core ops only so that it runs inside
TFF federated computations. Encoding is fully vectorized (no loop per symbol);
decoding runs independent blocks as parallel lanes.

Elias-gamma, `gamma(v)` for `v >= 1` with `k = bit_length(v)`: `k - 1` zero
bits, a one bit, then `v - 2**(k-1)` in `k - 1` bits, least significant bit
first. All fields are LSB-first (see `bitstream`).

**Block stream** (one block, identical to `tfc.run_length_gamma_encode` of the
block): for each nonzero value in order, `gamma(zeros since the previous
nonzero (or the block start) + 1)`, a sign bit (1 = positive) and
`gamma(|value|)`; then, if the block ends with `r > 0` zeros, `gamma(r + 1)`;
then zero bits up to a whole byte. `INT32_MIN` is coded as `-(2**31 - 1)`, as
the tensorflow-compression op does.

**Blocked format** (`encode_to_bytes`) of `n` values with block size `B`, with
`m = ceil(n / B)` blocks (block `i` holds values `i*B .. min(n, (i+1)*B) - 1`):

  byte 0            w: bit width of the largest block byte length (0 if m = 0)
  next ceil(m*w/8)  block byte lengths, w bits each, LSB-first, zero padded
  then              the m block streams, concatenated

`n` and `B` are not stored: both sides know the tensor's shape and the codec's
configuration. The first byte and the length table are the side information
of the format (`side_info_bits`).

**Canonical decoding.** The format has exactly one encoding per vector:
`decode_from_bytes(data, n, B)` returns `ok = True` if and only if `data ==
encode_to_bytes(values, B)` for the values it returns (which never hold
`INT32_MIN`). It rejects, in particular: empty data; a width byte other than
the bit length of the largest block byte length (wider, narrower, or above
32); a block byte length of 0; non-zero padding bits after the length table;
a total length other than header + table + the listed block lengths (missing
or trailing bytes); in a block, a codeword that runs past the block's values
or bytes (a run beyond the block end, a magnitude above `2**31 - 1`), a
trailing run `gamma(1)` (the empty run), bits left after the last codeword
other than fewer than 8 zero padding bits, and a block length longer than
its codewords need. What it cannot see is a change that turns a canonical
stream into another canonical stream (a flipped sign bit, for one): that is
for a checksum around the payload.

**Implementation.** Both directions have a fast path in 32-bit integer
arithmetic and a general path in 64-bit arithmetic that gives the same bytes
and values. Encoding is vectorized over the nonzero values (no loop): the
fast path (a static length with int32 bit offsets, blocks of at most
`_FAST_MAX_BLOCK` values, `|v| <= _FAST_MAX_MAGNITUDE`) computes every
codeword with a handful of int32 operations, its bit offset with one prefix
sum, and writes 32-bit words with one sorted segment sum. Decoding runs the
blocks as parallel lanes, one codeword per lane and step; the fast loop
reads each codeword from one 64-bit window of a row-major copy of the block
streams (in one step the lanes read neighbouring memory). Of its five steps
per iteration, four decode a codeword of at most 16 bits with one lookup in a
table of all 16-bit windows (a longer one waits) and the fifth decodes any
codeword arithmetically; lanes with a rare codeword (|v| of 2**16 or more, an
invalid run) go on in the general loop, which also finds the errors.
Decoding never reads out of bounds, on any input.
"""

import functools

import numpy as np
import tensorflow as tf

from tff_rdq.codecs import bitstream

DEFAULT_BLOCK_SIZE = 1024
_INT32_MAX = 2**31 - 1


def _gamma_fields(values: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """`(field, length)` of gamma(v) for `int64` values `v >= 1`."""
  k = bitstream.bit_length(values)
  top = tf.bitwise.left_shift(bitstream.one(), tf.cast(k - 1, tf.uint64))
  rest = tf.bitwise.bitwise_xor(tf.cast(values, tf.uint64), top)
  field = tf.bitwise.bitwise_or(
      top, tf.bitwise.left_shift(rest, tf.cast(k, tf.uint64))
  )
  return field, 2 * k - 1


# The fast encoder and decoder work in 32-bit integers: runs below 2**15
# (blocks of at most _FAST_MAX_BLOCK values: gamma(run) and the sign fit 30
# bits) and |v| below 2**16 (gamma(|v|) fits 31 bits); anything else takes the
# general path (same bytes).
_FAST_MAX_MAGNITUDE = 2**16 - 1
_FAST_MAX_BLOCK = 2**15 - 2
# Longest codeword: gamma(run) + sign + gamma(|v|) with run <= 2**31 and
# |v| <= 2**31 - 1.
_MAX_CODEWORD_BITS = 63 + 1 + 61


def _index_dtypes(n_static, block_size):
  """`(index dtype, bit offset dtype)`: int32 where a static size allows it."""
  if n_static is None:
    return tf.int64, tf.int64
  index_type = tf.int32 if n_static + 2 * block_size < 2**31 else tf.int64
  num_blocks = -(-n_static // block_size)
  max_bits = (
      _MAX_CODEWORD_BITS * n_static + 64 * (num_blocks + 2) + 8 * (num_blocks + 1))
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


def _encode_fast(values, index, nonzero, block_size):
  """`encode_to_bytes` in int32 arithmetic (module notes at _FAST_MAX_MAGNITUDE).

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


def header_bytes(num_blocks: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  """Bytes of the blocked format before the first block stream."""
  return 1 + (num_blocks * width + 7) // 8


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


def decode_from_bytes(
    data: tf.Tensor, num_elements: int, block_size: int = DEFAULT_BLOCK_SIZE
) -> tuple[tf.Tensor, tf.Tensor]:
  """Decodes the blocked format; see `_decode_from_bytes`."""
  if tf.executing_eagerly():
    # Eagerly, the decoding loop would run op by op from Python.
    return _decode_from_bytes_graph(
        tf.convert_to_tensor(data, tf.uint8), num_elements, block_size)
  return _decode_from_bytes(data, num_elements, block_size)


def _decode_from_bytes(
    data: tf.Tensor, num_elements: int, block_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
  """Decodes the blocked format; never reads out of bounds.

  Each block is a lane; one loop iteration decodes one codeword in every lane
  at once, so the loop runs (largest codeword count of a block) times.

  Args:
    data: A `uint8` vector produced by `encode_to_bytes`.
    num_elements: The number of encoded values (Python int or scalar).
    block_size: The block size used to encode (Python int).

  Returns:
    `(values, ok)`: the decoded `int32` vector of `num_elements` values, and a
    scalar bool that is True if and only if `data == encode_to_bytes(values,
    block_size)` (module docstring, "Canonical decoding"); when False,
    `values` is all zeros.
  """
  data = tf.reshape(data, [-1])
  if isinstance(num_elements, int) and num_elements == 0:
    return _decode_empty(data)
  n = tf.cast(num_elements, tf.int64)
  words = bitstream.bytes_to_words(data)
  header_ok, block_start_bit, block_end_bit, block_len = _parse_header(
      words, tf.constant(0, tf.int64), tf.size(data, out_type=tf.int64), n, block_size)
  lane_base = tf.range(tf.size(block_len, out_type=tf.int64), dtype=tf.int64) * block_size
  index_type, offset_type = _index_dtypes(
      None if tf.is_tensor(num_elements) else int(num_elements), block_size)
  if block_size <= _FAST_MAX_RUN_BLOCK and offset_type == tf.int32:
    # Valid data is shorter than the bound of `_index_dtypes`: longer data is
    # rejected before any int32 offset could overflow.
    header_ok &= 8 * tf.size(data, out_type=tf.int64) < 2**31 - 2**22
    block_start_bit = tf.where(header_ok, block_start_bit, 0)
    block_end_bit = tf.where(header_ok, block_end_bit, 0)
    end_bit, pos, error, index, values, first = _decode_lanes_fast(
        words, block_start_bit, block_end_bit, block_len, lane_base, n, block_size)
  else:
    end_bit, pos, error, index, values = _decode_lanes_general(
        words, block_start_bit, tf.zeros_like(block_len), tf.ones_like(block_len, tf.bool),
        block_len, lane_base, n, block_size, index_type)
    # Lane 0's entries (every `lanes`-th): the only ones that can write index 0.
    lanes = tf.maximum(tf.size(block_len), 1)
    first = tf.reduce_sum(tf.where(
        tf.equal(index[::lanes], 0), values[::lanes], tf.zeros_like(values[::lanes])))
  ok = header_ok & tf.reduce_all(
      _lanes_ok(words, end_bit, pos, error, block_end_bit, block_len))
  dense = _scatter_lanes(index, values, n, first)
  dense = tf.cond(ok, lambda: dense, lambda: tf.zeros_like(dense))
  return dense, ok


def _decode_empty(data: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """No values, no lanes: the format is the single byte 0."""
  ok = tf.equal(tf.size(data), 1) & tf.reduce_all(tf.equal(data, 0))
  return tf.zeros([0], tf.int32), ok


def _parse_header(words, base_bit, num_bytes, n, block_size):
  """Reads the width byte and length table of one vector's blocked data.

  Args:
    words: `bytes_to_words` of a byte string holding the data at `base_bit`.
    base_bit: `int64` bit offset of the data (its width byte) in `words`.
    num_bytes: `int64` byte length of the data.
    n: `int64` number of values (at least 1).
    block_size: The block size (Python int).

  Returns:
    `(header_ok, block_start_bit, block_end_bit, block_len)`: whether the
    header is canonical and the table's lengths add up to `num_bytes`, and per
    block its stream's first and end bit in `words` and its number of values
    (`int64`).
  """
  block = tf.constant(block_size, tf.int64)
  num_blocks = (n + block - 1) // block
  width = tf.cast(
      bitstream.low_bits(bitstream.read_bits(words, tf.reshape(base_bit, [1])), 8)[0],
      tf.int64)
  header_ok = (num_bytes > 0) & (width <= 32)
  width = tf.minimum(width, 32)
  block_bytes = tf.cast(
      bitstream.low_bits(
          bitstream.read_bits(words, base_bit + 8 + tf.range(num_blocks) * width), width),
      tf.int64,
  )
  start = header_bytes(num_blocks, width)
  block_start_bit = base_bit + 8 * (start + tf.math.cumsum(block_bytes, exclusive=True))
  block_end_bit = block_start_bit + 8 * block_bytes
  header_ok &= tf.reduce_all(block_bytes >= 1)
  # Canonical header: the width is exactly the bit length of the largest
  # block length, and the table's padding bits are zero.
  header_ok &= tf.equal(
      width, bitstream.bit_length(tf.reduce_max(tf.concat([block_bytes, [0]], 0))))
  table_end = 8 + num_blocks * width
  header_ok &= tf.equal(
      bitstream.low_bits(
          bitstream.read_bits(words, tf.reshape(base_bit + table_end, [1])),
          8 * start - table_end)[0], 0)
  header_ok &= tf.equal(start + tf.reduce_sum(block_bytes), num_bytes)
  block_len = tf.minimum(block, n - tf.range(num_blocks) * block)
  return header_ok, block_start_bit, block_end_bit, block_len


def _lanes_ok(words, end_bit, pos, error, block_end_bit, block_len):
  """Per lane: it ended after its last value (pos = B) or its trailing run
  (B + 1) inside its own block, without error, with only zero padding after."""
  padding = block_end_bit - end_bit
  padding_ok = (padding >= 0) & (padding < 8)
  padding_bits = bitstream.low_bits(
      bitstream.read_bits(words, end_bit), tf.clip_by_value(padding, 0, 8))
  return ((pos >= block_len) & (pos <= block_len + 1) & tf.logical_not(error)
          & padding_ok & tf.equal(padding_bits, 0))


def _scatter_lanes(index, values, n, first):
  """The dense `int32` vector of `n` values from the lanes' (index, value) steps."""
  # Steps without a value wrote (index 0, value 0), and lane 0 may have written
  # the one nonzero value `first` there: every write to index 0 carries
  # `first`, so the duplicates agree and no second pass over the dense vector
  # is needed to fix index 0.
  values = tf.where(tf.equal(index, 0), first, values)
  return tf.raw_ops.SparseToDense(
      sparse_indices=index, output_shape=tf.reshape(tf.cast(n, index.dtype), [1]),
      sparse_values=values, default_value=0, validate_indices=False)


def _max_valid_bits(n: int, block_size: int) -> int:
  """An upper bound on the bits of valid blocked data of `n` values."""
  num_blocks = -(-n // block_size)
  return _MAX_CODEWORD_BITS * n + 64 * (num_blocks + 2) + 8 * (num_blocks + 1)


def decode_many(datas, sizes, block_size: int = DEFAULT_BLOCK_SIZE) -> list:
  """`[decode_from_bytes(d, n, block_size) for d, n in zip(datas, sizes)]`, at once.

  The blocks of all vectors run as the lanes of one decoding loop, so the
  loop's fixed cost per step (tens of ops) is paid once per step rather than
  once per vector: for the small tensors of a model update (biases, small
  kernels) that fixed cost is nearly all of their decoding time. Results and
  `ok` flags are exactly those of separate calls; corrupt data of one vector
  does not affect another's values or flag.

  Args:
    datas: `uint8` vectors produced by `encode_to_bytes`.
    sizes: The numbers of encoded values (Python ints).
    block_size: The block size used to encode (Python int).

  Returns:
    A list of `(values, ok)` pairs, as `decode_from_bytes`.
  """
  datas, sizes = bitstream.byte_vectors(datas, sizes)
  present = [i for i, n in enumerate(sizes) if n > 0]
  # Each vector's data is cut after the longest valid data of its size (longer
  # data is invalid anyway), so that all bit offsets fit int32.
  max_bytes = [_max_valid_bits(sizes[i], block_size) // 8 + 1 for i in present]
  if (tf.executing_eagerly() or len(present) < 2 or block_size > _FAST_MAX_RUN_BLOCK
      or 8 * sum(max_bytes) + 2 * sum(sizes) >= 2**31 - 2**23):
    return [decode_from_bytes(d, n, block_size) for d, n in zip(datas, sizes)]
  results = [_decode_empty(d) if n == 0 else None for d, n in zip(datas, sizes)]
  num_bytes = [tf.size(datas[i], out_type=tf.int64) for i in present]
  cut = [datas[i][:m] for i, m in zip(present, max_bytes)]
  byte_offsets = tf.math.cumsum(
      tf.stack([tf.size(c, out_type=tf.int64) for c in cut]), exclusive=True)
  words = bitstream.bytes_to_words(tf.concat(cut, 0))
  headers = [
      _parse_header(words, 8 * byte_offsets[j], num_bytes[j],
                    tf.constant(sizes[i], tf.int64), block_size)
      for j, i in enumerate(present)]
  header_ok = tf.stack([h[0] & (num_bytes[j] <= m)
                        for j, (h, m) in enumerate(zip(headers, max_bytes))])
  value_offsets = [0]
  for i in present:
    value_offsets.append(value_offsets[-1] + sizes[i])
  lane_counts = [-(-sizes[i] // block_size) for i in present]
  # A vector with a bad header decodes its lanes from its own first bit (and
  # fails); its lanes write only inside its own values.
  block_start_bit = tf.concat([
      tf.where(header_ok[j], h[1], 8 * byte_offsets[j]) for j, h in enumerate(headers)], 0)
  block_end_bit = tf.concat([
      tf.where(header_ok[j], h[2], 8 * byte_offsets[j]) for j, h in enumerate(headers)], 0)
  block_len = tf.concat([h[3] for h in headers], 0)
  lane_base = tf.concat([
      value_offsets[j] + tf.range(count, dtype=tf.int64) * block_size
      for j, count in enumerate(lane_counts)], 0)
  total = tf.constant(value_offsets[-1], tf.int64)
  end_bit, pos, error, index, values, first = _decode_lanes_fast(
      words, block_start_bit, block_end_bit, block_len, lane_base, total, block_size)
  lane_ok = _lanes_ok(words, end_bit, pos, error, block_end_bit, block_len)
  lane_vector = tf.repeat(tf.range(len(present)), lane_counts)
  ok = header_ok & tf.cast(
      tf.math.segment_min(tf.cast(lane_ok, tf.int32), lane_vector), tf.bool)
  parts = tf.split(_scatter_lanes(index, values, total, first), [sizes[i] for i in present])
  # Zeroing the parts of corrupt vectors is a pass over all values: only when
  # there is one.
  parts = tf.cond(
      tf.reduce_all(ok), lambda: parts,
      lambda: [tf.where(ok[j], part, tf.zeros_like(part)) for j, part in enumerate(parts)])
  for j, (i, part) in enumerate(zip(present, parts)):
    results[i] = (part, ok[j])
  return results


# The fast decoder reads gamma(run) and the sign from one 64-bit window:
# runs below 2**15.
_FAST_MAX_RUN_BLOCK = 2**15 - 2
# Table steps per iteration of the fast decoding loop (before its one
# general step), and the table's key bits (18 bits, a 1 MB table, measured
# 3-7 % slower at steps 0.25-8 than 16: cache misses).
_TABLE_STEPS = 4
_TABLE_BITS = 16
# Fields of a table entry: the run in bits [0, R), gamma(run)'s length and the
# codeword's length 5 bits each from R, the signed value from R + 10 up. A
# codeword within the key has runs below 2**R and |v| below 2**(R - 1).
_ENTRY_RUN_BITS = _TABLE_BITS // 2
# Iterations of the fast loop's phases before the last (see `_decode_lanes_fast`).
_DECODE_PHASES = (16, 16, 32, 64, 128)


@functools.cache
def _lookup_table() -> np.ndarray:
  """The fast decoder's table of codewords of at most `_TABLE_BITS` bits.

  One `int32` entry per window `key` of `_TABLE_BITS` bits (a stream's next
  bits, LSB first), with the fields of `_ENTRY_RUN_BITS`: the run of
  gamma(run) at bit 0, its length `2 z1 + 1`, the length of the whole
  codeword gamma(run), sign, gamma(|v|), and the signed value. A length is 0
  where its code does not end within the window (and the run is 0 where
  gamma(run) does not), which marks the entry unusable.
  """
  key = np.arange(2**_TABLE_BITS, dtype=np.int64)

  def gamma_at(bits):
    """`(value, zero count)` of the gamma codes starting at bit 0 of `bits`."""
    zeros = np.where(bits > 0, np.log2(np.maximum(bits & -bits, 1)).astype(np.int64), 99)
    zeros_c = np.minimum(zeros, 30)
    value = (1 << zeros_c) | ((bits >> (zeros_c + 1)) & ((1 << zeros_c) - 1))
    return value, zeros

  run, z1 = gamma_at(key)
  run_bits = 2 * z1 + 1
  run_fits = run_bits <= _TABLE_BITS
  shift = np.minimum(run_bits + 1, 62)
  negative = ((key >> np.minimum(run_bits, 62)) & 1) == 0
  magnitude, z2 = gamma_at(key >> shift)
  code_bits = run_bits + 1 + 2 * z2 + 1
  code_fits = run_fits & (code_bits <= _TABLE_BITS)
  value = np.where(negative, -magnitude, magnitude)
  r = _ENTRY_RUN_BITS
  entry = np.where(run_fits, run | (run_bits << r), 0) | np.where(
      code_fits, (code_bits << (r + 5)) | ((value & (2**(22 - r) - 1)) << (r + 10)), 0)
  return entry.astype(np.uint32).view(np.int32)


def _decode_lanes_fast(words, block_start_bit, block_end_bit, block_len, lane_base, n,
                       block_size):
  """Decodes every block as a lane in int32, one codeword per lane and step.

  Each step reads one 64-bit window per lane and decodes gamma(run), the sign
  and gamma(|v|) from it: `_TABLE_STEPS` steps by a table lookup of the
  window's low `_TABLE_BITS` bits (a lane whose codeword is longer waits), then one step
  arithmetically. A lane whose codeword does not fit the window (or whose run
  field is not a valid run) stops there; `_decode_lanes_general`
  finishes such lanes (and finds the errors). The loop runs in phases of
  `_DECODE_PHASES` iterations; each phase after the first continues only the
  lanes still running, gathered into fewer lanes (sparse blocks finish early,
  and most of a real update's blocks are sparse).

  Returns:
    `(end_bit, pos, error, index, values, first)`: per lane the bit after its
    last codeword (`int64`), the values consumed (B after a last value, B + 1
    after a trailing run) and an error flag; per lane and step the `int32`
    index and value of the decoded value, (0, 0) for steps without one; and
    the decoded value at index 0 (0 if none).
  """
  i32 = tf.int32
  one = tf.constant(1, tf.uint64)
  c63 = tf.constant(63, tf.uint64)
  blen = tf.cast(block_len, i32)
  base = tf.cast(lane_base, i32) - 1
  zero = tf.constant(0, i32)
  lanes = tf.shape(blen)[0]
  last_word = tf.shape(words, out_type=i32)[0] - 2
  # words_next[j] = words[j + 1] << 1: a window is one shift and OR of both.
  words_next = tf.concat(
      [tf.bitwise.left_shift(words[1:], one), tf.zeros([1], tf.uint64)], 0)
  # Row-major windows: rows[k, lane] holds the 64 bits from bit 64 * k of the
  # lane's block on. In a step the lanes read neighbouring rows, so the reads
  # stay in cache (reading the stream itself jumps a block per lane).
  start = tf.cast(block_start_bit, i32)
  num_rows = tf.cast(tf.reduce_max(
      tf.concat([block_end_bit - block_start_bit, [0]], 0)), i32) // 64 + 3
  word = tf.minimum(
      tf.range(num_rows)[:, tf.newaxis] + tf.bitwise.right_shift(start, 6), last_word)
  shift = tf.cast(tf.bitwise.bitwise_and(start, 63), tf.uint64)
  rows = tf.bitwise.bitwise_or(
      tf.bitwise.right_shift(tf.gather(words, word), shift),
      tf.bitwise.left_shift(tf.gather(words_next, word), tf.bitwise.bitwise_xor(shift, c63)))
  last_row = num_rows - 1

  # Constants outside the loop body: inside, each would run every step.
  c1, c6, c15, c23, c63_i32, c127 = (
      tf.constant(v, i32) for v in (1, 6, 15, 23, 63, 127))
  u32 = tf.uint32
  c14u, c15u = tf.constant(14, u32), tf.constant(15, u32)

  def ctz32(x):
    """Trailing zeros of int32 bit patterns; outside 0..30 for 0 and 2**31."""
    lowest = tf.bitwise.bitwise_and(x, tf.negative(x))
    # A power of two is exact in float32; its exponent field is the bit index.
    return tf.bitwise.right_shift(
        tf.bitcast(tf.cast(lowest, tf.float32), i32), c23) - c127

  # A graph constant: the worker runs graphs without constant folding.
  table = tf.constant(_lookup_table())
  table_mask = tf.constant(2**_TABLE_BITS - 1, i32)
  run_mask, run_len_at, code_len_at, value_at, c31 = (
      tf.constant(v, i32) for v in (2**_ENTRY_RUN_BITS - 1, _ENTRY_RUN_BITS,
                                    _ENTRY_RUN_BITS + 5, _ENTRY_RUN_BITS + 10, 31))

  def run_phase(rows, blen, base, r, pos, act, iterations):
    """Runs the loop for up to `iterations` on the lanes of `rows` ([rows, lanes])."""
    width = tf.shape(blen)[0]
    flat = tf.reshape(rows, [-1])
    flat_next = tf.concat(
        [tf.bitwise.left_shift(flat[width:], one), tf.zeros([width], tf.uint64)], 0)
    lane_iota = tf.range(width)

    def read_window(r):
      """The 64 bits from bit `r` of each lane's block."""
      k = tf.minimum(tf.bitwise.right_shift(r, c6), last_row) * width + lane_iota
      s = tf.cast(tf.bitwise.bitwise_and(r, c63_i32), tf.uint64)
      return tf.bitwise.bitwise_or(
          tf.bitwise.right_shift(tf.gather(flat, k), s),
          tf.bitwise.left_shift(tf.gather(flat_next, k), tf.bitwise.bitwise_xor(s, c63)))

    def decode_step(r, pos, act):
      """One codeword in every lane: `r` bits into the block, `pos` values.

      int32 arithmetic: right shifts sign-extend, and every field is masked.
      """
      w = read_window(r)
      # gamma(run) and the sign lie in the low 30 bits (runs below 2**15).
      low = tf.cast(w, i32)
      z1 = ctz32(low)
      z1c = tf.bitwise.bitwise_and(z1, c15)
      z1p = z1c + c1
      x = tf.bitwise.right_shift(low, z1p)
      top = tf.bitwise.left_shift(c1, z1c)
      run = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(x, top - c1), top)
      sign = tf.bitwise.bitwise_and(tf.bitwise.right_shift(x, z1c), c1)
      # gamma(|v|) from bit 2 * z1 + 2 on, within 31 bits (|v| below 2**16).
      mag_start = z1p + z1p
      t = tf.cast(tf.bitwise.right_shift(w, tf.cast(mag_start, tf.uint64)), i32)
      z2 = ctz32(t)
      z2c = tf.bitwise.bitwise_and(z2, c15)
      top2 = tf.bitwise.left_shift(c1, z2c)
      magnitude = tf.bitwise.bitwise_or(
          tf.bitwise.bitwise_and(tf.bitwise.right_shift(t, z2c + c1), top2 - c1), top2)
      negative = sign - c1  # all ones for a negative value
      value = tf.bitwise.bitwise_xor(magnitude, negative) - negative
      new_pos = pos + run
      is_value = new_pos <= blen
      # Stop (for the general loop) where the run field is no run below 2**15
      # (z1 > 14, or no one bit in 32), or |v| is 2**16 or more.
      stall = act & ((tf.cast(z1, u32) > c14u) | (is_value & (tf.cast(z2, u32) > c15u)))
      go = act & tf.logical_not(stall)
      advance = tf.where(is_value, mag_start + z2c + z2c + c1, mag_start - c1)
      r, pos, index, value = advance_lanes(r, pos, go, new_pos, is_value, advance, value)
      return r, pos, go & (new_pos < blen), index, value

    def table_step(r, pos, act):
      """`decode_step` by one lookup of the window's low `_TABLE_BITS` bits.

      A lane whose codeword (or, at its block end, trailing run) is longer
      than the lookup's bits stays where it is (advance 0) for `decode_step`.
      """
      w = read_window(r)
      entry = tf.gather(table, tf.bitwise.bitwise_and(tf.cast(w, i32), table_mask))
      new_pos = pos + tf.bitwise.bitwise_and(entry, run_mask)
      is_value = new_pos <= blen
      advance = tf.bitwise.bitwise_and(
          tf.bitwise.right_shift(entry, tf.where(is_value, code_len_at, run_len_at)), c31)
      go = act & (advance > zero)
      value = tf.bitwise.right_shift(entry, value_at)  # sign-extending
      r, pos, index, value = advance_lanes(r, pos, go, new_pos, is_value, advance, value)
      # A lane whose codeword is too long stays active, for `decode_step`.
      return r, pos, tf.where(go, new_pos < blen, act), index, value

    def advance_lanes(r, pos, go, new_pos, is_value, advance, value):
      """The lanes that `go` move by one codeword: `(r, pos, index, value)`."""
      r = tf.where(go, r + advance, r)
      pos = tf.where(go, new_pos, pos)
      emit = go & is_value
      return r, pos, tf.where(emit, base + new_pos, zero), tf.where(emit, value, zero)

    def body(step, r, pos, act, index_array, value_array):
      # Several codewords per loop iteration: less of the loop's own overhead.
      # The table steps decode short codewords; the last step decodes any, so
      # that every active lane moves at least once per iteration.
      for i, decode in enumerate((table_step,) * _TABLE_STEPS + (decode_step,)):
        r, pos, act, index, value = decode(r, pos, act)
        index_array = index_array.write(step + i, index)
        value_array = value_array.write(step + i, value)
      return step + _TABLE_STEPS + 1, r, pos, act, index_array, value_array

    # Row 0 is a placeholder, so that `stack` is defined without steps.
    _, r, pos, act, index_array, value_array = tf.while_loop(
        lambda step, r, pos, act, *_: tf.reduce_any(act),
        body,
        (tf.constant(1), r, pos, act,
         tf.TensorArray(i32, size=1, dynamic_size=True, element_shape=[None]).write(
             0, tf.zeros([width], i32)),
         tf.TensorArray(i32, size=1, dynamic_size=True, element_shape=[None]).write(
             0, tf.zeros([width], i32))),
        maximum_iterations=iterations)
    return r, pos, act, index_array.stack(), value_array.stack()

  r, pos, act, index, values = run_phase(
      rows, blen, base, tf.zeros_like(blen), tf.zeros_like(blen), blen > 0,
      _DECODE_PHASES[0])
  # A value at index 0 can only be lane 0's first codeword, decoded in the
  # first step of this phase (or by the general loop): column 0 of this
  # phase's steps holds it; every other step with index 0 wrote value 0.
  first = tf.reduce_sum(tf.where(tf.equal(index[:, :1], 0), values[:, :1], 0))
  indices, all_values = [tf.reshape(index, [-1])], [tf.reshape(values, [-1])]
  for iterations in _DECODE_PHASES[1:] + (block_size + 2,):
    # The lanes still running, gathered (by their index among all lanes).
    running = tf.cast(tf.where(act)[:, 0], i32)
    keep = running[:, tf.newaxis]
    r_part, pos_part, act_part, index, values = run_phase(
        tf.gather(rows, running, axis=1), tf.gather(blen, running), tf.gather(base, running),
        tf.gather(r, running), tf.gather(pos, running), tf.ones_like(running, tf.bool),
        iterations)
    r = tf.tensor_scatter_nd_update(r, keep, r_part)
    pos = tf.tensor_scatter_nd_update(pos, keep, pos_part)
    act = tf.tensor_scatter_nd_update(tf.zeros_like(act), keep, act_part)
    indices.append(tf.reshape(index, [-1]))
    all_values.append(tf.reshape(values, [-1]))
  # Lanes that stopped early (pos < B) continue in the general loop.
  end_bit, pos, error, index, values = _decode_lanes_general(
      words, block_start_bit + tf.cast(r, tf.int64), tf.cast(pos, tf.int64), pos < blen,
      block_len, lane_base, n, block_size, i32)
  # The general loop's lane 0 (its first step after the placeholder) may hold
  # lane 0's first value instead.
  first += tf.reduce_sum(tf.where(tf.equal(index[lanes:lanes + 1], 0),
                                  values[lanes:lanes + 1], 0))
  return (end_bit, pos, error, tf.concat(indices + [index], 0),
          tf.concat(all_values + [values], 0), first)


def _decode_lanes_general(words, bit, pos, active, block_len, lane_base, n,
                          block_size, index_type):
  """Decodes the lanes marked `active` from bit `bit` and `pos` values on.

  Any codeword (int64 arithmetic, two windows per step); one loop step per
  codeword. Returns as `_decode_lanes_fast` without `first`, with indices of
  `index_type`; row 0 of the steps (the first `lanes` entries) is a
  placeholder of zeros.
  """
  lanes = tf.shape(block_len)[0]
  # Row 0 is a placeholder, so that `stack` is defined without steps.
  arrays = (
      tf.constant(1),
      tf.TensorArray(index_type, size=1, dynamic_size=True, element_shape=[None]).write(
          0, tf.zeros([lanes], index_type)),
      tf.TensorArray(tf.int32, size=1, dynamic_size=True, element_shape=[None]).write(
          0, tf.zeros([lanes], tf.int32)))

  def body(step, bit, pos, go, error, index_array, value_array):
    window = bitstream.read_bits(words, bit)
    zeros = bitstream.trailing_zeros(window)
    bad = zeros > 31
    zeros = tf.minimum(zeros, 31)
    run = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(bitstream.one(), tf.cast(zeros, tf.uint64)),
        bitstream.low_bits(
            tf.bitwise.right_shift(window, tf.cast(zeros + 1, tf.uint64)), zeros),
    )
    new_pos = pos + tf.cast(run, tf.int64)
    is_value = new_pos <= block_len
    bad |= new_pos > block_len + 1
    sign_bit = bit + 2 * zeros + 1
    window = bitstream.read_bits(words, sign_bit)
    rest = tf.bitwise.right_shift(window, bitstream.one())
    mag_zeros = bitstream.trailing_zeros(rest)
    bad |= is_value & (mag_zeros > 30)
    mag_zeros = tf.minimum(mag_zeros, 30)
    magnitude = tf.cast(
        tf.bitwise.bitwise_or(
            tf.bitwise.left_shift(bitstream.one(), tf.cast(mag_zeros, tf.uint64)),
            bitstream.low_bits(
                tf.bitwise.right_shift(rest, tf.cast(mag_zeros + 1, tf.uint64)),
                mag_zeros),
        ),
        tf.int32,
    )
    positive = tf.bitwise.bitwise_and(window, bitstream.one()) > 0
    value = tf.where(positive, magnitude, -magnitude)
    advance = go & tf.logical_not(bad)
    emit = advance & is_value
    index_array = index_array.write(
        step, tf.where(emit, tf.cast(lane_base + new_pos - 1, index_type),
                       tf.zeros([lanes], index_type)))
    value_array = value_array.write(step, tf.where(emit, value, 0))
    bit = tf.where(
        advance, tf.where(is_value, sign_bit + 2 * mag_zeros + 2, sign_bit), bit)
    pos = tf.where(advance, new_pos, pos)
    error |= go & bad
    return (step + 1, bit, pos, advance & (new_pos < block_len), error, index_array,
            value_array)

  step, index_array, value_array = arrays
  _, bit, pos, _, error, index_array, value_array = tf.while_loop(
      lambda step, bit, pos, go, *_: tf.reduce_any(go),
      body,
      loop_vars=(step, bit, pos, active & (pos < block_len), tf.zeros_like(active),
                 index_array, value_array),
      maximum_iterations=block_size + 2,
  )
  return (bit, pos, error, tf.reshape(index_array.stack(), [-1]),
          tf.reshape(value_array.stack(), [-1]))


_decode_from_bytes_graph = tf.function(_decode_from_bytes, reduce_retracing=True)


def side_info_bits(data: tf.Tensor, num_elements, block_size: int) -> tf.Tensor:
  """Bits of the blocked format that are not block streams (header + table)."""
  n = tf.cast(num_elements, tf.int64)
  num_blocks = (n + block_size - 1) // block_size
  width = tf.cast(tf.concat([tf.reshape(data, [-1]), [0]], 0)[0], tf.int64)
  return 8 * header_bytes(num_blocks, width)


def encode(values: tf.Tensor, block_size: int = DEFAULT_BLOCK_SIZE) -> tf.Tensor:
  """Encodes an `int32` vector in the blocked format, as a scalar `tf.string`."""
  return bitstream.bytes_to_string(encode_to_bytes(values, block_size))


def decode(
    stream: tf.Tensor, num_elements: int, block_size: int = DEFAULT_BLOCK_SIZE
) -> tf.Tensor:
  """Decodes `encode`'s output; raises `InvalidArgumentError` if it is corrupt."""
  values, ok = decode_from_bytes(
      bitstream.string_to_bytes(stream), num_elements, block_size
  )
  check = tf.debugging.Assert(
      ok,
      [
          'Elias-gamma stream is truncated or corrupted (expected'
          f' {num_elements} values in blocks of {block_size}).'
      ],
  )
  with tf.control_dependencies([check]):
    return tf.identity(values)


def encode_stream(values: tf.Tensor) -> tf.Tensor:
  """One stream without header, byte-identical to `tfc.run_length_gamma_encode`.

  Args:
    values: A rank-1 `int32` tensor with a static length.

  Returns:
    A scalar `tf.string`.
  """
  n = int(values.shape[0])
  data = encode_to_bytes(values, max(n, 1))
  skip = 1 + (tf.cast(data[0], tf.int32) + 7) // 8 if n else 1
  return bitstream.bytes_to_string(data[skip:])


def decode_stream(stream: tf.Tensor, num_elements: int) -> tf.Tensor:
  """Decodes one header-less stream (`tfc.run_length_gamma_encode`'s format).

  Decoding one stream runs one lane, one loop iteration per codeword: use it
  for compatibility and tests, and the blocked format for large tensors.
  """
  data = bitstream.string_to_bytes(stream)
  if num_elements == 0:
    values, ok = tf.zeros([0], tf.int32), tf.equal(tf.size(data), 0)
  else:
    num_bytes = tf.size(data, out_type=tf.int64)
    width = bitstream.bit_length(num_bytes)
    width_bytes = tf.reshape(tf.cast(width, tf.uint8), [1])
    table = bitstream.words_to_bytes(
        bitstream.write_fields(
            [tf.reshape(tf.cast(num_bytes, tf.uint64), [1])],
            [tf.zeros([1], tf.int64)],
            tf.constant(1, tf.int64),
        ),
        (width + 7) // 8,
    )
    values, ok = decode_from_bytes(
        tf.concat([width_bytes, table, data], 0), num_elements, num_elements
    )
  check = tf.debugging.Assert(
      ok, ['Elias-gamma stream is truncated or corrupted.']
  )
  with tf.control_dependencies([check]):
    return tf.identity(values)
