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
"""

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


def _sorted_segment(fn, data, segment_ids, num_segments):
  """`fn` (a sorted segment reduction) with exactly `num_segments` outputs."""
  data = tf.concat([data, tf.zeros([1], data.dtype)], 0)
  ids = tf.concat(
      [segment_ids, [tf.maximum(num_segments - 1, 0)]], 0
  )
  return fn(data, ids)[:num_segments]


def header_bytes(num_blocks: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
  """Bytes of the blocked format before the first block stream."""
  return 1 + (num_blocks * width + 7) // 8


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
  values = tf.maximum(values, -_INT32_MAX)
  n = tf.size(values, out_type=tf.int64)
  block = tf.constant(block_size, tf.int64)
  num_blocks = (n + block - 1) // block

  index = tf.where(tf.not_equal(values, 0))[:, 0]
  nonzero = tf.cast(tf.gather(values, index), tf.int64)
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

  nonzero_bits = _sorted_segment(
      tf.math.segment_sum, codeword_len, block_of, num_blocks
  )
  last_plus_one = _sorted_segment(
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
    scalar bool that is False when the data is truncated, corrupted or not in
    canonical form (then `values` is all zeros).
  """
  data = tf.reshape(data, [-1])
  if isinstance(num_elements, int) and num_elements == 0:
    # No lanes: the format is the single byte 0.
    ok = tf.reduce_all(tf.equal(data, [0]))
    return tf.zeros([0], tf.int32), ok
  n = tf.cast(num_elements, tf.int64)
  block = tf.constant(block_size, tf.int64)
  num_blocks = (n + block - 1) // block
  total_bits = 8 * tf.size(data, out_type=tf.int64)
  words = bitstream.bytes_to_words(data)

  width = tf.cast(
      bitstream.low_bits(bitstream.read_bits(words, [0]), 8)[0], tf.int64
  )
  header_ok = (tf.size(data) > 0) & (width <= 32)
  width = tf.minimum(width, 32)
  block_bytes = tf.cast(
      bitstream.low_bits(
          bitstream.read_bits(words, 8 + tf.range(num_blocks) * width), width
      ),
      tf.int64,
  )
  start = header_bytes(num_blocks, width)
  block_start_bit = 8 * (start + tf.math.cumsum(block_bytes, exclusive=True))
  block_end_bit = block_start_bit + 8 * block_bytes
  header_ok &= tf.reduce_all(block_bytes >= 1)
  header_ok &= tf.equal(
      8 * (start + tf.reduce_sum(block_bytes)), total_bits
  )
  block_len = tf.minimum(block, n - tf.range(num_blocks) * block)

  def body(i, bit, pos, done, error, pos_array, value_array):
    active = tf.logical_not(done)
    window = bitstream.read_bits(words, bit)
    zeros = bitstream.trailing_zeros(window)
    bad = zeros > 31
    zeros = tf.minimum(zeros, 31)
    run = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(bitstream.one(), tf.cast(zeros, tf.uint64)),
        bitstream.low_bits(
            tf.bitwise.right_shift(window, tf.cast(zeros + 1, tf.uint64)),
            zeros,
        ),
    )
    new_pos = pos + tf.cast(run, tf.int64)
    is_value = new_pos < block_len
    bad |= new_pos > block_len
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
                tf.bitwise.right_shift(
                    rest, tf.cast(mag_zeros + 1, tf.uint64)
                ),
                mag_zeros,
            ),
        ),
        tf.int32,
    )
    positive = tf.bitwise.bitwise_and(window, bitstream.one()) > 0
    value = tf.where(positive, magnitude, -magnitude)
    emit = active & is_value & tf.logical_not(bad)
    value_array = value_array.write(i, tf.where(emit, value, 0))
    pos_array = pos_array.write(i, new_pos)
    next_bit = tf.where(is_value, sign_bit + 2 * mag_zeros + 2, sign_bit)
    bit = tf.where(active, next_bit, bit)
    pos = tf.where(emit, new_pos, pos)
    error |= active & bad
    done |= active & (bad | tf.logical_not(is_value) | (new_pos >= block_len - 1))
    return i + 1, bit, pos, done, error, pos_array, value_array

  lanes = tf.cast(num_blocks, tf.int32)
  _, end_bit, _, done, error, pos_array, value_array = tf.while_loop(
      lambda i, bit, pos, done, *_: tf.reduce_any(tf.logical_not(done)),
      body,
      loop_vars=(
          tf.constant(0),
          block_start_bit,
          tf.fill([lanes], tf.constant(-1, tf.int64)),
          tf.zeros([lanes], tf.bool),
          tf.zeros([lanes], tf.bool),
          tf.TensorArray(tf.int64, size=0, dynamic_size=True),
          tf.TensorArray(tf.int32, size=0, dynamic_size=True),
      ),
      maximum_iterations=block_size + 1,
  )
  # A lane must end inside its own block, with only zero padding after it.
  padding = block_end_bit - end_bit
  padding_ok = (padding >= 0) & (padding < 8)
  padding_bits = bitstream.low_bits(
      bitstream.read_bits(words, end_bit), tf.clip_by_value(padding, 0, 8)
  )
  ok = (
      header_ok
      & tf.reduce_all(done)
      & tf.logical_not(tf.reduce_any(error))
      & tf.reduce_all(padding_ok)
      & tf.reduce_all(tf.equal(padding_bits, 0))
  )

  # [iterations, lanes] -> lane-major order, which is increasing position.
  positions = tf.transpose(pos_array.stack())
  decoded = tf.transpose(value_array.stack())
  keep = tf.not_equal(decoded, 0)
  lane_offset = tf.range(num_blocks)[:, tf.newaxis] * block
  index = tf.boolean_mask(positions + lane_offset, keep)
  index = tf.where(ok, index, tf.zeros_like(index))
  nonzero = tf.where(ok, tf.boolean_mask(decoded, keep), 0)
  dense = tf.sparse.to_dense(
      tf.SparseTensor(index[:, tf.newaxis], nonzero, tf.reshape(n, [1])),
      validate_indices=False,
  )
  return dense, ok


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
