"""Tests of `tff_rdq.baselines.top_k` against a NumPy re-implementation."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import baseline_reference as ref
from tff_rdq.baselines import top_k

FRACTION = 0.1


def np_top_k(x, k):
  """Kept positions (sorted) and the reconstruction."""
  positions = np.sort(np.argsort(-np.abs(x), kind='stable')[:k])
  reconstruction = np.zeros_like(x)
  reconstruction[positions] = x[positions]
  return positions, reconstruction


def np_num_kept(n, fraction):
  return min(n, max(1, int(round(fraction * n))))


def np_stream_bytes(x, k, index_code):
  """Closed-form payload bytes of one tensor."""
  positions, _ = np_top_k(x, k)
  if index_code == 'fixed':
    width = int(np.ceil(np.log2(x.size))) if x.size > 1 else 0
    return 4 * k + (k * width + 7) // 8
  mask = np.zeros(x.size, np.int64)
  mask[positions] = 1
  return 4 * k + ref.elias_gamma_num_bytes(mask)


@pytest.fixture(scope='module', name='clients')
def _clients():
  return ref.client_values()


@pytest.fixture(scope='module', name='weighted_output')
def _weighted_output(clients):
  process = top_k.TopKFactory(fraction=FRACTION).create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  return process.next(process.initialize(), clients, ref.WEIGHTS)


@pytest.mark.slow
def test_weighted_mean_matches_numpy(clients, weighted_output):
  decoded = []
  for client in clients:
    decoded.append([np_top_k(x, np_num_kept(x.size, FRACTION))[1] for x in ref.flat(client)])
  ref.assert_result_close(weighted_output.result, ref.weighted_mean(decoded))


def test_bits_match_closed_form(clients, weighted_output):
  m = weighted_output.measurements
  bits, side_bits, errors, relative = [], 0, [], []
  for client in clients:
    client_bits = ref.MESSAGE_BITS
    error = 0.0
    for x in ref.flat(client):
      k = np_num_kept(x.size, FRACTION)
      client_bits += 8 * np_stream_bytes(x, k, 'elias_gamma')
      positions, reconstruction = np_top_k(x, k)
      mask = np.zeros(x.size, np.int64)
      mask[positions] = 1
      side_bits += ref.elias_gamma_header_bits(mask)
      error += np.sum((reconstruction.astype(np.float64) - x) ** 2)
    bits.append(client_bits)
    errors.append(error)
    relative.append(error / sum(np.sum(x.astype(np.float64) ** 2) for x in ref.flat(client)))
  assert m['uplink_bits'] == sum(bits)
  assert m['side_info_bits'] == side_bits + ref.MESSAGE_BITS * len(clients)
  np.testing.assert_allclose(m['bits_per_parameter'], np.mean(bits) / ref.NUM_PARAMETERS)
  np.testing.assert_allclose(m['distortion'], np.mean(errors) / ref.NUM_PARAMETERS, rtol=1e-6)
  np.testing.assert_allclose(m['relative_distortion'], np.mean(relative), rtol=1e-6)
  assert 0 < m['relative_distortion'] < 1
  kept = sum(np_num_kept(n, FRACTION) for n in ref.SIZES)
  np.testing.assert_allclose(m['sparsity'], 1 - kept / ref.NUM_PARAMETERS)
  assert m['clients'] == 3 and m['dropped_clients'] == 0


def test_index_bits_are_counted_per_kept_element():
  # 1000 values, k = 100 kept at spacing 10: each kept index costs gamma(10) + 2 = 9
  # bits (Elias-gamma) or ceil(log2 1000) = 10 bits (fixed), never ~0 amortized bits.
  x = np.zeros(1000, np.float32)
  x[::10] = np.arange(1, 101, dtype=np.float32)
  for index_code, per_index in (('elias_gamma', 9), ('fixed', 10)):
    compressor = top_k.TopKCompressor(k=100, index_code=index_code)
    streams, diagnostics = compressor.encode([tf.constant(x)], None)
    num_bytes = len(streams[0].numpy())
    assert num_bytes == np_stream_bytes(x, 100, index_code)
    assert diagnostics['index_bits'] >= 100 * per_index
    assert 8 * num_bytes - 32 * 100 == diagnostics['index_bits']


@pytest.mark.slow
@pytest.mark.parametrize('index_code', top_k.INDEX_CODES)
def test_eager_roundtrip_and_corruption(clients, index_code):
  compressor = top_k.TopKCompressor(fraction=0.05, index_code=index_code)
  xs = ref.flat(clients[0])
  streams, _ = compressor.encode([tf.constant(x) for x in xs], None)
  decode = ref.graph_decode(compressor)
  decoded = decode(streams)
  assert bool(decoded['ok'])
  for x, got, s in zip(xs, decoded['values'], streams):
    k = np_num_kept(x.size, 0.05)
    np.testing.assert_array_equal(got.numpy(), np_top_k(x, k)[1])
    assert len(s.numpy()) == np_stream_bytes(x, k, index_code)
  raw = [s.numpy() for s in streams]
  bias, kernel = raw  # tf.nest order; the kernel keeps k = 30 values.
  bad_inputs = [
      [bias[:-1], kernel],  # Truncated.
      [bias, kernel[:50]],  # Cut inside the values.
      [bias, kernel + b'\0'],  # Trailing garbage.
      [bias, b''],  # Empty.
      [bias, kernel[:4 * 30] + b'\xff' * (len(kernel) - 4 * 30)],  # Index code garbage.
  ]
  ref.assert_rejected(compressor, bad_inputs, decode=decode)
  ref.assert_truncation_rejected_eagerly(compressor, bias, 50)


def test_sum_factory_with_fixed_index_code(clients):
  process = top_k.TopKSumFactory(k=7, index_code='fixed').create(ref.VALUE_TYPE)
  output = process.next(process.initialize(), clients)
  expected = [sum(np_top_k(ref.flat(c)[i], 7)[1].astype(np.float64) for c in clients)
              for i in range(len(ref.SIZES))]
  ref.assert_result_close(output.result, expected)
  per_client = sum(4 * 7 + (7 * int(np.ceil(np.log2(n))) + 7) // 8 for n in ref.SIZES)
  assert output.measurements['uplink_bits'] == 3 * (8 * per_client + ref.SUM_MESSAGE_BITS)


def test_bad_configuration():
  with pytest.raises(TypeError, match='int32'):
    top_k.TopKFactory(fraction=0.1).create(
        tff.StructType([('a', tff.TensorType(np.int32, [10]))]), ref.WEIGHT_TYPE)
  for kwargs in ({'fraction': 0.0}, {'fraction': 1.5}, {'fraction': float('nan')},
                 {'k': 0}, {'fraction': 0.1, 'k': 3}, {}, {'fraction': 0.1, 'index_code': 'x'}):
    with pytest.raises(ValueError):
      top_k.TopKFactory(**kwargs)
  for kwargs in ({'fraction': '0.1'}, {'k': 2.5}, {'fraction': True}):
    with pytest.raises(TypeError):
      top_k.TopKFactory(**kwargs)
