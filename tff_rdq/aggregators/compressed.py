"""Factories for the mean and sum of client updates sent through a compressor.

A *compressor* (the protocol `tff_rdq.aggregators.compressor.Compressor`)
turns one client's update into one `tf.string` per tensor on the client
placement and back into float32 values on the server. The factories here do
the federated plumbing shared by every method of this project (ours and the
baselines), so that every method's bits are counted the same way:

- On `CLIENTS`: a client whose update holds NaN or Inf sends an empty string
  per tensor (and is dropped and counted); otherwise `compressor.encode`.
- On the way to `SERVER`: `tff.federated_aggregate`, with the decoding inside
  `accumulate`, so that only the strings travel and each client is decoded
  with its own side information before the sum.
- Weighted form (`CompressedMeanFactory`, a `WeightedAggregationFactory`): the
  client compresses its own *unweighted* update; the server multiplies by the
  weight after decoding and divides by the total weight. The weight (float32)
  is counted as `compressor.WEIGHT_BITS` (32) bits of uplink side information.
- Unweighted form (`CompressedSumFactory`): the sum of the decoded updates.

Measurements (flat, at `SERVER`, every round):
  bits_per_parameter  mean over decoded clients of (client bits / parameters)
  uplink_bits         total bits received this round: 8 x string bytes of
                      every client (+ 32 per weight in the weighted form)
  side_info_bits      the part of `uplink_bits` that is side information
  distortion          mean over decoded clients of the per-element MSE between
                      the client's update and the server's reconstruction
  sparsity            mean over decoded clients of the fraction of zero symbols
  <diagnostic>, <diagnostic>_std   mean and spread of the other diagnostics
  clients             clients decoded and aggregated
  dropped_clients     clients dropped because their update held NaN or Inf

The diagnostics (`distortion` included) travel beside the payload as
simulation measurements; they are not part of the counted bits, and a
deployment would not send them.

A stream that is truncated or corrupted stops the round with an
`InvalidArgumentError` whose message starts with `CORRUPT_MESSAGE`; it is
never decoded into values.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq.aggregators import compressor as compressor_lib

CORRUPT_MESSAGE = 'A client payload is truncated or corrupted'


def tensor_types(value_type) -> list[tff.TensorType]:
  """The flat tensor types of `value_type`, checked to be float and static."""
  if isinstance(value_type, tff.types.FederatedType):
    raise TypeError(f'Expected an unplaced value type, got {value_type}.')
  flat = tff.structure.flatten(value_type)
  if not flat:
    raise TypeError(f'The value type {value_type} holds no tensors.')
  for i, tensor_type in enumerate(flat):
    if not isinstance(tensor_type, tff.TensorType):
      raise TypeError(f'Tensor {i} of {value_type} is not a tensor: {tensor_type}.')
    if not np.issubdtype(tensor_type.dtype, np.floating):
      raise TypeError(
          'Compressed aggregation needs floating-point values; tensor'
          f' {i} of {value_type} has dtype {np.dtype(tensor_type.dtype).name}.'
      )
    if not tff.types.is_shape_fully_defined(tensor_type.shape):
      raise TypeError(
          f'Tensor {i} of {value_type} has a shape that is not fully defined:'
          f' {tensor_type.shape}.'
      )
  return flat


def _build_process(compressor, value_type, weight_type):
  """The `AggregationProcess`; weighted iff `weight_type` is not None."""
  tensor_types(value_type)
  # One flattening order (tf.nest's) for sizes, client values and results.
  value_specs = tff.types.type_to_tf_tensor_specs(value_type)
  flat_specs = tf.nest.flatten(value_specs)
  sizes = [int(np.prod(s.shape, dtype=np.int64)) for s in flat_specs]
  num_parameters = float(sum(sizes))
  weighted = weight_type is not None
  weight_bits = compressor_lib.WEIGHT_BITS if weighted else 0
  diagnostic_names = list(compressor.diagnostic_names)
  if 'squared_error' not in diagnostic_names:
    raise ValueError(f'{compressor!r} must have a `squared_error` diagnostic.')

  @tff.tensorflow.computation
  def init_tf():
    return compressor.initial_state()

  state_type = init_tf.type_signature.result

  @tff.tensorflow.computation(state_type)
  def client_params_tf(state):
    return compressor.client_params(state)

  params_type = client_params_tf.type_signature.result

  def client_fn(value, params, weight):
    flat = [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in tf.nest.flatten(value)]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in flat])

    def encode():
      return compressor.encode(flat, params)

    def drop():
      zero = tf.constant(0.0, tf.float64)
      return ([tf.constant(b'') for _ in flat],
              collections.OrderedDict((k, zero) for k in diagnostic_names))

    streams, diagnostics = tf.cond(finite, encode, drop)
    return collections.OrderedDict(
        streams=streams, weight=tf.cast(weight, tf.float32), diagnostics=diagnostics)

  if weighted:
    client_tf = tff.tensorflow.computation(
        client_fn, value_type, params_type, weight_type)
  else:
    client_tf = tff.tensorflow.computation(
        lambda value, params: client_fn(value, params, 1.0), value_type, params_type)

  client_type = client_tf.type_signature.result
  reported = [n for n in diagnostic_names if n != 'squared_error']

  @tff.tensorflow.computation
  def zero_tf():
    f64, i64, i32 = (lambda: tf.constant(0.0, tf.float64),
                     lambda: tf.constant(0, tf.int64), lambda: tf.constant(0, tf.int32))
    return collections.OrderedDict(
        value_sum=[tf.zeros([n], tf.float32) for n in sizes],
        weight_sum=tf.constant(0.0, tf.float32),
        clients=i32(),
        dropped_clients=i32(),
        uplink_bits=i64(),
        side_info_bits=i64(),
        bits_per_parameter=f64(),
        zeros=i64(),
        diagnostics=collections.OrderedDict((n, f64()) for n in diagnostic_names),
        diagnostics_sq=collections.OrderedDict((n, f64()) for n in diagnostic_names),
    )

  accumulator_type = zero_tf.type_signature.result

  @tff.tensorflow.computation(accumulator_type, client_type)
  def accumulate_tf(acc, client):
    lengths = tf.stack([tf.strings.length(s, unit='BYTE') for s in client['streams']])
    dropped = tf.reduce_all(tf.equal(lengths, 0))
    kept = tf.logical_not(dropped)
    decoded = compressor.decode(list(client['streams']), sizes)
    check = tf.debugging.Assert(
        decoded['ok'] | dropped,
        [f'{CORRUPT_MESSAGE}: it could not be decoded exactly into'
         f' {len(sizes)} tensors of sizes {sizes}.'])
    keep_f64 = tf.cast(kept, tf.float64)
    weight = tf.where(kept, client['weight'], 0.0)
    client_bits = 8 * tf.cast(tf.reduce_sum(lengths), tf.int64) + weight_bits
    side_bits = tf.where(kept, tf.cast(decoded['side_info_bits'], tf.int64), 0)
    zeros = tf.where(kept, tf.cast(decoded['zeros'], tf.int64), 0)
    diagnostics = client['diagnostics']
    with tf.control_dependencies([check]):
      return collections.OrderedDict(
          value_sum=[s + weight * tf.where(kept, v, tf.zeros_like(v))
                     for s, v in zip(acc['value_sum'], decoded['values'])],
          weight_sum=acc['weight_sum'] + weight,
          clients=acc['clients'] + tf.cast(kept, tf.int32),
          dropped_clients=acc['dropped_clients'] + tf.cast(dropped, tf.int32),
          uplink_bits=acc['uplink_bits'] + client_bits,
          side_info_bits=acc['side_info_bits'] + side_bits + weight_bits,
          bits_per_parameter=acc['bits_per_parameter']
          + keep_f64 * tf.cast(client_bits, tf.float64) / num_parameters,
          zeros=acc['zeros'] + zeros,
          diagnostics=collections.OrderedDict(
              (n, acc['diagnostics'][n] + keep_f64 * diagnostics[n])
              for n in diagnostic_names),
          diagnostics_sq=collections.OrderedDict(
              (n, acc['diagnostics_sq'][n] + keep_f64 * tf.square(diagnostics[n]))
              for n in diagnostic_names),
      )

  @tff.tensorflow.computation(accumulator_type, accumulator_type)
  def merge_tf(a, b):
    return tf.nest.map_structure(tf.add, a, b)

  @tff.tensorflow.computation(accumulator_type)
  def report_tf(acc):
    return acc

  @tff.tensorflow.computation(state_type, accumulator_type)
  def finalize_tf(state, acc):
    if weighted:
      flat = [tf.math.divide_no_nan(s, acc['weight_sum']) for s in acc['value_sum']]
    else:
      flat = acc['value_sum']
    result = tf.nest.pack_sequence_as(value_specs, [
        tf.cast(tf.reshape(v, s.shape), s.dtype) for v, s in zip(flat, flat_specs)])
    clients = tf.cast(acc['clients'], tf.float64)

    def mean(total):
      return tf.math.divide_no_nan(total, clients)

    means = collections.OrderedDict(
        (n, mean(acc['diagnostics'][n])) for n in diagnostic_names)
    measurements = collections.OrderedDict(
        bits_per_parameter=mean(acc['bits_per_parameter']),
        uplink_bits=acc['uplink_bits'],
        side_info_bits=acc['side_info_bits'],
        distortion=means['squared_error'] / num_parameters,
        sparsity=mean(tf.cast(acc['zeros'], tf.float64)) / num_parameters,
    )
    for n in reported:
      variance = mean(acc['diagnostics_sq'][n]) - tf.square(means[n])
      measurements[n] = means[n]
      measurements[f'{n}_std'] = tf.sqrt(tf.maximum(variance, 0.0))
    measurements['clients'] = acc['clients']
    measurements['dropped_clients'] = acc['dropped_clients']
    new_state = compressor.update_state(state, means)
    return new_state, result, measurements

  @tff.federated_computation
  def init_fn():
    return tff.federated_eval(init_tf, tff.SERVER)

  def next_body(state, value, weight):
    params = tff.federated_broadcast(tff.federated_map(client_params_tf, state))
    if weighted:
      client_output = tff.federated_map(client_tf, (value, params, weight))
    else:
      client_output = tff.federated_map(client_tf, (value, params))
    acc = tff.federated_aggregate(client_output, zero_tf(), accumulate_tf, merge_tf, report_tf)
    new_state, result, measurements = tff.federated_map(finalize_tf, (state, acc))
    return tff.templates.MeasuredProcessOutput(
        state=new_state, result=result, measurements=measurements)

  state_at_server = tff.FederatedType(state_type, tff.SERVER)
  value_at_clients = tff.FederatedType(value_type, tff.CLIENTS)
  if weighted:
    next_fn = tff.federated_computation(
        lambda state, value, weight: next_body(state, value, weight),
        state_at_server, value_at_clients, tff.FederatedType(weight_type, tff.CLIENTS))
  else:
    next_fn = tff.federated_computation(
        lambda state, value: next_body(state, value, None), state_at_server, value_at_clients)
  return tff.templates.AggregationProcess(init_fn, next_fn)


class _WithCompressor:
  """Holds a compressor, checked against the protocol."""

  def __init__(self, compressor: compressor_lib.Compressor):
    if not isinstance(compressor, compressor_lib.Compressor):
      raise TypeError(
          f'{compressor!r} does not implement the compressor protocol'
          ' (tff_rdq.aggregators.compressor.Compressor).')
    self._compressor = compressor

  @property
  def compressor(self) -> compressor_lib.Compressor:
    return self._compressor


class CompressedMeanFactory(_WithCompressor, tff.aggregators.WeightedAggregationFactory):
  """Weighted mean of client updates sent through `compressor` (module doc)."""

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if weight_type is None:
      raise TypeError(f'{type(self).__name__} is weighted: pass a weight_type.')
    return _build_process(self._compressor, value_type, weight_type)


class CompressedSumFactory(_WithCompressor, tff.aggregators.UnweightedAggregationFactory):
  """Sum of client updates sent through `compressor` (module doc)."""

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return _build_process(self._compressor, value_type, None)
