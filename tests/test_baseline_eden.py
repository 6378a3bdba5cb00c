"""Tests of `tff_rdq.baselines.eden`: its Lloyd-Max tables against known values
and SciPy, its error against the closed forms, and its bytes and TFF rounds
against a NumPy re-implementation.

The NumPy reference uses an explicit Hadamard matrix (`scipy.linalg.hadamard`)
and takes only the random signs and the sparsification mask from
`tf.random.stateless_uniform` (TF's Philox generator, the seed semantics of
the method), as the DRIVE tests do.
"""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.stats
import tensorflow as tf
import tensorflow_federated as tff

import baseline_reference as ref
from tff_rdq import baselines
from tff_rdq.baselines import drive
from tff_rdq.baselines import eden
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import methods

HEADER_BYTES = 8


def np_padded_size(n):
  return int(2 ** np.ceil(np.log2(n))) if n > 1 else 1


def np_mask(d, p, seed, index):
  uniform = tf.random.stateless_uniform([d], seed=[seed, -1 - index]).numpy()
  return uniform < p


def np_eden(x, seed, index, bits, p):
  """`(reconstruction, codes of the sent coordinates, S, mask)` of one tensor."""
  n, d = x.size, np_padded_size(x.size)
  uniform = tf.random.stateless_uniform([d], seed=[seed, index]).numpy()
  signs = np.where(uniform < 0.5, -1.0, 1.0)
  hadamard = scipy.linalg.hadamard(d).astype(np.float64)
  padded = np.concatenate([x.astype(np.float64), np.zeros(d - n)])
  rotated = hadamard @ (signs * padded) / np.sqrt(d)
  centroids, boundaries = (v.astype(np.float32).astype(np.float64) for v in eden.lloyd_max(bits))
  norm = np.sqrt(np.sum(padded ** 2))
  z = rotated * np.sqrt(d) / norm if norm else np.zeros(d)
  codes = np.searchsorted(boundaries, z, side='right')
  denominator = np.dot(centroids[codes], rotated)
  s = np.sum(padded ** 2) / denominator if denominator else 0.0
  mask = np_mask(d, p, seed, index) if p < 1 else np.ones(d, bool)
  sent = np.where(mask, s / p * centroids[codes], 0.0)
  reconstruction = (signs * (hadamard @ sent) / np.sqrt(d))[:n]
  return reconstruction, codes[mask], s, mask


def np_client(client, bits, p, nonce=0):
  xs = ref.flat(client)
  seed = ref.client_seed(xs, nonce)
  return [np_eden(x, seed, i, bits, p) for i, x in enumerate(xs)]


def stream_bytes(k, bits):
  """The documented length of one tensor's stream with k sent codes."""
  return HEADER_BYTES + (k * bits + 7) // 8


# ----------------------------------------------------------------------------
# Lloyd-Max tables.


def test_lloyd_max_known_values():
  centroids, boundaries = eden.lloyd_max(1)
  np.testing.assert_allclose(centroids, [-math.sqrt(2 / math.pi), math.sqrt(2 / math.pi)],
                             rtol=1e-12)
  np.testing.assert_allclose(boundaries, [0.0], atol=1e-15)
  np.testing.assert_allclose(eden.lloyd_max_mse(1), 1 - 2 / math.pi, rtol=1e-12)
  # Max (1960), table I: 4 levels at +-0.4528, +-1.510, threshold 0.9816.
  centroids, boundaries = eden.lloyd_max(2)
  # (to the table's last digit).
  np.testing.assert_allclose(centroids[2], 0.4528, atol=5e-5)
  np.testing.assert_allclose(centroids[3], 1.510, atol=5e-4)
  np.testing.assert_allclose(boundaries[2:], [0.9816], atol=5e-5)
  assert abs(eden.lloyd_max_mse(2) - 0.1175) < 1e-4
  assert abs(eden.lloyd_max_mse(3) - 0.03454) < 2e-5
  # Max's table gives 0.009497; the converged quantizer's MSE is 0.0095010
  # (checked against SciPy below), within the table's precision.
  assert abs(eden.lloyd_max_mse(4) - 0.009497) < 1e-5
  np.testing.assert_allclose(eden.lloyd_max_mse(4), 0.00950101, rtol=1e-6)


@pytest.mark.parametrize('bits', eden.BITS)
def test_lloyd_max_is_a_fixed_point_of_lloyd(bits):
  """Each centroid is its cell's conditional mean (SciPy's truncated normal),
  each boundary the midpoint of its centroids, and the MSE is the integral."""
  centroids, boundaries = eden.lloyd_max(bits)
  assert centroids.size == 2 ** bits and boundaries.size == 2 ** bits - 1
  assert np.all(np.diff(centroids) > 0)
  np.testing.assert_allclose(centroids, -centroids[::-1], atol=1e-15)
  edges = np.concatenate([[-np.inf], boundaries, [np.inf]])
  means = [scipy.stats.truncnorm.mean(a, b) for a, b in zip(edges[:-1], edges[1:])]
  np.testing.assert_allclose(centroids, means, atol=1e-10)
  mse = sum(scipy.integrate.quad(lambda z, c=c: (z - c) ** 2 * scipy.stats.norm.pdf(z),
                                 a, b, epsabs=1e-14, epsrel=1e-12)[0]
            for c, a, b in zip(centroids, edges[:-1], edges[1:]))
  np.testing.assert_allclose(eden.lloyd_max_mse(bits), mse, rtol=1e-9)


def test_closed_forms():
  """Unbiased scale: nmse = mse / (1 - mse); 1 bit gives DRIVE's pi/2 - 1."""
  np.testing.assert_allclose(eden.expected_nmse(1), math.pi / 2 - 1, rtol=1e-12)
  np.testing.assert_allclose(eden.expected_nmse(2), 0.1331, atol=1e-4)
  np.testing.assert_allclose(eden.expected_nmse(4), 0.0096, atol=1e-5)
  for bits in eden.BITS:
    mse = eden.lloyd_max_mse(bits)
    np.testing.assert_allclose(eden.expected_nmse(bits), mse / (1 - mse), rtol=1e-12)
    np.testing.assert_allclose(eden.expected_nmse(bits, 0.25),
                               (1 + mse / (1 - mse)) / 0.25 - 1, rtol=1e-12)


# ----------------------------------------------------------------------------
# Error and unbiasedness on Gaussian vectors.

D = 2**14


def round_trip(compressor, size):
  """`tf.function` of (x, nonce) -> (x_hat, stream length in bytes)."""

  @tf.function
  def run(x, nonce):
    streams, _ = compressor.encode([x], nonce)
    decoded = compressor.decode(streams, [size])
    return decoded['values'][0], tf.strings.length(streams[0]), decoded['ok']

  return run


def gaussian(seed, size=D):
  return np.random.default_rng(seed).normal(size=size).astype(np.float32)


@pytest.mark.parametrize('bits,p,num_seeds', [
    (1, 1.0, 16), (2, 1.0, 16), (3, 1.0, 16), (4, 1.0, 16), (2, 0.25, 16), (4, 0.5, 16)])
def test_nmse_matches_closed_form(bits, p, num_seeds):
  run = round_trip(eden.EdenCompressor(bits, p), D)
  errors, lengths = [], []
  for seed in range(num_seeds):
    x = gaussian(seed)
    x_hat, length, ok = run(tf.constant(x), tf.constant(seed))
    assert bool(ok)
    errors.append(np.sum((x_hat.numpy() - x) ** 2) / np.sum(x.astype(np.float64) ** 2))
    lengths.append(int(length))
  np.testing.assert_allclose(np.mean(errors), eden.expected_nmse(bits, p), rtol=0.02)
  # Bits per parameter: p * bits for the codes, + 64 / D for scale and seed.
  bits_per_parameter = 8 * np.mean(lengths) / D
  np.testing.assert_allclose(bits_per_parameter, p * bits + 64 / D, rtol=0.02 if p < 1 else 0)
  if p == 1:
    assert set(lengths) == {stream_bytes(D, bits)}


@pytest.mark.parametrize('bits,p', [(2, 1.0), (1, 0.25)])
def test_unbiased_over_rotations(bits, p):
  """The mean of x_hat over many rounds (nonces: fresh rotations and masks)
  approaches x at the rate of an unbiased estimate: ||mean - x||^2 / ||x||^2
  about nmse / N."""
  size, draws = 200, 400  # Padded to 256.
  x = gaussian(7, size)
  run = round_trip(eden.EdenCompressor(bits, p), size)
  total = np.zeros(size)
  for nonce in range(draws):
    total += run(tf.constant(x), tf.constant(nonce))[0].numpy()
  relative = np.sum((total / draws - x) ** 2) / np.sum(x.astype(np.float64) ** 2)
  assert relative < 2 * eden.expected_nmse(bits, p) / draws


def test_one_bit_is_unbiased_drive():
  """With 1 bit the unbiased scale makes EDEN's reconstruction DRIVE's."""
  xs = [tf.constant(x) for x in ref.flat(ref.client_values()[0])]
  ours = eden.EdenCompressor(1)
  theirs = drive.DriveCompressor('unbiased')
  for got, want in zip(ours.decode(ours.encode(xs, 3)[0], ref.SIZES)['values'],
                       theirs.decode(theirs.encode(xs, 3)[0], ref.SIZES)['values']):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------
# Bytes against the NumPy reference.

CONFIGS = [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (2, 0.25), (3, 0.6)]


@pytest.fixture(scope='module', name='clients')
def _clients():
  return ref.client_values()


@pytest.mark.parametrize('bits,p', CONFIGS)
def test_eager_encoding_matches_numpy(clients, bits, p):
  compressor = eden.EdenCompressor(bits, p)
  xs = ref.flat(clients[1])
  streams, diagnostics = compressor.encode([tf.constant(x) for x in xs], None)
  decoded = compressor.decode(streams, ref.SIZES)
  assert bool(decoded['ok'])
  assert int(decoded['side_info_bits']) == 64 * len(ref.SIZES)
  seed = ref.client_seed(xs)
  error = 0.0
  for i, (x, stream, got) in enumerate(zip(xs, streams, decoded['values'])):
    reconstruction, codes, s, mask = np_eden(x, seed, i, bits, p)
    data = stream.numpy()
    assert len(data) == stream_bytes(int(mask.sum()), bits)
    if p < 1:
      assert 0 < mask.sum() < mask.size
    np.testing.assert_allclose(np.frombuffer(data[:4], '<f4')[0], s, rtol=1e-5)
    assert np.frombuffer(data[4:8], '<i4')[0] == seed
    bits_le = np.unpackbits(np.frombuffer(data[8:], np.uint8), bitorder='little')
    fields = bits_le[:codes.size * bits].reshape(-1, bits)
    np.testing.assert_array_equal(fields @ (1 << np.arange(bits)), codes)
    assert not bits_le[codes.size * bits:].any()  # Zero padding.
    np.testing.assert_allclose(got.numpy(), reconstruction, rtol=1e-4, atol=1e-5)
    error += np.sum((reconstruction - x) ** 2)
    if p == 1:  # The defining identity of the unbiased scale.
      np.testing.assert_allclose(np.dot(reconstruction, x), np.dot(x, x), rtol=1e-6)
  np.testing.assert_allclose(diagnostics['squared_error'], error, rtol=1e-4)


def test_all_zero_tensor():
  compressor = eden.EdenCompressor(2, 0.5)
  streams, diagnostics = compressor.encode([tf.zeros([50]), tf.ones([600])], None)
  decoded = compressor.decode(streams, ref.SIZES)
  assert bool(decoded['ok'])
  np.testing.assert_array_equal(decoded['values'][0].numpy(), np.zeros(50))
  assert np.frombuffer(streams[0].numpy()[:4], '<f4')[0] == 0
  assert np.isfinite(float(diagnostics['squared_error']))


# ----------------------------------------------------------------------------
# TFF rounds.

WEIGHTED = (2, 0.5)


@pytest.fixture(scope='module', name='weighted_output')
def _weighted_output(clients):
  process = eden.EdenFactory(*WEIGHTED).create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  return process.next(process.initialize(), clients, ref.WEIGHTS)


def test_weighted_mean_matches_numpy(clients, weighted_output):
  decoded = [[r[0] for r in np_client(c, *WEIGHTED)] for c in clients]
  ref.assert_result_close(weighted_output.result, ref.weighted_mean(decoded),
                          rtol=1e-4, atol=1e-5)


def test_bits_match_the_format(clients, weighted_output):
  m = weighted_output.measurements
  bits, _ = WEIGHTED
  per_client = [sum(8 * stream_bytes(int(r[3].sum()), bits) for r in np_client(c, *WEIGHTED))
                for c in clients]
  assert m['uplink_bits'] == sum(per_client) + 3 * ref.MESSAGE_BITS
  assert m['side_info_bits'] == 3 * (64 * len(ref.SIZES) + ref.MESSAGE_BITS)
  np.testing.assert_allclose(
      m['bits_per_parameter'],
      np.mean([(b + ref.MESSAGE_BITS) / ref.NUM_PARAMETERS for b in per_client]), rtol=1e-12)
  errors = [sum(np.sum((r[0] - x) ** 2) for r, x in zip(np_client(c, *WEIGHTED), ref.flat(c)))
            for c in clients]
  np.testing.assert_allclose(m['distortion'], np.mean(errors) / ref.NUM_PARAMETERS, rtol=1e-4)
  assert m['sparsity'] == 0 and m['clients'] == 3 and m['dropped_clients'] == 0


def test_sum_factory_round(clients):
  process = eden.EdenSumFactory(4).create(ref.VALUE_TYPE)
  first = process.next(process.initialize(), clients)
  second = process.next(first.state, clients)
  assert int(second.state) == 2
  decoded = [[r[0] for r in np_client(c, 4, 1.0, nonce=1)] for c in clients]
  ref.assert_result_close(second.result, [sum(d[i] for d in decoded) for i in range(2)],
                          rtol=1e-4, atol=1e-4)
  per_client = sum(8 * stream_bytes(np_padded_size(n), 4) for n in ref.SIZES)
  assert per_client == 8 * (8 + 32) + 8 * (8 + 512)
  assert second.measurements['uplink_bits'] == 3 * (per_client + ref.SUM_MESSAGE_BITS)
  assert not np.allclose(first.result['kernel'], second.result['kernel'])


# ----------------------------------------------------------------------------
# Corruption and configuration.


@pytest.mark.parametrize('bits,p', [(3, 1.0), (3, 0.6)])
def test_corrupted_streams_are_rejected(clients, bits, p):
  compressor = eden.EdenCompressor(bits, p)
  streams, _ = compressor.encode([tf.constant(x) for x in ref.flat(clients[0])], None)
  bias, kernel = [s.numpy() for s in streams]
  nan = np.array([np.nan], '<f4').tobytes()
  negative = np.array([-1.0], '<f4').tobytes()
  huge = np.array([np.finfo(np.float32).max], '<f4').tobytes()
  bad = [
      [bias, kernel[:-1]],  # Truncated.
      [bias[:6], kernel],  # Cut inside the header.
      [bias, kernel + b'\0'],  # Trailing garbage.
      [b'', kernel],  # Empty.
      [nan + bias[4:], kernel],  # Non-finite scale.
      [bias, negative + kernel[4:]],  # Negative scale.
      [huge + bias[4:], kernel],  # Finite scale, but the transform overflows.
  ]
  padded = 0
  for i, stream in enumerate((bias, kernel)):
    if (len(stream) - HEADER_BYTES) * 8 % bits:  # Set the last padding bit.
      corrupted = [bias, kernel]
      corrupted[i] = stream[:-1] + bytes([stream[-1] | 0x80])
      bad.append(corrupted)
      padded += 1
  assert padded == (1 if p < 1 else 0)  # bias: 34 codes of 3 bits with p = 0.6.
  if p < 1:  # Another seed: another mask, whose count of codes differs.
    other = np.array([np.frombuffer(kernel[4:8], '<i4')[0] + 1], '<i4').tobytes()
    assert len(kernel) != stream_bytes(int(np_mask(1024, p, int(
        np.frombuffer(other, '<i4')[0]), 1).sum()), bits)
    bad.append([bias, kernel[:4] + other + kernel[8:]])
  ref.assert_rejected(compressor, bad)
  ref.assert_truncation_rejected_eagerly(compressor, bias, 50)


@pytest.mark.parametrize('kwargs,error,message', [
    ({'bits': 0}, ValueError, 'bits'),
    ({'bits': 5}, ValueError, 'bits'),
    ({'bits': 8}, ValueError, 'bits'),
    ({'bits': 2.5}, ValueError, 'bits'),
    ({'bits': 'two'}, TypeError, 'bits'),
    ({'bits': True}, TypeError, 'bits'),
    ({'p': 0.0}, ValueError, 'p must'),
    ({'p': -0.5}, ValueError, 'p must'),
    ({'p': 1.5}, ValueError, 'p must'),
    ({'p': float('nan')}, ValueError, 'p must'),
    ({'p': '0.5'}, TypeError, 'p must'),
])
def test_bad_configuration(kwargs, error, message):
  with pytest.raises(error, match=message):
    eden.EdenFactory(**kwargs)
  with pytest.raises(error, match=message):
    eden.EdenSumFactory(**kwargs)


def test_bad_value_type():
  with pytest.raises(TypeError, match='int32'):
    eden.EdenFactory().create(
        tff.types.to_type([tff.TensorType(np.int32, [8])]), ref.WEIGHT_TYPE)


def test_registered_as_a_method():
  assert baselines.BASELINES['eden'] is eden.EdenFactory
  assert baselines.KNOBS['eden'] == 'bits'
  assert 'eden' in methods.method_names()
  factory = methods.build_factory(config_lib.AggregatorConfig(
      method='eden', options={'bits': 4, 'p': 0.5}, integrity=False))
  assert isinstance(factory, eden.EdenFactory)
  assert (factory.compressor.bits, factory.compressor.p, factory.integrity) == (4, 0.5, False)
  assert baselines.BASELINES['eden'](3).compressor.bits == 3
  config = config_lib.from_dict({'aggregator': {'method': 'eden',
                                                'options': {'bits': 1, 'p': 0.1}}})
  assert methods.build_factory(config.aggregator).compressor.p == 0.1
  for options, message in [({'bits': 5}, 'bits'), ({'p': 0}, 'p must'), ({'b': 2}, 'b')]:
    with pytest.raises(config_lib.ConfigError, match=message):
      methods.build_factory(config_lib.AggregatorConfig(method='eden', options=options))
