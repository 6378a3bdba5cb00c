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

Transport: `transport="bytes"` (the default) sends the payload above, and
every counted bit is a byte that was sent. `transport="count"` (Elias-gamma
only) is a **simulation shortcut with no wire format**, for sweeps: the
client does not encode; it computes its integers' exact coded length in
closed form (`codecs.EliasGammaCodec.coded_bits`, the step control's), and
sends a stand-in: the same header and step-control bytes, the codec's bits
and side-information bits (two int64) and the integers themselves
(`tf.io.serialize_tensor`). The server reconstructs from those integers and
counts the stated bits instead of the stand-in's bytes (`compressed`'s
`counts_bits`; the status, checksum and weight bits are counted as usual,
but the checksum is not computed over the stand-in). Every reported figure
(`uplink_bits`, `side_info_bits`, `bits_per_parameter`, `distortion`,
`sparsity`, the step control's values) and the result are identical to
`bytes`; nothing is actually coded, so use `bytes` for anything that claims
a deployable format.

Besides the common measurements of `compressed`, they report `step_size` and
`step_size_std` (the clients' un-normalized step sizes), `objective` (with a
Lagrange multiplier) and the step control's payload values (`vote_offset`,
`candidate_rate_delta_k`), which the server reads from the payload.

Other lossless codecs, same integers: with `compare_codecs=('run_length_rans',)`
each client also encodes its integers with those codecs (for real, with
`encode_to_bytes`/`encode_many`) and reports `bits_per_parameter_<codec>`:
the bits its whole message would have had with that codec (headers,
step-control fields and message overhead included), over the parameters;
the measurement is its mean over the used clients, like
`bits_per_parameter`. A simulation diagnostic: those bytes are not sent
and not counted in `uplink_bits`, and they cost the encoding time.
"""

import collections

import tensorflow as tf

from tff_rdq import codecs
from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor as compressor_lib
from tff_rdq.aggregators import step_control as step_control_lib
from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma
from tff_rdq.quantizers import uniform

_STEP_BYTES = 4
_SEED_BYTES = 4
# `transport="count"`: the codec's bits and side-information bits, two int64.
_COUNT_BYTES = 16
# Integers below this magnitude convert to float32 exactly.
_EXACT_FLOAT32_INT = 2**24
TRANSPORTS = ('bytes', 'count')


def check_transport(transport: str, codec) -> str:
  """`transport`, checked against `TRANSPORTS` and the codec (module doc)."""
  validation.check_choice('transport', transport, TRANSPORTS)
  if transport == 'count' and not (
      isinstance(codec, codecs.EliasGammaCodec) and codecs.has_closed_form(codec)):
    raise ValueError(
        "transport='count' needs a codec with a closed-form coded length "
        f"(codecs.has_closed_form: elias_gamma); codec {codec.name!r} has none. "
        "Use transport='bytes' with this codec.")
  return transport


def check_compare_codecs(names, codec) -> tuple:
  """The codec objects of `compare_codecs`: known names, none the sent codec's."""
  if isinstance(names, str):
    names = (names,)
  compared = tuple(codecs.get_codec(n) for n in names)
  for other in compared:
    if other.name == codec.name:
      raise ValueError(f'compare_codecs: {other.name!r} is the codec that is sent; '
                       'name other codecs.')
  if len({c.name for c in compared}) != len(compared):
    raise ValueError(f'compare_codecs names a codec twice: {tuple(names)!r}.')
  return compared


class QuantizeEncodeCompressor(compressor_lib.Compressor):
  """Quantize with a step size, then code the integers (see module doc)."""

  def __init__(self, step_size=None, *, rounding='uniform', normalization='none',
               codec='elias_gamma', step_control=None, extra_bits=0, transport='bytes',
               compare_codecs=()):
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
      transport: `bytes` (real payloads) or `count` (closed-form bit counts
        and a simulation stand-in, Elias-gamma only; module doc).
      compare_codecs: Names of other codecs whose bits on the same integers
        each client reports as `bits_per_parameter_<codec>` (module doc).
    """
    self.step_control = step_control_lib.as_step_control(step_size, step_control)
    self.step_size = self.step_control.initial_step
    self.rounding = uniform.check_rounding(rounding)
    self.normalization = uniform.check_normalization(normalization)
    self.codec = codecs.get_codec(codec)
    self.extra_bits = validation.check_int('extra_bits', extra_bits, low=0)
    self.transport = check_transport(transport, self.codec)
    # `compressed` counts the bits that `decode` states (`stream_bits`).
    self.counts_bits = self.transport == 'count'
    self.compare_codecs = check_compare_codecs(compare_codecs, self.codec)
    names = ['squared_error', 'step_size']
    if self.step_control.lam is not None:
      names.append('objective')
    names += [f'bits_per_parameter_{c.name}' for c in self.compare_codecs]
    self.diagnostic_names = tuple(names)
    self.payload_names = tuple(self.step_control.payload_names)

  def __repr__(self):
    return (f'QuantizeEncodeCompressor(step_control={self.step_control!r}, rounding='
            f'{self.rounding!r}, normalization={self.normalization!r}, '
            f'codec={self.codec.name!r}, transport={self.transport!r})')

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

  def payloads(self, integers) -> list:
    """The codec's part of each tensor's payload: its `uint8` bytes, or with
    `transport="count"` `OrderedDict(bits, side_bits, integers)` (`count_bits`).

    The codec encodes all tensors at once where it can (`encode_many`).
    """
    if self.counts_bits:
      payloads = []
      for q in integers:
        bits, side_bits = self.count_bits(q)
        payloads.append(collections.OrderedDict(bits=bits, side_bits=side_bits, integers=q))
      return payloads
    encode_many = getattr(self.codec, 'encode_many', None)
    if encode_many is not None:
      return encode_many(integers)
    return [self.codec.encode_to_bytes(q) for q in integers]

  def count_bits(self, integers):
    """`(bits, side_bits)` of the Elias-gamma bytes of `integers` `[..., n]`, in closed form.

    `bits == 8 * len(encode_to_bytes(v))` and `side_bits == side_info_bits`
    of those bytes, for every vector `v` on the last axis (int64 `[...]`):
    `elias_gamma.coded_size`.
    """
    return elias_gamma.coded_size(integers, self.codec.block_size)

  def stream(self, tensor_step, seed, payload, fields=None):
    """One tensor's `tf.string`: the header (module doc), the step control's
    `fields` (tensor 0, where the control has any), then `payload`."""
    parts = [bitstream.scalar_bytes(tensor_step)]
    if self.rounding == 'dithered':
      parts.append(bitstream.scalar_bytes(seed))
    if fields is not None:
      parts.append(self.step_control.pack_payload(fields))
    if self.counts_bits:  # The stand-in (module doc).
      parts.append(bitstream.scalar_bytes(tf.stack([payload['bits'], payload['side_bits']])))
      return tf.strings.join([bitstream.bytes_to_string(tf.concat(parts, 0)),
                              tf.io.serialize_tensor(payload['integers'])])
    parts.append(payload)
    return bitstream.bytes_to_string(tf.concat(parts, 0))

  def rate(self, flat_values, streams, payloads):
    """The client's bits per parameter `R` (float64), for `objective`."""
    num_parameters = sum(int(v.shape[0]) for v in flat_values)
    if self.counts_bits:
      bits = tf.add_n([8 * self.header_bytes(i) + p['bits'] for i, p in enumerate(payloads)])
    else:
      num_bytes = tf.add_n([tf.strings.length(s, unit='BYTE') for s in streams])
      bits = 8 * tf.cast(num_bytes, tf.int64)
    return tf.cast(bits + self.extra_bits, tf.float64) / max(num_parameters, 1)

  def squared_error(self, flat_values, tensors):
    """The float64 sum of squared reconstruction errors over all tensors.

    `tensors` holds `(tensor_step, tensor_seed, integers)` per tensor.
    """
    squared_error = tf.constant(0.0, tf.float64)
    for values, (tensor_step, tensor_seed, integers) in zip(flat_values, tensors):
      reconstruction = self.reconstruct(integers, tensor_step, tensor_seed)
      squared_error += compressed.sum_float64(
          tf.math.squared_difference(reconstruction, values))
    return squared_error

  def reconstruct(self, integers, tensor_step, tensor_seed):
    """The server's float32 reconstruction, `uniform.dequantize`'s bit for bit.

    Without dither and for `|integers| < 2**24`, the float32 product
    `float32(integers) * step` is exactly `dequantize`'s float64 product
    rounded to float32 (float64 holds the product of two 24-bit significands
    exactly, so both round the exact product once); it costs a float32 pass
    instead of float64 ones. Otherwise `uniform.dequantize` itself.
    """
    def exact():
      return uniform.dequantize(integers, tensor_step, self.rounding, tensor_seed)

    if self.rounding == 'dithered':
      return exact()
    small = tf.reduce_max(tf.abs(integers)) < _EXACT_FLOAT32_INT
    return tf.cond(small, lambda: tf.cast(integers, tf.float32) * tensor_step, exact)

  def compared_bits(self, integers) -> collections.OrderedDict:
    """`bits_per_parameter_<codec>` (float64) of each of `compare_codecs`:
    the client's message bits had that codec coded `integers` (module doc)."""
    num_parameters = max(sum(int(q.shape[0]) for q in integers), 1)
    fixed = self.extra_bits + 8 * sum(self.header_bytes(i) for i in range(len(integers)))
    bits = collections.OrderedDict()
    for codec in self.compare_codecs:
      encode_many = getattr(codec, 'encode_many', None)
      coded = (encode_many(integers) if encode_many is not None
               else [codec.encode_to_bytes(q) for q in integers])
      total = tf.add_n([tf.cast(tf.size(b), tf.int64) for b in coded])
      bits[f'bits_per_parameter_{codec.name}'] = (
          tf.cast(8 * total + fixed, tf.float64) / num_parameters)
    return bits

  def _finish(self, flat_values, streams, payloads, squared_error, step, integers):
    """The diagnostics of the streams sent (`integers`: what they code)."""
    num_parameters = sum(int(v.shape[0]) for v in flat_values)
    diagnostics = collections.OrderedDict(
        squared_error=squared_error, step_size=tf.cast(step, tf.float64))
    if self.step_control.lam is not None:
      rate = self.rate(flat_values, streams, payloads)
      diagnostics['objective'] = (
          rate + self.step_control.lam * squared_error / max(num_parameters, 1))
    diagnostics.update(self.compared_bits(integers))
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
    payloads = self.payloads([integers for _, _, integers in tensors])
    streams = [self.stream(tensor_step, seed, payload)
               for (tensor_step, _, _), payload in zip(tensors, payloads)]
    return self._finish(flat_values, streams, payloads, squared_error, step,
                        [integers for _, _, integers in tensors])

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
        reconstruction = self.reconstruct(q, tensor_step, tensor_seed)
        errors.append(compressed.sum_float64(tf.math.squared_difference(reconstruction, values)))
        tensor_steps.append(tensor_step)
        integers.append(q)
      integers = tf.stack(integers)
      side_bits = None
      if self.counts_bits:
        codec_bits, side_bits = self.count_bits(integers)
        encoded = None
      elif closed_form:
        codec_bits = self.codec.coded_bits(integers)
        encoded = None
      else:
        encoded = [bitstream.bytes_to_string(self.codec.encode_to_bytes(integers[k]))
                   for k in range(num_candidates)]
        codec_bits = 8 * tf.cast(
            tf.stack([tf.strings.length(e, unit='BYTE') for e in encoded]), tf.int64)
      bits += codec_bits + 8 * self.header_size
      squared_errors += tf.stack(errors)
      per_tensor.append((tf.stack(tensor_steps), integers, encoded, codec_bits, side_bits))
    rates = tf.cast(bits, tf.float64) / max(num_parameters, 1)
    mse = squared_errors / max(num_parameters, 1)
    chosen, fields = control.client_decision(tf.cast(steps, tf.float64), rates, mse, bits)
    streams, payloads, chosen_integers = [], [], []
    for i, (tensor_steps, integers, encoded, codec_bits, side_bits) in enumerate(per_tensor):
      tensor_step = tf.gather(tensor_steps, chosen)
      if self.compare_codecs:
        chosen_integers.append(tf.gather(integers, chosen))
      if self.counts_bits:
        payload = collections.OrderedDict(
            bits=tf.gather(codec_bits, chosen), side_bits=tf.gather(side_bits, chosen),
            integers=tf.gather(integers, chosen))
      elif encoded is None:
        payload = self.codec.encode_to_bytes(tf.gather(integers, chosen))
      else:
        payload = bitstream.string_to_bytes(tf.gather(tf.stack(encoded), chosen))
      payloads.append(payload)
      streams.append(self.stream(tensor_step, seed, payload,
                                 fields if i == 0 and control.payload_fields else None))
    return self._finish(flat_values, streams, payloads, tf.gather(squared_errors, chosen),
                        tf.gather(steps, chosen), chosen_integers)

  def read_payloads(self, streams, sizes) -> list:
    """Parses every tensor's payload (module doc); never reads out of bounds.

    The codec decodes all tensors at once where it can (`decode_many`: one
    decoding loop for every tensor's blocks).

    Returns:
      Per tensor, `OrderedDict(integers, step, tensor_seed, fields, ok,
      side_info_bits)`: the decoded `int32` vector of its `size` integers, the
      float32 effective step (1.0 where the sent one is not finite and
      positive), the `[seed, index]` dither seed, the `uint8` bytes of the
      step control's fields (tensor 0; empty otherwise), whether the payload
      decoded exactly and the int64 side information bits (header, fields and
      codec tables).
    """
    if self.counts_bits:
      return [self._read_stand_in(stream, size, i)
              for i, (stream, size) in enumerate(zip(streams, sizes))]
    heads, bodies = [], []
    for index, stream in enumerate(streams):
      header = self.header_bytes(index)
      data = bitstream.string_to_bytes(stream)
      # Zero padding keeps the fixed-size header reads in bounds for any input.
      padded = tf.concat([data, tf.zeros([header + _SEED_BYTES], tf.uint8)], 0)
      heads.append((header, data, padded))
      bodies.append(data[header:])
    decode_many = getattr(self.codec, 'decode_many', None)
    decoded = (decode_many(bodies, sizes) if decode_many is not None else
               [self.codec.decode_from_bytes(b, n) for b, n in zip(bodies, sizes)])
    payloads = []
    for index, ((header, data, padded), body, size, (integers, decoded_ok)) in enumerate(
        zip(heads, bodies, sizes, decoded)):
      step = tf.bitcast(padded[:_STEP_BYTES], tf.float32)
      seed = tf.bitcast(padded[_STEP_BYTES:_STEP_BYTES + _SEED_BYTES], tf.int32)
      step_ok = tf.math.is_finite(step) & (step > 0)
      payloads.append(collections.OrderedDict(
          integers=integers,
          step=tf.where(step_ok, step, 1.0),
          tensor_seed=tf.stack([seed, tf.constant(index, tf.int32)]),
          fields=padded[self.header_size:header],
          ok=decoded_ok & (tf.size(data) > header) & step_ok,
          side_info_bits=8 * header + tf.cast(self.codec.side_info_bits(body, size), tf.int64)))
    return payloads

  def _read_stand_in(self, stream, size: int, index: int):
    """`read_payloads` of one `transport="count"` stand-in (module doc), plus
    `stream_bits`: the bits that the real payload would have (0 if empty).

    A simulation: a stand-in whose integers do not parse stops the round with
    TensorFlow's parsing error rather than `ok=False`.
    """
    header = self.header_bytes(index)
    head_size = header + _COUNT_BYTES
    length = tf.strings.length(stream, unit='BYTE')
    head = bitstream.string_to_bytes(tf.strings.substr(stream, 0, tf.minimum(length, head_size)))
    padded = tf.concat([head, tf.zeros([head_size + _SEED_BYTES], tf.uint8)], 0)
    step = tf.bitcast(padded[:_STEP_BYTES], tf.float32)
    seed = tf.bitcast(padded[_STEP_BYTES:_STEP_BYTES + _SEED_BYTES], tf.int32)
    counts = tf.bitcast(tf.reshape(padded[header:head_size], [2, 8]), tf.int64)
    has_body = length > head_size
    integers = tf.cond(
        has_body,
        lambda: tf.reshape(tf.io.parse_tensor(
            tf.strings.substr(stream, head_size, length - head_size), tf.int32), [size]),
        lambda: tf.zeros([size], tf.int32))
    step_ok = tf.math.is_finite(step) & (step > 0)
    return collections.OrderedDict(
        integers=integers,
        step=tf.where(step_ok, step, 1.0),
        tensor_seed=tf.stack([seed, tf.constant(index, tf.int32)]),
        fields=padded[self.header_size:header],
        ok=has_body & step_ok,
        side_info_bits=8 * header + counts[1],
        stream_bits=tf.where(length > 0, 8 * header + counts[0], 0))

  def decode(self, streams, sizes):
    """The protocol's decode; with `transport="count"` also `stream_bits`."""
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    side_bits = stream_bits = tf.constant(0, tf.int64)
    payload_values = collections.OrderedDict()
    for i, payload in enumerate(self.read_payloads(streams, sizes)):
      ok &= payload['ok']
      if i == 0:
        payload_values, fields_ok = self.step_control.read_payload(
            payload['fields'], sum(sizes))
        ok &= fields_ok
      values.append(self.reconstruct(
          payload['integers'], payload['step'], payload['tensor_seed']))
      # An int32 count (a tensor has fewer than 2**31 elements) halves the pass.
      zeros += tf.cast(tf.reduce_sum(tf.cast(tf.equal(payload['integers'], 0), tf.int32)),
                       tf.int64)
      side_bits += payload['side_info_bits']
      if self.counts_bits:
        stream_bits += payload['stream_bits']
    decoded = collections.OrderedDict(
        values=values, ok=ok, side_info_bits=side_bits, zeros=zeros,
        payload_values=payload_values)
    if self.counts_bits:
      decoded['stream_bits'] = stream_bits
    return decoded


class QuantizeEncodeFactory(compressed.CompressedMeanFactory):
  """Weighted mean of quantized, coded client updates (see module doc)."""

  def __init__(self, step_size: float | None = None, *, rounding: str = 'uniform',
               normalization: str = 'none', codec='elias_gamma', step_control=None,
               integrity: bool = True, on_corrupt: str = 'drop', transport: str = 'bytes',
               compare_codecs=()):
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
      on_corrupt: `'drop'` (the default) leaves a client whose message is
        invalid out of the round and counts it in `corrupt_clients`; `'raise'`
        stops the round (`compressed`'s module doc).
      transport: `bytes` (the default: real payloads) or `count` (Elias-gamma
        only: exact closed-form bit counts, a simulation shortcut with no wire
        format; module doc). Every reported figure is the same.
      compare_codecs: Names of other codecs whose bits on the same integers
        each client reports as `bits_per_parameter_<codec>`, a diagnostic
        (module doc), e.g. `('run_length_rans',)`.
    """
    super().__init__(QuantizeEncodeCompressor(
        step_size, rounding=rounding, normalization=normalization, codec=codec,
        step_control=step_control,
        extra_bits=compressed.overhead_bits(weighted=True, integrity=integrity),
        transport=transport, compare_codecs=compare_codecs),
        integrity=integrity, on_corrupt=on_corrupt)


class QuantizeEncodeSumFactory(compressed.CompressedSumFactory):
  """Sum of quantized, coded client updates (see module doc)."""

  def __init__(self, step_size: float | None = None, *, rounding: str = 'uniform',
               normalization: str = 'none', codec='elias_gamma', step_control=None,
               integrity: bool = True, on_corrupt: str = 'drop', transport: str = 'bytes',
               compare_codecs=()):
    """Initializes the factory; arguments as for `QuantizeEncodeFactory`."""
    super().__init__(QuantizeEncodeCompressor(
        step_size, rounding=rounding, normalization=normalization, codec=codec,
        step_control=step_control,
        extra_bits=compressed.overhead_bits(weighted=False, integrity=integrity),
        transport=transport, compare_codecs=compare_codecs),
        integrity=integrity, on_corrupt=on_corrupt)
