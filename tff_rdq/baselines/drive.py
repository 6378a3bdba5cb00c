"""DRIVE: one bit per coordinate after a randomized Hadamard rotation.

DRIVE (Vargaftik et al., "DRIVE: One-bit Distributed Mean Estimation",
NeurIPS 2021), per tensor. For a tensor `x` of `n` elements, let `d` be the
smallest power of two >= n and `x'` the vector `x` zero-padded to length `d`.
The client rotates `y = R x' = H (s * x') / sqrt(d)`, with `H` the d x d
Sylvester-Hadamard matrix (applied by a fast Walsh-Hadamard transform in
`log2 d` butterfly stages of core TF ops) and `s` random signs (+-1, each
`-1` iff `tf.random.stateless_uniform([d], seed=[seed, i]) < 0.5` for tensor
`i`). It sends the signs of `y` (`sign(0) = +1`) and one scale `S`. The server
inverts the rotation: `x_hat = (s * H (S sign(y)) / sqrt(d))[:n]`.

Scale (`scale=`, the knob):
  'unbiased' (default)  S = ||x||_2^2 / ||y||_1, the paper's unbiased DRIVE:
                        <x_hat, x> = ||x||^2 exactly. Unbiased in expectation
                        for a uniformly random rotation (the paper's
                        analysis); with the randomized Hadamard rotation used
                        here (as in the paper's experiments) only
                        approximately.
  'mse'                 S = ||y||_1 / d, the scale that minimizes
                        ||x_hat - x||^2 for the sent signs (biased).
(Both 0 for an all-zero tensor.)

Payload of one tensor (all counted as uplink bits):

  bytes 0-3    S, float32 little-endian
  bytes 4-7    the client's seed, int32 little-endian (the signs of tensor i
               use the stateless seed [seed, i]); `client_seed` of
               `tff_rdq.aggregators.compressor`, derived from the update and
               the round's nonce (the round counter of the state), so the
               rotation is fresh every round
  then         ceil(d / 8) bytes: bit j (LSB-first) = 1 iff y_j >= 0, for
               all d rotated coordinates, padded ones included

Bits per tensor: 64 + 8 * ceil(d / 8) (= d + 64 for d >= 8), so the padding
from n to d is paid in full. Side information: the 64 bits of scale and seed.
`zeros` is 0 (signs are never zero). The decoder rejects a stream of the
wrong length, a negative or non-finite scale, and a reconstruction that
overflows.

No error feedback (client state; see `tff_rdq.baselines.top_k`).

`DriveFactory` is the weighted mean (a drop-in `model_aggregator`),
`DriveSumFactory` the sum; see `tff_rdq.aggregators.compressed`.
"""

import collections

import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.codecs import bitstream

SCALES = ('unbiased', 'mse')
_HEADER_BYTES = 8


def hadamard_transform(values: tf.Tensor) -> tf.Tensor:
  """`H @ values` for the Sylvester-Hadamard matrix (unnormalized).

  Args:
    values: A rank-1 float tensor whose static length is a power of two.
  """
  d = int(values.shape[0])
  if d & (d - 1):
    raise ValueError(f'The length must be a power of two, got {d}.')
  h = 1
  while h < d:
    pairs = tf.reshape(values, [d // (2 * h), 2, h])
    first, second = pairs[:, 0, :], pairs[:, 1, :]
    values = tf.reshape(tf.stack([first + second, first - second], axis=1), [d])
    h *= 2
  return values


def random_signs(d: int, seed: tf.Tensor) -> tf.Tensor:
  """`d` float32 signs +-1 from a stateless `int32` seed of shape [2]."""
  uniform = tf.random.stateless_uniform([d], seed=seed, dtype=tf.float32)
  return tf.where(uniform < 0.5, -1.0, 1.0)


def rotate(values: tf.Tensor, signs: tf.Tensor) -> tf.Tensor:
  """`R x'`: zero-pad to `len(signs)`, flip signs, Hadamard, normalize."""
  d = int(signs.shape[0])
  padded = tf.concat([values, tf.zeros([d - int(values.shape[0])], values.dtype)], 0)
  return hadamard_transform(signs * padded) / tf.sqrt(tf.constant(d, tf.float32))


def unrotate(rotated: tf.Tensor, signs: tf.Tensor, n: int) -> tf.Tensor:
  """`(R^T y)[:n]`, the inverse of `rotate`."""
  d = int(signs.shape[0])
  return (signs * hadamard_transform(rotated) / tf.sqrt(tf.constant(d, tf.float32)))[:n]


class DriveCompressor(compressor.StatelessCompressor):
  """Randomized Hadamard rotation, one sign bit per coordinate (module doc)."""

  def __init__(self, scale='unbiased'):
    self.scale = validation.check_choice('scale', scale, SCALES)

  def __repr__(self):
    return f'DriveCompressor(scale={self.scale!r})'

  def encode(self, flat_values, params):
    # `params`: the round's nonce (`StatelessCompressor`), mixed into the seed.

    def encode_tensor(values, tensor_seed):
      n = int(values.shape[0])
      signs = random_signs(_common.padded_size(n), tensor_seed)
      rotated = rotate(values, signs)
      positive = rotated >= 0
      l1 = tf.reduce_sum(tf.abs(rotated))
      if self.scale == 'unbiased':
        scale = tf.math.divide_no_nan(tf.reduce_sum(tf.square(values)), l1)
      else:
        scale = l1 / float(_common.padded_size(n))
      reconstruction = unrotate(scale * tf.where(positive, 1.0, -1.0), signs, n)
      parts = [bitstream.scalar_bytes(scale), bitstream.scalar_bytes(tensor_seed[0]),
               _common.pack_fields(tf.cast(positive, tf.int64), 1)]
      return parts, reconstruction

    streams, total_error = _common.encode_tensors(flat_values, encode_tensor, params)
    return streams, collections.OrderedDict(squared_error=total_error)

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values = []
    for i, (stream, n) in enumerate(zip(streams, sizes)):
      d = _common.padded_size(n)
      data = bitstream.string_to_bytes(stream)
      header, body = _common.split_header(data, _HEADER_BYTES)
      scale = _common.header_float32(header, 0)
      seed = _common.header_int32(header, 4)
      bits, tensor_ok = _common.unpack_fields(body, d, 1)
      tensor_ok &= _common.finite_nonnegative(scale)
      signs = random_signs(d, tf.stack([seed, tf.constant(i, tf.int32)]))
      tensor_values = unrotate(
          tf.where(tensor_ok, scale, 0.0) * tf.where(bits > 0, 1.0, -1.0), signs, n)
      # A corrupted but finite scale can still overflow in the transform.
      tensor_ok &= tf.reduce_all(tf.math.is_finite(tensor_values))
      values.append(tf.where(tensor_ok, tensor_values, tf.zeros_like(tensor_values)))
      ok &= tensor_ok
    return collections.OrderedDict(
        values=values, ok=ok,
        side_info_bits=tf.constant(8 * _HEADER_BYTES * len(sizes), tf.int64),
        zeros=tf.constant(0, tf.int64))


class DriveFactory(compressed.CompressedMeanFactory):
  """Weighted mean of DRIVE-compressed client updates (see module doc)."""

  def __init__(self, scale: str = 'unbiased', *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory.

    Args:
      scale: `unbiased` (S = ||x||^2 / ||Rx||_1) or `mse` (S = ||Rx||_1 / d).
      integrity: Send and verify the 32-bit checksum of each client's message
        (`tff_rdq.aggregators.compressed`); off only over a transport that
        already guarantees integrity.
      on_corrupt: `'drop'` or `'raise'`: what an invalid client message does
        (`tff_rdq.aggregators.compressed`).
    """
    super().__init__(DriveCompressor(scale), integrity=integrity, on_corrupt=on_corrupt)


class DriveSumFactory(compressed.CompressedSumFactory):
  """Sum of DRIVE-compressed client updates (see module doc)."""

  def __init__(self, scale: str = 'unbiased', *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory; arguments as for `DriveFactory`."""
    super().__init__(DriveCompressor(scale), integrity=integrity, on_corrupt=on_corrupt)
