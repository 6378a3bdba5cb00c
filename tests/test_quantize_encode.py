"""Tests of the quantize-encode aggregation factories in TFF processes."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import codecs
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor as compressor_lib
from tff_rdq.aggregators import quantize_encode
from tff_rdq.codecs import bitstream

SHAPES = collections.OrderedDict(kernel=(40, 30), bias=(30,), scale=(3000,))
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    (k, tff.TensorType(np.float32, s)) for k, s in SHAPES.items()))
WEIGHT_TYPE = tff.TensorType(np.float32)
NUM_PARAMS = sum(int(np.prod(s)) for s in SHAPES.values())
STEP = 0.05
MESSAGE_BITS = 8 + 32 + 32  # Status byte, checksum, weight.


def _updates(num_clients, seed=0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(
      (k, (rng.laplace(size=s) * 0.05 * (i + 1)).astype(np.float32))
      for k, s in SHAPES.items()) for i in range(num_clients)]


def _eg_bytes(integers):
  """Bytes of the blocked Elias-gamma format (the codec's closed form)."""
  return int(codecs.EliasGammaCodec().coded_bits(tf.constant(integers, tf.int32))) // 8


@pytest.fixture(scope='module')
def uniform_process():
  return quantize_encode.QuantizeEncodeFactory(STEP).create(VALUE_TYPE, WEIGHT_TYPE)


@pytest.mark.slow
def test_weighted_mean_bits_distortion_sparsity_match_numpy(uniform_process):
  updates, weights = _updates(3), [1.0, 2.0, 5.0]
  output = uniform_process.next(uniform_process.initialize(), updates, weights)

  reconstructions, bits, mse, zeros = [], [], [], []
  for update in updates:
    recon = collections.OrderedDict()
    client_bits = MESSAGE_BITS
    for k, v in update.items():
      q = np.round(v / np.float32(STEP)).astype(np.int32)
      recon[k] = q.astype(np.float32) * np.float32(STEP)
      client_bits += 8 * (4 + _eg_bytes(q.reshape(-1)))
      zeros.append(np.sum(q == 0))
    reconstructions.append(recon)
    bits.append(client_bits)
    mse.append(sum(np.sum((recon[k] - update[k]).astype(np.float64) ** 2)
                   for k in update) / NUM_PARAMS)
  for k in SHAPES:
    expected = sum(w * r[k] for w, r in zip(weights, reconstructions)) / sum(weights)
    np.testing.assert_allclose(output.result[k], expected, rtol=1e-5, atol=1e-7)

  m = output.measurements
  assert m['uplink_bits'] == sum(bits)
  assert m['bits_per_parameter'] == pytest.approx(np.mean(bits) / NUM_PARAMS)
  assert m['distortion'] == pytest.approx(np.mean(mse), rel=1e-6)
  assert m['sparsity'] == pytest.approx(sum(zeros) / (3 * NUM_PARAMS))
  assert m['step_size'] == pytest.approx(STEP)
  assert m['step_size_std'] == pytest.approx(0.0, abs=1e-9)
  assert m['clients'] == 3 and m['dropped_clients'] == 0
  # Side information: 32-bit step per tensor, codec header and table,
  # status, checksum and weight.
  assert 3 * (3 * 32 + MESSAGE_BITS) < m['side_info_bits'] < m['uplink_bits'] / 10


def test_nonfinite_client_is_dropped_and_counted(uniform_process):
  updates = _updates(3)
  clean = uniform_process.next(uniform_process.initialize(), updates[:2], [1.0, 2.0])
  updates[2]['bias'][4] = np.nan
  updates.append(_updates(1, seed=5)[0])
  updates[3]['kernel'][0, 0] = np.inf
  output = uniform_process.next(uniform_process.initialize(), updates, [1.0, 2.0, 3.0, 4.0])
  for k in SHAPES:
    np.testing.assert_allclose(output.result[k], clean.result[k], rtol=1e-6)
  assert output.measurements['clients'] == 2
  assert output.measurements['dropped_clients'] == 2
  assert output.measurements['distortion'] == pytest.approx(clean.measurements['distortion'])
  # Dropped clients sent empty payloads: their status bytes, checksums and
  # weights count.
  assert output.measurements['uplink_bits'] == (
      clean.measurements['uplink_bits'] + 2 * MESSAGE_BITS)


@pytest.mark.slow
@pytest.mark.parametrize('rounding', ['uniform', 'stochastic', 'dithered'])
@pytest.mark.parametrize('normalization', ['none', 'rms'])
def test_server_reconstructs_what_client_measured(rounding, normalization):
  process = quantize_encode.QuantizeEncodeSumFactory(
      0.5 if normalization == 'rms' else STEP, rounding=rounding,
      normalization=normalization).create(VALUE_TYPE)
  update = _updates(1, seed=3)
  output = process.next(process.initialize(), update)
  mse = sum(np.sum((output.result[k] - update[0][k]).astype(np.float64) ** 2)
            for k in SHAPES) / NUM_PARAMS
  assert output.measurements['distortion'] == pytest.approx(mse, rel=1e-4)
  # Each tensor's step: the fixed one, or 0.5 x the tensor's RMS.
  steps = {k: np.float32(STEP) if normalization == 'none' else
           np.float32(0.5) * np.sqrt(np.mean(np.square(update[0][k]))) for k in SHAPES}
  bound = 1.0 if rounding == 'stochastic' else 0.5  # In steps.
  for k in SHAPES:
    error = np.abs(output.result[k].astype(np.float64) - update[0][k])
    ulp = np.spacing(np.abs(output.result[k])).astype(np.float64)
    assert np.all(error <= steps[k] * bound * (1 + 1e-5) + ulp / 2), k
  if rounding == 'dithered':
    # Subtractive dither: error uniform in a half step of each tensor.
    expected = sum(steps[k]**2 / 12 * np.prod(SHAPES[k]) for k in SHAPES) / NUM_PARAMS
    assert mse == pytest.approx(expected, rel=0.1)


@pytest.mark.slow
def test_unweighted_mean_and_clipping_compose():
  factory = tff.aggregators.UnweightedMeanFactory(
      value_sum_factory=quantize_encode.QuantizeEncodeSumFactory(STEP))
  process = factory.create(VALUE_TYPE)
  updates = _updates(2)
  output = process.next(process.initialize(), updates)
  for k in SHAPES:
    expected = np.mean([np.round(u[k] / np.float32(STEP)) * np.float32(STEP)
                        for u in updates], axis=0)
    np.testing.assert_allclose(output.result[k], expected, rtol=1e-5, atol=1e-7)

  clipped = tff.aggregators.clipping_factory(
      1.0, quantize_encode.QuantizeEncodeFactory(STEP)).create(VALUE_TYPE, WEIGHT_TYPE)
  out = clipped.next(clipped.initialize(), updates, [1.0, 1.0])
  assert out.measurements['clipped_count'] == 2
  assert out.measurements['clipping']['bits_per_parameter'] > 0
  zeroed = tff.aggregators.zeroing_factory(
      1e6, quantize_encode.QuantizeEncodeFactory(STEP)).create(VALUE_TYPE, WEIGHT_TYPE)
  out = zeroed.next(zeroed.initialize(), updates, [1.0, 1.0])
  assert out.measurements['zeroing']['bits_per_parameter'] > 0


def test_rejects_bad_types_and_config():
  int_type = tff.types.to_type([tff.TensorType(np.float32, [3]), tff.TensorType(np.int32, [4])])
  with pytest.raises(TypeError, match='floating-point.*int32'):
    quantize_encode.QuantizeEncodeFactory(STEP).create(int_type, WEIGHT_TYPE)
  with pytest.raises(TypeError, match='not fully defined'):
    quantize_encode.QuantizeEncodeSumFactory(STEP).create(tff.TensorType(np.float32, [None]))
  with pytest.raises(ValueError, match='step_size'):
    quantize_encode.QuantizeEncodeFactory(0.0)
  with pytest.raises(ValueError, match='step_size'):
    quantize_encode.QuantizeEncodeFactory(float('nan'))
  with pytest.raises(ValueError, match='rounding'):
    quantize_encode.QuantizeEncodeFactory(STEP, rounding='nearest')
  with pytest.raises(ValueError, match='codec'):
    quantize_encode.QuantizeEncodeFactory(STEP, codec='zip')


class _TruncatingCompressor(quantize_encode.QuantizeEncodeCompressor):
  """Simulates a transport that cuts the last byte of every payload."""

  def encode(self, flat_values, step):
    streams, diagnostics = super().encode(flat_values, step)
    return [tf.strings.substr(s, 0, tf.strings.length(s) - 1) for s in streams], diagnostics


@pytest.mark.slow
def test_corrupted_payload_stops_the_round_with_clear_error():
  compressor = quantize_encode.QuantizeEncodeCompressor(STEP)
  streams, _ = compressor.encode([tf.constant(_updates(1)[0]['scale'])], tf.constant(STEP))
  truncated = tf.strings.substr(streams[0], 0, tf.strings.length(streams[0]) - 2)
  assert not bool(compressor.decode([truncated], [3000])['ok'])
  assert not bool(compressor.decode([tf.constant(b'\x00\x00')], [3000])['ok'])

  process = compressed.CompressedMeanFactory(
      _TruncatingCompressor(STEP), on_corrupt='raise').create(VALUE_TYPE, WEIGHT_TYPE)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    process.next(process.initialize(), _updates(1), [1.0])


def _flip_step_bit(message):
  """In flight: flips bit 0 of byte 3 of tensor 0's payload, an exponent bit
  of its float32 step (the step becomes 4x or 1/4 as large, still valid)."""
  data = bitstream.string_to_bytes(message['streams'][0])
  flipped = tf.tensor_scatter_nd_update(
      data, [[3]], tf.bitwise.bitwise_xor(data[3:4], tf.constant([1], tf.uint8)))
  message['streams'][0] = bitstream.bytes_to_string(flipped)
  return message


@pytest.mark.slow
def test_flipped_step_header_bit_stops_the_round():
  updates, weights = _updates(3), [1.0, 2.0, 5.0]

  def corrupt_second_client(message):
    # Only one client's message is corrupted: the one with weight 2.
    corrupted = _flip_step_bit(collections.OrderedDict(
        (k, list(v) if k == 'streams' else v) for k, v in message.items()))
    second = tf.equal(message['weight'], 2.0)
    message['streams'] = [tf.where(second, c, s) for c, s in
                          zip(corrupted['streams'], message['streams'])]
    return message

  def process(integrity):
    compressor = quantize_encode.QuantizeEncodeCompressor(
        STEP, extra_bits=compressed.overhead_bits(True, integrity))
    return compressed.CompressedMeanFactory(
        compressor, integrity=integrity, on_corrupt='raise', channel=corrupt_second_client).create(
            VALUE_TYPE, WEIGHT_TYPE)

  checked = process(True)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    checked.next(checked.initialize(), updates, weights)
  # Without the checksum the flipped step is a valid payload: the round
  # finishes with a wrong mean (the failure the checksum exists to prevent).
  unchecked = process(False)
  output = unchecked.next(unchecked.initialize(), updates, weights)
  clean = quantize_encode.QuantizeEncodeFactory(STEP).create(VALUE_TYPE, WEIGHT_TYPE)
  expected = clean.next(clean.initialize(), updates, weights).result
  assert not np.allclose(output.result['bias'], expected['bias'], rtol=0.05)
  np.testing.assert_allclose(output.result['kernel'], expected['kernel'], rtol=1e-5, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize('rounding', ['stochastic', 'dithered'])
def test_noise_is_fresh_every_round_and_reproducible(rounding):
  process = quantize_encode.QuantizeEncodeSumFactory(STEP, rounding=rounding).create(VALUE_TYPE)
  update = _updates(1, seed=4)
  state = process.initialize()
  first = process.next(state, update)
  second = process.next(first.state, update)
  assert int(second.state['round']) == 2
  # The same update, another round: other noise.
  assert not np.array_equal(first.result['scale'], second.result['scale'])
  # The same config and rounds: the same noise.
  again = process.next(process.initialize(), update)
  np.testing.assert_array_equal(first.result['scale'], again.result['scale'])
  # The seed is the update's, mixed with the round's nonce (the dithered
  # header carries it).
  flat = [tf.constant(update[0][k].reshape(-1)) for k in sorted(SHAPES)]
  compressor = quantize_encode.QuantizeEncodeCompressor(STEP, rounding=rounding)
  for nonce, output in ((0, first), (1, second)):
    streams, _ = compressor.encode(flat, collections.OrderedDict(
        step=tf.constant(STEP, tf.float32), nonce=tf.constant(nonce, tf.int64)))
    decoded = compressor.decode(streams, [int(np.prod(SHAPES[k])) for k in sorted(SHAPES)])
    np.testing.assert_array_equal(decoded['values'][2], output.result['scale'].reshape(-1))
    seed = int(compressor_lib.client_seed(flat, nonce))
    mixed = np.array([nonce * 0x9E3779B1 % 2**32], np.uint32).view(np.int32)[0]
    assert seed == int(compressor_lib.client_seed(flat)) ^ int(mixed)
    if rounding == 'dithered':
      header = bitstream.string_to_bytes(streams[0]).numpy()
      assert int(header[4:8].view(np.int32)[0]) == seed


def _keras_model():
  return tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(20,)),
      tf.keras.layers.Dense(16, activation='relu'),
      tf.keras.layers.Dense(4),
  ])


@pytest.mark.slow
def test_drop_in_model_aggregator_for_weighted_fed_avg():
  rng = np.random.default_rng(0)
  true_w = rng.normal(size=(20, 4)).astype(np.float32)

  def client_data(seed):
    r = np.random.default_rng(seed)
    x = r.normal(size=(64, 20)).astype(np.float32)
    y = np.argmax(x @ true_w, axis=1).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)

  datasets = [client_data(s) for s in range(3)]

  def model_fn():
    return tff.learning.models.from_keras_model(
        _keras_model(), input_spec=datasets[0].element_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

  process = tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.1),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
      model_aggregator=quantize_encode.QuantizeEncodeFactory(
          0.02, rounding='dithered', normalization='rms'))
  state = process.initialize()
  losses = []
  for _ in range(5):
    output = process.next(state, datasets)
    state = output.state
    losses.append(output.metrics['client_work']['train']['loss'])
    aggregator = output.metrics['aggregator']
    for key in ('bits_per_parameter', 'uplink_bits', 'side_info_bits', 'distortion',
                'sparsity', 'step_size', 'clients', 'dropped_clients'):
      assert key in aggregator
    assert 0 < aggregator['bits_per_parameter'] < 32
    assert aggregator['clients'] == 3
  assert losses[-1] < 0.8 * losses[0]


def test_compare_codecs_reports_what_the_other_codec_would_send():
  """The run-length rANS bits of the same integers, as a client diagnostic,
  equal the bits of that client's message sent with that codec (uniform
  rounding at a fixed step: the same integers), header and overhead
  included; the streams sent are unchanged. Eager: TFF's compile of the
  rANS graphs costs minutes, and the plumbing of diagnostics is generic."""
  flat = [tf.reshape(tf.constant(v), [-1]) for v in _updates(1)[0].values()]
  num_parameters = sum(int(v.shape[0]) for v in flat)
  params = collections.OrderedDict(step=tf.constant(STEP), nonce=tf.constant(3, tf.int64))
  extra = compressed.overhead_bits(weighted=True)
  compared = quantize_encode.QuantizeEncodeCompressor(
      STEP, extra_bits=extra, compare_codecs=('run_length_rans',))
  sent = quantize_encode.QuantizeEncodeCompressor(
      STEP, codec='run_length_rans', extra_bits=extra)
  plain = quantize_encode.QuantizeEncodeCompressor(STEP, extra_bits=extra)
  streams, diagnostics = compared.encode(flat, params)
  rans_streams, _ = sent.encode(flat, params)
  rans_bits = 8 * sum(len(s.numpy()) for s in rans_streams) + extra
  assert float(diagnostics['bits_per_parameter_run_length_rans']) == pytest.approx(
      rans_bits / num_parameters, rel=1e-12)
  eg_bits = 8 * sum(len(s.numpy()) for s in streams) + extra
  assert rans_bits < eg_bits
  assert [s.numpy() for s in streams] == [s.numpy() for s in plain.encode(flat, params)[0]]
  assert 'bits_per_parameter_run_length_rans' in compared.diagnostic_names
  with pytest.raises(ValueError, match='compare_codecs'):
    quantize_encode.QuantizeEncodeFactory(STEP, compare_codecs=('elias_gamma',))
