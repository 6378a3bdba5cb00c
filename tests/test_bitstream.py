"""Tests of `tff_rdq.codecs.bitstream` against a plain-Python LSB-first bit list."""

import numpy as np
import pytest
import tensorflow as tf

from tff_rdq.codecs import bitstream


def _stream_bits(fields, num_bytes):
  """Stream bits of (value, width, offset) fields, LSB-first, as a Python list."""
  bits = [0] * (8 * num_bytes)
  for value, width, offset in fields:
    for j in range(width):
      bits[offset + j] = (value >> j) & 1
  return bits


def _bytes_of(bits):
  return bytes(sum(bit << j for j, bit in enumerate(bits[i:i + 8]))
               for i in range(0, len(bits), 8))


def test_write_fields_is_lsb_first_and_crosses_words():
  rng = np.random.default_rng(0)
  widths = rng.integers(0, 65, size=200)
  offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(np.int64)
  values = [int(rng.integers(0, 2**63)) * 2 % (1 << int(w)) if w else 0 for w in widths]
  total_bits = int(widths.sum())
  num_bytes = (total_bits + 7) // 8
  num_words = (num_bytes + 7) // 8
  # Two calls' worth of fields: even and odd ones, each non-decreasing.
  even, odd = slice(0, None, 2), slice(1, None, 2)
  words = bitstream.write_fields(
      [tf.constant(np.array(values, np.uint64)[even]),
       tf.constant(np.array(values, np.uint64)[odd])],
      [tf.constant(offsets[even]), tf.constant(offsets[odd])],
      tf.constant(num_words, tf.int64))
  data = bitstream.words_to_bytes(words, tf.constant(num_bytes, tf.int64)).numpy().tobytes()
  expected = _bytes_of(_stream_bits(zip(values, widths, offsets), num_bytes))
  assert data == expected


def test_read_bits_reads_every_window_and_zeros_past_the_end():
  data = np.random.default_rng(1).integers(0, 256, size=37).astype(np.uint8)
  words = bitstream.bytes_to_words(tf.constant(data))
  bits = [(int(b) >> j) & 1 for b in data for j in range(8)]
  offsets = np.arange(0, len(bits) + 80, 7, dtype=np.int64)
  windows = bitstream.read_bits(words, tf.constant(offsets)).numpy()
  for offset, window in zip(offsets, windows):
    expected = sum(bit << j for j, bit in enumerate(bits[offset:offset + 64]))
    assert int(window) == expected, offset
  low = bitstream.low_bits(tf.constant(windows), 5).numpy()
  np.testing.assert_array_equal(low, windows & np.uint64(31))


def test_bit_length_and_trailing_zeros():
  values = np.array([0, 1, 2, 3, 4, 255, 256, 2**31 - 1, 2**52, 2**53 - 1], np.int64)
  np.testing.assert_array_equal(bitstream.bit_length(tf.constant(values)).numpy(),
                                [int(v).bit_length() for v in values])
  words = np.array([0, 1, 8, 2**63, 12, 2**40 + 2**41], np.uint64)
  expected = [64] + [(int(w) & -int(w)).bit_length() - 1 for w in words[1:]]
  np.testing.assert_array_equal(bitstream.trailing_zeros(tf.constant(words)).numpy(), expected)


def test_sorted_segment_has_exactly_num_segments_outputs():
  data = tf.constant([1, 2, 3], tf.int64)
  ids = tf.constant([0, 0, 2], tf.int64)
  np.testing.assert_array_equal(
      bitstream.sorted_segment(tf.math.segment_sum, data, ids, tf.constant(5, tf.int64)).numpy(),
      [3, 0, 3, 0, 0])
  np.testing.assert_array_equal(
      bitstream.sorted_segment(tf.math.segment_max, data, ids, tf.constant(3, tf.int64)).numpy(),
      [2, 0, 3])


@pytest.mark.parametrize('data', [b'', b'\x00', b'\x00\xff\x10abc', bytes(range(256)) * 3])
def test_bytes_and_strings_round_trip(data):
  array = np.frombuffer(data, np.uint8)
  string = bitstream.bytes_to_string(tf.constant(array, tf.uint8))
  assert string.numpy() == data
  np.testing.assert_array_equal(bitstream.string_to_bytes(string).numpy(), array)
  # Inside a graph too (TFF traces these functions).
  graph = tf.function(lambda x: bitstream.string_to_bytes(bitstream.bytes_to_string(x)))
  np.testing.assert_array_equal(graph(tf.constant(array, tf.uint8)).numpy(), array)


def test_scalar_bytes_are_little_endian():
  assert bitstream.scalar_bytes(tf.constant(1.0, tf.float32)).numpy().tobytes() == (
      np.float32(1.0).tobytes())
  assert bitstream.scalar_bytes(tf.constant([1, -2], tf.int32)).numpy().tobytes() == (
      np.array([1, -2], '<i4').tobytes())
