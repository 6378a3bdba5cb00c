"""Factories for the mean and sum of quantized, entropy-coded client updates.

Each client quantizes every tensor of its update with a step size (optionally
normalized per tensor), codes the integers to bytes with a lossless codec
(run-length Elias-gamma by default) and sends one `tf.string` per tensor (see
`payload`). The server decodes every client inside `tff.federated_aggregate`'s
`accumulate`, dequantizes it with that client's own step, and sums.

`QuantizeEncodeFactory` (a `tff.aggregators.WeightedAggregationFactory`)
computes the weighted mean: the client codes its own *unweighted* update and
the server applies the weight after decoding, so a step means the same thing
for every client. The client's weight (float32) travels beside the payload and
is counted as 32 bits of side information. `QuantizeEncodeSumFactory` (an
`UnweightedAggregationFactory`) computes the sum, e.g. as the inner factory of
`tff.aggregators.UnweightedMeanFactory`.

Both compose with TFF's `clipping_factory` / `zeroing_factory` as inner
factories. The process state is `OrderedDict(step_size=float32)`.

Measurements (flat, at `SERVER`, every round):
  bits_per_parameter  mean over decoded clients of (client bits / parameters)
  uplink_bits         total bits received from all clients this round:
                      8 x payload bytes (+ 32 per weight, weighted form)
  side_info_bits      the part of `uplink_bits` that is not coded integers:
                      steps, seeds, codec headers and tables, weights
  distortion          mean over decoded clients of the per-element MSE between
                      the client's update and the server's reconstruction
  sparsity            fraction of zero integers among the decoded clients
  step_size           mean of the clients' (un-normalized) step sizes
  step_size_std       their standard deviation across clients
  clients             clients decoded and aggregated
  dropped_clients     clients dropped because their update held NaN or Inf

`distortion` is computed on each client from its own reconstruction (the
server reconstructs the same values bit for bit) and travels beside the
payload as a simulation diagnostic; it is not part of the counted bits.

A stream that is truncated or corrupted stops the round with an
`InvalidArgumentError` naming the problem; it is never decoded into values.
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import codecs
from tff_rdq.aggregators import payload
from tff_rdq.quantizers import uniform

_WEIGHT_BITS = 32
CORRUPT_MESSAGE = 'A client payload is truncated or corrupted'


def _check_step_size(step_size) -> float:
  if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
    raise TypeError(f'step_size must be a positive number, got {step_size!r}.')
  if not np.isfinite(step_size) or step_size <= 0:
    raise ValueError(f'step_size must be positive and finite, got {step_size!r}.')
  return float(step_size)


def _tensor_types(value_type) -> list[tff.TensorType]:
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
          f'Quantize-encode aggregation needs floating-point values; tensor {i}'
          f' of {value_type} has dtype {np.dtype(tensor_type.dtype).name}.'
      )
    if not tff.types.is_shape_fully_defined(tensor_type.shape):
      raise TypeError(
          f'Tensor {i} of {value_type} has a shape that is not fully defined:'
          f' {tensor_type.shape}.'
      )
  return flat


class _QuantizeEncodeBase:
  """Configuration and process construction shared by both factories."""

  def __init__(
      self,
      step_size: float,
      *,
      rounding: str = 'uniform',
      normalization: str = 'none',
      codec='elias_gamma',
  ):
    """Initializes the factory.

    Args:
      step_size: The quantization step (multiplied by the per-tensor statistic
        when `normalization` is not `none`).
      rounding: `uniform`, `stochastic` or `dithered` (see
        `tff_rdq.quantizers.uniform`).
      normalization: `none`, `mean_abs`, `rms` or `max_abs`.
      codec: A codec name from `tff_rdq.codecs.CODEC_NAMES` or a codec object.
    """
    self._step_size = _check_step_size(step_size)
    uniform.check_rounding(rounding)
    uniform.check_normalization(normalization)
    self._rounding = rounding
    self._normalization = normalization
    self._codec = codecs.get_codec(codec)

  def _create(self, value_type, weight_type=None):
    flat_types = _tensor_types(value_type)
    sizes = [int(np.prod(t.shape, dtype=np.int64)) for t in flat_types]
    num_parameters = float(sum(sizes))
    weighted = weight_type is not None
    rounding, normalization, codec = self._rounding, self._normalization, self._codec
    initial_step = self._step_size

    @tff.tensorflow.computation
    def init_tf():
      return collections.OrderedDict(step_size=tf.constant(initial_step, tf.float32))

    state_type = init_tf.type_signature.result

    @tff.tensorflow.computation(state_type)
    def get_step(state):
      return state['step_size']

    def client_fn(value, step, weight):
      flat = [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in tf.nest.flatten(value)]
      finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in flat])

      def encode():
        steps = [uniform.normalized_step(v, step, normalization) for v in flat]
        streams, squared_error = payload.encode_update(
            flat, steps, rounding=rounding, codec=codec)
        return streams, squared_error / num_parameters

      def drop():
        return [tf.constant(b'') for _ in flat], tf.constant(0.0, tf.float64)

      streams, distortion = tf.cond(finite, encode, drop)
      return collections.OrderedDict(
          streams=streams,
          weight=tf.cast(weight, tf.float32),
          distortion=distortion,
          step_size=tf.cast(step, tf.float64),
      )

    if weighted:
      client_tf = tff.tensorflow.computation(client_fn, value_type, tf.float32, weight_type)
    else:
      client_tf = tff.tensorflow.computation(
          lambda value, step: client_fn(value, step, 1.0), value_type, tf.float32)

    def accumulator(value_sum, weight_sum, **scalars):
      return collections.OrderedDict(value_sum=value_sum, weight_sum=weight_sum, **scalars)

    @tff.tensorflow.computation
    def zero_tf():
      return accumulator(
          value_sum=[tf.zeros([n], tf.float32) for n in sizes],
          weight_sum=tf.constant(0.0, tf.float32),
          clients=tf.constant(0, tf.int32),
          dropped_clients=tf.constant(0, tf.int32),
          uplink_bits=tf.constant(0, tf.int64),
          side_info_bits=tf.constant(0, tf.int64),
          bits_per_parameter=tf.constant(0.0, tf.float64),
          distortion=tf.constant(0.0, tf.float64),
          zeros=tf.constant(0, tf.int64),
          step_size=tf.constant(0.0, tf.float64),
          step_size_sq=tf.constant(0.0, tf.float64),
      )

    accumulator_type = zero_tf.type_signature.result
    client_output_type = client_tf.type_signature.result
    weight_bits = _WEIGHT_BITS if weighted else 0

    @tff.tensorflow.computation(accumulator_type, client_output_type)
    def accumulate_tf(acc, client):
      decoded = payload.decode_update(
          client['streams'], sizes, rounding=rounding, codec=codec)
      check = tf.debugging.Assert(
          decoded['ok'],
          [f'{CORRUPT_MESSAGE}: it could not be decoded exactly into'
           f' {len(sizes)} tensors of sizes {sizes}.'])
      kept = tf.logical_not(decoded['dropped'])
      keep_f32 = tf.cast(kept, tf.float32)
      keep_f64 = tf.cast(kept, tf.float64)
      weight = client['weight'] * keep_f32
      client_bits = decoded['bits'] + weight_bits
      with tf.control_dependencies([check]):
        return accumulator(
            value_sum=[s + weight * v for s, v in zip(acc['value_sum'], decoded['values'])],
            weight_sum=acc['weight_sum'] + weight,
            clients=acc['clients'] + tf.cast(kept, tf.int32),
            dropped_clients=acc['dropped_clients'] + tf.cast(decoded['dropped'], tf.int32),
            uplink_bits=acc['uplink_bits'] + client_bits,
            side_info_bits=acc['side_info_bits'] + decoded['side_info_bits'] + weight_bits,
            bits_per_parameter=acc['bits_per_parameter']
            + keep_f64 * tf.cast(client_bits, tf.float64) / num_parameters,
            distortion=acc['distortion'] + keep_f64 * client['distortion'],
            zeros=acc['zeros'] + decoded['zeros'],
            step_size=acc['step_size'] + keep_f64 * client['step_size'],
            step_size_sq=acc['step_size_sq'] + keep_f64 * tf.square(client['step_size']),
        )

    @tff.tensorflow.computation(accumulator_type, accumulator_type)
    def merge_tf(a, b):
      return tf.nest.map_structure(tf.add, a, b)

    @tff.tensorflow.computation(accumulator_type)
    def report_tf(acc):
      return acc

    value_specs = tff.types.type_to_tf_tensor_specs(value_type)
    flat_specs = tf.nest.flatten(value_specs)

    @tff.tensorflow.computation(accumulator_type)
    def finalize_tf(acc):
      if weighted:
        flat = [tf.math.divide_no_nan(s, acc['weight_sum']) for s in acc['value_sum']]
      else:
        flat = acc['value_sum']
      result = tf.nest.pack_sequence_as(value_specs, [
          tf.cast(tf.reshape(v, s.shape), s.dtype) for v, s in zip(flat, flat_specs)])
      clients = tf.cast(acc['clients'], tf.float64)

      def mean(total):
        return tf.math.divide_no_nan(total, clients)

      step_mean = mean(acc['step_size'])
      step_var = tf.maximum(mean(acc['step_size_sq']) - tf.square(step_mean), 0.0)
      measurements = collections.OrderedDict(
          bits_per_parameter=mean(acc['bits_per_parameter']),
          uplink_bits=acc['uplink_bits'],
          side_info_bits=acc['side_info_bits'],
          distortion=mean(acc['distortion']),
          sparsity=mean(tf.cast(acc['zeros'], tf.float64) / num_parameters),
          step_size=step_mean,
          step_size_std=tf.sqrt(step_var),
          clients=acc['clients'],
          dropped_clients=acc['dropped_clients'],
      )
      return result, measurements

    @tff.federated_computation
    def init_fn():
      return tff.federated_eval(init_tf, tff.SERVER)

    def next_body(state, value, weight):
      step = tff.federated_broadcast(tff.federated_map(get_step, state))
      if weighted:
        client_output = tff.federated_map(client_tf, (value, step, weight))
      else:
        client_output = tff.federated_map(client_tf, (value, step))
      acc = tff.federated_aggregate(
          client_output, zero_tf(), accumulate_tf, merge_tf, report_tf)
      result, measurements = tff.federated_map(finalize_tf, acc)
      return tff.templates.MeasuredProcessOutput(
          state=state, result=result, measurements=measurements)

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


class QuantizeEncodeFactory(_QuantizeEncodeBase, tff.aggregators.WeightedAggregationFactory):
  """Weighted mean of quantized and coded client updates (see module doc)."""

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if weight_type is None:
      raise TypeError('QuantizeEncodeFactory is weighted: pass a weight_type.')
    return self._create(value_type, weight_type)


class QuantizeEncodeSumFactory(_QuantizeEncodeBase, tff.aggregators.UnweightedAggregationFactory):
  """Sum of quantized and coded client updates (see module doc)."""

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return self._create(value_type)
