"""Tests of `transport="count"`: closed-form bits, every reported figure as with real bytes.

Also the exactness of the quantizer/aggregator shortcuts it shares with real
bytes: the float32 reconstruction (`reconstruct`), the float64 sums of
float32 passes (`compressed.sum_float64`, `compressed.squared_norm`).
"""

import collections
import pathlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import codecs
from tff_rdq.experiments import data as data_lib
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import quantize_encode
from tff_rdq.aggregators import step_control
from tff_rdq.codecs import elias_gamma
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import methods
from tff_rdq.experiments import stackoverflow
from tff_rdq.quantizers import uniform

REPO = pathlib.Path(__file__).resolve().parents[1]
SHAPES = collections.OrderedDict(kernel=(40, 30), bias=(30,), scale=(3000,), empty=(0,))
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    (k, tff.TensorType(np.float32, s)) for k, s in SHAPES.items()))
WEIGHT_TYPE = tff.TensorType(np.float32)
# Every measurement that counts bits, distortion or symbols, and the result.
FIGURES = ('uplink_bits', 'side_info_bits', 'bits_per_parameter', 'distortion',
           'relative_distortion', 'sparsity', 'clients', 'dropped_clients')


def _updates(num_clients, seed=0, scale=0.05):
  rng = np.random.default_rng(seed)
  return [collections.OrderedDict(
      (k, (rng.laplace(size=s) * scale * (i + 1)).astype(np.float32))
      for k, s in SHAPES.items()) for i in range(num_clients)]


def _vectors():
  rng = np.random.default_rng(1)
  big = rng.laplace(size=3000) * 3000  # Beyond the fast encoder's tables.
  return {
      'empty': np.zeros(0, np.int32),
      'one': np.array([3], np.int32),
      'zeros_1025': np.zeros(1025, np.int32),
      'block_1024': np.round(rng.laplace(size=1024)).astype(np.int32),
      'laplace_5000': np.round(rng.laplace(size=5000) * 0.7).astype(np.int32),
      'sparse_70000': np.where(rng.random(70000) < 0.01, 5, 0).astype(np.int32),
      'dense_big': np.round(big).astype(np.int32),
      'extremes': np.array([2**31 - 1, -2**31, 0, 0, 1, -1] * 300, np.int32),
  }


@pytest.mark.parametrize('name', sorted(_vectors()))
def test_count_bits_are_the_bytes_bits(name):
  values = _vectors()[name]
  compressor = quantize_encode.QuantizeEncodeCompressor(0.1, transport='count')
  data = elias_gamma.encode_to_bytes(tf.constant(values))
  bits, side_bits = compressor.count_bits(tf.constant(values))
  assert int(bits) == 8 * int(tf.size(data))
  assert int(side_bits) == int(elias_gamma.side_info_bits(data, values.size, 1024))


def test_count_bits_of_a_batch_and_other_block_sizes():
  rng = np.random.default_rng(2)
  batch = np.round(rng.laplace(size=(3, 2500)) * np.array([[0.1], [1.0], [30.0]])).astype(np.int32)
  for block in (1, 7, 1024, 4096):
    compressor = quantize_encode.QuantizeEncodeCompressor(
        0.1, codec=codecs.EliasGammaCodec(block), transport='count')
    bits, side_bits = compressor.count_bits(tf.constant(batch))
    for k in range(3):
      data = elias_gamma.encode_to_bytes(tf.constant(batch[k]), block)
      assert int(bits[k]) == 8 * int(tf.size(data)), block
      assert int(side_bits[k]) == int(elias_gamma.side_info_bits(data, 2500, block)), block


@pytest.mark.parametrize('rounding', ['uniform', 'stochastic'])
def test_reconstruct_is_dequantize_bit_for_bit(rounding):
  rng = np.random.default_rng(3)
  compressor = quantize_encode.QuantizeEncodeCompressor(0.1, rounding=rounding)
  seed = tf.constant([5, 0], tf.int32)
  for limit in (10, 2**24 - 1, 2**24 + 3, 2**31 - 128):
    integers = rng.integers(-limit, limit + 1, size=20000).astype(np.int32)
    integers[:2] = [limit, -limit]
    for step in (np.float32(0.3), np.float32(1.7e-5), np.float32(3.1e4)):
      got = compressor.reconstruct(tf.constant(integers), tf.constant(step), seed).numpy()
      want = uniform.dequantize(tf.constant(integers), tf.constant(step), rounding, seed).numpy()
      np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def test_float64_sums_of_float32_passes():
  rng = np.random.default_rng(4)
  for n in (0, 5, 128, 1000, 300_001):
    x = (rng.laplace(size=n) * 1e-3).astype(np.float32)
    want = np.sum(x.astype(np.float64) ** 2)
    got = compressed.sum_float64(tf.square(tf.constant(x)))
    assert float(got) == pytest.approx(want, rel=2e-7, abs=1e-30)
    finite, norm = compressed.squared_norm([tf.constant(x), tf.constant(x[:3])])
    assert bool(finite)
    assert float(norm) == pytest.approx(want + np.sum(x[:3].astype(np.float64) ** 2), rel=2e-7)
  huge = np.array([3e30, -1.0], np.float32)  # finite, but its square overflows float32
  finite, norm = compressed.squared_norm([tf.constant(huge)])
  assert bool(finite) and float(norm) == pytest.approx(9e60 + 1.0)
  for bad in (np.nan, np.inf, -np.inf):
    finite, _ = compressed.squared_norm([tf.constant(np.array([1.0, bad], np.float32))])
    assert not bool(finite)


def _run_both(make_factory, updates_per_round, weights=None):
  """Runs the bytes and count processes on the same updates; their outputs."""
  outputs = {}
  for transport in ('bytes', 'count'):
    factory = make_factory(transport)
    if weights is None:
      process = factory.create(VALUE_TYPE)
    else:
      process = factory.create(VALUE_TYPE, WEIGHT_TYPE)
    state = process.initialize()
    rounds = []
    for updates in updates_per_round:
      output = (process.next(state, updates) if weights is None
                else process.next(state, updates, weights))
      state = output.state
      rounds.append(output)
    outputs[transport] = rounds
  return outputs['bytes'], outputs['count']


def _assert_identical(real, count):
  for r, c in zip(real, count):
    assert set(r.measurements) == set(c.measurements)
    for key in r.measurements:
      assert r.measurements[key] == c.measurements[key], key
    for key in SHAPES:
      np.testing.assert_array_equal(r.result[key], c.result[key])
    tf.nest.map_structure(np.testing.assert_array_equal, r.state, c.state)


@pytest.mark.slow
@pytest.mark.parametrize('control', [
    None,
    step_control.BitBudget(target_bits=2.0, initial=0.05, num_candidates=3),
], ids=['fixed', 'bit_budget'])
def test_weighted_rounds_identical_in_both_transports(control):
  rounds = [_updates(3, seed=s) for s in range(2)]
  rounds[1][2]['bias'][0] = np.nan  # A dropped client counts its message bits too.

  def make(transport):
    return quantize_encode.QuantizeEncodeFactory(
        None if control else 0.05, step_control=control, normalization='rms',
        transport=transport)

  real, count = _run_both(make, rounds, weights=[1.0, 2.0, 5.0])
  _assert_identical(real, count)
  assert real[1].measurements['dropped_clients'] == 1
  assert real[0].measurements['uplink_bits'] > 0


@pytest.mark.slow
def test_sum_rounds_identical_in_both_transports():
  # Dithered rounding (the seed in the header), large integers (the general
  # encoder), the Lagrangian vote in the payload, no checksum.
  rounds = [_updates(2, seed=s, scale=3.0) for s in range(2)]
  control = step_control.Lagrangian(lam=1e4, centre=0.01, num_candidates=3)

  def make(transport):
    return quantize_encode.QuantizeEncodeSumFactory(
        rounding='dithered', step_control=control, transport=transport, integrity=False)

  real, count = _run_both(make, rounds)
  _assert_identical(real, count)


def test_bad_transport_and_codec_without_closed_form_raise_clear_errors():
  with pytest.raises(ValueError, match='transport'):
    quantize_encode.QuantizeEncodeFactory(0.1, transport='wire')
  for codec in ('rans', 'run_length_rans'):
    with pytest.raises(ValueError, match="transport='count' needs a codec with a closed-form"):
      quantize_encode.QuantizeEncodeFactory(0.1, codec=codec, transport='count')
  with pytest.raises(config_lib.ConfigError, match='aggregator.transport: must be one of'):
    config_lib.from_dict({'aggregator': {'transport': 'wire'}})
  with pytest.raises(config_lib.ConfigError, match='closed-form'):
    methods.build_factory(config_lib.AggregatorConfig(codec='rans', transport='count'))
  factory = methods.build_factory(config_lib.AggregatorConfig(transport='count'))
  assert factory.compressor.transport == 'count' and factory.compressor.counts_bits


@pytest.mark.slow
def test_tiny_fedavg_identical_in_both_transports(small_corpus):
  overrides = ['data.source="stackoverflow"', f'data.cache_dir="{small_corpus}"',
               'training.rounds=2']
  config = config_lib.load(REPO / 'configs' / 'tiny.toml', overrides)
  train, test = stackoverflow.load_data(config.data)
  vocab = stackoverflow.load_vocab(config.data, train)
  data = config.data
  preprocess = data_lib.make_preprocess_fn(
      vocab, batch_size=data.batch_size, sequence_length=data.sequence_length,
      num_epochs=data.client_epochs, max_elements=data.max_elements_per_client,
      shuffle_buffer_size=data.shuffle_buffer_size, seed=config.training.seed)
  element_spec = preprocess(test.create_tf_dataset_for_client(test.client_ids[0])).element_spec
  processes = {}
  for transport in ('bytes', 'count'):
    config.aggregator.transport = transport
    processes[transport] = stackoverflow.build_process(config, vocab, element_spec)
  state = processes['bytes'].initialize()
  states = {'bytes': state, 'count': state}
  client_ids = sorted(train.client_ids)
  for round_num in range(1, config.training.rounds + 1):
    sampled = stackoverflow.sample_clients(
        client_ids, config.training.clients_per_round, config.training.seed, round_num)
    datasets = [preprocess(train.create_tf_dataset_for_client(c)) for c in sampled]
    metrics = {}
    for transport, process in processes.items():
      output = process.next(states[transport], datasets)
      states[transport] = output.state
      metrics[transport] = output.metrics['aggregator']
    for key in FIGURES:
      assert metrics['bytes'][key] == metrics['count'][key], (round_num, key)
    assert metrics['bytes']['uplink_bits'] > 0
    weights = [processes[t].get_model_weights(states[t]).trainable for t in processes]
    for real, count in zip(*weights):
      np.testing.assert_array_equal(real, count)
