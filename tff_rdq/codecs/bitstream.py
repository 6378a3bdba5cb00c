"""Vectorized bit-level primitives in core TensorFlow ops.

All streams in `tff_rdq` are **LSB-first**: stream bit `k` is bit `k mod 8` of
byte `k // 8`, and a field of `n` bits holding the integer `v` occupies stream
bits `o .. o + n - 1` with bit `j` of `v` at stream bit `o + j`. This is the
order of tensorflow-compression's `run_length_gamma_encode`.

Writing works on 64-bit words: a stream is a vector of `uint64` words whose
little-endian bytes are the stream's bytes. A field at bit offset `o` lands in
word `o // 64` (shifted left by `o % 64`) and, when it crosses the word
boundary, in word `o // 64 + 1`. Because fields never overlap, summing their
contributions per word equals OR-ing them, so a whole stream is written by
sorted segment sums with no per-field loop.

Only core TensorFlow ops are used, so every function here runs inside TFF's
C++ worker (where tensorflow-compression's custom ops do not exist).
"""

import tensorflow as tf


def one() -> tf.Tensor:
  """The `uint64` constant 1."""
  # A fresh constant per call: a module-level eager tensor cannot be captured
  # by the graphs that TFF traces.
  return tf.constant(1, tf.uint64)



def sorted_segment(fn, data, segment_ids, num_segments):
  """`fn` (a sorted segment reduction) with exactly `num_segments` outputs.

  `segment_ids` must be sorted and below `num_segments`; segments without
  entries get 0 (one zero-valued entry is appended to the last segment to fix
  the output length, so a max over non-negative data is unchanged).
  """
  data = tf.concat([data, tf.zeros([1], data.dtype)], 0)
  ids = tf.concat(
      [segment_ids, tf.reshape(tf.maximum(num_segments - 1, 0), [1])], 0
  )
  return fn(data, ids)[:num_segments]


def bit_length(values: tf.Tensor) -> tf.Tensor:
  """Number of bits of each non-negative integer (`bit_length(0) == 0`).

  Exact for values below 2**53: a float64 conversion is exact there and its
  exponent field is `floor(log2(v))`.

  Args:
    values: An integer tensor of non-negative values below 2**53.

  Returns:
    An `int64` tensor of the same shape.
  """
  as_float = tf.cast(values, tf.float64)
  exponent = tf.bitwise.right_shift(tf.bitcast(as_float, tf.int64), 52) - 1022
  return tf.where(values > 0, exponent, tf.zeros_like(exponent))


def trailing_zeros(words: tf.Tensor) -> tf.Tensor:
  """Count of trailing zero bits of each `uint64` word; 64 for a zero word."""
  lowest = tf.bitwise.bitwise_and(words, tf.bitwise.invert(words) + one())
  # bit_length of the isolated lowest bit; the float64 cast of 2**k is exact.
  as_float = tf.cast(lowest, tf.float64)
  exponent = tf.bitwise.right_shift(tf.bitcast(as_float, tf.int64), 52) - 1023
  return tf.where(tf.equal(words, 0), tf.constant(64, tf.int64), exponent)


def write_fields(
    values: list[tf.Tensor], offsets: list[tf.Tensor], num_words: tf.Tensor
) -> tf.Tensor:
  """Writes non-overlapping fields into a stream of `uint64` words.

  Args:
    values: A list of `uint64` vectors, the field values; each field is at
      most 64 bits long and holds no bits above its length.
    offsets: A list of `int64` vectors, the stream bit offset of each field,
      non-decreasing within each vector.
    num_words: Scalar `int64`, the number of words of the stream; every
      nonempty field must end within it.

  Returns:
    A `uint64` vector of `num_words` words.
  """
  parts = []
  for value, offset in zip(values, offsets):
    word = tf.bitwise.right_shift(offset, 6)
    shift = tf.cast(tf.bitwise.bitwise_and(offset, 63), tf.uint64)
    low = tf.bitwise.left_shift(value, shift)
    # A shift by 64 is undefined, so fields that start on a word boundary
    # (shift 0) get their empty high part by masking.
    high = tf.where(
        shift > 0,
        tf.bitwise.right_shift(value, tf.constant(64, tf.uint64) - shift),
        tf.zeros_like(value),
    )
    parts.append((low, word))
    parts.append((high, word + 1))
  result = tf.zeros([num_words + 1], tf.uint64)
  for data, ids in parts:
    # Empty fields (length 0) may sit at the very end of the stream; their
    # parts land in the scratch word `num_words`, which is dropped.
    ids = tf.minimum(ids, num_words)
    # A trailing zero-valued entry fixes the output length of the sorted sum.
    data = tf.concat([data, tf.zeros([1], tf.uint64)], 0)
    ids = tf.concat([ids, tf.reshape(num_words, [1])], 0)
    result += tf.math.segment_sum(data, ids)
  return result[:num_words]


def words_to_bytes(words: tf.Tensor, num_bytes: tf.Tensor) -> tf.Tensor:
  """The first `num_bytes` little-endian bytes of `uint64` words, as `uint8`."""
  return tf.reshape(tf.bitcast(words, tf.uint8), [-1])[:num_bytes]


def bytes_to_words(data: tf.Tensor) -> tf.Tensor:
  """`uint8` bytes as little-endian `uint64` words, plus two zero guard words.

  The guard words let `read_bits` read a full 64-bit window at any bit
  position inside the data without going out of bounds.
  """
  num_bytes = tf.shape(data, out_type=tf.int64)[0]
  padded_len = (num_bytes + 7) // 8 * 8 + 16
  padded = tf.concat(
      [data, tf.zeros([padded_len - num_bytes], tf.uint8)], 0
  )
  return tf.bitcast(tf.reshape(padded, [-1, 8]), tf.uint64)


def read_bits(words: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
  """The 64 stream bits starting at each bit offset, as `uint64` windows.

  Args:
    words: The `uint64` words of a stream, from `bytes_to_words`.
    offsets: `int64` bit offsets; offsets past the data are clipped to the
      zero guard word, so they read zeros.

  Returns:
    A `uint64` tensor shaped like `offsets`: bit `j` is stream bit
    `offset + j`.
  """
  offsets = tf.cast(offsets, tf.int64)
  last_word = tf.shape(words, out_type=tf.int64)[0] - 2
  word = tf.minimum(tf.bitwise.right_shift(offsets, 6), last_word)
  shift = tf.cast(tf.bitwise.bitwise_and(offsets, 63), tf.uint64)
  low = tf.bitwise.right_shift(tf.gather(words, word), shift)
  high = tf.where(
      shift > 0,
      tf.bitwise.left_shift(
          tf.gather(words, word + 1), tf.constant(64, tf.uint64) - shift
      ),
      tf.zeros_like(low),
  )
  return tf.bitwise.bitwise_or(low, high)


def low_bits(window: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """The lowest `count` (0..63) bits of each `uint64` window."""
  mask = tf.bitwise.left_shift(one(), tf.cast(count, tf.uint64)) - one()
  return tf.bitwise.bitwise_and(window, mask)


def scalar_bytes(value: tf.Tensor) -> tf.Tensor:
  """The little-endian bytes of a 4-byte scalar (or of each element of a vector)."""
  return tf.reshape(tf.bitcast(value, tf.uint8), [-1])


def bytes_to_string(data: tf.Tensor) -> tf.Tensor:
  """A `uint8` vector as a scalar `tf.string` holding exactly those bytes."""
  # The raw bytes are the last field of the serialized TensorProto.
  serialized = tf.io.serialize_tensor(data)
  num_bytes = tf.shape(data)[0]
  return tf.strings.substr(
      serialized, tf.strings.length(serialized) - num_bytes, num_bytes
  )


def string_to_bytes(data: tf.Tensor) -> tf.Tensor:
  """A scalar `tf.string` as a `uint8` vector of its bytes."""
  return tf.reshape(tf.io.decode_raw(data, tf.uint8), [-1])


def byte_vectors(datas, sizes):
  """`decode_many`'s arguments checked: `(uint8 vectors, Python int sizes)`."""
  sizes = [int(n) for n in sizes]
  if len(datas) != len(sizes):
    raise ValueError(f'{len(datas)} byte vectors for {len(sizes)} sizes.')
  return [tf.reshape(tf.convert_to_tensor(d, tf.uint8), [-1]) for d in datas], sizes
