"""QSGD: stochastic quantization to s levels of the L2 norm, Elias-gamma coded.

QSGD (Alistarh et al., "QSGD: Communication-Efficient SGD via Gradient
Quantization and Encoding", NeurIPS 2017). Each tensor of `n` elements is cut
into buckets of `bucket_size` consecutive elements (default: the whole tensor
is one bucket; the last bucket may be shorter). For a bucket `v` with
`||v||_2 > 0` and `s` levels (the knob `levels`), element `v_j` becomes the
integer

  q_j = sign(v_j) * l_j,   l_j = floor(s |v_j| / ||v||_2 + u_j)  (<= s),

with `u_j ~ U[0, 1)`, so `l_j` is `floor(s |v_j| / ||v||)` or one more, with
the probability that makes `E[q_j ||v|| / s] = v_j` (unbiased stochastic
rounding). The server reconstructs `v_hat_j = ||v||_2 * q_j / s`. The noise is
drawn on the client from `tf.random.stateless_uniform` with the seed
`[client_seed, tensor index]` (`client_seed` of
`tff_rdq.aggregators.compressor`, from the update and the round's nonce:
fresh every round); the server does not need it.

Payload of one tensor with B buckets (all counted as uplink bits):

  bytes 0 .. 4B-1   the buckets' L2 norms, float32 little-endian
  then              `tff_rdq.codecs.elias_gamma`'s blocked format of the n
                    integers q (run-length Elias-gamma: per nonzero q,
                    gamma(zero run + 1), a sign bit and gamma(|q|); see that
                    module for the header and block table)

Bits per tensor: 32 B + 8 * (Elias-gamma bytes). Side information: the norms
and the Elias-gamma header and block table. `zeros`: the number of q = 0.
The decoder rejects |q| > s and non-finite or negative norms.

The paper's coding is Elias coding of the positions and levels of nonzero
values, which this run-length gamma code of the same integers closely
follows. No error feedback (client state; see `tff_rdq.baselines.top_k`).

`QSGDFactory` is the weighted mean (a drop-in `model_aggregator`),
`QSGDSumFactory` the sum; see `tff_rdq.aggregators.compressed`.
"""

import collections

import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma

_MAX_LEVELS = 2**30


def num_buckets(n: int, bucket_size) -> int:
  """Buckets of a tensor of `n` elements (1 when `bucket_size` is None)."""
  return 1 if bucket_size is None else max(1, -(-n // bucket_size))


def quantize(values: tf.Tensor, levels: int, seed: tf.Tensor, bucket_size=None):
  """`(q int32 [n], norms float32 [B])`: QSGD's integers and bucket norms.

  Args:
    values: A rank-1 `float32` tensor with a static length `n`.
    levels: Python int `s >= 1`.
    seed: An `int32` tensor of shape [2], the stateless seed of the noise.
    bucket_size: Python int or None (one bucket).
  """
  n = int(values.shape[0])
  buckets = num_buckets(n, bucket_size)
  width = n if bucket_size is None else bucket_size
  padded = tf.concat([values, tf.zeros([buckets * width - n], tf.float32)], 0)
  rows = tf.reshape(padded, [buckets, width])
  norms = tf.sqrt(tf.reduce_sum(tf.square(rows), axis=1))
  scaled = tf.math.divide_no_nan(tf.abs(rows), norms[:, tf.newaxis]) * float(levels)
  noise = tf.random.stateless_uniform(tf.shape(rows), seed=seed, dtype=tf.float32)
  level = tf.minimum(tf.floor(scaled + noise), float(levels))
  q = tf.cast(tf.sign(rows) * level, tf.int32)
  return tf.reshape(q, [-1])[:n], norms


def dequantize(q: tf.Tensor, norms: tf.Tensor, levels: int, bucket_size=None):
  """The float32 reconstruction `||v|| q / s` of `quantize`'s output."""
  n = int(q.shape[0])
  buckets = int(norms.shape[0])
  width = n if bucket_size is None else bucket_size
  padded = tf.concat([q, tf.zeros([buckets * width - n], tf.int32)], 0)
  rows = tf.cast(tf.reshape(padded, [buckets, width]), tf.float32)
  return tf.reshape(rows * (norms[:, tf.newaxis] / float(levels)), [-1])[:n]


class QSGDCompressor(compressor.StatelessCompressor):
  """Stochastic quantization to `levels` levels, Elias-gamma coded (module doc)."""

  def __init__(self, levels: int, *, bucket_size=None,
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE):
    self.levels = validation.check_number(
        'levels', levels, integer=True, low=1, high=_MAX_LEVELS)
    self.bucket_size = None if bucket_size is None else validation.check_number(
        'bucket_size', bucket_size, integer=True, low=1)
    self.block_size = validation.check_number('block_size', block_size, integer=True, low=1)

  def __repr__(self):
    return f'QSGDCompressor(levels={self.levels}, bucket_size={self.bucket_size})'

  def encode(self, flat_values, params):
    # `params`: the round's nonce (`StatelessCompressor`), mixed into the seed.

    def encode_tensor(values, tensor_seed):
      q, norms = quantize(values, self.levels, tensor_seed, self.bucket_size)
      parts = [bitstream.scalar_bytes(norms), elias_gamma.encode_to_bytes(q, self.block_size)]
      return parts, dequantize(q, norms, self.levels, self.bucket_size)

    streams, total_error = _common.encode_tensors(flat_values, encode_tensor, params)
    return streams, collections.OrderedDict(squared_error=total_error)

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    side_bits = tf.constant(0, tf.int64)
    for stream, n in zip(streams, sizes):
      buckets = num_buckets(n, self.bucket_size)
      data = bitstream.string_to_bytes(stream)
      header, body = _common.split_header(data, 4 * buckets)
      norms = _common.header_float32_vector(header, 0, buckets)
      q, tensor_ok = elias_gamma.decode_from_bytes(body, n, self.block_size)
      tensor_ok &= tf.reduce_all(tf.abs(q) <= self.levels)
      tensor_ok &= tf.reduce_all(_common.finite_nonnegative(norms))
      tensor_ok &= tf.size(data) > 4 * buckets
      q = tf.where(tensor_ok, q, tf.zeros_like(q))
      norms = tf.where(tensor_ok, norms, tf.zeros_like(norms))
      values.append(dequantize(q, norms, self.levels, self.bucket_size))
      zeros += tf.reduce_sum(tf.cast(tf.equal(q, 0), tf.int64))
      side_bits += 32 * buckets + tf.cast(
          elias_gamma.side_info_bits(body, n, self.block_size), tf.int64)
      ok &= tensor_ok
    return collections.OrderedDict(
        values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


class QSGDFactory(compressed.CompressedMeanFactory):
  """Weighted mean of QSGD-compressed client updates (see module doc)."""

  def __init__(self, levels: int, *, bucket_size=None,
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory.

    Args:
      levels: `s >= 1`, the number of levels per sign (s = 1: ternary).
      bucket_size: Elements per bucket with its own norm; None (default): one
        bucket per tensor.
      block_size: Block size of the Elias-gamma format.
      integrity: Send and verify the 32-bit checksum of each client's message
        (`tff_rdq.aggregators.compressed`); off only over a transport that
        already guarantees integrity.
      on_corrupt: `'drop'` or `'raise'`: what an invalid client message does
        (`tff_rdq.aggregators.compressed`).
    """
    super().__init__(QSGDCompressor(levels, bucket_size=bucket_size, block_size=block_size),
                     integrity=integrity, on_corrupt=on_corrupt)


class QSGDSumFactory(compressed.CompressedSumFactory):
  """Sum of QSGD-compressed client updates (see module doc)."""

  def __init__(self, levels: int, *, bucket_size=None,
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory; arguments as for `QSGDFactory`."""
    super().__init__(QSGDCompressor(levels, bucket_size=bucket_size, block_size=block_size),
                     integrity=integrity, on_corrupt=on_corrupt)
