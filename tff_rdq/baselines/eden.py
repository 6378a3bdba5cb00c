"""EDEN: b-bit Lloyd-Max quantization after a randomized Hadamard rotation.

EDEN (Vargaftik et al., "EDEN: Communication-Efficient and Robust Distributed
Mean Estimation for Federated Learning", ICML 2022), per tensor, with the
rotation of `tff_rdq.baselines.drive` (DRIVE is EDEN's 1-bit special case up
to the scale). For a tensor `x` of `n` elements, let `d` be the smallest
power of two >= n and `y = R x'` the rotated zero-padded vector of DRIVE's
module doc: `x'` is `x` zero-padded to length `d`, `R x' = H (s * x') /
sqrt(d)` with `H` the Sylvester-Hadamard matrix and `s` the random signs of
the stateless seed `[seed, i]` (tensor `i`; `drive.random_signs`).

Quantization (`bits` = b in {1, 2, 3, 4}, the knob): the rotated
coordinates, normalized to be about N(0, 1), `z = y * sqrt(d) / ||x||_2`
(`z = 0` for an all-zero tensor), are each mapped deterministically to the
nearest of the 2^b Lloyd-Max centroids of the standard normal
`c_0 < ... < c_{2^b - 1}` (`lloyd_max`: Lloyd's algorithm on the normal
density, iterated until no centroid moves by 1e-12; symmetric, no zero
centroid). The code of coordinate j is `q_j = #{m : z_j >= t_m}`, the number
of decision boundaries `t_m = (c_{m-1} + c_m) / 2` at or below `z_j` (so
`z_j = 0` gets the smallest positive centroid). The scale is EDEN's
unbiased one over all `d` rotated coordinates,

  S = ||x||_2^2 / <c_q, y>   (0 when the denominator is 0),

which makes `<R^T (S c_q), x'> = ||x||^2` exactly (`c_q` and `y` agree in
sign, so S >= 0).

Random sparsification (`p` in (0, 1], the second knob; 1 by default, which
sends every coordinate): coordinate j of `y` is sent iff
`u_j < p` with `u = tf.random.stateless_uniform([d], seed=[seed, -1 - i])`,
a Bernoulli(p) mask that the server derives from the same seed (shared
randomness; no indices are sent). With p = 1 there is no mask. The server
reconstructs

  y_hat_j = (S / p) * c_{q_j}   for the k sent coordinates, 0 for the others,
  x_hat   = (R^T y_hat)[:n] = (s * H y_hat / sqrt(d))[:n].

Given the rotation, `E_mask[x_hat]` is EDEN's dense estimate, so its
unbiasedness (and `<E x_hat, x> = ||x||^2`) carries over; as for DRIVE, the
paper proves unbiasedness for a uniformly random rotation, which the
randomized Hadamard rotation (as in the paper's experiments) only
approximates. The expected squared error, in units of ||x||^2, is
`nmse_b = mse_b / (1 - mse_b)` for p = 1 (mse_b: the Lloyd-Max MSE of the
standard normal, `lloyd_max_mse`; 1 bit: pi / 2 - 1) and
`(1 + nmse_b) / p - 1` with sparsification, both for a large d whose
rotated coordinates are Gaussian (for an i.i.d. Gaussian x they are, since
R is orthogonal; `expected_nmse`). (The reference code sparsifies `x` before
rotating the kept coordinates; sampling the rotated coordinates, as here,
has the same expected error.)

Payload of one tensor (all counted as uplink bits):

  bytes 0-3    S, float32 little-endian
  bytes 4-7    the client's seed, int32 little-endian (rotation signs from
               the stateless seed [seed, i], the mask from [seed, -1 - i]);
               `client_seed` of `tff_rdq.aggregators.compressor`, derived
               from the update and the round's nonce, so the rotation and
               the mask are fresh every round; sent and counted, as DRIVE's
  then         ceil(k b / 8) bytes: the k codes q_j of the sent coordinates
               in increasing j, b bits each, LSB-first
               (`_common.pack_fields`), the last byte zero padded

Bits per tensor: 64 + 8 ceil(k b / 8), with k = d for p = 1 and
k ~ Binomial(d, p) otherwise (known to the server from the seed, so not
sent): about p b d + 64, the padding from n to d paid in full. Side
information: the 64 bits of scale and seed. `zeros` is 0 (no centroid is
zero; the unsent rotated coordinates are not parameters and are not
counted). The decoder rejects a stream of the wrong length (for the k the
seed's mask gives), nonzero padding bits, a negative or non-finite scale and
a reconstruction that overflows.

No error feedback (client state; see `tff_rdq.baselines.top_k`).

`EdenFactory` is the weighted mean (a drop-in `model_aggregator`),
`EdenSumFactory` the sum; see `tff_rdq.aggregators.compressed`.
"""

import collections
import functools
import math

import numpy as np
import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.baselines import drive
from tff_rdq.codecs import bitstream

BITS = (1, 2, 3, 4)
_HEADER_BYTES = 8
_TOLERANCE = 1e-12
_MAX_ITERATIONS = 100_000


def _upper_tail(t: np.ndarray) -> np.ndarray:
  """P(Z > t) for the standard normal (accurate in the upper tail)."""
  return np.array([0.5 * math.erfc(v / math.sqrt(2.0)) for v in t])


def _density(t: np.ndarray) -> np.ndarray:
  return np.array([math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi) for v in t])


@functools.lru_cache(maxsize=None)
def _half_lloyd_max(bits: int):
  """`(centroids, masses)` of the positive half: 2^(b-1) centroids of Lloyd's
  algorithm on the standard normal (the symmetric optimum has a boundary at
  0, so the positive half is iterated alone), and each cell's probability."""
  half = 2 ** (bits - 1)
  # Start at the centres of equal-width cells over [0, 3].
  centroids = (np.arange(half) + 0.5) * 3.0 / half
  for _ in range(_MAX_ITERATIONS):
    edges = np.concatenate([[0.0], (centroids[:-1] + centroids[1:]) / 2, [np.inf]])
    tail, density = _upper_tail(edges), _density(edges)
    masses = tail[:-1] - tail[1:]
    # E[Z | a < Z < b] = (phi(a) - phi(b)) / (P(Z > a) - P(Z > b)).
    updated = (density[:-1] - density[1:]) / masses
    change = np.max(np.abs(updated - centroids))
    centroids = updated
    if change < _TOLERANCE:
      break
  else:
    raise RuntimeError(f'Lloyd-Max for {bits} bits did not converge.')
  edges = np.concatenate([[0.0], (centroids[:-1] + centroids[1:]) / 2, [np.inf]])
  tail = _upper_tail(edges)
  return centroids, tail[:-1] - tail[1:]


def lloyd_max(bits: int):
  """`(centroids, boundaries)`: the 2^b Lloyd-Max centroids of the standard
  normal, increasing, and the 2^b - 1 decision boundaries between them
  (midpoints), as float64 NumPy vectors."""
  half, _ = _half_lloyd_max(bits)
  centroids = np.concatenate([-half[::-1], half])
  return centroids, (centroids[:-1] + centroids[1:]) / 2


def lloyd_max_mse(bits: int) -> float:
  """E[(Z - Q(Z))^2] of the b-bit Lloyd-Max quantizer of the standard normal
  (= 1 - E[Q(Z)^2], since each centroid is its cell's mean)."""
  half, masses = _half_lloyd_max(bits)
  return 1.0 - 2.0 * float(np.sum(masses * half ** 2))


def expected_nmse(bits: int, p: float = 1.0) -> float:
  """EDEN's expected ||x_hat - x||^2 / ||x||^2 for Gaussian rotated
  coordinates (module doc): (1 + mse / (1 - mse)) / p - 1."""
  mse = lloyd_max_mse(bits)
  return (1.0 + mse / (1.0 - mse)) / p - 1.0


def mask_seed(seed: tf.Tensor, index) -> tf.Tensor:
  """The stateless seed `[seed, -1 - index]` of tensor `index`'s mask."""
  return tf.stack([tf.cast(seed, tf.int32), -1 - tf.cast(index, tf.int32)])


def sent_mask(d: int, p: float, seed: tf.Tensor) -> tf.Tensor:
  """The Bernoulli(p) mask of sent coordinates (`seed` from `mask_seed`)."""
  return tf.random.stateless_uniform([d], seed=seed, dtype=tf.float32) < p


def _unpack_codes(body: tf.Tensor, count: tf.Tensor, width: int):
  """`(codes int64 [count], ok)`: `pack_fields`' format for a `count` known
  only at run time (the mask's); never reads out of bounds. `ok`: exactly
  `ceil(count * width / 8)` bytes and zero padding bits."""
  count = tf.cast(count, tf.int64)
  num_bytes = (count * width + 7) // 8
  ok = tf.equal(tf.size(body, out_type=tf.int64), num_bytes)
  words = bitstream.bytes_to_words(body)
  codes = bitstream.low_bits(
      bitstream.read_bits(words, tf.range(count, dtype=tf.int64) * width), width)
  pad = bitstream.low_bits(
      bitstream.read_bits(words, tf.reshape(count * width, [1])), 8 * num_bytes - count * width)
  return tf.cast(codes, tf.int64), ok & tf.equal(pad[0], 0)


class EdenCompressor(compressor.StatelessCompressor):
  """Randomized Hadamard rotation, b-bit Lloyd-Max codes (module doc)."""

  def __init__(self, bits=2, p=1.0):
    bits_value = validation.check_number('bits', bits)
    if bits_value not in BITS:
      raise ValueError(f'bits must be one of {BITS}, got {bits!r}.')
    self.bits = int(bits_value)
    self.p = validation.check_number('p', p, low=0, low_open=True, high=1)
    centroids, boundaries = lloyd_max(self.bits)
    self._centroids = centroids.astype(np.float32)
    self._boundaries = boundaries.astype(np.float32)

  def __repr__(self):
    return f'EdenCompressor(bits={self.bits}, p={self.p})'

  def _reconstruct(self, codes, scale, mask, signs, n):
    """`x_hat` from the codes of the sent coordinates (increasing index)."""
    d = int(signs.shape[0])
    centers = tf.gather(tf.constant(self._centroids), codes)
    if mask is None:
      rotated = scale * centers
    else:
      positions = tf.where(mask)
      rotated = tf.scatter_nd(positions, (scale / self.p) * centers, [d])
    return drive.unrotate(rotated, signs, n)

  def encode(self, flat_values, params):
    # `params`: the round's nonce (`StatelessCompressor`), mixed into the seed.

    def encode_tensor(values, tensor_seed):
      n = int(values.shape[0])
      d = _common.padded_size(n)
      signs = drive.random_signs(d, tensor_seed)
      rotated = drive.rotate(values, signs)
      squared_norm = tf.reduce_sum(tf.square(values))
      normalized = rotated * tf.math.divide_no_nan(
          tf.sqrt(float(d)), tf.sqrt(squared_norm))
      codes = tf.searchsorted(tf.constant(self._boundaries), normalized, side='right')
      centers = tf.gather(tf.constant(self._centroids), codes)
      scale = tf.math.divide_no_nan(squared_norm, tf.reduce_sum(centers * rotated))
      mask = None
      if self.p < 1:
        mask = sent_mask(d, self.p, mask_seed(tensor_seed[0], tensor_seed[1]))
        codes = tf.boolean_mask(codes, mask)
      reconstruction = self._reconstruct(codes, scale, mask, signs, n)
      parts = [bitstream.scalar_bytes(scale), bitstream.scalar_bytes(tensor_seed[0]),
               _common.pack_fields(codes, self.bits)]
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
      if self.p < 1:
        mask = sent_mask(d, self.p, mask_seed(seed, i))
        codes, tensor_ok = _unpack_codes(
            body, tf.reduce_sum(tf.cast(mask, tf.int64)), self.bits)
      else:
        mask = None
        codes, tensor_ok = _common.unpack_fields(body, d, self.bits)
      tensor_ok &= _common.finite_nonnegative(scale)
      signs = drive.random_signs(d, tf.stack([seed, tf.constant(i, tf.int32)]))
      tensor_values = self._reconstruct(
          codes, tf.where(tensor_ok, scale, 0.0), mask, signs, n)
      # A corrupted but finite scale can still overflow in the transform.
      tensor_ok &= tf.reduce_all(tf.math.is_finite(tensor_values))
      values.append(tf.where(tensor_ok, tensor_values, tf.zeros_like(tensor_values)))
      ok &= tensor_ok
    return collections.OrderedDict(
        values=values, ok=ok,
        side_info_bits=tf.constant(8 * _HEADER_BYTES * len(sizes), tf.int64),
        zeros=tf.constant(0, tf.int64))


class EdenFactory(compressed.CompressedMeanFactory):
  """Weighted mean of EDEN-compressed client updates (see module doc)."""

  def __init__(self, bits: int = 2, p: float = 1.0, *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory.

    Args:
      bits: Bits per sent coordinate, one of 1, 2, 3, 4 (the Lloyd-Max
        codebook of the standard normal with 2^bits centroids).
      p: The probability that a rotated coordinate is sent, in (0, 1]
        (1: all of them); about `p * bits` bits per parameter.
      integrity: Send and verify the 32-bit checksum of each client's message
        (`tff_rdq.aggregators.compressed`); off only over a transport that
        already guarantees integrity.
      on_corrupt: `'drop'` or `'raise'`: what an invalid client message does
        (`tff_rdq.aggregators.compressed`).
    """
    super().__init__(EdenCompressor(bits, p), integrity=integrity, on_corrupt=on_corrupt)


class EdenSumFactory(compressed.CompressedSumFactory):
  """Sum of EDEN-compressed client updates (see module doc)."""

  def __init__(self, bits: int = 2, p: float = 1.0, *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory; arguments as for `EdenFactory`."""
    super().__init__(EdenCompressor(bits, p), integrity=integrity, on_corrupt=on_corrupt)
