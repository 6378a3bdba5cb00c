"""Tests of the in-graph Elias-gamma codec against tensorflow-compression's C++ op."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc
import tensorflow_federated as tff

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma

_RNG = np.random.default_rng(1234)
INT32_MAX = 2**31 - 1

CASES = {
    'empty': np.zeros(0, np.int32),
    'single_zero': np.zeros(1, np.int32),
    'single_value': np.array([-7], np.int32),
    'all_zero': np.zeros(3000, np.int32),
    'huge': np.array([INT32_MAX, -INT32_MAX, 0, 0, -2**31, 1, 2**30, 0], np.int32),
    'laplace_dense': np.round(_RNG.laplace(size=5000) * 3).astype(np.int32),
    'laplace_sparse': np.round(_RNG.laplace(size=4097) * 0.2).astype(np.int32),
    'trailing_nonzero': np.array([0, 0, 0, 5], np.int32),
}


def _expected(values):
  # The op codes INT32_MIN as -(2**31 - 1).
  return np.maximum(values, -INT32_MAX)


@pytest.mark.parametrize('name', sorted(CASES))
def test_stream_is_byte_identical_to_tfc(name):
  values = CASES[name]
  ours = elias_gamma.encode_stream(tf.constant(values)).numpy()
  reference = tfc.run_length_gamma_encode(tf.constant(values)).numpy()
  assert ours == reference


@pytest.mark.parametrize('name', sorted(CASES))
def test_decodes_tfc_output(name):
  values = CASES[name]
  reference = tfc.run_length_gamma_encode(tf.constant(values))
  decoded = elias_gamma.decode_stream(reference, len(values)).numpy()
  np.testing.assert_array_equal(decoded, _expected(values))


def _split_blocks(data: bytes, num_elements: int, block_size: int):
  """Parses the blocked format's header in numpy; returns the block streams."""
  num_blocks = -(-num_elements // block_size)
  width = data[0]
  bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder='little')
  lengths = [
      int(sum(int(b) << j for j, b in enumerate(bits[8 + i * width: 8 + (i + 1) * width])))
      for i in range(num_blocks)
  ]
  start = 1 + (num_blocks * width + 7) // 8
  streams = []
  for length in lengths:
    streams.append(data[start:start + length])
    start += length
  assert start == len(data)
  return streams


@pytest.mark.parametrize('block_size', [1, 7, 1024])
@pytest.mark.parametrize('name', sorted(CASES))
def test_every_block_is_a_tfc_stream(name, block_size):
  values = CASES[name]
  data = elias_gamma.encode(tf.constant(values), block_size).numpy()
  streams = _split_blocks(data, len(values), block_size)
  assert len(streams) == -(-len(values) // block_size)
  for i, stream in enumerate(streams):
    block = values[i * block_size:(i + 1) * block_size]
    decoded = tfc.run_length_gamma_decode(tf.constant(stream), [len(block)]).numpy()
    np.testing.assert_array_equal(decoded, _expected(block))
    assert stream == tfc.run_length_gamma_encode(tf.constant(block)).numpy()
  decoded = elias_gamma.decode(tf.constant(data), len(values), block_size).numpy()
  np.testing.assert_array_equal(decoded, _expected(values))


def test_side_info_bits_counts_header_and_table():
  values = CASES['laplace_dense']
  data = elias_gamma.encode_to_bytes(tf.constant(values), 1024)
  num_blocks = 5
  width = int(data[0])
  expected = 8 * (1 + (num_blocks * width + 7) // 8)
  assert int(elias_gamma.side_info_bits(data, len(values), 1024)) == expected


def _corruptions(data: bytes):
  yield 'truncated_one_byte', data[:-1]
  yield 'truncated_half', data[:len(data) // 2]
  yield 'extra_byte', data + b'\x00'
  yield 'empty', b''
  yield 'width_garbage', bytes([200]) + data[1:]
  yield 'table_changed', data[:1] + bytes([data[1] ^ 0x01]) + data[2:]
  yield 'all_ones', b'\xff' * len(data)


@pytest.mark.parametrize('corruption', [c for c, _ in _corruptions(b'xyz')])
def test_corrupt_streams_are_detected(corruption):
  values = CASES['laplace_dense']
  data = elias_gamma.encode(tf.constant(values), 256).numpy()
  bad = dict(_corruptions(data))[corruption]
  decoded, ok = elias_gamma.decode_from_bytes(
      bitstream.string_to_bytes(tf.constant(bad)), len(values), 256)
  assert not bool(ok)
  assert not np.any(decoded.numpy())  # Nothing is decoded from a bad stream.
  with pytest.raises(tf.errors.InvalidArgumentError, match='truncated or corrupted'):
    elias_gamma.decode(tf.constant(bad), len(values), 256)


def test_bit_flips_never_decode_silently_wrong():
  values = CASES['laplace_sparse']
  data = bytearray(elias_gamma.encode(tf.constant(values), 512).numpy())
  rng = np.random.default_rng(7)
  for _ in range(40):
    flipped = bytearray(data)
    position = int(rng.integers(len(flipped) * 8))
    flipped[position // 8] ^= 1 << (position % 8)
    decoded, ok = elias_gamma.decode_from_bytes(
        bitstream.string_to_bytes(tf.constant(bytes(flipped))), len(values), 512)
    # A flip either is detected or (rarely) yields another valid stream; then
    # the values must be exactly what that stream encodes.
    if bool(ok):
      reencoded = elias_gamma.encode(decoded, 512).numpy()
      assert reencoded == bytes(flipped)


def test_rejects_bad_arguments():
  with pytest.raises(TypeError, match='int32'):
    elias_gamma.encode(tf.constant([1.0]))
  with pytest.raises(ValueError, match='block_size'):
    elias_gamma.encode(tf.constant([1]), 0)


def test_runs_inside_federated_computation():
  values = CASES['laplace_dense']
  n = len(values)

  @tff.tensorflow.computation(tff.TensorType(np.int32, [n]))
  def round_trip(x):
    stream = elias_gamma.encode(x, 256)
    return stream, elias_gamma.decode(stream, n, 256)

  stream, decoded = round_trip(values)
  np.testing.assert_array_equal(decoded, values)
  assert stream == elias_gamma.encode(tf.constant(values), 256).numpy()

  @tff.tensorflow.computation(tff.TensorType(np.str_))
  def decode(s):
    return elias_gamma.decode(s, n, 256)

  with pytest.raises(Exception, match='truncated or corrupted'):
    decode(stream[:-3])


def test_many_random_streams_match_tfc():
  # Covers streams that end exactly on a 64-bit word boundary, with and
  # without a trailing run (a field of length 0 at the very end).
  rng = np.random.default_rng(99)
  word_aligned = 0
  for _ in range(150):
    n = int(rng.integers(1, 120))
    scale = float(rng.choice([0.1, 1.0, 30.0, 1e5]))
    values = np.round(rng.laplace(size=n) * scale).astype(np.int32)
    if rng.random() < 0.5:
      values[-1] = int(rng.integers(1, 50))
    ours = elias_gamma.encode_stream(tf.constant(values)).numpy()
    assert ours == tfc.run_length_gamma_encode(tf.constant(values)).numpy()
    word_aligned += len(elias_gamma.encode(tf.constant(values), 16).numpy()) % 8 == 0
  assert word_aligned > 5
