"""Tests of `tff_rdq.experiments.methods`: every method it names builds a weighted
factory whose processes have the documented type signatures (no rounds run)."""

import collections

import numpy as np
import pytest
import tensorflow_federated as tff

import type_signatures as ts
from tff_rdq import baselines
from tff_rdq.aggregators import quantize_encode
from tff_rdq.aggregators import step_control
from tff_rdq.baselines import tff_builtin
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import methods

# A knob for the methods whose factories need one.
OPTIONS = {'qsgd': {'levels': 4}, 'top_k': {'fraction': 0.1}}

_F32, _I64 = np.float32, np.int64
_ESTIMATE = tff.to_type(collections.OrderedDict(
    current_estimate=_F32, target_quantile=_F32, learning_rate=_F32,
    below_estimate_state=()))


def _adaptive_norm_state():
  """The state of TFF's adaptive zeroing/clipping norm estimate."""
  return tff.StructType([_ESTIMATE, tff.StructType([])])


# method -> (state type, measurements), written out as TFF's tests write them.
EXPECTED = {
    'rdq': (tff.to_type(collections.OrderedDict(step_size=_F32, round=_I64)),
            ts.compressed_measurements('step_size')),
    'mean': (tff.to_type(collections.OrderedDict(value_sum_process=(), weight_sum_process=())),
             collections.OrderedDict(mean_value=tff.StructType([]),
                                     mean_weight=tff.StructType([]))),
    'drive': (ts.STATELESS, ts.compressed_measurements()),
    'eden': (ts.STATELESS, ts.compressed_measurements()),
    'qsgd': (ts.STATELESS, ts.compressed_measurements()),
    'terngrad': (ts.STATELESS, ts.compressed_measurements()),
    'three_lc': (ts.STATELESS, ts.compressed_measurements()),
    'top_k': (ts.STATELESS, ts.compressed_measurements('index_bits')),
    'tff_uniform': (ts.STATELESS, ts.compressed_measurements()),
    'tff_hadamard': (ts.STATELESS, ts.compressed_measurements()),
    'tff_discretization': (
        tff.to_type(collections.OrderedDict(
            clipping_norm=(), inner_agg=collections.OrderedDict(
                global_seed=tff.TensorType(_I64, [2])), clipped_count_agg=())),
        ts.compressed_measurements('wrapped_fraction', extra=ts.CLIPPING)),
    'tff_compression_aggregator': (
        tff.to_type(collections.OrderedDict(
            zeroing_norm=_adaptive_norm_state(),
            inner_agg=collections.OrderedDict(
                clipping_norm=_adaptive_norm_state(), inner_agg=np.int32,
                clipped_count_agg=()),
            zeroed_count_agg=())),
        ts.compressed_measurements(extra=ts.CLIPPING + ts.ZEROING)),
}


def test_method_names():
  assert methods.method_names() == ['rdq', 'mean'] + sorted(
      {**baselines.BASELINES, **tff_builtin.TFF_BUILTINS})
  assert set(methods.method_names()) == set(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_weighted_type_signatures(name):
  factory = methods.build_factory(config_lib.AggregatorConfig(
      method=name, step_size=0.1, options=OPTIONS.get(name, {})))
  assert isinstance(factory, tff.aggregators.WeightedAggregationFactory)
  state_type, measurements = EXPECTED[name]
  ts.assert_types(factory.create(ts.VALUE_TYPE, ts.WEIGHT_TYPE), state_type, measurements)


def test_rdq_config_builds_ours():
  factory = methods.build_factory(config_lib.AggregatorConfig(
      step_size=0.2, rounding='dithered', normalization='rms', codec='rans'))
  assert isinstance(factory, quantize_encode.QuantizeEncodeFactory)
  compressor = factory.compressor
  assert (compressor.rounding, compressor.normalization, compressor.codec.name) == (
      'dithered', 'rms', 'rans')
  assert compressor.step_control.step == 0.2
  factory = methods.build_factory(config_lib.AggregatorConfig(
      step_control='bit_budget', step_control_options={'target_bits': 1.0, 'initial': 0.3}))
  assert isinstance(factory.compressor.step_control, step_control.BitBudget)
  assert methods.is_uncompressed(config_lib.AggregatorConfig(method='mean'))


@pytest.mark.parametrize('aggregator,message', [
    (config_lib.AggregatorConfig(method='gzip'), "unknown method 'gzip'"),
    (config_lib.AggregatorConfig(method='qsgd', options={'levels': 0}), 'levels'),
    (config_lib.AggregatorConfig(method='qsgd', options={'bits': 4}), 'bits'),
    (config_lib.AggregatorConfig(codec='zip'), 'zip'),
    (config_lib.AggregatorConfig(step_control='lagrangian'), 'lagrangian'),
    (config_lib.AggregatorConfig(step_control='bit_budget',
                                 step_control_options={'target_bits': -1.0, 'initial': 0.3}),
     'target_bits'),
])
def test_bad_aggregator_configs_raise_config_error(aggregator, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    methods.build_factory(aggregator)


def test_config_choices_come_from_the_defining_modules():
  for key, value in [('rounding', 'nearest'), ('normalization', 'l2'), ('codec', 'zip'),
                     ('step_control', 'pid')]:
    with pytest.raises(config_lib.ConfigError, match=f'aggregator.{key}: must be one of'):
      config_lib.from_dict({'aggregator': {key: value}})
  config = config_lib.from_dict({'aggregator': {
      'rounding': 'dithered', 'normalization': 'max_abs', 'codec': 'rans',
      'step_control': 'global_vote'}})
  assert config.aggregator.codec == 'rans'


def test_integrity_config_key_reaches_every_compressed_factory():
  config = config_lib.from_dict({'aggregator': {'integrity': False}})
  assert config.aggregator.integrity is False
  assert config_lib.AggregatorConfig().integrity is True  # On by default.
  for name in ('rdq', 'drive', 'qsgd', 'terngrad', 'three_lc', 'top_k', 'tff_uniform',
               'tff_hadamard'):
    for integrity in (True, False):
      factory = methods.build_factory(config_lib.AggregatorConfig(
          method=name, step_size=0.1, options=OPTIONS.get(name, {}), integrity=integrity))
      assert factory.integrity is integrity, name
  with pytest.raises(config_lib.ConfigError, match='aggregator.integrity'):
    config_lib.from_dict({'aggregator': {'integrity': 'no'}})


def test_on_corrupt_config_key_reaches_every_compressed_factory():
  config = config_lib.from_dict({'aggregator': {'on_corrupt': 'raise'}})
  assert config.aggregator.on_corrupt == 'raise'
  assert config_lib.AggregatorConfig().on_corrupt == 'drop'  # The factories' default.
  for name in ('rdq', 'drive', 'eden', 'qsgd', 'terngrad', 'three_lc', 'top_k', 'tff_uniform',
               'tff_hadamard'):
    for on_corrupt in ('drop', 'raise'):
      factory = methods.build_factory(config_lib.AggregatorConfig(
          method=name, step_size=0.1, options=OPTIONS.get(name, {}), on_corrupt=on_corrupt))
      assert factory.on_corrupt == on_corrupt, name
  with pytest.raises(config_lib.ConfigError, match='aggregator.on_corrupt'):
    config_lib.from_dict({'aggregator': {'on_corrupt': 'ignore'}})


def test_compare_codecs_config_key():
  config = config_lib.from_dict({'aggregator': {'compare_codecs': ['run_length_rans']}})
  factory = methods.build_factory(config.aggregator)
  assert [c.name for c in factory.compressor.compare_codecs] == ['run_length_rans']
  with pytest.raises(config_lib.ConfigError, match='compare_codecs'):
    methods.build_factory(config_lib.AggregatorConfig(compare_codecs=['elias_gamma']))
  with pytest.raises(config_lib.ConfigError, match='compare_codecs'):
    config_lib.from_raw({'aggregator': {'method': 'top_k', 'compare_codecs': ['rans']}})
