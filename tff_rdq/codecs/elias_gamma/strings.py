"""The `tf.string` interface: the blocked format, and tensorflow-compression's streams."""

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs.elias_gamma.decoder import decode_from_bytes
from tff_rdq.codecs.elias_gamma.encoder import encode_to_bytes
from tff_rdq.codecs.elias_gamma.format import DEFAULT_BLOCK_SIZE


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
