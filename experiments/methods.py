"""Turns an `[aggregator]` config section into a TFF model-aggregator factory.

`rdq` is this project's quantize-encode method; `mean` is TFF's uncompressed
`MeanFactory`; every other name is looked up among the baselines
(`tff_rdq.baselines.BASELINES`, TFF's built-ins in
`tff_rdq.baselines.tff_builtin.TFF_BUILTINS`), built with the keyword
arguments in `aggregator.options`.
"""

import tensorflow_federated as tff

from experiments.config import AggregatorConfig, ConfigError
from tff_rdq import codecs
from tff_rdq import baselines
from tff_rdq.aggregators import quantize_encode
from tff_rdq.baselines import tff_builtin


def _baselines() -> dict:
  return {**baselines.BASELINES, **tff_builtin.TFF_BUILTINS}


def method_names() -> list[str]:
  return ['rdq', 'mean'] + sorted(_baselines())


def is_uncompressed(config: AggregatorConfig) -> bool:
  return config.method == 'mean'


def build_factory(config: AggregatorConfig) -> tff.aggregators.WeightedAggregationFactory:
  """The weighted aggregation factory the config names; `ConfigError` if bad."""
  if config.method == 'rdq':
    if config.codec not in codecs.CODEC_NAMES:
      raise ConfigError(
          f'aggregator.codec: must be one of {codecs.CODEC_NAMES}, got {config.codec!r}.')
    return quantize_encode.QuantizeEncodeFactory(
        config.step_size, rounding=config.rounding,
        normalization=config.normalization, codec=config.codec)
  if config.method == 'mean':
    return tff.aggregators.MeanFactory()
  registry = _baselines()
  if config.method not in registry:
    raise ConfigError(
        f'aggregator.method: unknown method {config.method!r}; choose one of {method_names()}.')
  try:
    return registry[config.method](**config.options)
  except (TypeError, ValueError) as e:
    raise ConfigError(f'aggregator.options={config.options!r} for {config.method}: {e}') from None
