"""Decoding of the blocked format: its header, the lanes' results, many vectors at once.

The decoding loops themselves are in `lanes`.
"""

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs.elias_gamma.fast_path import _FAST_MAX_RUN_BLOCK
from tff_rdq.codecs.elias_gamma.fast_path import _index_dtypes
from tff_rdq.codecs.elias_gamma.format import _max_valid_bits
from tff_rdq.codecs.elias_gamma.format import DEFAULT_BLOCK_SIZE
from tff_rdq.codecs.elias_gamma.format import header_bytes
from tff_rdq.codecs.elias_gamma.lanes import _decode_lanes_fast
from tff_rdq.codecs.elias_gamma.lanes import _decode_lanes_general


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
    block_size)` (package docstring, "Canonical decoding"); when False,
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


_decode_from_bytes_graph = tf.function(_decode_from_bytes, reduce_retracing=True)


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
