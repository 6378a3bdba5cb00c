"""Tests of `tff_rdq.baselines.terngrad` against a NumPy re-implementation.

The NumPy reference takes the noise `u` from `tf.random.stateless_uniform`
with the method's seed; the rest (scale, ternarization, 2-bit packing, byte
counts) is NumPy.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import baseline_reference as ref
from tff_rdq.baselines import terngrad


def np_terngrad(x, seed, index):
  """`(q, S)` of one tensor."""
  scale = np.max(np.abs(x))
  probability = np.abs(x) / scale if scale > 0 else np.zeros_like(x)
  u = tf.random.stateless_uniform([x.size], seed=[seed, index]).numpy()
  return (np.sign(x) * (u < probability)).astype(np.int64), scale


def np_packed(q):
  """2-bit fields q + 1, LSB-first, zero padded."""
  fields = np.concatenate([q + 1, np.zeros(-q.size % 4, np.int64)]).reshape(-1, 4)
  return bytes((fields << np.array([0, 2, 4, 6])).sum(axis=1).astype(np.uint8))


def np_client(client):
  xs = ref.flat(client)
  seed = ref.client_seed(xs)
  return [np_terngrad(x, seed, i) for i, x in enumerate(xs)]


@pytest.fixture(scope='module', name='clients')
def _clients():
  return ref.client_values()


@pytest.fixture(scope='module', name='weighted_output')
def _weighted_output(clients):
  process = terngrad.TernGradFactory('packed').create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  return process.next(process.initialize(), clients, ref.WEIGHTS)


def test_weighted_mean_matches_numpy(clients, weighted_output):
  decoded = [[q * np.float64(s) for q, s in np_client(c)] for c in clients]
  ref.assert_result_close(weighted_output.result, ref.weighted_mean(decoded))


def test_bits_match_closed_form(clients, weighted_output):
  m = weighted_output.measurements
  # Per tensor: the scale (32 bits) + 2 bits per element, padded to a byte.
  per_client = sum(32 + 8 * -(-n // 4) for n in ref.SIZES)
  assert per_client == (32 + 2 * 50 + 4) + (32 + 2 * 600)
  assert m['uplink_bits'] == 3 * (per_client + ref.MESSAGE_BITS)
  assert m['side_info_bits'] == 3 * (32 * len(ref.SIZES) + ref.MESSAGE_BITS)
  np.testing.assert_allclose(m['bits_per_parameter'],
                             (per_client + ref.MESSAGE_BITS) / ref.NUM_PARAMETERS)
  zeros, errors = [], []
  for client in clients:
    tensors = np_client(client)
    zeros.append(sum(np.sum(q == 0) for q, _ in tensors))
    errors.append(sum(np.sum((q * np.float64(s) - x) ** 2)
                      for (q, s), x in zip(tensors, ref.flat(client))))
  np.testing.assert_allclose(m['sparsity'], np.mean(zeros) / ref.NUM_PARAMETERS)
  np.testing.assert_allclose(m['distortion'], np.mean(errors) / ref.NUM_PARAMETERS, rtol=1e-6)
  assert m['clients'] == 3 and m['dropped_clients'] == 0


@pytest.mark.slow
@pytest.mark.parametrize('coding', terngrad.CODINGS)
def test_eager_bytes_match_numpy(clients, coding):
  compressor = terngrad.TernGradCompressor(coding)
  xs = ref.flat(clients[2])
  streams, _ = compressor.encode([tf.constant(x) for x in xs], None)
  decoded = ref.graph_decode(compressor)(streams)
  assert bool(decoded['ok'])
  for (q, s), stream, got in zip(np_client(clients[2]), streams, decoded['values']):
    data = stream.numpy()
    assert np.frombuffer(data[:4], '<f4')[0] == s
    if coding == 'packed':
      assert data[4:] == np_packed(q)
    else:
      assert len(data) == 4 + ref.elias_gamma_num_bytes(q)
    np.testing.assert_allclose(got.numpy(), q * s)


def test_unbiased():
  # T independent ternarizations of one vector in one call (the tiled vector
  # has the same max |x|).
  x = np.random.default_rng(4).normal(size=40).astype(np.float32)
  trials = 4000
  q, scale = terngrad.ternarize(tf.constant(np.tile(x, trials)), tf.constant([5, 9]))
  scale = float(scale)
  estimates = q.numpy().reshape(trials, x.size) * scale
  # Each estimate's standard deviation is at most S / 2.
  bound = 5 * scale / (2 * np.sqrt(trials))
  np.testing.assert_array_less(np.abs(estimates.mean(axis=0) - x), bound)
  # The bound is tight enough to catch deterministic ternarization.
  assert np.max(np.abs(np.round(x / scale) * scale - x)) > 3 * bound


def test_corrupted_streams_are_rejected(clients):
  compressor = terngrad.TernGradCompressor()
  streams, _ = compressor.encode([tf.constant(x) for x in ref.flat(clients[0])], None)
  bias, kernel = [s.numpy() for s in streams]
  ref.assert_rejected(compressor, [
      [bias, kernel[:-1]],  # Truncated.
      [bias, kernel + b'\0'],  # Trailing garbage.
      [bias[:2], kernel],  # Cut inside the header.
      [bias, kernel[:4] + b'\xff' + kernel[5:]],  # Field value 3.
      [bias[:-1] + bytes([bias[-1] | 0x80]), kernel],  # Nonzero padding bits.
      [np.array([np.nan], '<f4').tobytes() + bias[4:], kernel],  # Non-finite scale.
  ])
  ref.assert_truncation_rejected_eagerly(compressor, bias, 50)


def test_bad_configuration():
  with pytest.raises(TypeError, match='int32'):
    terngrad.TernGradFactory().create(
        tff.types.to_type([tff.TensorType(np.int32, [8])]), ref.WEIGHT_TYPE)
  for bad in ('2bit', None, 2):
    with pytest.raises(ValueError, match='coding'):
      terngrad.TernGradFactory(bad)
  with pytest.raises(ValueError, match='block_size'):
    terngrad.TernGradFactory('elias_gamma', block_size=0)
