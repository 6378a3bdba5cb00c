"""Tests of `tff_rdq.aggregators.compressed`: the federated plumbing and its
measurements, with a minimal compressor (raw float32 bytes), and the type
signatures of every sum-form factory."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import type_signatures as ts
from tff_rdq import baselines
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.aggregators import quantize_encode
from tff_rdq.aggregators import step_control
from tff_rdq.baselines import tff_builtin
from tff_rdq.codecs import bitstream

SIZES = [50, 600]  # `tf.nest` order of ts.VALUE_TYPE: bias, kernel.
NUM_PARAMETERS = sum(SIZES)


class RawCompressor(compressor.StatelessCompressor):
  """Sends every float32 as its 4 raw bytes; reports the update's L1 norm."""

  diagnostic_names = ('squared_error', 'l1')

  def encode(self, flat_values, params):
    del params
    streams = [bitstream.bytes_to_string(tf.reshape(tf.bitcast(v, tf.uint8), [-1]))
               for v in flat_values]
    l1 = tf.add_n([tf.reduce_sum(tf.abs(tf.cast(v, tf.float64))) for v in flat_values])
    return streams, collections.OrderedDict(squared_error=tf.constant(0.0, tf.float64), l1=l1)

  def decode(self, streams, sizes):
    ok, values, zeros = tf.constant(True), [], tf.constant(0, tf.int64)
    for stream, size in zip(streams, sizes):
      data = bitstream.string_to_bytes(stream)
      ok &= tf.equal(tf.size(data), 4 * size)
      padded = tf.concat([data, tf.zeros([4 * size], tf.uint8)], 0)[:4 * size]
      v = tf.bitcast(tf.reshape(padded, [size, 4]), tf.float32)
      values.append(v)
      zeros += tf.reduce_sum(tf.cast(tf.equal(v, 0.0), tf.int64))
    return collections.OrderedDict(values=values, ok=ok,
                                   side_info_bits=tf.constant(0, tf.int64), zeros=zeros)


def _clients(num_clients=3, seed=0):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(
      kernel=rng.normal(size=(20, 30)).astype(np.float32),
      bias=np.where(rng.random(50) < 0.5, 0.0, rng.normal(size=50)).astype(np.float32))
      for _ in range(num_clients)]


@pytest.fixture(scope='module')
def weighted_process():
  return compressed.CompressedMeanFactory(RawCompressor()).create(
      ts.VALUE_TYPE, ts.WEIGHT_TYPE)


def test_weighted_type_signature(weighted_process):
  ts.assert_types(weighted_process, ts.STATELESS, ts.compressed_measurements('l1'))
  with pytest.raises(AssertionError):
    ts.assert_types(weighted_process, ts.STATELESS, ts.compressed_measurements())
  with pytest.raises(AssertionError):
    ts.assert_types(weighted_process, tff.TensorType(np.int64), ts.compressed_measurements('l1'))


def test_weighted_round_measurements(weighted_process):
  clients, weights = _clients(), [1.0, 2.0, 5.0]
  clients[2]['kernel'][0, 0] = np.nan  # Dropped and counted.
  output = weighted_process.next(weighted_process.initialize(), clients, weights)
  kept, kept_weights = clients[:2], weights[:2]
  for key in ('kernel', 'bias'):
    expected = sum(w * c[key] for w, c in zip(kept_weights, kept)) / sum(kept_weights)
    np.testing.assert_allclose(output.result[key], expected, rtol=1e-6)
  m = output.measurements
  # Status byte, checksum and weight of every client, the dropped one's too
  # (its streams are empty).
  overhead = compressor.STATUS_BITS + compressor.CHECKSUM_BITS + compressor.WEIGHT_BITS
  assert compressed.overhead_bits(weighted=True) == overhead == 72
  client_bits = 8 * 4 * NUM_PARAMETERS + overhead
  assert m['uplink_bits'] == 2 * client_bits + overhead
  assert m['side_info_bits'] == 3 * overhead
  assert m['bits_per_parameter'] == pytest.approx(client_bits / NUM_PARAMETERS)
  assert m['distortion'] == 0.0
  zeros = [sum(int(np.sum(c[k] == 0)) for k in c) for c in kept]
  assert m['sparsity'] == pytest.approx(np.mean(zeros) / NUM_PARAMETERS)
  l1 = [sum(float(np.abs(c[k].astype(np.float64)).sum()) for k in c) for c in kept]
  assert m['l1'] == pytest.approx(np.mean(l1))
  assert m['l1_std'] == pytest.approx(np.std(l1), rel=1e-6)
  assert m['clients'] == 2 and m['dropped_clients'] == 1


def test_sum_round():
  process = compressed.CompressedSumFactory(RawCompressor()).create(ts.VALUE_TYPE)
  ts.assert_types(process, ts.STATELESS, ts.compressed_measurements('l1'), weight_type=None)
  clients = _clients(2)
  output = process.next(process.initialize(), clients)
  np.testing.assert_allclose(output.result['kernel'], clients[0]['kernel'] + clients[1]['kernel'],
                             rtol=1e-6)
  # No weight in the sum form: status byte and checksum.
  assert output.measurements['uplink_bits'] == 2 * (8 * 4 * NUM_PARAMETERS + 40)
  assert output.measurements['side_info_bits'] == 2 * 40
  # Without the checksum: 32 bits less per client, the same result.
  process = compressed.CompressedSumFactory(RawCompressor(), integrity=False).create(
      ts.VALUE_TYPE)
  unchecked = process.next(process.initialize(), clients)
  assert unchecked.measurements['uplink_bits'] == 2 * (8 * 4 * NUM_PARAMETERS + 8)
  np.testing.assert_array_equal(unchecked.result['kernel'], output.result['kernel'])


class _Truncating(RawCompressor):

  def encode(self, flat_values, params):
    streams, diagnostics = super().encode(flat_values, params)
    return [tf.strings.substr(s, 0, tf.strings.length(s) - 1) for s in streams], diagnostics


def test_corrupted_stream_stops_the_round():
  process = compressed.CompressedSumFactory(_Truncating(), on_corrupt='raise').create(
      ts.VALUE_TYPE)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    process.next(process.initialize(), _clients(1))


def _flip_bit(byte_index, bit):
  """A channel flipping one bit of stream 1 (the kernel) in flight."""

  def channel(message):
    data = bitstream.string_to_bytes(message['streams'][1])
    mask = tf.one_hot(byte_index, tf.size(data), on_value=1 << bit, off_value=0, dtype=tf.int32)
    flipped = tf.bitwise.bitwise_xor(tf.cast(data, tf.int32), mask)
    message['streams'][1] = bitstream.bytes_to_string(tf.cast(flipped, tf.uint8))
    return message

  return channel


def test_bit_flip_in_flight_is_caught_by_the_checksum():
  clients = _clients(2)
  # Bit 0 of byte 0: the low mantissa bit of a float32, still a valid float
  # that RawCompressor decodes without complaint.
  flip = _flip_bit(0, 0)
  process = compressed.CompressedSumFactory(
      RawCompressor(), on_corrupt='raise', channel=flip).create(ts.VALUE_TYPE)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    process.next(process.initialize(), clients)
  # Without integrity the same corruption goes into the sum unnoticed: why
  # `integrity=False` is only for transports that guarantee integrity.
  process = compressed.CompressedSumFactory(
      RawCompressor(), integrity=False, channel=flip).create(ts.VALUE_TYPE)
  output = process.next(process.initialize(), clients)
  expected = clients[0]['kernel'] + clients[1]['kernel']
  assert not np.array_equal(output.result['kernel'], expected)


def _set_dropped(message):
  message['dropped'] = tf.constant(True)
  return message


class _Empty(RawCompressor):

  def encode(self, flat_values, params):
    streams, diagnostics = super().encode(flat_values, params)
    return [tf.constant(b'') for _ in streams], diagnostics


def test_only_the_status_byte_drops_a_client():
  # A kept client whose streams are all empty is corrupt, not dropped.
  process = compressed.CompressedSumFactory(
      _Empty(), integrity=False, on_corrupt='raise').create(ts.VALUE_TYPE)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    process.next(process.initialize(), _clients(1))
  # A "dropped" status with a payload is corrupt too (even without checksum).
  process = compressed.CompressedSumFactory(
      RawCompressor(), integrity=False, on_corrupt='raise', channel=_set_dropped).create(
          ts.VALUE_TYPE)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    process.next(process.initialize(), _clients(1))


def test_checksum_covers_lengths_weight_and_status():
  a, b = tf.constant(b'abcd'), tf.constant(b'efgh')
  base = int(compressed.checksum([a, b], False, 2.0))
  assert base == int(compressed.checksum([a, b], False, 2.0))  # deterministic
  variants = [
      compressed.checksum([tf.constant(b'abcde'), tf.constant(b'fgh')], False, 2.0),  # moved
      compressed.checksum([b, a], False, 2.0),
      compressed.checksum([a, b], True, 2.0),
      compressed.checksum([a, b], False, 3.0),
      compressed.checksum([a, b], False),
      compressed.checksum([a, tf.constant(b'efgi')], False, 2.0),
  ]
  assert base not in [int(v) for v in variants]
  message = compressed.seal([a, b], False, 2.0)
  message['weight'] = tf.constant(2.0)
  sizes = [1, 1]
  opened = compressed.unseal(RawCompressor(), message, sizes, weighted=True)
  assert bool(opened['valid']) and not bool(opened['dropped'])
  message['weight'] = tf.constant(2.5)
  assert not bool(compressed.unseal(RawCompressor(), message, sizes, weighted=True)['valid'])


class _NoSquaredError(RawCompressor):
  diagnostic_names = ('l1',)


def test_protocol_and_value_type_checks():
  with pytest.raises(TypeError, match='compressor protocol'):
    compressed.CompressedMeanFactory(object())
  with pytest.raises(ValueError, match='squared_error'):
    compressed.CompressedSumFactory(_NoSquaredError()).create(ts.VALUE_TYPE)
  with pytest.raises(TypeError, match='weight_type'):
    compressed.CompressedMeanFactory(RawCompressor()).create(ts.VALUE_TYPE, None)
  with pytest.raises(TypeError, match='floating-point'):
    compressed.tensor_types(tff.TensorType(np.int32, [3]))
  with pytest.raises(TypeError, match='not fully defined'):
    compressed.tensor_types(tff.TensorType(np.float32, [None]))
  with pytest.raises(TypeError, match='unplaced'):
    compressed.tensor_types(tff.FederatedType(tff.TensorType(np.float32, [3]), tff.CLIENTS))
  with pytest.raises(TypeError, match='no tensors'):
    compressed.tensor_types(tff.StructType([]))


# Every sum-form factory: (factory, state type, measurements).
SUM_FACTORIES = {
    'quantize_encode': (
        lambda: quantize_encode.QuantizeEncodeSumFactory(0.1),
        tff.to_type(collections.OrderedDict(step_size=np.float32, round=np.int64)),
        ts.compressed_measurements('step_size')),
    'quantize_encode_lagrangian': (
        lambda: quantize_encode.QuantizeEncodeSumFactory(
            step_control=step_control.Lagrangian(1e4, 0.1, num_candidates=3)),
        tff.to_type(collections.OrderedDict(step_size=np.float32, round=np.int64)),
        ts.compressed_measurements('step_size', 'objective', 'vote_offset')),
    'top_k': (lambda: baselines.TopKSumFactory(0.1), ts.STATELESS,
              ts.compressed_measurements('index_bits')),
    'drive': (baselines.DriveSumFactory, ts.STATELESS, ts.compressed_measurements()),
    'three_lc': (baselines.ThreeLCSumFactory, ts.STATELESS, ts.compressed_measurements()),
    'qsgd': (lambda: baselines.QSGDSumFactory(4), ts.STATELESS, ts.compressed_measurements()),
    'terngrad': (baselines.TernGradSumFactory, ts.STATELESS, ts.compressed_measurements()),
    'tensor_encoding': (
        lambda: tff_builtin.MeasuredEncodedSumFactory(tff_builtin.uniform_encoder_fn(8, 100)),
        ts.STATELESS, ts.compressed_measurements()),
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(SUM_FACTORIES))
def test_sum_factory_type_signatures(name):
  make, state_type, measurements = SUM_FACTORIES[name]
  factory = make()
  assert isinstance(factory, compressed.CompressedSumFactory)
  ts.assert_types(factory.create(ts.VALUE_TYPE), state_type, measurements, weight_type=None)


# A corrupted client costs that client, not the round (`on_corrupt`).

_MARK = 7.0  # bias[0] of the client whose message is corrupted in flight.


def _marked_clients(num_clients=5, corrupt_index=2):
  clients = _clients(num_clients, seed=3)
  for i, c in enumerate(clients):
    c['bias'][0] = _MARK if i == corrupt_index else float(i)
  return clients


def _corrupt_marked(corrupt):
  """A channel applying `corrupt` to the message of the client marked `_MARK`
  (the true update travels beside the message, so the channel can find it)."""

  def channel(message):
    copy = collections.OrderedDict(
        (k, list(v) if k == 'streams' else v) for k, v in message.items())
    corrupted = corrupt(copy)
    marked = tf.equal(message['update'][0][0], _MARK)  # bias first (tf.nest order).
    message['streams'] = [tf.where(marked, c, s)
                          for c, s in zip(corrupted['streams'], message['streams'])]
    message['dropped'] = tf.where(marked, corrupted['dropped'], message['dropped'])
    return message

  return channel


def _mean(clients, weights):
  return {k: sum(w * c[k] for w, c in zip(weights, clients)) / sum(weights)
          for k in clients[0]}


@pytest.mark.parametrize('weighted', [True, False])
def test_corrupt_client_is_dropped_and_counted(weighted):
  clients, weights = _marked_clients(), [1.0, 3.0, 2.0, 5.0, 4.0]
  kept = [c for i, c in enumerate(clients) if i != 2]
  channel = _corrupt_marked(_flip_bit(0, 0))
  if weighted:
    process = compressed.CompressedMeanFactory(RawCompressor(), channel=channel).create(
        ts.VALUE_TYPE, ts.WEIGHT_TYPE)
    output = process.next(process.initialize(), clients, weights)
    expected = _mean(kept, [w for i, w in enumerate(weights) if i != 2])
  else:
    process = compressed.CompressedSumFactory(RawCompressor(), channel=channel).create(
        ts.VALUE_TYPE)
    output = process.next(process.initialize(), clients)
    expected = {k: sum(c[k] for c in kept) for k in clients[0]}
  for key in expected:
    np.testing.assert_allclose(output.result[key], expected[key], rtol=1e-6, atol=1e-7)
  m = output.measurements
  assert m['corrupt_clients'] == 1 and m['clients'] == 4 and m['dropped_clients'] == 0
  # The corrupt client's bits were received: all 5 clients count.
  client_bits = 8 * 4 * NUM_PARAMETERS + compressed.overhead_bits(weighted)
  assert m['uplink_bits'] == 5 * client_bits
  assert m['side_info_bits'] == 5 * compressed.overhead_bits(weighted)
  # Means over the 4 used clients only.
  assert m['bits_per_parameter'] == pytest.approx(client_bits / NUM_PARAMETERS)
  l1 = [sum(float(np.abs(c[k].astype(np.float64)).sum()) for k in c) for c in kept]
  assert m['l1'] == pytest.approx(np.mean(l1))
  assert m['aggregate_relative_distortion'] == 0.0  # RawCompressor is lossless.


def test_corrupt_client_raises_when_asked():
  channel = _corrupt_marked(_flip_bit(0, 0))
  process = compressed.CompressedSumFactory(
      RawCompressor(), on_corrupt='raise', channel=channel).create(ts.VALUE_TYPE)
  with pytest.raises(Exception, match=compressed.CORRUPT_MESSAGE):
    process.next(process.initialize(), _marked_clients())
  with pytest.raises(ValueError, match='on_corrupt'):
    compressed.CompressedSumFactory(RawCompressor(), on_corrupt='ignore')


def test_round_where_every_client_is_corrupt_or_dropped_gives_zero_update():
  clients = _marked_clients(2, corrupt_index=0)
  clients[1]['kernel'][0, 0] = np.inf  # Dropped (status byte).
  process = compressed.CompressedMeanFactory(
      RawCompressor(), channel=_corrupt_marked(_flip_bit(0, 0))).create(
          ts.VALUE_TYPE, ts.WEIGHT_TYPE)
  output = process.next(process.initialize(), clients, [1.0, 1.0])
  for key in ('kernel', 'bias'):
    assert not np.any(output.result[key])
  m = output.measurements
  assert (m['clients'], m['dropped_clients'], m['corrupt_clients']) == (0, 1, 1)
  assert m['bits_per_parameter'] == 0.0 and m['aggregate_relative_distortion'] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize('weighted', [True, False])
def test_corrupt_quantized_client_leaves_the_mean_of_the_others(weighted):
  """Ours with `transport='count'`: a message whose status says dropped but
  that carries a payload is corrupt; the result equals the process run on
  the other 4 clients alone (same reconstructions, to float32 rounding)."""
  clients, weights = _marked_clients(), [1.0, 3.0, 2.0, 5.0, 4.0]
  others = [c for i, c in enumerate(clients) if i != 2]
  other_weights = [w for i, w in enumerate(weights) if i != 2]

  def make(channel=None):
    compressor_ = quantize_encode.QuantizeEncodeCompressor(
        0.05, transport='count', extra_bits=compressed.overhead_bits(weighted))
    form = compressed.CompressedMeanFactory if weighted else compressed.CompressedSumFactory
    return form(compressor_, channel=channel)

  def create(factory):
    return (factory.create(ts.VALUE_TYPE, ts.WEIGHT_TYPE) if weighted
            else factory.create(ts.VALUE_TYPE))

  def run(process, cs, ws):
    if weighted:
      return process.next(process.initialize(), cs, ws)
    return process.next(process.initialize(), cs)

  clean = create(make())
  corrupted = run(create(make(_corrupt_marked(_set_dropped))), clients, weights)
  alone = run(clean, others, other_weights)
  full = run(clean, clients, weights)
  for key in ('kernel', 'bias'):
    np.testing.assert_allclose(corrupted.result[key], alone.result[key], rtol=1e-6, atol=1e-7)
  m = corrupted.measurements
  assert m['corrupt_clients'] == 1 and m['clients'] == 4
  assert m['uplink_bits'] == full.measurements['uplink_bits']
  assert m['distortion'] == pytest.approx(alone.measurements['distortion'], rel=1e-9)


@pytest.mark.slow
def test_aggregate_relative_distortion_against_numpy():
  """`||sum w x^ - sum w x||^2 / ||sum w x||^2` of the used clients, with the
  server's reconstructions recomputed in numpy (uniform rounding, fixed step)."""
  step = 0.3
  clients, weights = _clients(4, seed=5), [1.0, 2.0, 3.0, 4.0]
  clients[3]['bias'][:] = np.nan  # Dropped: in neither sum.
  process = quantize_encode.QuantizeEncodeFactory(step).create(ts.VALUE_TYPE, ts.WEIGHT_TYPE)
  m = process.next(process.initialize(), clients, weights).measurements
  used, used_weights = clients[:3], weights[:3]
  error = norm = 0.0
  for key in ('kernel', 'bias'):
    true = sum(w * c[key].astype(np.float64) for w, c in zip(used_weights, used))
    hat = sum(w * np.round(c[key].astype(np.float64) / step) * step
              for w, c in zip(used_weights, used))
    error += float(np.sum((hat - true) ** 2))
    norm += float(np.sum(true ** 2))
  assert m['aggregate_relative_distortion'] == pytest.approx(error / norm, rel=1e-4)
  # Errors of different clients partly cancel: below the mean per-client figure.
  assert 0 < m['aggregate_relative_distortion'] < m['relative_distortion']
