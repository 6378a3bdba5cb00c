"""`tff.learning.compression_aggregator`, measured; flat measurements.

`measured_compression_aggregator()`: `tff.learning.compression_aggregator()`
rebuilt with TFF's own adaptive zeroing and clipping factories around
`EncodedUniformFactory(8, 20000)` instead of `MeanFactory(EncodedSumFactory
.quantize_above_threshold(8, 20000))`; its results equal the real one's (the
tests check this). Its bits are those of `EncodedUniformFactory` (the streams,
and the status byte, checksum and weight of `compressed`). Zeroing and clipping run on the clients before encoding
and cost no uplink bits here (their count and norm estimates are
measurements, sent through TFF's own sums as in the original).

Measurements are flat: `flatten_measurements` lifts the zeroing and clipping
factories' `zeroing_norm`, `zeroed_count`, `clipping_norm` and
`clipped_count` to the top level beside the measurements of `compressed`.
"""

import collections

import tensorflow_federated as tff

from tff_rdq.baselines.tff_builtin import tensor_encoding
from tff_rdq import tff_internals


def _measurement_paths(type_spec, prefix=()):
  """`(path, leaf type)` of every tensor in a (nested) measurements type."""
  if isinstance(type_spec, tff.TensorType):
    return [(prefix, type_spec)]
  paths = []
  for i, (name, element) in enumerate(tff.structure.iter_elements(type_spec)):
    paths += _measurement_paths(element, prefix + ((name if name else i),))
  return paths


def _flatten_process(process):
  """`process` with its measurements flattened into one `OrderedDict`."""
  measurements_type = process.next.type_signature.result.measurements.member
  paths = _measurement_paths(measurements_type)
  names = [str(p[-1]) for p, _ in paths]
  if len(set(names)) != len(names):
    names = ['/'.join(str(k) for k in p) for p, _ in paths]

  @tff.tensorflow.computation(measurements_type)
  def flatten_tf(measurements):
    flat = collections.OrderedDict()
    for name, (path, _) in zip(names, paths):
      value = measurements
      for key in path:
        value = value[key]
      flat[name] = value
    return flat

  parameter_types = [t for _, t in tff.structure.iter_elements(
      process.next.type_signature.parameter)]

  def flat_output(output):
    return tff.templates.MeasuredProcessOutput(
        state=output.state, result=output.result,
        measurements=tff.federated_map(flatten_tf, output.measurements))

  if len(parameter_types) == 3:
    next_fn = tff.federated_computation(
        lambda state, value, weight: flat_output(process.next(state, value, weight)),
        *parameter_types)
  else:
    next_fn = tff.federated_computation(
        lambda state, value: flat_output(process.next(state, value)), *parameter_types)
  return tff.templates.AggregationProcess(process.initialize, next_fn)


class _FlatWeighted(tff.aggregators.WeightedAggregationFactory):

  def __init__(self, inner):
    self._inner = inner

  def create(self, value_type, weight_type):
    return _flatten_process(self._inner.create(value_type, weight_type))


class _FlatUnweighted(tff.aggregators.UnweightedAggregationFactory):

  def __init__(self, inner):
    self._inner = inner

  def create(self, value_type):
    return _flatten_process(self._inner.create(value_type))


def flatten_measurements(factory):
  """`factory` whose processes report flat measurements (leaf names kept)."""
  if isinstance(factory, tff.aggregators.WeightedAggregationFactory):
    return _FlatWeighted(factory)
  if isinstance(factory, tff.aggregators.UnweightedAggregationFactory):
    return _FlatUnweighted(factory)
  raise TypeError(f'Not an aggregation factory: {factory!r}.')


def measured_compression_aggregator(*, zeroing: bool = True, clipping: bool = True,
                                    weighted: bool = True, bits: int = 8, flat: bool = True,
                                    debug_measurements_fn=None, integrity: bool = True,
                                    on_corrupt: str = 'drop',
                                    **kwargs):
  """`tff.learning.compression_aggregator`, measured (see module doc).

  Args:
    zeroing: TFF's default adaptive zeroing, as in the original.
    clipping: TFF's default adaptive L2 clipping, as in the original.
    weighted: A weighted mean (else an unweighted mean of `CompressedSumFactory`
      through TFF's `UnweightedMeanFactory`, as in the original).
    bits: Quantization bits; TFF's compression aggregator uses 8.
    flat: Flatten the zeroing/clipping measurements (`flatten_measurements`).
    debug_measurements_fn: Not supported (must be None).
    integrity: The message checksum of `tff_rdq.aggregators.compressed`.
    on_corrupt: `'drop'` or `'raise'`, as in `tff_rdq.aggregators.compressed`.
    **kwargs: Passed to the encoders like TFF's `**kwargs` (`stochastic`).

  Returns:
    A `tff.aggregators.WeightedAggregationFactory` (or unweighted).
  """
  if debug_measurements_fn is not None:
    raise NotImplementedError('debug_measurements_fn is not supported here.')
  encoder_fn = tensor_encoding.uniform_encoder_fn(bits, 20000, **kwargs)
  name = f'uniform_quantization({bits}) above 20000'
  if weighted:
    factory = tensor_encoding.MeasuredEncodedMeanFactory(
        encoder_fn, name, integrity=integrity, on_corrupt=on_corrupt)
  else:
    factory = tff.aggregators.UnweightedMeanFactory(
        tensor_encoding.MeasuredEncodedSumFactory(
            encoder_fn, name, integrity=integrity, on_corrupt=on_corrupt))
  # TFF's own wrappers, exactly as `compression_aggregator` applies them.
  if clipping:
    factory = tff_internals.default_clipping(factory)
  if zeroing:
    factory = tff_internals.default_zeroing(factory)
  return flatten_measurements(factory) if flat else factory
