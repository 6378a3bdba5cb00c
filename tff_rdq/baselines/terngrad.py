"""TernGrad: unbiased stochastic ternarization with one scale per tensor.

TernGrad (Wen et al., "TernGrad: Ternary Gradients to Reduce Communication in
Distributed Deep Learning", NeurIPS 2017), per tensor: with the scale
`S = max_j |x_j|`,

  q_j = sign(x_j) * b_j,   b_j = 1 if u_j < |x_j| / S else 0,

`u_j ~ U[0, 1)`, so `P(b_j = 1) = |x_j| / S` and `x_hat = S q` is unbiased:
`E[x_hat_j] = x_j`. (`S = 0` and all `q = 0` for an all-zero tensor.) The
noise is drawn on the client from `tf.random.stateless_uniform` with the seed
`[client_seed, tensor index]` (`client_seed` of
`tff_rdq.aggregators.compressor`, from the update and the round's nonce:
fresh every round); the server does not need it.

Payload of one tensor of `n` elements (all counted as uplink bits):

  bytes 0-3   S, float32 little-endian
  then, with coding='packed' (default, the paper's 2 bits per element):
              ceil(n / 4) bytes; element j is the 2-bit field q_j + 1
              (0: -1, 1: 0, 2: +1; 3 is invalid) at stream bits 2j, 2j+1,
              LSB-first, zero padded to a whole byte
  or, with coding='elias_gamma': `tff_rdq.codecs.elias_gamma`'s blocked
              format of the n integers q

Bits per tensor: 32 + 8 * ceil(n / 4) (packed) or 32 + 8 * (Elias-gamma
bytes). Side information: the 32 bits of S (plus the Elias-gamma header and
block table). `zeros`: the number of q = 0.

Not included: the paper's layer-wise scale sharing across workers and its
optional gradient clipping (to 2.5 standard deviations) before
ternarization, and error feedback (client state; see
`tff_rdq.baselines.top_k`).

`TernGradFactory` is the weighted mean (a drop-in `model_aggregator`),
`TernGradSumFactory` the sum; see `tff_rdq.aggregators.compressed`.
"""

import collections

import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma

CODINGS = ('packed', 'elias_gamma')
_FIELD_BITS = 2


def ternarize(values: tf.Tensor, seed: tf.Tensor):
  """`(q int32, S float32)`: TernGrad's ternary integers and scale.

  Args:
    values: A rank-1 `float32` tensor.
    seed: An `int32` tensor of shape [2], the stateless seed of the noise.
  """
  scale = tf.reduce_max(tf.abs(values))
  probability = tf.math.divide_no_nan(tf.abs(values), scale)
  noise = tf.random.stateless_uniform(tf.shape(values), seed=seed, dtype=tf.float32)
  keep = tf.cast(noise < probability, tf.float32)
  return tf.cast(tf.sign(values) * keep, tf.int32), scale


class TernGradCompressor(compressor.StatelessCompressor):
  """Stochastic ternarization with a max-magnitude scale (module doc)."""

  def __init__(self, coding: str = 'packed', *,
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE):
    self.coding = validation.check_choice('coding', coding, CODINGS)
    self.block_size = validation.check_number('block_size', block_size, integer=True, low=1)

  def __repr__(self):
    return f'TernGradCompressor(coding={self.coding!r})'

  def encode(self, flat_values, params):
    # `params`: the round's nonce (`StatelessCompressor`), mixed into the seed.

    def encode_tensor(values, tensor_seed):
      q, scale = ternarize(values, tensor_seed)
      if self.coding == 'packed':
        body = _common.pack_fields(q + 1, _FIELD_BITS)
      else:
        body = elias_gamma.encode_to_bytes(q, self.block_size)
      return [bitstream.scalar_bytes(scale), body], tf.cast(q, tf.float32) * scale

    streams, total_error = _common.encode_tensors(flat_values, encode_tensor, params)
    return streams, collections.OrderedDict(squared_error=total_error)

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    side_bits = tf.constant(0, tf.int64)
    for stream, n in zip(streams, sizes):
      data = bitstream.string_to_bytes(stream)
      header, body = _common.split_header(data, 4)
      scale = _common.header_float32(header, 0)
      if self.coding == 'packed':
        fields, tensor_ok = _common.unpack_fields(body, n, _FIELD_BITS)
        q = tf.cast(fields, tf.int32) - 1
        tensor_ok &= tf.reduce_all(q <= 1)
      else:
        q, tensor_ok = elias_gamma.decode_from_bytes(body, n, self.block_size)
        tensor_ok &= tf.reduce_all(tf.abs(q) <= 1)
        side_bits += tf.cast(elias_gamma.side_info_bits(body, n, self.block_size), tf.int64)
      tensor_ok &= _common.finite_nonnegative(scale) & (tf.size(data) > 4)
      q = tf.where(tensor_ok, q, tf.zeros_like(q))
      values.append(tf.cast(q, tf.float32) * tf.where(tensor_ok, scale, 0.0))
      zeros += tf.reduce_sum(tf.cast(tf.equal(q, 0), tf.int64))
      side_bits += 32
      ok &= tensor_ok
    return collections.OrderedDict(
        values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


class TernGradFactory(compressed.CompressedMeanFactory):
  """Weighted mean of TernGrad-compressed client updates (see module doc)."""

  def __init__(self, coding: str = 'packed', *,
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory.

    Args:
      coding: `packed` (2 bits per element) or `elias_gamma`.
      block_size: Block size of the Elias-gamma format.
      integrity: Send and verify the 32-bit checksum of each client's message
        (`tff_rdq.aggregators.compressed`); off only over a transport that
        already guarantees integrity.
      on_corrupt: `'drop'` or `'raise'`: what an invalid client message does
        (`tff_rdq.aggregators.compressed`).
    """
    super().__init__(TernGradCompressor(coding, block_size=block_size),
                     integrity=integrity, on_corrupt=on_corrupt)


class TernGradSumFactory(compressed.CompressedSumFactory):
  """Sum of TernGrad-compressed client updates (see module doc)."""

  def __init__(self, coding: str = 'packed', *,
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory; arguments as for `TernGradFactory`."""
    super().__init__(TernGradCompressor(coding, block_size=block_size),
                     integrity=integrity, on_corrupt=on_corrupt)
