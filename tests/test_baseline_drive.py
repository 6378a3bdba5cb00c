"""Tests of `tff_rdq.baselines.drive` against a NumPy re-implementation.

The NumPy reference uses an explicit Hadamard matrix (`scipy.linalg.hadamard`)
and takes only the random signs from `tf.random.stateless_uniform` (TF's
Philox generator, the seed semantics of the method).
"""

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
import tensorflow_federated as tff

import baseline_reference as ref
from tff_rdq.baselines import drive


def np_padded_size(n):
  return int(2 ** np.ceil(np.log2(n))) if n > 1 else 1


def np_drive(x, seed, index, scale):
  """`(reconstruction, sign bits, S)` of one tensor."""
  n, d = x.size, np_padded_size(x.size)
  uniform = tf.random.stateless_uniform([d], seed=[seed, index]).numpy()
  signs = np.where(uniform < 0.5, -1.0, 1.0)
  hadamard = scipy.linalg.hadamard(d).astype(np.float64)
  padded = np.concatenate([x.astype(np.float64), np.zeros(d - n)])
  rotated = hadamard @ (signs * padded) / np.sqrt(d)
  bits = rotated >= 0
  l1 = np.abs(rotated).sum()
  s = (np.sum(padded ** 2) / l1 if l1 else 0.0) if scale == 'unbiased' else l1 / d
  reconstruction = (signs * (hadamard @ (s * np.where(bits, 1.0, -1.0))) / np.sqrt(d))[:n]
  return reconstruction, bits, s


def np_client(client, scale, nonce=0):
  xs = ref.flat(client)
  seed = ref.client_seed(xs, nonce)
  return [np_drive(x, seed, i, scale) for i, x in enumerate(xs)]


@pytest.fixture(scope='module', name='clients')
def _clients():
  return ref.client_values()


@pytest.fixture(scope='module', name='weighted_output')
def _weighted_output(clients):
  process = drive.DriveFactory('unbiased').create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  return process.next(process.initialize(), clients, ref.WEIGHTS)


def test_weighted_mean_matches_numpy(clients, weighted_output):
  decoded = [[r[0] for r in np_client(c, 'unbiased')] for c in clients]
  ref.assert_result_close(weighted_output.result, ref.weighted_mean(decoded),
                          rtol=1e-4, atol=1e-5)


def test_bits_match_closed_form(clients, weighted_output):
  m = weighted_output.measurements
  # Per tensor: scale and seed (64 bits) + one bit per padded coordinate.
  per_client = sum(64 + 8 * -(-np_padded_size(n) // 8) for n in ref.SIZES)
  assert per_client == (64 + 64) + (64 + 1024)
  assert m['uplink_bits'] == 3 * (per_client + ref.MESSAGE_BITS)
  assert m['side_info_bits'] == 3 * (64 * len(ref.SIZES) + ref.MESSAGE_BITS)
  np.testing.assert_allclose(m['bits_per_parameter'],
                             (per_client + ref.MESSAGE_BITS) / ref.NUM_PARAMETERS)
  errors = [sum(np.sum((r[0] - x) ** 2) for r, x in zip(np_client(c, 'unbiased'), ref.flat(c)))
            for c in clients]
  np.testing.assert_allclose(m['distortion'], np.mean(errors) / ref.NUM_PARAMETERS, rtol=1e-4)
  assert m['sparsity'] == 0 and m['clients'] == 3 and m['dropped_clients'] == 0


def test_rotation_is_fresh_every_round(clients):
  """The round counter (state) is the nonce mixed into the seed: the same
  updates get another rotation in the next round, reproducibly."""
  process = drive.DriveFactory('unbiased').create(ref.VALUE_TYPE, ref.WEIGHT_TYPE)
  first = process.next(process.initialize(), clients, ref.WEIGHTS)
  second = process.next(first.state, clients, ref.WEIGHTS)
  assert int(first.state) == 1 and int(second.state) == 2
  decoded = [[r[0] for r in np_client(c, 'unbiased', nonce=1)] for c in clients]
  ref.assert_result_close(second.result, ref.weighted_mean(decoded), rtol=1e-4, atol=1e-5)
  assert not np.allclose(first.result['kernel'], second.result['kernel'])


@pytest.mark.parametrize('scale', drive.SCALES)
def test_eager_encoding_matches_numpy(clients, scale):
  compressor = drive.DriveCompressor(scale)
  xs = ref.flat(clients[1])
  streams, diagnostics = compressor.encode([tf.constant(x) for x in xs], None)
  decoded = compressor.decode(streams, ref.SIZES)
  assert bool(decoded['ok'])
  seed = ref.client_seed(xs)
  error = 0.0
  for i, (x, stream, got) in enumerate(zip(xs, streams, decoded['values'])):
    reconstruction, bits, s = np_drive(x, seed, i, scale)
    data = stream.numpy()
    assert len(data) == 8 + -(-bits.size // 8)
    np.testing.assert_allclose(np.frombuffer(data[:4], '<f4')[0], s, rtol=1e-5)
    assert np.frombuffer(data[4:8], '<i4')[0] == seed
    np.testing.assert_array_equal(
        np.unpackbits(np.frombuffer(data[8:], np.uint8), bitorder='little')[:bits.size], bits)
    np.testing.assert_allclose(got.numpy(), reconstruction, rtol=1e-4, atol=1e-5)
    error += np.sum((reconstruction - x) ** 2)
    # The defining identities of the two scales.
    if scale == 'unbiased':
      np.testing.assert_allclose(np.dot(reconstruction, x), np.dot(x, x), rtol=1e-9)
    else:
      # ||x_hat - x||^2 <= ||x||^2 - ||Rx||_1^2 / d (equal before dropping the
      # padded coordinates), with ||Rx||_1 = d S.
      assert np.sum((reconstruction - x) ** 2) <= (
          np.dot(x, x) - bits.size * s ** 2) * (1 + 1e-9)
  np.testing.assert_allclose(diagnostics['squared_error'], error, rtol=1e-4)


def test_hadamard_transform_matches_matrix():
  x = np.random.default_rng(1).normal(size=64).astype(np.float32)
  got = drive.hadamard_transform(tf.constant(x)).numpy()
  np.testing.assert_allclose(got, scipy.linalg.hadamard(64) @ x, rtol=1e-5, atol=1e-5)


def test_corrupted_streams_are_rejected(clients):
  compressor = drive.DriveCompressor()
  streams, _ = compressor.encode([tf.constant(x) for x in ref.flat(clients[0])], None)
  bias, kernel = [s.numpy() for s in streams]
  nan = np.array([np.nan], '<f4').tobytes()
  negative = np.array([-1.0], '<f4').tobytes()
  huge = np.array([np.finfo(np.float32).max], '<f4').tobytes()
  ref.assert_rejected(compressor, [
      [bias, kernel[:-1]],  # Truncated.
      [bias[:6], kernel],  # Cut inside the header.
      [bias, kernel + b'\0'],  # Trailing garbage.
      [b'', kernel],  # Empty.
      [nan + bias[4:], kernel],  # Non-finite scale.
      [bias, negative + kernel[4:]],  # Negative scale.
      [huge + bias[4:], kernel],  # Finite scale, but the transform overflows.
  ])
  ref.assert_truncation_rejected_eagerly(compressor, bias, 50)


def test_bad_configuration():
  with pytest.raises(TypeError, match='int32'):
    drive.DriveFactory().create(
        tff.types.to_type([tff.TensorType(np.int32, [8])]), ref.WEIGHT_TYPE)
  with pytest.raises(ValueError, match='scale'):
    drive.DriveFactory('optimal')
  with pytest.raises(ValueError, match='scale'):
    drive.DriveFactory(1.0)
