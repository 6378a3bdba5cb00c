"""tensor_encoding's `GatherEncoder`s (TFF's `EncodedSumFactory`), measured.

`MeasuredEncodedMeanFactory(encoder_fn)` / `MeasuredEncodedSumFactory`: the
`tensor_encoding` `GatherEncoder` per tensor that `encoder_fn` returns (the
contract of `tff.aggregators.EncodedSumFactory`; it is called with the
flattened `float32` spec `[n]` of each tensor). Per round the server runs the
encoder's `get_params` (as `EncodedSumFactory` does) and broadcasts the
parameters; each client runs `encode` and sends one string per tensor:

  bytes 0..    the encoder's decode parameters that are TF values (for the
               Hadamard encoders the rotation seed, 2 x int64 = 16 bytes per
               tensor; none for uniform quantization or identity), raw
               little-endian
  then         every tensor of the encoder's encoded output, in the encoder's
               own (sorted-path) order, raw little-endian, no framing: for
               uniform quantization the bit-packed `int32` tensor
               `ceil(m * b / 28)` x 4 bytes (tensor_encoding packs 28 value
               bits into each 32-bit word, so 4 of every 32 bits sent are
               zero) and the `float32` `[min, max]` pair (8 bytes); for the
               identity encoder the `float32` values (4 bytes each).

`m` is the number of values quantized: the tensor's size `n`, or for the
Hadamard encoders the size padded to the next power of two. Shapes and dtypes
are static, so the server knows the layout; nothing else is sent. Side
information: the decode parameters and the `min_max` pair (every encoded
tensor whose name does not end in `_values`). The server parses the bytes
back into the encoded tensors and runs `decode_before_sum` then
`decode_after_sum` with `num_summands=1` for each client. Only stateless
encoders are supported.

The Hadamard seed is not in TFF's uplink: `EncodedSumFactory` draws it on the
server and keeps it there for `decode_after_sum` after the sum. Here each
client is decoded before the sum inside `tff.federated_aggregate`'s
accumulate, where server state is out of reach, so the client echoes it; the
16 bytes per tensor are counted (as side information) and are negligible
against the payload (under 0.2 % of any tensor above the default threshold of
20,000 elements, at 2 bits or more).

The decoder rejects a string of the wrong length and a reconstruction that is
not finite (a corrupted `min_max` pair, say), which stops the round like any
corrupted payload; `compressed`'s checksum (on by default) catches the rest.

`EncodedUniformFactory(bits, threshold=20000)`: `encoder_fn` is exactly that of
`tff.aggregators.EncodedSumFactory.quantize_above_threshold(bits, threshold)`
(TFF's own): `te.encoders.uniform_quantization(bits)` (min/max of the tensor,
stochastic rounding unless `stochastic=False` is passed through) for tensors
with more than `threshold` elements, `te.encoders.identity()` below. Bits per
tensor: `32 * ceil(n * b / 28) + 64` above the threshold, `32 * n` below.

`EncodedHadamardFactory(bits, threshold=20000)`: the same with
`te.encoders.hadamard_quantization(bits)` (random-sign Hadamard rotation,
then uniform quantization with stochastic rounding). Bits per tensor:
`128 + 32 * ceil(2**ceil(log2 n) * b / 28) + 64` above the threshold.
"""

import collections

import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.baselines.tff_builtin import _shared
from tff_rdq import tff_internals
from tff_rdq.codecs import bitstream

te = tff_internals.te


def _from_bytes(data: tf.Tensor, spec: tf.TensorSpec) -> tf.Tensor:
  """Inverse of `_shared.to_bytes` for a statically shaped `spec`."""
  count = spec.shape.num_elements()
  if spec.dtype.size == 1:
    flat = tf.bitcast(data, spec.dtype)
  else:
    flat = tf.bitcast(tf.reshape(data, [count, spec.dtype.size]), spec.dtype)
  return tf.reshape(flat, spec.shape)


def _num_bytes(spec: tf.TensorSpec) -> int:
  return spec.shape.num_elements() * spec.dtype.size


def _check_serializable(spec: tf.TensorSpec, what: str):
  if not spec.shape.is_fully_defined():
    raise TypeError(f'{what} has a shape that is not static: {spec}.')
  if not (spec.dtype.is_integer or spec.dtype.is_floating):
    raise TypeError(f'{what} has dtype {spec.dtype.name}, which cannot be sent as raw bytes.')


class _EncoderLayout:
  """A `GatherEncoder` for a flat `float32` tensor of `size`, and its wire layout."""

  def __init__(self, encoder_fn, size: int):
    spec = tf.TensorSpec([size], tf.float32)
    # Graph-independent Python objects: built once in a scratch graph (nothing
    # runs), then used in every graph TFF traces, as `EncodedSumFactory` does.
    with tf.Graph().as_default():
      encoder = encoder_fn(spec)
      if not isinstance(encoder, te.core.GatherEncoder):
        raise TypeError(f'encoder_fn must return a te.core.GatherEncoder, got {encoder!r}.')
      state = encoder.initial_state()
      if tf.nest.flatten(state):
        raise NotImplementedError(
            'Stateful (adaptive) tensor_encoding encoders are not supported.')
      encode_params, before_params, after_params = encoder.get_params(state)
      encoded, state_update = encoder.encode(tf.zeros([size]), encode_params)
      if tf.nest.flatten(state_update):
        raise NotImplementedError(
            'Encoders with state update tensors (adaptive ones) are not supported.')
      to_spec = tf.TensorSpec.from_tensor
      self.before_specs = tuple(to_spec(t) for t in before_params)
      self.after_specs = tuple(to_spec(t) for t in after_params)
      self.encoded_specs = collections.OrderedDict(
          (k, to_spec(t)) for k, t in encoded.items())
    for i, s in enumerate(self.before_specs + self.after_specs):
      _check_serializable(s, f'Decode parameter {i}')
    for k, s in self.encoded_specs.items():
      _check_serializable(s, f'Encoded tensor {k!r}')
    self.encoder = encoder
    self.size = size
    self.param_bytes = sum(_num_bytes(s) for s in self.before_specs + self.after_specs)
    self.encoded_bytes = sum(_num_bytes(s) for s in self.encoded_specs.values())
    self.total_bytes = self.param_bytes + self.encoded_bytes
    self.side_info_bytes = self.param_bytes + sum(
        _num_bytes(s) for k, s in self.encoded_specs.items()
        if not k.rsplit('/', 1)[-1].endswith('_values'))

  def reconstruct(self, encoded, before_params, after_params) -> tf.Tensor:
    part = self.encoder.decode_before_sum(encoded, before_params)
    decoded = self.encoder.decode_after_sum(part, after_params, 1)
    return tf.reshape(tf.cast(decoded, tf.float32), [self.size])


class TensorEncodingCompressor(compressor.Compressor):
  """A tensor_encoding `GatherEncoder` per tensor, sent as raw bytes (module doc).

  `prepare(value_type)` must be called before a process is built (the
  factories of this module do it in `create`): the server-side parameters are
  drawn per tensor, so the tensors must be known when the state is traced.
  """

  diagnostic_names = ('squared_error',)

  def __init__(self, encoder_fn, name: str = 'tensor_encoding'):
    if not callable(encoder_fn):
      raise TypeError(f'encoder_fn must be callable, got {encoder_fn!r}.')
    self._encoder_fn = encoder_fn
    self._name = name
    self._by_size = {}
    self._layouts = None

  def __repr__(self):
    return f'TensorEncodingCompressor({self._name})'

  def prepare(self, value_type):
    """Builds the per-tensor encoders for `value_type` (float tensors only)."""
    self._layouts = [self.layout(size) for size in _shared.flat_sizes(value_type)]

  def layout(self, size: int) -> _EncoderLayout:
    """The encoder and wire layout of a flat tensor of `size` elements."""
    if size not in self._by_size:
      self._by_size[size] = _EncoderLayout(self._encoder_fn, size)
    return self._by_size[size]

  def stream_bytes(self, sizes) -> list[int]:
    """The exact byte length of each tensor's string for tensors of `sizes`."""
    return [self.layout(n).total_bytes for n in sizes]

  def _prepared(self):
    if self._layouts is None:
      raise ValueError(f'{self!r}: call prepare(value_type) before building a process.')
    return self._layouts

  def initial_state(self):
    return tf.constant(0, tf.int32)  # Stateless encoders only.

  def client_params(self, state):
    del state
    params = []
    for layout in self._prepared():
      encode_params, before, after = layout.encoder.get_params(
          layout.encoder.initial_state())
      params.append((tuple(encode_params), tuple(before), tuple(after)))
    return params

  def update_state(self, state, diagnostic_means):
    del diagnostic_means
    return state

  def encode(self, flat_values, params):
    layouts = [self.layout(int(v.shape[0])) for v in flat_values]
    streams, squared_error = [], tf.constant(0.0, tf.float64)
    for values, layout, (encode_params, before, after) in zip(flat_values, layouts, params):
      encoded, _ = layout.encoder.encode(values, tuple(encode_params))
      parts = [_shared.to_bytes(p) for p in tuple(before) + tuple(after)]
      parts += [_shared.to_bytes(encoded[k]) for k in layout.encoded_specs]
      streams.append(bitstream.bytes_to_string(tf.concat(parts, 0)))
      reconstruction = layout.reconstruct(encoded, tuple(before), tuple(after))
      squared_error += _common.squared_error(values, reconstruction)
    return streams, collections.OrderedDict(squared_error=squared_error)

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros, side_bits = [], tf.constant(0, tf.int64), tf.constant(0, tf.int64)
    for stream, size in zip(streams, sizes):
      layout = self.layout(size)
      data = bitstream.string_to_bytes(stream)
      ok &= tf.equal(tf.size(data), layout.total_bytes)
      # Zero padding keeps every fixed-size read in bounds for any input.
      data = tf.concat([data, tf.zeros([layout.total_bytes], tf.uint8)], 0)
      offset, parsed = 0, []
      for spec in layout.before_specs + layout.after_specs:
        parsed.append(_from_bytes(data[offset:offset + _num_bytes(spec)], spec))
        offset += _num_bytes(spec)
      before = tuple(parsed[:len(layout.before_specs)])
      after = tuple(parsed[len(layout.before_specs):])
      encoded = collections.OrderedDict()
      for key, spec in layout.encoded_specs.items():
        encoded[key] = _from_bytes(data[offset:offset + _num_bytes(spec)], spec)
        offset += _num_bytes(spec)
      reconstruction = layout.reconstruct(encoded, before, after)
      # A corrupted min/max (or value) decodes into NaN or Inf: corrupt.
      ok &= tf.reduce_all(tf.math.is_finite(reconstruction))
      values.append(reconstruction)
      zeros += _shared.reconstruction_zeros(reconstruction)
      side_bits += 8 * layout.side_info_bytes
    return collections.OrderedDict(values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


def _check_threshold(threshold):
  return validation.check_number('threshold', threshold, integer=True, low=0)


def uniform_encoder_fn(bits: int, threshold: int = 20000, **kwargs):
  """TFF's own `quantize_above_threshold` encoder function (see module doc)."""
  bits, threshold = _shared.check_bits(bits), _check_threshold(threshold)
  return tff_internals.quantize_above_threshold_encoder_fn(bits, threshold, **kwargs)


def hadamard_encoder_fn(bits: int, threshold: int = 20000):
  """`te.encoders.hadamard_quantization(bits)` above `threshold`, identity below."""
  bits, threshold = _shared.check_bits(bits), _check_threshold(threshold)

  def encoder_fn(value_spec):
    if value_spec.shape.num_elements() > threshold:
      return te.encoders.as_gather_encoder(te.encoders.hadamard_quantization(bits), value_spec)
    return te.encoders.as_gather_encoder(te.encoders.identity(), value_spec)

  return encoder_fn


class MeasuredEncodedMeanFactory(_shared.PreparingMeanFactory):
  """Weighted mean through per-tensor `GatherEncoder`s from `encoder_fn`.

  `integrity=False` drops the message checksum (`compressed`'s module doc).
  """

  def __init__(self, encoder_fn, name: str = 'tensor_encoding', *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    super().__init__(TensorEncodingCompressor(encoder_fn, name),
                     integrity=integrity, on_corrupt=on_corrupt)


class MeasuredEncodedSumFactory(_shared.PreparingSumFactory):
  """Sum through per-tensor `GatherEncoder`s from `encoder_fn` (`integrity` as above)."""

  def __init__(self, encoder_fn, name: str = 'tensor_encoding', *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    super().__init__(TensorEncodingCompressor(encoder_fn, name),
                     integrity=integrity, on_corrupt=on_corrupt)


class EncodedUniformFactory(MeasuredEncodedMeanFactory):
  """TFF's `quantize_above_threshold` uniform quantization, measured (module doc)."""

  def __init__(self, bits: int = 8, threshold: int = 20000, *, integrity: bool = True,
               on_corrupt: str = 'drop', **kwargs):
    """Args: `bits` (1..16), `threshold`, `integrity` (the message checksum),
    `on_corrupt` (`compressed`'s module doc) and TFF's `**kwargs` (`stochastic`)."""
    super().__init__(uniform_encoder_fn(bits, threshold, **kwargs),
                     f'uniform_quantization({bits}) above {threshold}',
                     integrity=integrity, on_corrupt=on_corrupt)
    self.bits, self.threshold = bits, threshold


class EncodedHadamardFactory(MeasuredEncodedMeanFactory):
  """tensor_encoding's Hadamard quantization above a threshold, measured."""

  def __init__(self, bits: int = 8, threshold: int = 20000, *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    super().__init__(hadamard_encoder_fn(bits, threshold),
                     f'hadamard_quantization({bits}) above {threshold}',
                     integrity=integrity, on_corrupt=on_corrupt)
    self.bits, self.threshold = bits, threshold

