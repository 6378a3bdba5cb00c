"""Type-signature checks of aggregation processes, as TFF's own aggregator tests
do them: `initialize` is `( -> state@SERVER)` and `next` is
`(<state@SERVER, value@CLIENTS[, weight@CLIENTS]> -> <state@SERVER,
result@SERVER, measurements@SERVER>)`, with every type written out.

Building a process traces its computations; nothing here runs a round.
"""

import collections

import numpy as np
import tensorflow_federated as tff

# Keys deliberately not sorted (the processes see them in `tf.nest` order).
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    kernel=tff.TensorType(np.float32, (20, 30)), bias=tff.TensorType(np.float32, (50,))))
WEIGHT_TYPE = tff.TensorType(np.float32)
STATELESS = tff.TensorType(np.int32)

_F64, _I64, _I32, _F32 = np.float64, np.int64, np.int32, np.float32


def compressed_measurements(*diagnostics, extra=()) -> collections.OrderedDict:
  """The measurements of `tff_rdq.aggregators.compressed`, in order: the common
  ones, each diagnostic's mean and `_std`, the client counts, then `extra`
  (name, dtype) pairs lifted from wrapping factories."""
  names = [('bits_per_parameter', _F64), ('uplink_bits', _I64), ('side_info_bits', _I64),
           ('distortion', _F64), ('relative_distortion', _F64),
           ('aggregate_relative_distortion', _F64), ('sparsity', _F64)]
  for name in diagnostics:
    names += [(name, _F64), (f'{name}_std', _F64)]
  names += [('clients', _I32), ('dropped_clients', _I32), ('corrupt_clients', _I32)]
  names += list(extra)
  return collections.OrderedDict(names)


CLIPPING = (('clipping_norm', _F32), ('clipped_count', _I32))
ZEROING = (('zeroing_norm', _F32), ('zeroed_count', _I32))


def _measurements_type(measurements):
  if isinstance(measurements, collections.OrderedDict):
    return tff.to_type(collections.OrderedDict(
        (k, tff.TensorType(v) if isinstance(v, type) else v) for k, v in measurements.items()))
  return tff.to_type(measurements)


def assert_types(process, state_type, measurements, value_type=VALUE_TYPE,
                 weight_type=WEIGHT_TYPE):
  """`process`'s `initialize` and `next` have exactly these types.

  Args:
    process: A `tff.templates.AggregationProcess`.
    state_type: The unplaced server state type.
    measurements: `OrderedDict` name -> numpy dtype (or a type), in order.
    value_type: The unplaced value type.
    weight_type: The unplaced weight type, or None for an unweighted process.
  """
  assert isinstance(process, tff.templates.AggregationProcess)
  server_state = tff.FederatedType(state_type, tff.SERVER)
  expected_initialize = tff.FunctionType(parameter=None, result=server_state)
  assert process.initialize.type_signature.is_equivalent_to(expected_initialize), (
      process.initialize.type_signature, expected_initialize)

  parameter = collections.OrderedDict(
      state=server_state, value=tff.FederatedType(value_type, tff.CLIENTS))
  if weight_type is not None:
    parameter['weight'] = tff.FederatedType(weight_type, tff.CLIENTS)
  measurements_type = _measurements_type(measurements)
  expected_next = tff.FunctionType(
      parameter=parameter,
      result=tff.templates.MeasuredProcessOutput(
          state=server_state,
          result=tff.FederatedType(value_type, tff.SERVER),
          measurements=tff.FederatedType(measurements_type, tff.SERVER)))
  actual = process.next.type_signature
  assert actual.is_equivalent_to(expected_next), (actual, expected_next)
  # Equivalence ignores names' order only where types coincide; check names too.
  names = [n for n, _ in tff.structure.iter_elements(actual.result.measurements.member)]
  assert names == list(measurements), names
