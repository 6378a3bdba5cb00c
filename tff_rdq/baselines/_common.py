"""Helpers shared by the baseline compressors (core TensorFlow ops only).

- Fixed-width fields packed LSB-first into bytes, written and read with
  `tff_rdq.codecs.bitstream` (the project's only bit writer/reader).
- Fixed-size little-endian headers read safely from streams of any length.
- The per-tensor encode loop, and the power-of-two size of rotated tensors.

Configuration checks are `tff_rdq.validation`'s; the stateless compressor
base and the client seed are `tff_rdq.aggregators.compressor`'s.
"""

import tensorflow as tf

from tff_rdq.aggregators import compressor
from tff_rdq.codecs import bitstream


def split_header(data: tf.Tensor, num_bytes: int):
  """`(header, body)` of a `uint8` stream; the header is always `num_bytes`
  long (zero-filled when the stream is shorter), the body may be empty."""
  padded = tf.concat([data, tf.zeros([num_bytes], tf.uint8)], 0)
  return padded[:num_bytes], data[num_bytes:]


def header_float32(header: tf.Tensor, offset: int) -> tf.Tensor:
  """The float32 scalar at byte `offset` of a header."""
  return tf.bitcast(header[offset:offset + 4], tf.float32)


def header_float32_vector(header: tf.Tensor, offset: int, count: int) -> tf.Tensor:
  """`count` float32 values at byte `offset` of a header, as a vector."""
  return tf.bitcast(tf.reshape(header[offset:offset + 4 * count], [count, 4]), tf.float32)


def header_int32(header: tf.Tensor, offset: int) -> tf.Tensor:
  """The int32 at byte `offset` of a header."""
  return tf.bitcast(header[offset:offset + 4], tf.int32)


def packed_bytes(count: int, width: int) -> int:
  """Bytes of `count` fields of `width` bits, zero padded to a whole byte."""
  return (count * width + 7) // 8


def pack_fields(values: tf.Tensor, width: int) -> tf.Tensor:
  """Packs non-negative integers into `width`-bit fields, LSB-first.

  Field `j` occupies stream bits `j*width .. (j+1)*width - 1` (least
  significant bit first; see `bitstream`); the last byte is zero padded.

  Args:
    values: A rank-1 integer tensor of values below `2**width`.
    width: Python int in `[0, 32]`.

  Returns:
    A `uint8` vector of `ceil(len(values) * width / 8)` bytes.
  """
  values = tf.cast(tf.reshape(values, [-1]), tf.uint64)
  count = tf.size(values, out_type=tf.int64)
  num_bytes = (count * width + 7) // 8
  if width == 0:
    return tf.zeros([0], tf.uint8)
  words = bitstream.write_fields(
      [values], [tf.range(count) * width], (num_bytes + 7) // 8)
  return bitstream.words_to_bytes(words, num_bytes)


def unpack_fields(data: tf.Tensor, count: int, width: int):
  """Reads `pack_fields`' format; never reads out of bounds.

  Returns:
    `(values, ok)`: an `int64` vector of `count` fields, and whether `data`
    has exactly `packed_bytes(count, width)` bytes with zero padding bits.
  """
  num_bytes = packed_bytes(count, width)
  ok = tf.equal(tf.size(data), num_bytes)
  if width == 0:
    return tf.zeros([count], tf.int64), ok
  words = bitstream.bytes_to_words(data)
  offsets = tf.range(count, dtype=tf.int64) * width
  values = bitstream.low_bits(bitstream.read_bits(words, offsets), width)
  padding = 8 * num_bytes - count * width
  if padding:
    pad_bits = bitstream.low_bits(
        bitstream.read_bits(words, tf.constant([count * width], tf.int64)), padding)
    ok &= tf.equal(pad_bits[0], 0)
  return tf.cast(values, tf.int64), ok


def squared_error(values: tf.Tensor, reconstruction: tf.Tensor) -> tf.Tensor:
  """Sum of squared differences, in float64."""
  return tf.reduce_sum(tf.square(tf.cast(reconstruction, tf.float64)
                                 - tf.cast(values, tf.float64)))


def encode_tensors(flat_values, encode_tensor, nonce=None):
  """The per-tensor loop of a compressor's `encode`.

  Args:
    flat_values: The client's float32 vectors.
    nonce: The round's nonce (a `StatelessCompressor`'s `params`), mixed into
      the client seed so that random choices are fresh every round.
    encode_tensor: `(values, tensor_seed) -> (parts, reconstruction)`, where
      `tensor_seed` is `[client_seed, i]` for tensor `i` (`client_seed` from
      `compressor.client_seed`; `tensor_seed[0]` is what a server needing
      the seed must be sent), `parts` the list of `uint8` vectors making up the
      tensor's stream and `reconstruction` what the server will decode.

  Returns:
    `(streams, squared_error)`: one scalar `tf.string` per tensor and the
    float64 sum of squared reconstruction errors.
  """
  seed = compressor.client_seed(flat_values, nonce)
  streams, total_error = [], tf.constant(0.0, tf.float64)
  for i, values in enumerate(flat_values):
    parts, reconstruction = encode_tensor(values, tf.stack([seed, tf.constant(i, tf.int32)]))
    total_error += squared_error(values, reconstruction)
    streams.append(bitstream.bytes_to_string(tf.concat(parts, 0)))
  return streams, total_error


def finite_nonnegative(value: tf.Tensor) -> tf.Tensor:
  """Elementwise: finite and >= 0 (a valid scale or norm)."""
  return tf.math.is_finite(value) & (value >= 0)


def padded_size(n: int) -> int:
  """The smallest power of two >= n (1 for n <= 1): the length of a tensor
  zero-padded for a Hadamard rotation."""
  return 1 << max(n - 1, 0).bit_length()
