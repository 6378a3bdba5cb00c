"""TFF's built-in compression aggregators, measured: same numbers as TFF's, real bits.

The TFF execution context (and its worker) is owned by `conftest.py`.
"""

import collections
import math
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import tff_internals
from tff_rdq.baselines import tff_builtin
from tff_rdq.codecs import bitstream

# One tensor above the quantization threshold, one below.
THRESHOLD = 1000
SHAPES = collections.OrderedDict(kernel=(3000,), bias=(40, 10))
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    (k, tff.TensorType(np.float32, s)) for k, s in SHAPES.items()))
WEIGHT_TYPE = tff.TensorType(np.float32)
NUM_PARAMS = 3400
WEIGHTS = [3.0, 1.0, 2.0]
# Per client besides its streams (`compressed`): status byte, checksum, weight.
MESSAGE_BITS = 8 + 32 + 32


def _updates(num_clients=3, seed=0, shapes=SHAPES, scale=1.0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(
      (k, (rng.laplace(size=s) * scale * (i + 1)).astype(np.float32))
      for k, s in shapes.items()) for i in range(num_clients)]


def _mean(updates, weights):
  return collections.OrderedDict(
      (k, sum(w * u[k].astype(np.float64) for w, u in zip(weights, updates)) / sum(weights))
      for k in updates[0])


def _assert_close(actual, expected, atol):
  for k in expected:
    np.testing.assert_allclose(actual[k], expected[k], rtol=0, atol=atol, err_msg=k)


def _packed_bits(count, bits):
  """tensor_encoding's bit packing: `bits`-bit values, 28 per int32 word."""
  return 32 * math.ceil(count * bits / 28)


class _FixedSeedHadamardStage(tff_internals.stages_impl.HadamardEncodingStage):
  """tensor_encoding's Hadamard stage with a constant seed (for exact comparison)."""

  def get_params(self, name=None):
    del name
    params = collections.OrderedDict(
        [(self.SEED_PARAMS_KEY, tf.constant([12345, 678], tf.int64))])
    return params, params


def _deterministic_hadamard_encoder_fn(bits):
  """`hadamard_quantization(bits)` with a fixed seed and deterministic rounding."""

  def encoder_fn(spec):
    if spec.shape.num_elements() <= THRESHOLD:
      return tff_internals.te.encoders.as_gather_encoder(tff_internals.te.encoders.identity(), spec)
    encoder = tff_internals.te.core.EncoderComposer(
        tff_internals.stages_impl.BitpackingEncodingStage(bits)).add_parent(
            tff_internals.stages_impl.UniformQuantizationEncodingStage(bits, stochastic=False),
            tff_internals.stages_impl.UniformQuantizationEncodingStage.ENCODED_VALUES_KEY).add_parent(
                _FixedSeedHadamardStage(),
                tff_internals.stages_impl.HadamardEncodingStage.ENCODED_VALUES_KEY).add_parent(
                    tff_internals.stages_impl.FlattenEncodingStage(),
                    tff_internals.stages_impl.FlattenEncodingStage.ENCODED_VALUES_KEY).make()
    return tff_internals.te.encoders.as_gather_encoder(encoder, spec)

  return encoder_fn


def _run(factory, updates, weights=WEIGHTS, value_type=VALUE_TYPE, rounds=1):
  process = factory.create(value_type, WEIGHT_TYPE)
  state = process.initialize()
  outputs = []
  for _ in range(rounds):
    output = process.next(state, updates, weights)
    state = output.state
    outputs.append(output)
  return outputs


def test_uniform_matches_tff_and_counts_packed_bits():
  updates = _updates()
  ours, = _run(tff_builtin.EncodedUniformFactory(8, THRESHOLD, stochastic=False), updates)
  theirs, = _run(tff.aggregators.MeanFactory(
      tff.aggregators.EncodedSumFactory.quantize_above_threshold(
          8, THRESHOLD, stochastic=False)), updates)
  _assert_close(ours.result, theirs.result, atol=1e-5)

  # Closed form: packed int32 words + float32 [min, max] above the threshold,
  # float32 values below, the message bits (status, checksum, weight).
  client_bits = (_packed_bits(3000, 8) + 64) + 32 * 400 + MESSAGE_BITS
  m = ours.measurements
  assert m['uplink_bits'] == 3 * client_bits
  assert m['side_info_bits'] == 3 * (64 + MESSAGE_BITS)
  assert m['bits_per_parameter'] == pytest.approx(client_bits / NUM_PARAMS)
  assert m['clients'] == 3 and m['dropped_clients'] == 0
  # Distortion: deterministic min/max rounding of the kernel, reproduced in numpy.
  mse = []
  for u in updates:
    x = u['kernel']
    lo, hi = x.min(), x.max()
    q = np.round((x - lo) / (hi - lo) * np.float32(255))
    mse.append(np.sum((q / np.float32(255) * (hi - lo) + lo - x).astype(np.float64) ** 2)
               / NUM_PARAMS)
  assert m['distortion'] == pytest.approx(np.mean(mse), rel=1e-3)
  assert m['sparsity'] == pytest.approx(0.0)


def test_hadamard_fixed_seed_matches_tff_encoded_sum():
  updates = _updates()
  encoder_fn = _deterministic_hadamard_encoder_fn(4)
  ours, = _run(tff_builtin.MeasuredEncodedMeanFactory(encoder_fn), updates)
  theirs, = _run(tff.aggregators.MeanFactory(
      tff.aggregators.EncodedSumFactory(encoder_fn)), updates)
  _assert_close(ours.result, theirs.result, atol=1e-5)
  # The quantization is real: the result is not the exact mean.
  assert np.abs(ours.result['kernel'] - _mean(updates, WEIGHTS)['kernel']).max() > 1e-2


def test_hadamard_quantization_bits_and_error_match_tff():
  updates, rounds = _updates(), 4
  ours = _run(tff_builtin.EncodedHadamardFactory(4, THRESHOLD), updates, rounds=rounds)
  # 16-byte rotation seed + packed 4-bit values of the 4096 padded coordinates
  # + [min, max] above the threshold; float32 values below; the message bits.
  client_bits = (128 + _packed_bits(4096, 4) + 64) + 32 * 400 + MESSAGE_BITS
  m = ours[0].measurements
  assert m['uplink_bits'] == 3 * client_bits
  assert m['side_info_bits'] == 3 * (128 + 64 + MESSAGE_BITS)
  assert m['bits_per_parameter'] == pytest.approx(client_bits / NUM_PARAMS)
  # Stochastic rounding and random rotations: the same error as TFF's own
  # EncodedSumFactory with tff_internals.te.encoders.hadamard_quantization, in distribution
  # (averaged over rounds: the step varies with each rotation's range).
  theirs = _run(tff.aggregators.MeanFactory(tff.aggregators.EncodedSumFactory(
      tff_builtin.hadamard_encoder_fn(4, THRESHOLD))), updates, rounds=rounds)
  exact = _mean(updates, WEIGHTS)

  def mse(outputs):
    return np.mean([np.mean((o.result['kernel'] - exact['kernel']) ** 2) for o in outputs])

  for o in ours:
    np.testing.assert_allclose(o.result['bias'], exact['bias'], rtol=0, atol=1e-5)
  assert 0.6 < mse(ours) / mse(theirs) < 1.6
  # The aggregate's error is the weighted sum of independent client errors,
  # whose variance grows with the client's scale (i + 1)**2.
  mean_client_mse = np.mean([o.measurements['distortion'] for o in ours]) * NUM_PARAMS / 3000
  variances = [mean_client_mse * 3 * (i + 1) ** 2 / 14 for i in range(3)]
  expected = sum(w * w * v for w, v in zip(WEIGHTS, variances)) / sum(WEIGHTS) ** 2
  assert 0.7 < mse(ours) / expected < 1.4


def _tff_discretization(bits, scale):
  modular = tff_internals.modular_clipping.ModularClippingSumFactory
  inner = modular(-(2 ** (bits - 1)), 2 ** (bits - 1),
                  modular(0, 2 ** bits, tff.aggregators.SumFactory()))
  return tff.aggregators.MeanFactory(tff.aggregators.HadamardTransformFactory(
      tff_internals.discretization.DiscretizationFactory(inner, scale_factor=scale, stochastic=False)))


@pytest.mark.slow
def test_discretization_matches_tff_over_rounds():
  bits, scale, seed = 8, 10.0, 4242
  updates, weights = _updates(scale=0.5), [1.0, 1.0, 1.0]
  ours = _run(tff_builtin.HadamardDiscretizationFactory(
      bits, scale_factor=scale, stochastic=False, seed=seed), updates, weights, rounds=2)
  process = _tff_discretization(bits, scale).create(VALUE_TYPE, WEIGHT_TYPE)
  state = process.initialize()
  inner_state, _ = state['value_sum_process']
  state['value_sum_process'] = (inner_state, np.array([seed, 0], np.int64))
  theirs = []
  for _ in range(2):
    theirs.append(process.next(state, updates, weights))
    state = theirs[-1].state
  for o, t in zip(ours, theirs):  # Round 2 checks the seed schedule.
    _assert_close(o.result, t.result, atol=1e-5)
  assert np.abs(ours[0].result['kernel'] - ours[1].result['kernel']).max() > 0

  # Seed + b-bit integers of the padded rotated vector, per tensor; the
  # message bits.
  client_bits = (128 + 8 * 4096) + (128 + 8 * 512) + MESSAGE_BITS
  m = ours[0].measurements
  assert m['uplink_bits'] == 3 * client_bits
  assert m['side_info_bits'] == 3 * (2 * 128 + MESSAGE_BITS)
  assert m['bits_per_parameter'] == pytest.approx(client_bits / NUM_PARAMS)
  assert m['wrapped_fraction'] == 0.0
  # Deterministic rounding after an orthonormal rotation: error <= 1/(2 scale).
  assert 0 < m['distortion'] <= (0.5 / scale) ** 2 * 4608 / NUM_PARAMS


@pytest.mark.slow
def test_measured_compression_aggregator_equals_tff_compression_aggregator():
  shapes = collections.OrderedDict(dense=(25000,), bias=(100,))
  value_type = tff.types.to_type(collections.OrderedDict(
      (k, tff.TensorType(np.float32, s)) for k, s in shapes.items()))
  updates = _updates(shapes=shapes, scale=0.01)
  updates[2]['bias'][0] = 100.0  # Above the initial zeroing norm: zeroed.
  ours = _run(tff_builtin.measured_compression_aggregator(stochastic=False), updates,
              value_type=value_type, rounds=2)
  theirs = _run(tff.learning.compression_aggregator(stochastic=False), updates,
                value_type=value_type, rounds=2)
  for o, t in zip(ours, theirs):
    _assert_close(o.result, t.result, atol=1e-6)
    m, tm = o.measurements, t.measurements
    assert m['zeroing_norm'] == pytest.approx(tm['zeroing_norm'])
    assert m['zeroed_count'] == tm['zeroed_count']
    assert m['clipping_norm'] == pytest.approx(tm['zeroing']['clipping_norm'])
    assert m['clipped_count'] == tm['zeroing']['clipped_count']
  m = ours[0].measurements
  assert m['zeroed_count'] == 1 and m['clipped_count'] >= 1
  client_bits = (_packed_bits(25000, 8) + 64) + 32 * 100 + MESSAGE_BITS
  assert m['uplink_bits'] == 3 * client_bits
  assert m['bits_per_parameter'] == pytest.approx(client_bits / 25100)
  assert m['sparsity'] == pytest.approx(1 / 3)  # The zeroed client.


def test_registry_builds_weighted_factories_with_flat_measurements():
  assert set(tff_builtin.TFF_BUILTINS) == {
      'tff_uniform', 'tff_hadamard', 'tff_discretization', 'tff_compression_aggregator'}
  for name, make in tff_builtin.TFF_BUILTINS.items():
    assert isinstance(make(bits=4), tff.aggregators.WeightedAggregationFactory), name
  # The heuristic scale: 8-bit integers, no wrapping, clipped to the L2 bound.
  factory = tff_builtin.TFF_BUILTINS['tff_discretization'](bits=8, l2_clip=20.0, seed=1)
  output, = _run(factory, _updates(scale=0.05))
  m = output.measurements
  assert m['clipped_count'] == 0 and m['wrapped_fraction'] == 0.0
  assert m['bits_per_parameter'] == pytest.approx(
      (128 + 8 * 4096 + 128 + 8 * 512 + MESSAGE_BITS) / NUM_PARAMS)
  assert 0 < m['distortion'] < 1e-3


def test_non_float_values_raise_type_error():
  int_type = tff.types.to_type([tff.TensorType(np.int32, [3000])])
  for factory in (tff_builtin.EncodedUniformFactory(8), tff_builtin.EncodedHadamardFactory(8),
                  tff_builtin.HadamardDiscretizationFactory(8)):
    with pytest.raises(TypeError, match='floating-point'):
      factory.create(int_type, WEIGHT_TYPE)
  with pytest.raises(TypeError):
    tff_builtin.measured_compression_aggregator().create(int_type, WEIGHT_TYPE)


def test_bad_knobs_raise():
  with pytest.raises(ValueError):
    tff_builtin.EncodedUniformFactory(0)
  with pytest.raises(TypeError):
    tff_builtin.EncodedHadamardFactory(4.5)
  with pytest.raises(ValueError, match='too small'):
    tff_builtin.HadamardDiscretizationFactory(2)  # 2**4 < k**2 at modclip_prob 1e-6.


@pytest.mark.parametrize('make', [
    lambda: tff_builtin.TensorEncodingCompressor(tff_builtin.uniform_encoder_fn(4, THRESHOLD)),
    lambda: tff_builtin.TensorEncodingCompressor(tff_builtin.hadamard_encoder_fn(4, THRESHOLD)),
    lambda: tff_builtin.DiscretizationCompressor(8, scale_factor=10.0, seed=3),
], ids=['uniform', 'hadamard', 'discretization'])
def test_decode_reports_truncated_streams(make):
  compressor = make()
  compressor.prepare(VALUE_TYPE)
  flat = [tf.reshape(tf.constant(v), [-1]) for v in tf.nest.flatten(_updates(1)[0])]
  sizes = [int(v.shape[0]) for v in flat]
  streams, _ = compressor.encode(flat, compressor.client_params(compressor.initial_state()))
  assert [len(s.numpy()) for s in streams] == compressor.stream_bytes(sizes)
  decoded = compressor.decode(streams, sizes)
  assert bool(decoded['ok'])
  for cut in (1, len(streams[0].numpy()) - 1):
    truncated = [tf.constant(streams[0].numpy()[:-cut])] + streams[1:]
    assert not bool(compressor.decode(truncated, sizes)['ok']), cut
  assert not bool(compressor.decode([tf.constant(b'')] * 2, sizes)['ok'])


def test_private_tff_symbols_are_pinned_to_the_installed_version():
  """Every private TFF symbol is reached through `tff_rdq.tff_internals`, written
  against one TFF version; an upgrade must revisit that module."""
  assert tff_builtin.TFF_VERSION == tff_internals.TFF_VERSION == tff.__version__ == '0.87.0'
  root = pathlib.Path(tff_internals.__file__).parents[1]
  paths = [p for d in ('tff_rdq', 'tests', 'benchmarks') for p in (root / d).rglob('*.py')]
  assert len(paths) > 50
  for path in paths:
    if path == pathlib.Path(tff_internals.__file__) or path == pathlib.Path(__file__):
      continue
    text = path.read_text()
    assert 'tensorflow_federated.python' not in text, path
    assert 'tensorflow_model_optimization' not in text, path
  for path in pathlib.Path(tff_builtin.__file__).parent.glob('*.py'):
    assert 'os.environ' not in path.read_text(), path.name


def _min_max_offset(compressor, size):
  """Byte offset of the float32 [min, max] pair in a uniform-quantized stream."""
  layout = compressor.layout(size)
  offset = layout.param_bytes
  for key, spec in layout.encoded_specs.items():
    if not key.endswith('_values'):
      return offset
    offset += spec.shape.num_elements() * spec.dtype.size
  raise AssertionError('no min/max pair')


NAN_BYTES = np.array([0, 0, 0xC0, 0x7F], np.uint8)  # float32 NaN, little-endian.


def test_non_finite_decoded_values_are_corrupt():
  compressor = tff_builtin.TensorEncodingCompressor(tff_builtin.uniform_encoder_fn(4, THRESHOLD))
  compressor.prepare(VALUE_TYPE)
  flat = [tf.reshape(tf.constant(v), [-1]) for v in tf.nest.flatten(_updates(1)[0])]
  sizes = [int(v.shape[0]) for v in flat]  # bias (400), kernel (3000)
  streams, _ = compressor.encode(flat, compressor.client_params(compressor.initial_state()))
  offset = _min_max_offset(compressor, 3000)
  for pair in ([np.nan, 1.0], [-np.inf, 1.0], [0.0, np.inf]):
    data = np.frombuffer(streams[1].numpy(), np.uint8).copy()
    data[offset:offset + 8] = np.array(pair, np.float32).view(np.uint8)
    decoded = compressor.decode([streams[0], tf.constant(data.tobytes())], sizes)
    assert not bool(decoded['ok']), pair

  # In a round, without the checksum (which would catch it first): a NaN min
  # in flight stops the round (`on_corrupt='raise'`) instead of reaching the sum.
  def nan_min(message):
    data = bitstream.string_to_bytes(message['streams'][1])
    data = tf.concat([data[:offset], tf.constant(NAN_BYTES), data[offset + 4:]], 0)
    message['streams'][1] = bitstream.bytes_to_string(data)
    return message

  factory = tff_builtin.MeasuredEncodedMeanFactory(
      tff_builtin.uniform_encoder_fn(4, THRESHOLD), integrity=False, on_corrupt='raise')
  factory._channel = nan_min
  process = factory.create(VALUE_TYPE, WEIGHT_TYPE)
  with pytest.raises(Exception, match='truncated or corrupted'):
    process.next(process.initialize(), _updates(), WEIGHTS)
