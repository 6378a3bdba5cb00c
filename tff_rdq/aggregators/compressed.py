"""Factories for the mean and sum of client updates sent through a compressor.

A *compressor* (the protocol `tff_rdq.aggregators.compressor.Compressor`)
turns one client's update into one `tf.string` per tensor on the client
placement and back into float32 values on the server. The factories here do
the federated plumbing shared by every method of this project (ours and the
baselines), so that every method's bits are counted the same way:

- On `CLIENTS`: a client whose update holds NaN or Inf is dropped: it says
  so in its status byte and sends an empty string per tensor; otherwise
  `compressor.encode`.
- On the way to `SERVER`: `tff.federated_aggregate`, with the verification
  and decoding inside `accumulate`, so that only the client's message travels
  and each client is decoded with its own side information before the sum.
- Weighted form (`CompressedMeanFactory`, a `WeightedAggregationFactory`): the
  client compresses its own *unweighted* update; the server multiplies by the
  weight after decoding and divides by the total weight. The weight (float32)
  is counted as `compressor.WEIGHT_BITS` (32) bits of uplink side information.
- Unweighted form (`CompressedSumFactory`): the sum of the decoded updates.

The client's message (all of it counted in `uplink_bits`):

  streams    one `tf.string` per tensor, the compressor's payload (empty
             for a dropped client)
  status     `STATUS_BITS` (8): whether the client was dropped (NaN or Inf
             in its update); side information
  checksum   `CHECKSUM_BITS` (32), unless `integrity=False`: the low 32 bits
             (bytes 0-3 of the little-endian output) of `tf.fingerprint`
             (farmhash64, a core op) of one string: the int32 byte length of
             every stream (little-endian), the float32 weight (weighted form
             only), the status byte, then the streams' bytes in order. The
             lengths make moving bytes from one stream to another a
             mismatch. Side information.
  weight     `WEIGHT_BITS` (32), weighted form only; side information

Integrity: the server recomputes the checksum of what it received in
`accumulate`, before anything decoded is used. A mismatch, a dropped client
with a non-empty stream, a kept client whose streams are all empty, or a
payload that the compressor cannot decode exactly makes the message
*invalid*. With `on_corrupt='drop'` (the factories' default) that client adds
nothing to the sum, the weight, the distortions or the payload statistics,
and is counted in `corrupt_clients`; its bits still count in `uplink_bits`
(they were received). With `on_corrupt='raise'` it stops the round with an
`InvalidArgumentError` whose message starts with `CORRUPT_MESSAGE`. A round
in which no client is used (all dropped or corrupt) gives the zero update. For a
corrupted message the checksum fails to notice with probability about
2**-32 (farmhash is not a cryptographic hash: it detects accidental
corruption, not deliberate forgery); corruptions that the decoder rejects by
itself (a wrong length, an invalid code) are caught regardless.
`integrity=False` (on the factories) sends no checksum and saves its 32 bits
per client; use it only over a transport that already guarantees integrity
(for example TLS or an authenticated secure-aggregation channel), since a
corrupted payload may then decode into wrong values.

Measurements (flat, at `SERVER`, every round):
  bits_per_parameter  mean over decoded clients of (client bits / parameters)
  uplink_bits         total bits received this round: 8 x string bytes of
                      every client, + 8 status + 32 checksum (+ 32 weight in
                      the weighted form) per client, dropped ones included
                      (a compressor with `counts_bits`, e.g. our method with
                      `transport="count"`, sends a simulation stand-in and
                      states the exact bits of its real streams instead of
                      8 x the stand-in's bytes; see `counts_bits`)
  side_info_bits      the part of `uplink_bits` that is side information
  distortion          mean over decoded clients of the per-element MSE between
                      the client's update and the server's reconstruction
  relative_distortion mean over decoded clients of the client's squared
                      reconstruction error over the squared norm of its
                      update (0 for an all-zero update)
  aggregate_relative_distortion   ||sum w_i x^_i - sum w_i x_i||^2 /
                      ||sum w_i x_i||^2 over the used clients (w_i = 1 in
                      the sum form): the relative error of the aggregate
                      the model sees, where unbiased errors of different
                      clients partly cancel (0 when the sum is 0)
  sparsity            mean over decoded clients of the fraction of zero symbols
  <diagnostic>, <diagnostic>_std   mean and spread of the other diagnostics
  <payload value>, <payload value>_std   mean and spread over decoded
                      clients of the values the server read from the payload
                      (`compressor.payload_names`, e.g. step-control votes)
  clients             clients decoded and aggregated
  dropped_clients     clients whose status byte says their update held NaN
                      or Inf (nothing else: any other empty payload is corrupt)
  corrupt_clients     clients whose message was invalid (Integrity, below)

The diagnostics (`distortion` included), the update's squared norm and the
update itself (for `aggregate_relative_distortion`) travel beside the payload
as simulation measurements; they are not part of the counted bits, and a
deployment would not send them. `update_state` gets their means too, but
what the server acts on must not be one: the step controls of this project
use only the payload values and the server's own `bits_per_parameter` and
`clients`.

A message that is truncated or corrupted is dropped or stops the round
(above); with integrity on it is never decoded into values (up to the
2**-32 above).
"""

import collections
import dataclasses
import functools

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq.aggregators import compressor as compressor_lib
from tff_rdq.codecs import bitstream

CORRUPT_MESSAGE = 'A client payload is truncated or corrupted'


def overhead_bits(weighted: bool, integrity: bool = True) -> int:
  """Bits of a client's message besides its streams (module doc)."""
  return (compressor_lib.STATUS_BITS
          + (compressor_lib.CHECKSUM_BITS if integrity else 0)
          + (compressor_lib.WEIGHT_BITS if weighted else 0))


# Rows of `sum_float64`: float32 partial sums of this many elements.
_SUM_ROW = 128


def sum_float64(values: tf.Tensor) -> tf.Tensor:
  """The float64 sum of a float32 vector (static length), in one float32 pass.

  Float32 sums of rows of `_SUM_ROW` elements, then a float64 sum of those:
  within about 1e-7 relative of the exact sum of non-negative values (a plain
  float32 `reduce_sum` of 4M squares was measured 1.3e-6 off), at the cost of
  a float32 reduction (no float64 copy of the vector).
  """
  n = int(values.shape[0])
  rows = n // _SUM_ROW
  total = tf.cast(tf.reduce_sum(values[rows * _SUM_ROW:]), tf.float64)
  if rows:
    row_sums = tf.reduce_sum(tf.reshape(values[:rows * _SUM_ROW], [rows, _SUM_ROW]), axis=1)
    total += tf.reduce_sum(tf.cast(row_sums, tf.float64))
  return total


def squared_norm(flat) -> tuple[tf.Tensor, tf.Tensor]:
  """`(finite, squared_norm)` of a client's float32 vectors.

  Whether every value is finite (no NaN or Inf), and the float64 sum of
  squares (`sum_float64`), from one float32 pass. Where that sum is not
  finite (a NaN or Inf, or a float32 overflow of finite values above about
  1e19), both are recomputed exactly (`is_finite`, float64 squares).
  """
  total = tf.add_n([sum_float64(tf.square(v)) for v in flat])

  def exact():
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in flat])
    return finite, tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, tf.float64))) for v in flat])

  return tf.cond(tf.math.is_finite(total), lambda: (tf.constant(True), total), exact)


def checksum(streams, dropped, weight=None) -> tf.Tensor:
  """The int32 checksum of a client's message (module doc).

  Args:
    streams: The scalar `tf.string` per tensor.
    dropped: Scalar bool, the status.
    weight: The float32 weight (weighted form), or None (sum form).
  """
  lengths = tf.stack([tf.strings.length(s, unit='BYTE') for s in streams])
  head = [bitstream.scalar_bytes(tf.cast(lengths, tf.int32))]
  if weight is not None:
    head.append(bitstream.scalar_bytes(tf.cast(weight, tf.float32)))
  head.append(tf.reshape(tf.cast(dropped, tf.uint8), [1]))
  message = tf.strings.join([bitstream.bytes_to_string(tf.concat(head, 0))] + list(streams))
  fingerprint = tf.fingerprint(tf.reshape(message, [1]))
  return tf.bitcast(fingerprint[0, :4], tf.int32)


def seal(streams, dropped, weight=None, integrity: bool = True) -> collections.OrderedDict:
  """The client's message (module doc): `streams`, `dropped`, and `checksum`
  with integrity on (`weight`, when given, is covered by it but not added)."""
  message = collections.OrderedDict(streams=list(streams), dropped=tf.cast(dropped, tf.bool))
  if integrity:
    message['checksum'] = checksum(message['streams'], message['dropped'], weight)
  return message


def unseal(compressor, message, sizes, weighted: bool,
           integrity: bool = True) -> collections.OrderedDict:
  """The server's verification and decoding of one client's message.

  Args:
    compressor: The compressor.
    message: `OrderedDict(streams, dropped, weight, [checksum])` as received.
    sizes: The static tensor sizes.
    weighted: Whether the weight is part of the message.
    integrity: Whether the message carries a checksum.

  Returns:
    `OrderedDict(decoded, valid, decodable, dropped, stream_bits)`:
    `compressor.decode`'s result, whether the message is valid (module doc:
    the checksum matches, a dropped client sent empty streams, a kept one a
    payload that decoded exactly), whether it is valid but for the checksum
    (what the decoder alone accepts; for analysis), the status and the bits
    of the streams (int64): 8 x their total bytes, or with a compressor that
    counts its bits (`counts_bits`), `decoded['stream_bits']`. Nothing
    decoded may be used unless `valid`.
  """
  streams = list(message['streams'])
  lengths = tf.stack([tf.strings.length(s, unit='BYTE') for s in streams])
  empty = tf.reduce_all(tf.equal(lengths, 0))
  dropped = tf.cast(message['dropped'], tf.bool)
  decoded = compressor.decode(streams, sizes)
  decodable = tf.where(dropped, empty, decoded['ok'] & tf.logical_not(empty))
  valid = decodable
  if integrity:
    expected = checksum(streams, dropped, message['weight'] if weighted else None)
    valid &= tf.equal(tf.cast(message['checksum'], tf.int32), expected)
  if counts_bits(compressor):
    stream_bits = tf.where(empty, tf.constant(0, tf.int64),
                           tf.cast(decoded['stream_bits'], tf.int64))
  else:
    stream_bits = 8 * tf.cast(tf.reduce_sum(lengths), tf.int64)
  return collections.OrderedDict(
      decoded=decoded, valid=valid, decodable=decodable, dropped=dropped,
      stream_bits=stream_bits)


def counts_bits(compressor) -> bool:
  """Whether `compressor`'s streams stand for a counted number of bits.

  A compressor with a true `counts_bits` attribute (our method with
  `transport='count'`) sends a simulation stand-in instead of its bytes: its
  `decode` returns `stream_bits`, the exact bits its real streams would have,
  which are counted instead of 8 x the stand-in's bytes; the checksum's bits
  are counted as usual, but it is not computed over the stand-in.
  """
  return bool(getattr(compressor, 'counts_bits', False))


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


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What every computation of one `AggregationProcess` shares."""
  compressor: compressor_lib.Compressor
  value_type: object
  weight_type: object  # None for the sum form.
  integrity: bool
  on_corrupt: str
  channel: object

  @property
  def weighted(self) -> bool:
    return self.weight_type is not None

  @functools.cached_property
  def value_specs(self):
    return tff.types.type_to_tf_tensor_specs(self.value_type)

  @functools.cached_property
  def flat_specs(self):
    # One flattening order (tf.nest's) for sizes, client values and results.
    return tf.nest.flatten(self.value_specs)

  @functools.cached_property
  def sizes(self) -> list[int]:
    return [int(np.prod(s.shape, dtype=np.int64)) for s in self.flat_specs]

  @property
  def num_parameters(self) -> float:
    return float(sum(self.sizes))

  @property
  def message_bits(self) -> int:
    return overhead_bits(self.weighted, self.integrity)

  @property
  def checked(self) -> bool:
    # The checksum is computed and verified only over real bytes (counted either way).
    return self.integrity and not counts_bits(self.compressor)

  @property
  def diagnostic_names(self) -> list[str]:
    return list(self.compressor.diagnostic_names)

  @property
  def payload_names(self) -> list[str]:
    return list(getattr(self.compressor, 'payload_names', ()))


def _client_fn(plan: _Plan):
  """The client's TF function: `(value, params, weight) -> message + diagnostics`.

  Besides the message (module doc), the output carries the simulation values
  that are not counted: the diagnostics, the update's squared norm and the
  update itself (flat float32, for `aggregate_relative_distortion`).
  """

  def client_fn(value, params, weight):
    flat = [tf.reshape(tf.cast(v, tf.float32), [-1]) for v in tf.nest.flatten(value)]
    finite, update_norm = squared_norm(flat)

    def encode():
      return plan.compressor.encode(flat, params)

    def drop():
      zero = tf.constant(0.0, tf.float64)
      return ([tf.constant(b'') for _ in flat],
              collections.OrderedDict((k, zero) for k in plan.diagnostic_names))

    streams, diagnostics = tf.cond(finite, encode, drop)
    weight = tf.cast(weight, tf.float32)
    output = seal(streams, tf.logical_not(finite), weight if plan.weighted else None,
                  plan.checked)
    output.update(weight=weight, diagnostics=diagnostics,
                  squared_norm=tf.where(finite, update_norm, 0.0),
                  update=[tf.where(finite, v, tf.zeros_like(v)) for v in flat])
    return plan.channel(output) if plan.channel is not None else output

  return client_fn


def _zero_fn(plan: _Plan):
  """The accumulator's zero: sums over the clients of one round."""

  def zero_fn():
    f64, i64, i32 = (lambda: tf.constant(0.0, tf.float64),
                     lambda: tf.constant(0, tf.int64), lambda: tf.constant(0, tf.int32))
    return collections.OrderedDict(
        value_sum=[tf.zeros([n], tf.float32) for n in plan.sizes],
        update_sum=[tf.zeros([n], tf.float32) for n in plan.sizes],
        weight_sum=tf.constant(0.0, tf.float32),
        clients=i32(),
        dropped_clients=i32(),
        corrupt_clients=i32(),
        uplink_bits=i64(),
        side_info_bits=i64(),
        bits_per_parameter=f64(),
        relative_distortion=f64(),
        zeros=i64(),
        diagnostics=collections.OrderedDict((n, f64()) for n in plan.diagnostic_names),
        diagnostics_sq=collections.OrderedDict((n, f64()) for n in plan.diagnostic_names),
        payload=collections.OrderedDict((n, f64()) for n in plan.payload_names),
        payload_sq=collections.OrderedDict((n, f64()) for n in plan.payload_names),
    )

  return zero_fn


def _corrupt_check(plan: _Plan, valid):
  """`(used, control)`: whether to aggregate the client, and the op that
  stops the round for an invalid message (`on_corrupt='raise'`), or None."""
  if plan.on_corrupt == 'drop':
    return valid, None
  check = tf.debugging.Assert(
      valid,
      [f'{CORRUPT_MESSAGE}: its checksum or status does not match, or it could not be'
       f' decoded exactly into {len(plan.sizes)} tensors of sizes {plan.sizes}.'])
  return tf.constant(True), check


def _accumulate_fn(plan: _Plan):
  """`accumulate(acc, client)`: verifies and decodes one client, adds it.

  A client is *used* (added to the sum, the weight, the distortions and the
  payload statistics) when it is valid and kept. An invalid one is counted
  in `corrupt_clients` (or stops the round with `on_corrupt='raise'`); its
  received bits still count in `uplink_bits`.
  """
  message_bits = plan.message_bits

  def accumulate(acc, client):
    opened = unseal(plan.compressor, client, plan.sizes, plan.weighted, plan.checked)
    decoded, valid = opened['decoded'], opened['valid']
    corrupt = tf.logical_not(valid)
    valid, control = _corrupt_check(plan, valid)
    dropped = opened['dropped'] & valid
    used = valid & tf.logical_not(opened['dropped'])
    use_f64 = tf.cast(used, tf.float64)
    weight = tf.where(used, client['weight'], 0.0)
    # Every counted bit of the client (stream bits and its message's status,
    # checksum and weight bits) is added here, in one place.
    client_bits = opened['stream_bits'] + message_bits
    side_bits = tf.where(used, tf.cast(decoded['side_info_bits'], tf.int64), 0)
    payload_values = collections.OrderedDict(
        (n, tf.where(used, tf.cast(decoded['payload_values'][n], tf.float64), 0.0))
        for n in plan.payload_names)
    diagnostics = client['diagnostics']

    def weighted_sum(sums, values):
      return [s + weight * tf.where(used, v, tf.zeros_like(v)) for s, v in zip(sums, values)]

    with tf.control_dependencies([control] if control is not None else []):
      return collections.OrderedDict(
          value_sum=weighted_sum(acc['value_sum'], decoded['values']),
          update_sum=weighted_sum(acc['update_sum'], client['update']),
          weight_sum=acc['weight_sum'] + weight,
          clients=acc['clients'] + tf.cast(used, tf.int32),
          dropped_clients=acc['dropped_clients'] + tf.cast(dropped, tf.int32),
          corrupt_clients=acc['corrupt_clients'] + tf.cast(corrupt, tf.int32),
          uplink_bits=acc['uplink_bits'] + client_bits,
          side_info_bits=acc['side_info_bits'] + side_bits + message_bits,
          bits_per_parameter=acc['bits_per_parameter']
          + use_f64 * tf.cast(client_bits, tf.float64) / plan.num_parameters,
          relative_distortion=acc['relative_distortion'] + use_f64 * tf.math.divide_no_nan(
              diagnostics['squared_error'], client['squared_norm']),
          zeros=acc['zeros'] + tf.where(used, tf.cast(decoded['zeros'], tf.int64), 0),
          diagnostics=collections.OrderedDict(
              (n, acc['diagnostics'][n] + use_f64 * diagnostics[n])
              for n in plan.diagnostic_names),
          diagnostics_sq=collections.OrderedDict(
              (n, acc['diagnostics_sq'][n] + use_f64 * tf.square(diagnostics[n]))
              for n in plan.diagnostic_names),
          payload=collections.OrderedDict(
              (n, acc['payload'][n] + payload_values[n]) for n in plan.payload_names),
          payload_sq=collections.OrderedDict(
              (n, acc['payload_sq'][n] + tf.square(payload_values[n]))
              for n in plan.payload_names),
      )

  return accumulate


def aggregate_relative_distortion(value_sum, update_sum) -> tf.Tensor:
  """`||sum_i w_i x^_i - sum_i w_i x_i||^2 / ||sum_i w_i x_i||^2` (float64).

  The relative error of the aggregate the model sees, from the weighted sums
  of the reconstructions and of the true updates of the same clients (0 when
  that sum is 0).
  """
  error = tf.add_n([sum_float64(tf.square(a - b)) for a, b in zip(value_sum, update_sum)])
  norm = tf.add_n([sum_float64(tf.square(b)) for b in update_sum])
  return tf.math.divide_no_nan(error, norm)


def _mean_and_std(total, total_sq, count):
  mean = tf.math.divide_no_nan(total, count)
  variance = tf.math.divide_no_nan(total_sq, count) - tf.square(mean)
  return mean, tf.sqrt(tf.maximum(variance, 0.0))


def _measurements(plan: _Plan, acc) -> tuple[collections.OrderedDict, collections.OrderedDict]:
  """`(measurements, means)`: the round's flat measurements (module doc), and
  what `compressor.update_state` gets."""
  clients = tf.cast(acc['clients'], tf.float64)
  means = collections.OrderedDict(
      (n, tf.math.divide_no_nan(acc['diagnostics'][n], clients)) for n in plan.diagnostic_names)
  measurements = collections.OrderedDict(
      bits_per_parameter=tf.math.divide_no_nan(acc['bits_per_parameter'], clients),
      uplink_bits=acc['uplink_bits'],
      side_info_bits=acc['side_info_bits'],
      distortion=means['squared_error'] / plan.num_parameters,
      relative_distortion=tf.math.divide_no_nan(acc['relative_distortion'], clients),
      aggregate_relative_distortion=aggregate_relative_distortion(
          acc['value_sum'], acc['update_sum']),
      sparsity=tf.math.divide_no_nan(tf.cast(acc['zeros'], tf.float64), clients)
      / plan.num_parameters,
  )
  for n in plan.diagnostic_names:
    if n != 'squared_error':
      measurements[n], measurements[f'{n}_std'] = _mean_and_std(
          acc['diagnostics'][n], acc['diagnostics_sq'][n], clients)
  for n in plan.payload_names:
    means[n], std = _mean_and_std(acc['payload'][n], acc['payload_sq'][n], clients)
    measurements[n], measurements[f'{n}_std'] = means[n], std
  measurements['clients'] = acc['clients']
  measurements['dropped_clients'] = acc['dropped_clients']
  measurements['corrupt_clients'] = acc['corrupt_clients']
  # What the server measured itself, for step control.
  means['bits_per_parameter'] = measurements['bits_per_parameter']
  means['clients'] = clients
  return measurements, means


def _finalize_fn(plan: _Plan):
  """`finalize(state, acc) -> (new_state, result, measurements)` on the server."""

  def finalize(state, acc):
    if plan.weighted:
      flat = [tf.math.divide_no_nan(s, acc['weight_sum']) for s in acc['value_sum']]
    else:
      flat = acc['value_sum']
    result = tf.nest.pack_sequence_as(plan.value_specs, [
        tf.cast(tf.reshape(v, s.shape), s.dtype) for v, s in zip(flat, plan.flat_specs)])
    measurements, means = _measurements(plan, acc)
    return plan.compressor.update_state(state, means), result, measurements

  return finalize


def _build_process(plan: _Plan) -> tff.templates.AggregationProcess:
  """The `AggregationProcess`; weighted iff `plan.weighted`.

  `plan.channel`, if given, maps the client's output (its message) to what
  the server receives, on the clients, in TF: a simulated transport (tests
  use it to corrupt messages in flight, after the checksum).
  """
  compressor, weighted = plan.compressor, plan.weighted
  value_type = plan.value_type
  tensor_types(value_type)
  if 'squared_error' not in plan.diagnostic_names:
    raise ValueError(f'{compressor!r} must have a `squared_error` diagnostic.')

  init_tf = tff.tensorflow.computation(compressor.initial_state)
  state_type = init_tf.type_signature.result
  client_params_tf = tff.tensorflow.computation(compressor.client_params, state_type)
  params_type = client_params_tf.type_signature.result
  client_fn = _client_fn(plan)
  if weighted:
    client_tf = tff.tensorflow.computation(client_fn, value_type, params_type, plan.weight_type)
  else:
    client_tf = tff.tensorflow.computation(
        lambda value, params: client_fn(value, params, 1.0), value_type, params_type)
  zero_tf = tff.tensorflow.computation(_zero_fn(plan))
  accumulator_type = zero_tf.type_signature.result
  accumulate_tf = tff.tensorflow.computation(
      _accumulate_fn(plan), accumulator_type, client_tf.type_signature.result)
  merge_tf = tff.tensorflow.computation(
      lambda a, b: tf.nest.map_structure(tf.add, a, b), accumulator_type, accumulator_type)
  report_tf = tff.tensorflow.computation(lambda acc: acc, accumulator_type)
  finalize_tf = tff.tensorflow.computation(_finalize_fn(plan), state_type, accumulator_type)

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
        next_body, state_at_server, value_at_clients,
        tff.FederatedType(plan.weight_type, tff.CLIENTS))
  else:
    next_fn = tff.federated_computation(
        lambda state, value: next_body(state, value, None), state_at_server, value_at_clients)
  return tff.templates.AggregationProcess(init_fn, next_fn)


ON_CORRUPT = ('drop', 'raise')


class _WithCompressor:
  """Holds a compressor, checked against the protocol, and the message options.

  Args:
    compressor: The compressor.
    integrity: Send and verify the payload checksum (module doc). Turn it off
      only over a transport that already guarantees integrity.
    on_corrupt: What an invalid client message does (module doc): `'drop'`
      (the default) leaves that client out of the round and counts it in
      `corrupt_clients`; `'raise'` stops the round with an
      `InvalidArgumentError` starting with `CORRUPT_MESSAGE`.
    channel: A simulated transport for tests (see `_build_process`).
  """

  def __init__(self, compressor: compressor_lib.Compressor, *, integrity: bool = True,
               on_corrupt: str = 'drop', channel=None):
    if not isinstance(compressor, compressor_lib.Compressor):
      raise TypeError(
          f'{compressor!r} does not implement the compressor protocol'
          ' (tff_rdq.aggregators.compressor.Compressor).')
    if not isinstance(integrity, bool):
      raise TypeError(f'integrity must be a bool, got {integrity!r}.')
    if on_corrupt not in ON_CORRUPT:
      raise ValueError(f'on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}.')
    self._compressor = compressor
    self.integrity = integrity
    self.on_corrupt = on_corrupt
    self._channel = channel

  @property
  def compressor(self) -> compressor_lib.Compressor:
    return self._compressor

  def _process(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    return _build_process(_Plan(self._compressor, value_type, weight_type, self.integrity,
                                self.on_corrupt, self._channel))


class CompressedMeanFactory(_WithCompressor, tff.aggregators.WeightedAggregationFactory):
  """Weighted mean of client updates sent through `compressor` (module doc)."""

  def create(self, value_type, weight_type) -> tff.templates.AggregationProcess:
    if weight_type is None:
      raise TypeError(f'{type(self).__name__} is weighted: pass a weight_type.')
    return self._process(value_type, weight_type)


class CompressedSumFactory(_WithCompressor, tff.aggregators.UnweightedAggregationFactory):
  """Sum of client updates sent through `compressor` (module doc)."""

  def create(self, value_type) -> tff.templates.AggregationProcess:
    return self._process(value_type, None)
