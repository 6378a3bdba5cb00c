"""TFF's own compression aggregators, measured like every method of `tff_rdq`.

None of TensorFlow Federated's compression aggregators reports a bitrate.
This module runs each of them through `tff_rdq.aggregators.compressed` as a
*compressor* (see that module's docstring for the protocol and for the
measurements), so that each one reports `bits_per_parameter`, `uplink_bits`,
`side_info_bits`, `distortion`, `sparsity`, `clients` and `dropped_clients`
computed the same way as for our own method: the bits are 8 x the byte length
of the `tf.string` per tensor that each client actually sends, and the server
decodes each client from those bytes alone before summing. The numbers (the
quantized values and the reconstruction) are produced by TFF's and
tensor_encoding's own code; this module only serializes what they output.

Wrappers, and exactly what their bits count
-------------------------------------------

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

`HadamardDiscretizationFactory(bits, ...)`: TFF's discretization behind a
Hadamard rotation, as TFF composes them for secure aggregation (its
`DistributedDpSumFactory` in `aggregators/distributed_dp.py`, without noise,
per tensor; `DiscretizationFactory` and `ModularClippingSumFactory` are not
exported in `tff.aggregators` 0.87, so they are imported from their modules):
`tff.aggregators.HadamardTransformFactory` (flatten, zero-pad to `2**ceil(log2 n)`, random
signs from a seeded global seed in the state, normalized fast Walsh-Hadamard
transform; TFF's own functions) -> `DiscretizationFactory` (scale and round,
stochastically by default; TFF's own `_discretize_struct`) -> the modular
clipping into `[-2**(b-1), 2**(b-1))` then `[0, 2**b)` that
`DistributedDpSumFactory` wraps around `SecureSumFactory(2**b - 1)` (TFF's own
`modular_clip_by_value`). TFF never forms bytes (it sums the integers with a
secure sum); what each client would send to a `b`-bit secure sum is its
integers modulo `2**b`, `b` bits each. So the string per tensor is:

  bytes 0-15   the rotation seed of the tensor (2 x int64; the same echo of
               server state as above, counted as side information)
  then         the `2**ceil(log2 n)` integers mod `2**b`, `b` bits each,
               packed LSB-first, zero padded to a whole byte

Bits per tensor: `128 + 8 * ceil(2**ceil(log2 n) * b / 8)`: fixed-width,
not entropy coded (that is what the secure sum transports; cryptographic
overhead of the secure-aggregation protocol is not counted). The server maps
the integers back to `[-2**(b-1), 2**(b-1))`, undiscretizes (TFF's
`_undiscretize_struct`) and inverts the rotation. The scale is TFF DDP's
`_heuristic_scale_factor` without noise for the tensor's padded dimension (k
standard deviations of a sum of `num_clients` rotated vectors of L2 norm
`l2_clip` fit into `b` bits), or a fixed `scale_factor` as in
`DiscretizationFactory`. Values outside the `b`-bit range wrap around, as in
TFF; the extra diagnostic `wrapped_fraction` reports how often. Because each
client is decoded on its own, a round of many clients never wraps in the sum
here, where TFF's `b`-bit secure sum would (choose `num_clients` as the
clients per round to get TFF's scale for that setting).

`measured_compression_aggregator()`: `tff.learning.compression_aggregator()`
rebuilt with TFF's own adaptive zeroing and clipping factories around
`EncodedUniformFactory(8, 20000)` instead of `MeanFactory(EncodedSumFactory
.quantize_above_threshold(8, 20000))`; its results equal the real one's (the
tests check this). Its bits are those of `EncodedUniformFactory` plus the 32
bits of the weight. Zeroing and clipping run on the clients before encoding
and cost no uplink bits here (their count and norm estimates are
measurements, sent through TFF's own sums as in the original).

Weights: `CompressedMeanFactory` has each client compress its *unweighted*
update and the server multiply by the weight after decoding (and counts the
`float32` weight as 32 bits of side information). TFF's `MeanFactory`
instead encodes `weight * value`. Min/max uniform quantization (with or
without rotation) is scale-equivariant, so the two agree (exactly for
power-of-two weights, to float rounding otherwise); discretization with a
fixed scale is not, so it agrees with TFF's only for equal weights.

Sparsity for these methods is the fraction of the server's reconstruction of
a client's update that is exactly zero (for our method this is the fraction
of zero symbols; min/max quantization and rotated methods rarely produce
exact zeros).

Measurements are flat: `flatten_measurements` lifts the zeroing and clipping
factories' `zeroing_norm`, `zeroed_count`, `clipping_norm` and
`clipped_count` to the top level beside the measurements of `compressed`.

`TFF_BUILTINS` maps a name to a function `(**knobs) -> weighted factory`:

  tff_uniform                 `bits` (1..16, default 8), `threshold` (20000),
                              `stochastic` (True)
  tff_hadamard                `bits` (1..16, default 8), `threshold` (20000)
  tff_discretization          `bits` (1..22, default 8), `l2_clip` (1.0),
                              `num_clients` (1), `modclip_prob` (1e-6),
                              `scale_factor` (None: the heuristic),
                              `stochastic` (True), `clip` (True: TFF's fixed
                              L2 `clipping_factory(l2_clip)` first, as in DDP),
                              `seed` (None: TFF's timestamp seed)
  tff_compression_aggregator  `bits` (8; TFF's is 8), `zeroing` (True),
                              `clipping` (True), `stochastic` (True)
"""

import collections
import math
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.aggregators import discretization as tff_discretization
from tensorflow_federated.python.aggregators import distributed_dp as tff_ddp
from tensorflow_federated.python.aggregators import hadamard as tff_hadamard
from tensorflow_federated.python.aggregators import modular_clipping as tff_modular_clipping
from tensorflow_federated.python.aggregators import rotation as tff_rotation
from tensorflow_federated.python.learning import model_update_aggregator as tff_model_update_aggregator
from tensorflow_model_optimization.python.core.internal import tensor_encoding as te

from tff_rdq.aggregators import compressed
from tff_rdq.baselines import _common
from tff_rdq.codecs import bitstream

_SEED_BYTES = 16  # A TFF / tensor_encoding seed: int64 [2].


def _flat_sizes(value_type) -> list[int]:
  """Tensor sizes of `value_type` in `compressed`'s order (checked floats)."""
  compressed.tensor_types(value_type)
  specs = tf.nest.flatten(tff.types.type_to_tf_tensor_specs(value_type))
  return [int(np.prod(s.shape, dtype=np.int64)) for s in specs]


def _to_bytes(tensor: tf.Tensor) -> tf.Tensor:
  """The raw (host order: little-endian) bytes of a numeric tensor, `uint8`."""
  return tf.reshape(tf.bitcast(tensor, tf.uint8), [-1])


def _from_bytes(data: tf.Tensor, spec: tf.TensorSpec) -> tf.Tensor:
  """Inverse of `_to_bytes` for a statically shaped `spec`."""
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


def _reconstruction_zeros(values: tf.Tensor) -> tf.Tensor:
  return tf.reduce_sum(tf.cast(tf.equal(values, 0.0), tf.int64))


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


class TensorEncodingCompressor:
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
    self._layouts = [self.layout(size) for size in _flat_sizes(value_type)]

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
      parts = [_to_bytes(p) for p in tuple(before) + tuple(after)]
      parts += [_to_bytes(encoded[k]) for k in layout.encoded_specs]
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
      values.append(reconstruction)
      zeros += _reconstruction_zeros(reconstruction)
      side_bits += 8 * layout.side_info_bytes
    return collections.OrderedDict(values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


def _check_bits(bits, high=16):
  return _common.check_number('bits', bits, integer=True, low=1, high=high)


def _check_threshold(threshold):
  return _common.check_number('threshold', threshold, integer=True, low=0)


def uniform_encoder_fn(bits: int, threshold: int = 20000, **kwargs):
  """TFF's own `quantize_above_threshold` encoder function (see module doc)."""
  bits, threshold = _check_bits(bits), _check_threshold(threshold)
  # pylint: disable-next=protected-access
  return tff.aggregators.EncodedSumFactory.quantize_above_threshold(
      quantization_bits=bits, threshold=threshold, **kwargs)._encoder_fn


def hadamard_encoder_fn(bits: int, threshold: int = 20000):
  """`te.encoders.hadamard_quantization(bits)` above `threshold`, identity below."""
  bits, threshold = _check_bits(bits), _check_threshold(threshold)

  def encoder_fn(value_spec):
    if value_spec.shape.num_elements() > threshold:
      return te.encoders.as_gather_encoder(te.encoders.hadamard_quantization(bits), value_spec)
    return te.encoders.as_gather_encoder(te.encoders.identity(), value_spec)

  return encoder_fn


class _PreparingMeanFactory(compressed.CompressedMeanFactory):
  """`CompressedMeanFactory` whose compressor is prepared for the value type."""

  def create(self, value_type, weight_type):
    self.compressor.prepare(value_type)
    return super().create(value_type, weight_type)


class _PreparingSumFactory(compressed.CompressedSumFactory):
  """`CompressedSumFactory` whose compressor is prepared for the value type."""

  def create(self, value_type):
    self.compressor.prepare(value_type)
    return super().create(value_type)


class MeasuredEncodedMeanFactory(_PreparingMeanFactory):
  """Weighted mean through per-tensor `GatherEncoder`s from `encoder_fn`."""

  def __init__(self, encoder_fn, name: str = 'tensor_encoding'):
    super().__init__(TensorEncodingCompressor(encoder_fn, name))


class MeasuredEncodedSumFactory(_PreparingSumFactory):
  """Sum through per-tensor `GatherEncoder`s from `encoder_fn`."""

  def __init__(self, encoder_fn, name: str = 'tensor_encoding'):
    super().__init__(TensorEncodingCompressor(encoder_fn, name))


class EncodedUniformFactory(MeasuredEncodedMeanFactory):
  """TFF's `quantize_above_threshold` uniform quantization, measured (module doc)."""

  def __init__(self, bits: int = 8, threshold: int = 20000, **kwargs):
    """Args: `bits` (1..16), `threshold`, and TFF's `**kwargs` (`stochastic`)."""
    super().__init__(uniform_encoder_fn(bits, threshold, **kwargs),
                     f'uniform_quantization({bits}) above {threshold}')
    self.bits, self.threshold = bits, threshold


class EncodedHadamardFactory(MeasuredEncodedMeanFactory):
  """tensor_encoding's Hadamard quantization above a threshold, measured."""

  def __init__(self, bits: int = 8, threshold: int = 20000):
    super().__init__(hadamard_encoder_fn(bits, threshold),
                     f'hadamard_quantization({bits}) above {threshold}')
    self.bits, self.threshold = bits, threshold


# --------------------------------------------------------------------------
# Discretization behind a Hadamard rotation.


def _padded_size(size: int) -> int:
  return 1 if size <= 1 else 2 ** math.ceil(math.log2(size))


class DiscretizationCompressor:
  """TFF's Hadamard rotation + discretization + b-bit modular clip (module doc).

  State: `OrderedDict(global_seed=int64[2])`, TFF's rotation seed: a
  timestamp and a counter advanced by the number of tensors each round (as
  `HadamardTransformFactory` does); `seed` fixes the first element instead.
  """

  diagnostic_names = ('squared_error', 'wrapped_fraction')

  def __init__(self, bits: int = 8, *, scale_factor=None, l2_clip: float = 1.0,
               num_clients: int = 1, modclip_prob: float = 1e-6,
               stochastic: bool = True, seed=None):
    self.bits = _check_bits(bits, high=22)
    if scale_factor is not None:
      scale_factor = _common.check_number('scale_factor', scale_factor, low=0, low_open=True)
    self.scale_factor = scale_factor
    self.l2_clip = _common.check_number('l2_clip', l2_clip, low=0, low_open=True)
    self.num_clients = _common.check_number('num_clients', num_clients, integer=True, low=1)
    self.modclip_prob = _common.check_number(
        'modclip_prob', modclip_prob, low=0, high=1, low_open=True, high_open=True)
    if not isinstance(stochastic, bool):
      raise TypeError(f'stochastic must be a bool, got {stochastic!r}.')
    self.stochastic = stochastic
    if seed is not None:
      seed = _common.check_number('seed', seed, integer=True)
    self.seed = seed
    self.k_stddevs = float(tff_ddp._clip_prob_to_num_stddevs(self.modclip_prob))  # pylint: disable=protected-access
    if scale_factor is None and 2 ** (2 * self.bits) <= self.num_clients * self.k_stddevs**2:
      raise ValueError(
          f'bits={self.bits} is too small for num_clients={self.num_clients} at '
          f'modclip_prob={self.modclip_prob} (TFF DDP\'s condition 2**(2b) > n k**2 with '
          f'k={self.k_stddevs:.3f}); pass a scale_factor or more bits.')
    self._scales = {}
    self._num_tensors = None

  def __repr__(self):
    scale = 'heuristic' if self.scale_factor is None else self.scale_factor
    return (f'DiscretizationCompressor(bits={self.bits}, scale={scale}, '
            f'l2_clip={self.l2_clip}, num_clients={self.num_clients}, '
            f'stochastic={self.stochastic})')

  def scale(self, size: int) -> float:
    """The discretization scale of a tensor of `size` elements (Python float)."""
    if self.scale_factor is not None:
      return self.scale_factor
    dim = _padded_size(size)
    if dim not in self._scales:
      # TFF DDP's own heuristic (no noise), eagerly; capped like DDP.
      # pylint: disable-next=protected-access
      scale = tff_ddp._heuristic_scale_factor(
          0.0, self.l2_clip, self.bits, self.num_clients, dim, self.k_stddevs)
      self._scales[dim] = float(min(float(np.asarray(scale)), tff_ddp.MAX_SCALE_FACTOR))
    return self._scales[dim]

  def prepare(self, value_type):
    sizes = _flat_sizes(value_type)
    self._num_tensors = len(sizes)
    for size in sizes:
      self.scale(size)

  def stream_bytes(self, sizes) -> list[int]:
    return [_SEED_BYTES + _common.packed_bytes(_padded_size(n), self.bits) for n in sizes]

  def initial_state(self):
    if self.seed is None:
      seed = tff_rotation._init_global_seed()  # pylint: disable=protected-access
    else:
      seed = tf.constant([self.seed, 0], tf.int64)
    return collections.OrderedDict(global_seed=seed)

  def client_params(self, state):
    return state['global_seed']

  def update_state(self, state, diagnostic_means):
    del diagnostic_means
    if self._num_tensors is None:
      raise ValueError(f'{self!r}: call prepare(value_type) before building a process.')
    seed = state['global_seed']
    return collections.OrderedDict(
        global_seed=tf.stack([seed[0], seed[1] + self._num_tensors]))

  def _tensor_seeds(self, global_seed, count):
    # TFF's per-tensor seeds: [timestamp, counter + i] (num_repeats = 1).
    return tff_rotation._unique_seeds_for_struct(list(range(count)), global_seed, stride=1)  # pylint: disable=protected-access

  def _dequantize(self, residues, scale, seed, size):
    """Integers in [0, 2**b) -> the client's reconstruction (TFF's server path)."""
    half = 2 ** (self.bits - 1)
    signed = tff_modular_clipping.modular_clip_by_value(residues, -half, half)
    rotated = tff_discretization._undiscretize_struct(signed, scale, tf.float32)  # pylint: disable=protected-access
    x = tf.squeeze(tff_hadamard.fast_walsh_hadamard_transform(tf.expand_dims(rotated, 0)), 0)
    x *= tff_rotation.sample_rademacher(tf.shape(x), x.dtype, seed)
    return x[:size]

  def encode(self, flat_values, global_seed):
    self._num_tensors = len(flat_values)
    seeds = self._tensor_seeds(global_seed, len(flat_values))
    half = 2 ** (self.bits - 1)
    streams, squared_error = [], tf.constant(0.0, tf.float64)
    wrapped, total = tf.constant(0, tf.int64), 0
    for values, seed in zip(flat_values, seeds):
      size = int(values.shape[0])
      scale = self.scale(size)
      # HadamardTransformFactory's client transform (num_repeats = 1).
      x = tff_rotation._pad_zeros_pow2(values)  # pylint: disable=protected-access
      x *= tff_rotation.sample_rademacher(tf.shape(x), x.dtype, seed)
      x = tf.squeeze(tff_hadamard.fast_walsh_hadamard_transform(tf.expand_dims(x, 0)), 0)
      # DiscretizationFactory's client step (no prior norm bound, beta = 0).
      integers = tff_discretization._discretize_struct(  # pylint: disable=protected-access
          x, tf.constant(scale, tf.float32), self.stochastic, 0.0, tf.constant(0.0, tf.float32))
      wrapped += tf.reduce_sum(tf.cast((integers < -half) | (integers >= half), tf.int64))
      total += _padded_size(size)
      # DistributedDpSumFactory's two client-side modular clips.
      residues = tff_modular_clipping.modular_clip_by_value(integers, -half, half)
      residues = tff_modular_clipping.modular_clip_by_value(residues, 0, 2 * half)
      payload = _common.pack_fields(residues, self.bits)
      streams.append(bitstream.bytes_to_string(
          tf.concat([_to_bytes(seed), payload], 0)))
      reconstruction = self._dequantize(residues, scale, seed, size)
      squared_error += _common.squared_error(values, reconstruction)
    return streams, collections.OrderedDict(
        squared_error=squared_error,
        wrapped_fraction=tf.cast(wrapped, tf.float64) / float(total))

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros, side_bits = [], tf.constant(0, tf.int64), tf.constant(0, tf.int64)
    for stream, size in zip(streams, sizes):
      data = bitstream.string_to_bytes(stream)
      header, body = _common.split_header(data, _SEED_BYTES)
      seed = tf.bitcast(tf.reshape(header, [2, 8]), tf.int64)
      residues, body_ok = _common.unpack_fields(body, _padded_size(size), self.bits)
      ok &= body_ok & (tf.size(data) > _SEED_BYTES)
      reconstruction = self._dequantize(
          tf.cast(residues, tf.int32), self.scale(size), seed, size)
      values.append(reconstruction)
      zeros += _reconstruction_zeros(reconstruction)
      side_bits += 8 * _SEED_BYTES
    return collections.OrderedDict(values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


class HadamardDiscretizationFactory(_PreparingMeanFactory):
  """TFF's rotation + discretization for a b-bit secure sum, measured (module doc)."""

  def __init__(self, bits: int = 8, **kwargs):
    """Args: `bits` and the keyword arguments of `DiscretizationCompressor`."""
    super().__init__(DiscretizationCompressor(bits, **kwargs))


# --------------------------------------------------------------------------
# Flat measurements and the compression aggregator.


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
                                    debug_measurements_fn=None, **kwargs):
  """`tff.learning.compression_aggregator`, measured (see module doc).

  Args:
    zeroing: TFF's default adaptive zeroing, as in the original.
    clipping: TFF's default adaptive L2 clipping, as in the original.
    weighted: A weighted mean (else an unweighted mean of `CompressedSumFactory`
      through TFF's `UnweightedMeanFactory`, as in the original).
    bits: Quantization bits; TFF's compression aggregator uses 8.
    flat: Flatten the zeroing/clipping measurements (`flatten_measurements`).
    debug_measurements_fn: Not supported (must be None).
    **kwargs: Passed to the encoders like TFF's `**kwargs` (`stochastic`).

  Returns:
    A `tff.aggregators.WeightedAggregationFactory` (or unweighted).
  """
  if debug_measurements_fn is not None:
    raise NotImplementedError('debug_measurements_fn is not supported here.')
  encoder_fn = uniform_encoder_fn(bits, 20000, **kwargs)
  name = f'uniform_quantization({bits}) above 20000'
  if weighted:
    factory = MeasuredEncodedMeanFactory(encoder_fn, name)
  else:
    factory = tff.aggregators.UnweightedMeanFactory(MeasuredEncodedSumFactory(encoder_fn, name))
  # TFF's own wrappers, exactly as `compression_aggregator` applies them.
  if clipping:
    factory = tff_model_update_aggregator._default_clipping(factory)  # pylint: disable=protected-access
  if zeroing:
    factory = tff_model_update_aggregator._default_zeroing(factory)  # pylint: disable=protected-access
  return flatten_measurements(factory) if flat else factory


def _tff_uniform(bits: int = 8, threshold: int = 20000, stochastic: bool = True):
  return EncodedUniformFactory(bits, threshold, stochastic=stochastic)


def _tff_hadamard(bits: int = 8, threshold: int = 20000):
  return EncodedHadamardFactory(bits, threshold)


def _tff_discretization(bits: int = 8, l2_clip: float = 1.0, num_clients: int = 1,
                        modclip_prob: float = 1e-6, scale_factor=None,
                        stochastic: bool = True, clip: bool = True, seed=None):
  factory = HadamardDiscretizationFactory(
      bits, l2_clip=l2_clip, num_clients=num_clients, modclip_prob=modclip_prob,
      scale_factor=scale_factor, stochastic=stochastic, seed=seed)
  if not clip:
    return factory
  return flatten_measurements(tff.aggregators.clipping_factory(l2_clip, factory))


def _tff_compression_aggregator(bits: int = 8, zeroing: bool = True, clipping: bool = True,
                                stochastic: bool = True):
  return measured_compression_aggregator(
      zeroing=zeroing, clipping=clipping, bits=bits, stochastic=stochastic)


TFF_BUILTINS = {
    'tff_uniform': _tff_uniform,
    'tff_hadamard': _tff_hadamard,
    'tff_discretization': _tff_discretization,
    'tff_compression_aggregator': _tff_compression_aggregator,
}
