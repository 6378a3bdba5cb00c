"""Top-K sparsification: each client sends the k largest magnitudes per tensor.

For a tensor of `n` elements the client keeps the `k` elements of largest
absolute value (ties: the lower index first) and sends their float32 values
and their positions; the server puts them back and leaves the rest zero.

`k` per tensor (static, known to both sides from the configuration and the
tensor's shape, so it is not sent):

  fraction=f   k = min(n, max(1, round(f * n)))      (the knob `fraction`)
  k=K          k = min(n, K)                          (an absolute count)

Payload of one tensor (all counted as uplink bits):

  bytes 0 .. 4k-1   the k kept values, float32 little-endian, in increasing
                    index order
  then              the index code:

  index_code='elias_gamma' (default): `tff_rdq.codecs.elias_gamma`'s blocked
    format of the n-element 0/1 mask (1 at the kept positions), in blocks of
    `block_size` (default 1024) elements. Per kept element this costs
    len(gamma(gap)) + 2 = 2 floor(log2 gap) + 3 bits, where gap is the
    position's distance to the previous kept position of its block (to the
    block start - 1 for the first) and the 2 bits are the codec's sign bit
    and gamma(1); a block ending in r > 0 unkept elements adds gamma(r + 1);
    each block is padded to a whole byte; the format's header is
    1 + ceil(m * w / 8) bytes (m blocks, w the bit width of the largest
    block byte length).
  index_code='fixed': k fields of b = ceil(log2 n) bits (b = 0 when n = 1),
    the sorted positions, LSB-first, zero padded to a whole byte:
    ceil(k * b / 8) bytes.

Bits per tensor: 32 k + 8 * (index code bytes). The index bits are counted
for every kept element (not once per tensor). Side information
(`side_info_bits`): the Elias-gamma format's header and length table; the
values and the index code proper are payload. `zeros`: the n - k elements
not sent plus kept values that are exactly zero. Extra diagnostic
`index_bits`: bits of the index code per client (all tensors).

No error feedback: Top-K is usually run with a client-side memory of the
error that was not sent (added to the next round's update). That memory is
client state, which the `model_aggregator` of
`tff.learning.algorithms.build_weighted_fed_avg` cannot hold (aggregation
processes have server state only, and TFF simulation clients are sampled
afresh each round), so this is plain Top-K without error feedback.

`TopKFactory` is the weighted mean (a drop-in `model_aggregator`),
`TopKSumFactory` the sum; see `tff_rdq.aggregators.compressed` for the
federated plumbing and the measurements. The state is a placeholder.
"""

import collections

import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma

INDEX_CODES = ('elias_gamma', 'fixed')


def index_width(n: int) -> int:
  """Bits of a position in `[0, n)` for the `fixed` index code: ceil(log2 n)."""
  return max(n - 1, 0).bit_length()


class TopKCompressor(compressor.StatelessCompressor):
  """Keep the k largest magnitudes per tensor (see module doc)."""

  diagnostic_names = ('squared_error', 'index_bits')

  def __init__(self, fraction=None, *, k=None, index_code='elias_gamma',
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE):
    if (fraction is None) == (k is None):
      raise ValueError(
          f'Give exactly one of fraction and k, got fraction={fraction!r}, k={k!r}.')
    self.fraction = None if fraction is None else validation.check_number(
        'fraction', fraction, low=0.0, high=1.0, low_open=True)
    self.k = None if k is None else validation.check_number('k', k, integer=True, low=1)
    self.index_code = validation.check_choice('index_code', index_code, INDEX_CODES)
    self.block_size = validation.check_number('block_size', block_size, integer=True, low=1)

  def __repr__(self):
    knob = f'fraction={self.fraction}' if self.k is None else f'k={self.k}'
    return f'TopKCompressor({knob}, index_code={self.index_code!r})'

  def num_kept(self, n: int) -> int:
    """k for a tensor of `n` elements (see module doc)."""
    if self.k is not None:
      return min(n, self.k)
    return min(n, max(1, int(round(self.fraction * n))))

  def _encode_indices(self, positions, n):
    if self.index_code == 'fixed':
      return _common.pack_fields(positions, index_width(n))
    k = self.num_kept(n)
    mask = tf.sparse.to_dense(
        tf.SparseTensor(positions[:, tf.newaxis], tf.ones([k], tf.int32), [n]),
        validate_indices=False)
    return elias_gamma.encode_to_bytes(mask, self.block_size)

  def encode(self, flat_values, params):
    del params  # Stateless.
    streams = []
    total_error = tf.constant(0.0, tf.float64)
    index_bits = tf.constant(0, tf.int64)
    for values in flat_values:
      n = int(values.shape[0])
      k = self.num_kept(n)
      _, top = tf.math.top_k(tf.abs(values), k)
      positions = tf.cast(tf.sort(top), tf.int64)
      kept = tf.gather(values, positions)
      reconstruction = tf.sparse.to_dense(
          tf.SparseTensor(positions[:, tf.newaxis], kept, [n]), validate_indices=False)
      total_error += _common.squared_error(values, reconstruction)
      index_bytes = self._encode_indices(positions, n)
      index_bits += 8 * tf.size(index_bytes, out_type=tf.int64)
      streams.append(bitstream.bytes_to_string(
          tf.concat([bitstream.scalar_bytes(kept), index_bytes], 0)))
    return streams, collections.OrderedDict(
        squared_error=total_error, index_bits=tf.cast(index_bits, tf.float64))

  def _decode_indices(self, body, n, k):
    """`(positions [k] int64, ok, side_info_bits)`."""
    if self.index_code == 'fixed':
      positions, ok = _common.unpack_fields(body, k, index_width(n))
      ok &= tf.reduce_all(positions < n)
      ok &= tf.reduce_all(positions[1:] > positions[:-1])
      return positions, ok, tf.constant(0, tf.int64)
    mask, ok = elias_gamma.decode_from_bytes(body, n, self.block_size)
    ok &= tf.reduce_all(tf.equal(mask, 0) | tf.equal(mask, 1))
    ok &= tf.equal(tf.reduce_sum(mask), k)
    found = tf.where(tf.not_equal(mask, 0))[:, 0]
    positions = tf.reshape(tf.concat([found, tf.zeros([k], tf.int64)], 0)[:k], [k])
    side_bits = tf.cast(elias_gamma.side_info_bits(body, n, self.block_size), tf.int64)
    return positions, ok, side_bits

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    side_bits = tf.constant(0, tf.int64)
    for stream, n in zip(streams, sizes):
      k = self.num_kept(n)
      data = bitstream.string_to_bytes(stream)
      header, body = _common.split_header(data, 4 * k)
      kept = _common.header_float32_vector(header, 0, k)
      positions, tensor_ok, tensor_side = self._decode_indices(body, n, k)
      tensor_ok &= (tf.size(data) > 4 * k) & tf.reduce_all(tf.math.is_finite(kept))
      # Invalid positions could repeat or overflow: use a harmless set instead.
      positions = tf.where(tensor_ok, positions, tf.range(k, dtype=tf.int64))
      kept = tf.where(tensor_ok, kept, tf.zeros_like(kept))
      values.append(tf.sparse.to_dense(
          tf.SparseTensor(positions[:, tf.newaxis], kept, [n]), validate_indices=False))
      zeros += (n - k) + tf.reduce_sum(tf.cast(tf.equal(kept, 0.0), tf.int64))
      side_bits += tensor_side
      ok &= tensor_ok
    return collections.OrderedDict(
        values=values, ok=ok, side_info_bits=side_bits, zeros=zeros)


class TopKFactory(compressed.CompressedMeanFactory):
  """Weighted mean of Top-K sparsified client updates (see module doc)."""

  def __init__(self, fraction=None, *, k=None, index_code='elias_gamma',
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory.

    Args:
      fraction: The kept fraction of each tensor's elements, in (0, 1].
      k: Instead of `fraction`, an absolute count kept per tensor (>= 1).
      index_code: `elias_gamma` (gap code of the kept positions) or `fixed`
        (ceil(log2 n) bits per position).
      block_size: Block size of the Elias-gamma format.
      integrity: Send and verify the 32-bit checksum of each client's message
        (`tff_rdq.aggregators.compressed`); off only over a transport that
        already guarantees integrity.
      on_corrupt: `'drop'` or `'raise'`: what an invalid client message does
        (`tff_rdq.aggregators.compressed`).
    """
    super().__init__(TopKCompressor(
        fraction, k=k, index_code=index_code, block_size=block_size),
            integrity=integrity, on_corrupt=on_corrupt)


class TopKSumFactory(compressed.CompressedSumFactory):
  """Sum of Top-K sparsified client updates (see module doc)."""

  def __init__(self, fraction=None, *, k=None, index_code='elias_gamma',
               block_size=elias_gamma.DEFAULT_BLOCK_SIZE, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory; arguments as for `TopKFactory`."""
    super().__init__(TopKCompressor(
        fraction, k=k, index_code=index_code, block_size=block_size),
            integrity=integrity, on_corrupt=on_corrupt)
