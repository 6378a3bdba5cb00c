"""Tests of `tff_rdq.baselines.three_lc` against a NumPy re-implementation."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import baseline_reference as ref
from tff_rdq.baselines import three_lc

MULTIPLIER = 1.5


def np_quantize(x, m):
  scale = np.float32(np.float32(m) * np.max(np.abs(x)))
  q = np.round(x / scale).astype(np.int64) if scale > 0 else np.zeros(x.size, np.int64)
  return q, scale


def np_pack(q):
  groups = -(-q.size // 5)
  digits = np.concatenate([q, np.zeros(5 * groups - q.size, np.int64)]) + 1
  return digits.reshape(groups, 5) @ np.array([81, 27, 9, 3, 1])


def np_zero_run_encode(packed):
  out, i = [], 0
  while i < len(packed):
    if packed[i] != 121:
      out.append(int(packed[i]))
      i += 1
      continue
    j = i
    while j < len(packed) and packed[j] == 121:
      j += 1
    run = j - i
    out += [255] * (run // 14)
    if run % 14 == 1:
      out.append(121)
    elif run % 14 >= 2:
      out.append(243 + run % 14 - 2)
    i = j
  return bytes(out)


def np_stream(x, m):
  q, scale = np_quantize(x, m)
  return np.array([scale], '<f4').tobytes() + np_zero_run_encode(np_pack(q)), q * np.float64(scale)


@pytest.fixture(scope='module', name='clients')
def _clients():
  return ref.client_values()


@pytest.fixture(scope='module', name='weighted_output')
def _weighted_output(clients):
  process = three_lc.ThreeLCFactory(MULTIPLIER).create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  return process.next(process.initialize(), clients, ref.WEIGHTS)


def test_weighted_mean_matches_numpy(clients, weighted_output):
  decoded = [[np_stream(x, MULTIPLIER)[1] for x in ref.flat(c)] for c in clients]
  ref.assert_result_close(weighted_output.result, ref.weighted_mean(decoded))


def test_bits_match_closed_form(clients, weighted_output):
  m = weighted_output.measurements
  bits = [sum(8 * len(np_stream(x, MULTIPLIER)[0]) for x in ref.flat(c)) + ref.MESSAGE_BITS
          for c in clients]
  assert m['uplink_bits'] == sum(bits)
  assert m['side_info_bits'] == 3 * (32 * len(ref.SIZES) + ref.MESSAGE_BITS)
  np.testing.assert_allclose(m['bits_per_parameter'], np.mean(bits) / ref.NUM_PARAMETERS)
  zeros = [sum(np.sum(np_quantize(x, MULTIPLIER)[0] == 0) for x in ref.flat(c)) for c in clients]
  np.testing.assert_allclose(m['sparsity'], np.mean(zeros) / ref.NUM_PARAMETERS)
  errors = [sum(np.sum((np_stream(x, MULTIPLIER)[1] - x) ** 2) for x in ref.flat(c))
            for c in clients]
  np.testing.assert_allclose(m['distortion'], np.mean(errors) / ref.NUM_PARAMETERS, rtol=1e-6)
  assert m['clients'] == 3 and m['dropped_clients'] == 0
  # The test data has long zero runs, so ZRE is exercised.
  assert 0.5 < m['sparsity'] < 1


@pytest.mark.parametrize('multiplier', [1.0, 1.9])
def test_eager_bytes_match_numpy(clients, multiplier):
  compressor = three_lc.ThreeLCCompressor(multiplier)
  xs = ref.flat(clients[2]) + [np.array([0.5, -1.0, 0, 0, 0, 0, 0.25], np.float32)]
  streams, _ = compressor.encode([tf.constant(x) for x in xs], None)
  decoded = compressor.decode(streams, [x.size for x in xs])
  assert bool(decoded['ok'])
  for x, stream, got in zip(xs, streams, decoded['values']):
    want_bytes, want_values = np_stream(x, multiplier)
    assert stream.numpy() == want_bytes
    np.testing.assert_allclose(got.numpy(), want_values, rtol=1e-6)


def test_zero_run_lengths():
  # Runs of 121 of every length class, between literal bytes.
  runs = [1, 2, 13, 14, 15, 27, 28, 29, 40]
  packed = []
  for run in runs:
    packed += [7] + [121] * run
  packed += [121] * 3
  packed = np.array(packed, np.int32)
  encoded = three_lc.zero_run_encode(tf.constant(packed)).numpy().tobytes()
  assert encoded == np_zero_run_encode(packed)
  assert np_zero_run_encode([121] * 29) == bytes([255, 255, 121])
  decoded, ok = three_lc.zero_run_decode(tf.constant(np.frombuffer(encoded, np.uint8)),
                                         packed.size)
  assert bool(ok)
  np.testing.assert_array_equal(decoded.numpy(), packed)


def test_corrupted_streams_are_rejected():
  compressor = three_lc.ThreeLCCompressor(1.0)
  # Packed bytes 94, 121, 202, 121, 121, 121; ZRE 94, 121, 202, 244 (a run of 3).
  x = np.zeros(27, np.float32)
  x[[0, 1, 10]] = [0.5, -1.0, 1.0]
  sizes = [x.size]
  (stream,), _ = compressor.encode([tf.constant(x)], None)
  data = stream.numpy()
  header, body = data[:4], data[4:]
  assert body == bytes([94, 121, 202, 244])
  ref.assert_rejected(compressor, [
      [data[:-1]],  # Truncated: expands to too few bytes.
      [data + bytes([121])],  # Expands to too many bytes.
      [header + bytes([94, 121, 202, 121, 243])],  # Not canonical: 121, run.
      [header + bytes([94, 121, 202, 243, 121])],  # Not canonical: run, 121.
      [header + bytes([94, 121, 202, 121, 121, 121])],  # Not canonical: 121 121.
      [data[:2]],  # Cut inside the header.
      [b''],
      [np.array([np.inf], '<f4').tobytes() + data[4:]],  # Non-finite scale.
  ], sizes)
  ref.assert_truncation_rejected_eagerly(compressor, data, x.size)
  # Nonzero padding values: 7 values in 2 bytes, the last 3 must be zero.
  (stream,), _ = compressor.encode([tf.constant(x[:7])], None)
  data = stream.numpy()
  assert bool(compressor.decode([tf.constant(data)], [7])['ok'])
  assert data[4:] == bytes([94, 121])
  ref.assert_rejected(compressor, [[data[:5] + bytes([122])]], [7])


def test_bad_configuration():
  with pytest.raises(TypeError, match='int32'):
    three_lc.ThreeLCFactory().create(
        tff.types.to_type([tff.TensorType(np.int32, [8])]), ref.WEIGHT_TYPE)
  for bad in (0.5, 2.0, float('inf')):
    with pytest.raises(ValueError, match='sparsity_multiplier'):
      three_lc.ThreeLCFactory(bad)
  with pytest.raises(TypeError, match='sparsity_multiplier'):
    three_lc.ThreeLCFactory('1.5')
