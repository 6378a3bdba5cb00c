"""TFF's discretization behind a Hadamard rotation, measured.

`HadamardDiscretizationFactory(bits, ...)`: TFF's discretization behind a
Hadamard rotation, as TFF composes them for secure aggregation (its
`DistributedDpSumFactory` in `aggregators/distributed_dp.py`, without noise,
per tensor; `DiscretizationFactory` and `ModularClippingSumFactory` are not
exported in `tff.aggregators` 0.87, so their functions come through
`tff_internals`): `tff.aggregators.HadamardTransformFactory` (flatten,
zero-pad to `2**ceil(log2 n)`, random signs from a seeded global seed in the
state, normalized fast Walsh-Hadamard transform; TFF's own functions) ->
`DiscretizationFactory` (scale and round, stochastically by default; TFF's own
`_discretize_struct`) -> the modular clipping into `[-2**(b-1), 2**(b-1))`
then `[0, 2**b)` that `DistributedDpSumFactory` wraps around
`SecureSumFactory(2**b - 1)` (TFF's own `modular_clip_by_value`). TFF never
forms bytes (it sums the integers with a secure sum); what each client would
send to a `b`-bit secure sum is its integers modulo `2**b`, `b` bits each. So
the string per tensor is:

  bytes 0-15   the rotation seed of the tensor (2 x int64; an echo of server
               state, as in `tensor_encoding`, counted as side information)
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
"""

import collections

import numpy as np
import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.baselines.tff_builtin import _shared
from tff_rdq import tff_internals
from tff_rdq.codecs import bitstream


class DiscretizationCompressor(compressor.Compressor):
  """TFF's Hadamard rotation + discretization + b-bit modular clip (module doc).

  State: `OrderedDict(global_seed=int64[2])`, TFF's rotation seed: a
  timestamp and a counter advanced by the number of tensors each round (as
  `HadamardTransformFactory` does); `seed` fixes the first element instead.
  """

  diagnostic_names = ('squared_error', 'wrapped_fraction')

  def __init__(self, bits: int = 8, *, scale_factor=None, l2_clip: float = 1.0,
               num_clients: int = 1, modclip_prob: float = 1e-6,
               stochastic: bool = True, seed=None):
    self.bits = _shared.check_bits(bits, high=22)
    if scale_factor is not None:
      scale_factor = validation.check_number('scale_factor', scale_factor, low=0, low_open=True)
    self.scale_factor = scale_factor
    self.l2_clip = validation.check_number('l2_clip', l2_clip, low=0, low_open=True)
    self.num_clients = validation.check_number('num_clients', num_clients, integer=True, low=1)
    self.modclip_prob = validation.check_number(
        'modclip_prob', modclip_prob, low=0, high=1, low_open=True, high_open=True)
    self.stochastic = validation.check_bool('stochastic', stochastic)
    if seed is not None:
      seed = validation.check_number('seed', seed, integer=True)
    self.seed = seed
    self.k_stddevs = float(tff_internals.clip_prob_to_num_stddevs(self.modclip_prob))
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
    dim = _common.padded_size(size)
    if dim not in self._scales:
      # TFF DDP's own heuristic (no noise), eagerly; capped like DDP.
      scale = tff_internals.heuristic_scale_factor(
          0.0, self.l2_clip, self.bits, self.num_clients, dim, self.k_stddevs)
      self._scales[dim] = float(min(float(np.asarray(scale)), tff_internals.MAX_SCALE_FACTOR))
    return self._scales[dim]

  def prepare(self, value_type):
    sizes = _shared.flat_sizes(value_type)
    self._num_tensors = len(sizes)
    for size in sizes:
      self.scale(size)

  def stream_bytes(self, sizes) -> list[int]:
    return [_shared.SEED_BYTES + _common.packed_bytes(_common.padded_size(n), self.bits)
            for n in sizes]

  def initial_state(self):
    if self.seed is None:
      seed = tff_internals.init_global_seed()
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
    return tff_internals.unique_seeds_for_struct(list(range(count)), global_seed, stride=1)

  def _dequantize(self, residues, scale, seed, size):
    """Integers in [0, 2**b) -> the client's reconstruction (TFF's server path)."""
    half = 2 ** (self.bits - 1)
    signed = tff_internals.modular_clip_by_value(residues, -half, half)
    rotated = tff_internals.undiscretize_struct(signed, scale, tf.float32)
    x = tf.squeeze(tff_internals.fast_walsh_hadamard_transform(tf.expand_dims(rotated, 0)), 0)
    x *= tff_internals.sample_rademacher(tf.shape(x), x.dtype, seed)
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
      x = tff_internals.pad_zeros_pow2(values)
      x *= tff_internals.sample_rademacher(tf.shape(x), x.dtype, seed)
      x = tf.squeeze(tff_internals.fast_walsh_hadamard_transform(tf.expand_dims(x, 0)), 0)
      # DiscretizationFactory's client step (no prior norm bound, beta = 0).
      integers = tff_internals.discretize_struct(
          x, tf.constant(scale, tf.float32), self.stochastic, 0.0, tf.constant(0.0, tf.float32))
      wrapped += tf.reduce_sum(tf.cast((integers < -half) | (integers >= half), tf.int64))
      total += _common.padded_size(size)
      # DistributedDpSumFactory's two client-side modular clips.
      residues = tff_internals.modular_clip_by_value(integers, -half, half)
      residues = tff_internals.modular_clip_by_value(residues, 0, 2 * half)
      payload = _common.pack_fields(residues, self.bits)
      streams.append(bitstream.bytes_to_string(
          tf.concat([_shared.to_bytes(seed), payload], 0)))
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
      header, body = _common.split_header(data, _shared.SEED_BYTES)
      seed = tf.bitcast(tf.reshape(header, [2, 8]), tf.int64)
      residues, body_ok = _common.unpack_fields(body, _common.padded_size(size), self.bits)
      ok &= body_ok & (tf.size(data) > _shared.SEED_BYTES)
      reconstruction = self._dequantize(
          tf.cast(residues, tf.int32), self.scale(size), seed, size)
      ok &= tf.reduce_all(tf.math.is_finite(reconstruction))
      values.append(reconstruction)
      zeros += _shared.reconstruction_zeros(reconstruction)
      side_bits += 8 * _shared.SEED_BYTES
    return collections.OrderedDict(values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


class HadamardDiscretizationFactory(_shared.PreparingMeanFactory):
  """TFF's rotation + discretization for a b-bit secure sum, measured (module doc)."""

  def __init__(self, bits: int = 8, *, integrity: bool = True,
               on_corrupt: str = 'drop', **kwargs):
    """Args: `bits`, `integrity` (the message checksum of `compressed`) and the
    keyword arguments of `DiscretizationCompressor`."""
    super().__init__(DiscretizationCompressor(bits, **kwargs),
                     integrity=integrity, on_corrupt=on_corrupt)
