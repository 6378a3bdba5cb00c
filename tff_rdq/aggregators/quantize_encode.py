"""Factories for the mean and sum of quantized, entropy-coded client updates.

This is the method of this project. Each client quantizes every tensor of its
update with a step size (optionally normalized per tensor; see
`tff_rdq.quantizers.uniform`), codes the integers with a lossless codec
(run-length Elias-gamma by default; see `tff_rdq.codecs`) and sends one
`tf.string` per tensor. The server decodes each client inside
`tff.federated_aggregate`'s accumulate and dequantizes it with that client's
own step before summing (`tff_rdq.aggregators.compressed` does the federated
plumbing and the measurements).

Payload of one tensor (all counted as uplink bits):

  bytes 0-3   the tensor's effective step size, float32 little-endian
  bytes 4-7   (dithered rounding only) the client's dither seed, int32
              little-endian; the dither of tensor `i` uses seed `[seed, i]`
  then        (tensor 0 only) the step control's fields, if it has any
              (`step_control`'s module doc: a uint8 vote, or int32 byte
              differences of the other candidates)
  then        the codec's bytes of the tensor's integers, flattened row-major

Side information: the step, seed and step-control bytes plus the codec's
header bits. `compressed` adds the client's status byte, the checksum over
all streams (unless `integrity=False`) and, in the weighted form, its weight.

Seeds: the seed of stochastic and dithered rounding is
`compressor.client_seed(update, nonce)`, with the round counter of the
server state as the per-round nonce broadcast with the step: fresh noise every
round even for the same update, reproducible for a fixed configuration. Only
dithered rounding sends it (the server needs it to subtract the dither).

`QuantizeEncodeFactory` is the weighted mean (a drop-in `model_aggregator` of
`tff.learning.algorithms.build_weighted_fed_avg`); `QuantizeEncodeSumFactory`
the sum (for example inside `tff.aggregators.UnweightedMeanFactory`). Both
compose with TFF's `clipping_factory` and `zeroing_factory` as inner factories.

Step size: `step_size=s` quantizes with the fixed step `s` (state
`OrderedDict(step_size=float32, round=int64)`); `step_control=` takes a control from
`tff_rdq.aggregators.step_control` instead: `Fixed`, `Schedule` (a function of
the round), `Lagrangian` (each client minimizes rate + lambda * distortion
over a grid of candidate steps), `GlobalVote` (one step per round, re-centred
on the clients' votes) or `BitBudget` (steered to a mean bits-per-parameter
target). That module's doc says exactly what each computes; the state is the
control's.

Besides the common measurements of `compressed`, they report `step_size` and
`step_size_std` (the clients' un-normalized step sizes), `objective` (with a
Lagrange multiplier) and the step control's payload values (`vote_offset`,
`candidate_rate_delta_k`), which the server reads from the payload.
"""

import collections

import tensorflow as tf

from tff_rdq import codecs
from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor as compressor_lib
from tff_rdq.aggregators import step_control as step_control_lib
from tff_rdq.codecs import bitstream
from tff_rdq.quantizers import uniform

_STEP_BYTES = 4
_SEED_BYTES = 4


class QuantizeEncodeCompressor(compressor_lib.Compressor):
  """Quantize with a step size, then code the integers (see module doc)."""

  def __init__(self, step_size=None, *, rounding='uniform', normalization='none',
               codec='elias_gamma', step_control=None, extra_bits=0):
    """Initializes the compressor.

    Args:
      step_size: A fixed step (the same as `step_control=Fixed(step_size)`).
      rounding: `uniform`, `stochastic` or `dithered`.
      normalization: `none`, `mean_abs`, `rms` or `max_abs`.
      codec: A name from `tff_rdq.codecs.CODEC_NAMES` or a codec object.
      step_control: A control from `tff_rdq.aggregators.step_control`, instead
        of `step_size`.
      extra_bits: Bits of the client's message outside the streams
        (`compressed.overhead_bits`: status, checksum, weight), part of the
        rate `R` that the client's step search and `objective` use.
    """
    self.step_control = step_control_lib.as_step_control(step_size, step_control)
    self.step_size = self.step_control.initial_step
    self.rounding = uniform.check_rounding(rounding)
    self.normalization = uniform.check_normalization(normalization)
    self.codec = codecs.get_codec(codec)
    self.extra_bits = validation.check_int('extra_bits', extra_bits, low=0)
    names = ['squared_error', 'step_size']
    if self.step_control.lam is not None:
      names.append('objective')
    self.diagnostic_names = tuple(names)
    self.payload_names = tuple(self.step_control.payload_names)

  def __repr__(self):
    return (f'QuantizeEncodeCompressor(step_control={self.step_control!r}, rounding='
            f'{self.rounding!r}, normalization={self.normalization!r}, '
            f'codec={self.codec.name!r})')

  @property
  def header_size(self) -> int:
    """Bytes of the step and seed before the rest of each tensor's payload."""
    return _STEP_BYTES + (_SEED_BYTES if self.rounding == 'dithered' else 0)

  def header_bytes(self, index: int) -> int:
    """Bytes before the codec's bytes in tensor `index`'s payload."""
    return self.header_size + (self.step_control.payload_bytes if index == 0 else 0)

  def initial_state(self):
    return self.step_control.initial_state()

  def client_params(self, state):
    return collections.OrderedDict(step=self.step_control.client_step(state),
                                   nonce=self.step_control.nonce(state))

  @staticmethod
  def _step_and_nonce(params):
    """`client_params`' step and nonce; a bare step means nonce None (eager use)."""
    if isinstance(params, dict):
      return params['step'], params['nonce']
    return params, None

  def update_state(self, state, diagnostic_means):
    return self.step_control.update_state(state, diagnostic_means)

  def payload(self, integers):
    """The codec's part of one tensor's payload (`uint8` bytes)."""
    return self.codec.encode_to_bytes(integers)

  def stream(self, tensor_step, seed, payload, fields=None):
    """One tensor's `tf.string`: the header (module doc), the step control's
    `fields` (tensor 0, where the control has any), then `payload`."""
    parts = [bitstream.scalar_bytes(tensor_step)]
    if self.rounding == 'dithered':
      parts.append(bitstream.scalar_bytes(seed))
    if fields is not None:
      parts.append(self.step_control.pack_payload(fields))
    parts.append(payload)
    return bitstream.bytes_to_string(tf.concat(parts, 0))

  def rate(self, flat_values, streams, payloads):
    """The client's bits per parameter `R` (float64), for `objective`."""
    del payloads
    num_parameters = sum(int(v.shape[0]) for v in flat_values)
    num_bytes = tf.add_n([tf.strings.length(s, unit='BYTE') for s in streams])
    return (tf.cast(8 * tf.cast(num_bytes, tf.int64) + self.extra_bits, tf.float64)
            / max(num_parameters, 1))

  def squared_error(self, flat_values, tensors):
    """The float64 sum of squared reconstruction errors over all tensors.

    `tensors` holds `(tensor_step, tensor_seed, integers)` per tensor.
    """
    squared_error = tf.constant(0.0, tf.float64)
    for values, (tensor_step, tensor_seed, integers) in zip(flat_values, tensors):
      reconstruction = uniform.dequantize(
          integers, tensor_step, self.rounding, tensor_seed)
      squared_error += tf.reduce_sum(
          tf.square(tf.cast(reconstruction - values, tf.float64)))
    return squared_error

  def _finish(self, flat_values, streams, payloads, squared_error, step, extra):
    """The diagnostics of the streams sent, `extra` (the control's) appended."""
    num_parameters = sum(int(v.shape[0]) for v in flat_values)
    diagnostics = collections.OrderedDict(
        squared_error=squared_error, step_size=tf.cast(step, tf.float64))
    if self.step_control.lam is not None:
      rate = self.rate(flat_values, streams, payloads)
      diagnostics['objective'] = (
          rate + self.step_control.lam * squared_error / max(num_parameters, 1))
    diagnostics.update(extra)
    return streams, diagnostics

  def quantize(self, flat_values, step, nonce=None):
    """The client's quantization at the un-normalized step `step` (no search).

    `nonce` is the round's nonce mixed into the client seed (None: none).

    Returns:
      `(seed, tensors)`: the client seed and, per tensor, `(tensor_step,
      tensor_seed, integers)`: its effective float32 step, its `[seed, i]`
      seed and its `int32` integers, exactly what `encode` codes.
    """
    seed = compressor_lib.client_seed(flat_values, nonce)
    tensors = []
    for i, values in enumerate(flat_values):
      tensor_step = uniform.normalized_step(values, step, self.normalization)
      tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
      tensors.append((tensor_step, tensor_seed,
                      uniform.quantize(values, tensor_step, self.rounding, tensor_seed)))
    return seed, tensors

  def encode(self, flat_values, params):
    step, nonce = self._step_and_nonce(params)
    if len(self.step_control.multipliers) > 1:
      return self._encode_search(flat_values, step, nonce)
    seed, tensors = self.quantize(flat_values, step, nonce)
    squared_error = self.squared_error(flat_values, tensors)
    payloads = [self.payload(integers) for _, _, integers in tensors]
    streams = [self.stream(tensor_step, seed, payload)
               for (tensor_step, _, _), payload in zip(tensors, payloads)]
    return self._finish(flat_values, streams, payloads, squared_error, step,
                        collections.OrderedDict())

  def _encode_search(self, flat_values, step, nonce=None):
    """Quantizes with every candidate step, lets the control pick one, sends it.

    A static loop over the K candidates (vectorized over elements). Rates come
    from the codec's closed form where it has one (`codecs.has_closed_form`),
    or from encoding every candidate.
    """
    control = self.step_control
    num_candidates = len(control.multipliers)
    steps = step_control_lib.tf_candidate_steps(step, control.multipliers)
    closed_form = codecs.has_closed_form(self.codec)
    num_parameters = sum(int(v.shape[0]) for v in flat_values)
    seed = compressor_lib.client_seed(flat_values, nonce)
    # The message bits at each candidate: the overhead and the control's
    # fields, then every tensor's header and codec bytes.
    bits = tf.fill([num_candidates], tf.constant(
        self.extra_bits + 8 * control.payload_bytes, tf.int64))
    squared_errors = tf.zeros([num_candidates], tf.float64)
    per_tensor = []
    for i, values in enumerate(flat_values):
      tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
      tensor_steps, integers, errors = [], [], []
      for k in range(num_candidates):
        tensor_step = uniform.normalized_step(values, steps[k], self.normalization)
        q = uniform.quantize(values, tensor_step, self.rounding, tensor_seed)
        reconstruction = uniform.dequantize(q, tensor_step, self.rounding, tensor_seed)
        errors.append(tf.reduce_sum(tf.square(tf.cast(reconstruction - values, tf.float64))))
        tensor_steps.append(tensor_step)
        integers.append(q)
      integers = tf.stack(integers)
      if closed_form:
        codec_bits = self.codec.coded_bits(integers)
        encoded = None
      else:
        encoded = [bitstream.bytes_to_string(self.codec.encode_to_bytes(integers[k]))
                   for k in range(num_candidates)]
        codec_bits = 8 * tf.cast(
            tf.stack([tf.strings.length(e, unit='BYTE') for e in encoded]), tf.int64)
      bits += codec_bits + 8 * self.header_size
      squared_errors += tf.stack(errors)
      per_tensor.append((tf.stack(tensor_steps), integers, encoded))
    rates = tf.cast(bits, tf.float64) / max(num_parameters, 1)
    mse = squared_errors / max(num_parameters, 1)
    chosen, fields = control.client_decision(tf.cast(steps, tf.float64), rates, mse, bits)
    streams = []
    for i, (tensor_steps, integers, encoded) in enumerate(per_tensor):
      tensor_step = tf.gather(tensor_steps, chosen)
      if encoded is None:
        codec_bytes = self.codec.encode_to_bytes(tf.gather(integers, chosen))
      else:
        codec_bytes = bitstream.string_to_bytes(tf.gather(tf.stack(encoded), chosen))
      streams.append(self.stream(tensor_step, seed, codec_bytes,
                                 fields if i == 0 and control.payload_fields else None))
    return self._finish(flat_values, streams, None, tf.gather(squared_errors, chosen),
                        tf.gather(steps, chosen), collections.OrderedDict())

  def read_payload(self, stream, size: int, index: int):
    """Parses the payload of tensor `index` (module doc); never reads out of bounds.

    Returns:
      `OrderedDict(integers, step, tensor_seed, fields, ok, side_info_bits)`:
      the decoded `int32` vector of `size` integers, the float32 effective
      step (1.0 where the sent one is not finite and positive), the
      `[seed, index]` dither seed, the `uint8` bytes of the step control's
      fields (tensor 0; empty otherwise), whether the payload decoded exactly
      and the int64 side information bits (header, fields and codec tables).
    """
    header = self.header_bytes(index)
    data = bitstream.string_to_bytes(stream)
    # Zero padding keeps the fixed-size header reads in bounds for any input.
    padded = tf.concat([data, tf.zeros([header + _SEED_BYTES], tf.uint8)], 0)
    step = tf.bitcast(padded[:_STEP_BYTES], tf.float32)
    seed = tf.bitcast(padded[_STEP_BYTES:_STEP_BYTES + _SEED_BYTES], tf.int32)
    fields = padded[self.header_size:header]
    body = data[header:]
    integers, decoded_ok = self.codec.decode_from_bytes(body, size)
    step_ok = tf.math.is_finite(step) & (step > 0)
    return collections.OrderedDict(
        integers=integers,
        step=tf.where(step_ok, step, 1.0),
        tensor_seed=tf.stack([seed, tf.constant(index, tf.int32)]),
        fields=fields,
        ok=decoded_ok & (tf.size(data) > header) & step_ok,
        side_info_bits=8 * header + tf.cast(self.codec.side_info_bits(body, size), tf.int64))

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    side_bits = tf.constant(0, tf.int64)
    payload_values = collections.OrderedDict()
    for i, (stream, size) in enumerate(zip(streams, sizes)):
      payload = self.read_payload(stream, size, i)
      ok &= payload['ok']
      if i == 0:
        payload_values, fields_ok = self.step_control.read_payload(
            payload['fields'], sum(sizes))
        ok &= fields_ok
      values.append(uniform.dequantize(
          payload['integers'], payload['step'], self.rounding, payload['tensor_seed']))
      zeros += tf.reduce_sum(tf.cast(tf.equal(payload['integers'], 0), tf.int64))
      side_bits += payload['side_info_bits']
    return collections.OrderedDict(
        values=values, ok=ok, side_info_bits=side_bits, zeros=zeros,
        payload_values=payload_values)


class QuantizeEncodeFactory(compressed.CompressedMeanFactory):
  """Weighted mean of quantized, coded client updates (see module doc)."""

  def __init__(self, step_size: float | None = None, *, rounding: str = 'uniform',
               normalization: str = 'none', codec='elias_gamma', step_control=None,
               integrity: bool = True):
    """Initializes the factory.

    Args:
      step_size: The quantization step (multiplied by the per-tensor statistic
        when `normalization` is not `none`), fixed for all rounds.
      rounding: `uniform`, `stochastic` or `dithered`.
      normalization: `none`, `mean_abs`, `rms` or `max_abs`.
      codec: A name from `tff_rdq.codecs.CODEC_NAMES` or a codec object.
      step_control: Instead of `step_size`, a control from
        `tff_rdq.aggregators.step_control` (`Fixed`, `Schedule`, `Lagrangian`,
        `GlobalVote`, `BitBudget`).
      integrity: Send and verify a 32-bit checksum of each client's message
        (`compressed`'s module doc). Turn it off only over a transport that
        already guarantees integrity.
    """
    super().__init__(QuantizeEncodeCompressor(
        step_size, rounding=rounding, normalization=normalization, codec=codec,
        step_control=step_control,
        extra_bits=compressed.overhead_bits(weighted=True, integrity=integrity)),
        integrity=integrity)


class QuantizeEncodeSumFactory(compressed.CompressedSumFactory):
  """Sum of quantized, coded client updates (see module doc)."""

  def __init__(self, step_size: float | None = None, *, rounding: str = 'uniform',
               normalization: str = 'none', codec='elias_gamma', step_control=None,
               integrity: bool = True):
    """Initializes the factory; arguments as for `QuantizeEncodeFactory`."""
    super().__init__(QuantizeEncodeCompressor(
        step_size, rounding=rounding, normalization=normalization, codec=codec,
        step_control=step_control,
        extra_bits=compressed.overhead_bits(weighted=False, integrity=integrity)),
        integrity=integrity)
