"""Turns an `[aggregator]` config section into a TFF model-aggregator factory.

`rdq` is this project's quantize-encode method; `mean` is TFF's uncompressed
`MeanFactory`; every other name is looked up among the baselines
(`tff_rdq.baselines.BASELINES`, TFF's built-ins in
`tff_rdq.baselines.tff_builtin.TFF_BUILTINS`), built with the keyword
arguments in `aggregator.options`.
"""

import tensorflow_federated as tff

from tff_rdq import baselines
from tff_rdq.aggregators import quantize_encode
from tff_rdq.aggregators import step_control
from tff_rdq.baselines import tff_builtin
from tff_rdq.experiments.config import AggregatorConfig, ConfigError


def _baselines() -> dict:
  return {**baselines.BASELINES, **tff_builtin.TFF_BUILTINS}


def method_names() -> list[str]:
  return ['rdq', 'mean'] + sorted(_baselines())


def is_uncompressed(config: AggregatorConfig) -> bool:
  return config.method == 'mean'


def build_factory(config: AggregatorConfig) -> tff.aggregators.WeightedAggregationFactory:
  """The weighted aggregation factory the config names; `ConfigError` if bad."""
  if config.method == 'rdq':
    if config.step_control == 'fixed':
      step_size, control = config.step_size, None
    else:
      step_size = None
      try:
        control = step_control.CONTROLS[config.step_control](**config.step_control_options)
      except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f'aggregator.step_control_options={config.step_control_options!r} for '
            f'{config.step_control}: {e}') from None
    try:
      return quantize_encode.QuantizeEncodeFactory(
          step_size, rounding=config.rounding, normalization=config.normalization,
          codec=config.codec, step_control=control, transport=config.transport,
          integrity=config.integrity, on_corrupt=config.on_corrupt,
          compare_codecs=tuple(config.compare_codecs))
    except (TypeError, ValueError) as e:
      raise ConfigError(f'aggregator: {e}') from None
  if config.method == 'mean':
    return tff.aggregators.MeanFactory()
  registry = _baselines()
  if config.method not in registry:
    raise ConfigError(
        f'aggregator.method: unknown method {config.method!r}; choose one of {method_names()}.')
  try:
    return registry[config.method](
        **{'integrity': config.integrity, 'on_corrupt': config.on_corrupt, **config.options})
  except (TypeError, ValueError) as e:
    raise ConfigError(f'aggregator.options={config.options!r} for {config.method}: {e}') from None
