"""Tests of `tff_rdq.baselines.qsgd` against a NumPy re-implementation.

The NumPy reference takes the rounding noise `u` from
`tf.random.stateless_uniform` with the method's seed; everything else (norms,
levels, reconstruction, the Elias-gamma byte count) is NumPy.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import baseline_reference as ref
from tff_rdq.baselines import qsgd
from tff_rdq.codecs import elias_gamma

LEVELS = 4


def np_qsgd(x, levels, seed, index, bucket_size=None):
  """`(q, norms, reconstruction)` of one tensor."""
  n = x.size
  width = n if bucket_size is None else bucket_size
  buckets = -(-n // width)
  rows = np.concatenate([x, np.zeros(buckets * width - n, np.float32)]).reshape(buckets, width)
  norms = np.sqrt(np.sum(rows.astype(np.float64) ** 2, axis=1).astype(np.float32))
  scaled = (np.abs(rows) / norms[:, None]) * np.float32(levels)
  u = tf.random.stateless_uniform([buckets, width], seed=[seed, index]).numpy()
  level = np.minimum(np.floor(scaled + u), levels)
  q = (np.sign(rows) * level).astype(np.int64)
  reconstruction = q * (norms[:, None].astype(np.float64) / levels)
  return q.reshape(-1)[:n], norms, reconstruction.reshape(-1)[:n]


def np_client(client, levels=LEVELS, bucket_size=None):
  xs = ref.flat(client)
  seed = ref.client_seed(xs)
  return [np_qsgd(x, levels, seed, i, bucket_size) for i, x in enumerate(xs)]


@pytest.fixture(scope='module', name='clients')
def _clients():
  return ref.client_values()


@pytest.fixture(scope='module', name='weighted_output')
def _weighted_output(clients):
  process = qsgd.QSGDFactory(LEVELS).create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  return process.next(process.initialize(), clients, ref.WEIGHTS)


@pytest.mark.slow
def test_weighted_mean_matches_numpy(clients, weighted_output):
  decoded = [[r[2] for r in np_client(c)] for c in clients]
  ref.assert_result_close(weighted_output.result, ref.weighted_mean(decoded))


def test_bits_match_closed_form(clients, weighted_output):
  m = weighted_output.measurements
  bits, side_bits, zeros, errors = [], 0, [], []
  for client in clients:
    tensors = np_client(client)
    bits.append(ref.MESSAGE_BITS + sum(32 + 8 * ref.elias_gamma_num_bytes(q) for q, _, _ in tensors))
    side_bits += ref.MESSAGE_BITS + sum(32 + ref.elias_gamma_header_bits(q) for q, _, _ in tensors)
    zeros.append(sum(np.sum(q == 0) for q, _, _ in tensors))
    errors.append(sum(np.sum((r - x) ** 2) for (_, _, r), x in zip(tensors, ref.flat(client))))
  assert m['uplink_bits'] == sum(bits)
  assert m['side_info_bits'] == side_bits
  np.testing.assert_allclose(m['bits_per_parameter'], np.mean(bits) / ref.NUM_PARAMETERS)
  np.testing.assert_allclose(m['sparsity'], np.mean(zeros) / ref.NUM_PARAMETERS)
  np.testing.assert_allclose(m['distortion'], np.mean(errors) / ref.NUM_PARAMETERS, rtol=1e-5)
  assert m['clients'] == 3 and m['dropped_clients'] == 0


@pytest.mark.slow
def test_eager_buckets_match_numpy(clients):
  compressor = qsgd.QSGDCompressor(2, bucket_size=64)
  xs = ref.flat(clients[1])
  streams, _ = compressor.encode([tf.constant(x) for x in xs], None)
  decoded = ref.graph_decode(compressor)(streams)
  assert bool(decoded['ok'])
  for (q, norms, reconstruction), stream, got in zip(
      np_client(clients[1], 2, 64), streams, decoded['values']):
    data = stream.numpy()
    assert len(norms) == -(-q.size // 64)
    np.testing.assert_array_equal(np.frombuffer(data[:4 * len(norms)], '<f4'), norms)
    assert len(data) == 4 * len(norms) + ref.elias_gamma_num_bytes(q)
    np.testing.assert_allclose(got.numpy(), reconstruction, rtol=1e-6)


def test_unbiased():
  # T independent quantizations of one vector in one call: the tiled vector
  # with one bucket per copy (every bucket has the same norm).
  x = np.random.default_rng(3).normal(size=40).astype(np.float32)
  trials, levels = 4000, 2
  q, norms = qsgd.quantize(tf.constant(np.tile(x, trials)), levels,
                           tf.constant([7, 11]), bucket_size=x.size)
  norm = float(norms[0])
  estimates = q.numpy().reshape(trials, x.size) * (norm / levels)
  # Each estimate's standard deviation is at most norm / (2 s).
  bound = 5 * norm / (2 * levels * np.sqrt(trials))
  np.testing.assert_array_less(np.abs(estimates.mean(axis=0) - x), bound)
  # The bound is tight enough to catch biased (nearest) rounding.
  nearest = np.round(np.abs(x) / norm * levels) * np.sign(x) * (norm / levels)
  assert np.max(np.abs(nearest - x)) > 3 * bound


@pytest.mark.slow
def test_corrupted_streams_are_rejected(clients):
  compressor = qsgd.QSGDCompressor(LEVELS)
  streams, _ = compressor.encode([tf.constant(x) for x in ref.flat(clients[0])], None)
  bias, kernel = [s.numpy() for s in streams]
  # A well-formed Elias-gamma stream holding the level s + 1.
  too_large = np.array([1.0], '<f4').tobytes() + elias_gamma.encode_to_bytes(
      tf.constant([LEVELS + 1] + [0] * 49, tf.int32)).numpy().tobytes()
  ref.assert_rejected(compressor, [
      [bias, kernel[:-1]],  # Truncated.
      [bias[:3], kernel],  # Cut inside the header.
      [bias, kernel + b'\0'],  # Trailing garbage.
      [bias, b''],
      [np.array([-1.0], '<f4').tobytes() + bias[4:], kernel],  # Negative norm.
      [too_large, kernel],  # A level above s.
  ])
  ref.assert_truncation_rejected_eagerly(compressor, bias, 50)


def test_bad_configuration():
  with pytest.raises(TypeError, match='int32'):
    qsgd.QSGDFactory(4).create(
        tff.types.to_type([tff.TensorType(np.int32, [8])]), ref.WEIGHT_TYPE)
  for kwargs in ({'levels': 0}, {'levels': 2**31}, {'levels': 4, 'bucket_size': 0}):
    with pytest.raises(ValueError):
      qsgd.QSGDFactory(**kwargs)
  for kwargs in ({'levels': 2.5}, {'levels': '4'}, {'levels': 4, 'bucket_size': 1.5}):
    with pytest.raises(TypeError):
      qsgd.QSGDFactory(**kwargs)
  # An integral float (as a config file's knob) is an integer.
  assert qsgd.QSGDFactory(4.0).compressor.levels == 4
