"""3LC: three-value quantization, base-3^5 packing and zero-run encoding.

3LC (Lim, Andersen and Kaminsky, "3LC: Lightweight and Effective Traffic
Compression for Distributed Machine Learning", SysML 2019), per tensor:

1. Three-value quantization with sparsity multiplication: with the sparsity
   multiplier `m` in [1, 2) (the knob `sparsity_multiplier`),
   `M = m * max|x|` and `q = round(x / M)` (round half to even), so
   `q` is in {-1, 0, 1} and `x_hat = q * M` is in {-M, 0, M}. A larger `m`
   raises the threshold `M / 2` below which values become 0: sparser output.
   (`M = 0` and all `q = 0` for an all-zero tensor; `M` is capped at the
   largest float32.)
2. Base-3^5 packing ("quartic encoding"): the `q` are zero padded to a
   multiple of 5 and each 5 consecutive values `q_0..q_4` become the byte
   `81 (q_0+1) + 27 (q_1+1) + 9 (q_2+1) + 3 (q_3+1) + (q_4+1)`, in 0..242;
   five zeros give the byte 121.
3. Zero-run encoding (ZRE) of the packed bytes: a maximal run of `L`
   consecutive 121 bytes is written greedily as `L // 14` bytes 255 (a run of
   14) and then, for the remainder `r = L % 14`, nothing (r = 0), the byte
   121 (r = 1) or the byte `243 + r - 2` (2 <= r <= 13). Bytes 243..255 thus
   stand for runs of 2..14 bytes 121; other bytes are copied.

Payload of one tensor (all counted as uplink bits):

  bytes 0-3   M, float32 little-endian
  then        the ZRE bytes of the ceil(n / 5) packed bytes

Bits per tensor: 32 + 8 * (ZRE bytes). Side information: the 32 bits of M.
`zeros`: the number of q = 0 among the n elements. The decoder checks the
ZRE expands to exactly ceil(n / 5) bytes, is in canonical (greedy) form, and
that the padding values are 0.

Differences from the paper's system: no error feedback (3LC accumulates the
quantization error on the sender; that is client state, see
`tff_rdq.baselines.top_k`), uplink only, and the 5 values of a byte are
consecutive elements.

`ThreeLCFactory` is the weighted mean (a drop-in `model_aggregator`),
`ThreeLCSumFactory` the sum; see `tff_rdq.aggregators.compressed`.
"""

import collections

import numpy as np
import tensorflow as tf

from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import compressor
from tff_rdq.baselines import _common
from tff_rdq.codecs import bitstream

ZERO_BYTE = 121  # Five zeros.
FIRST_RUN_BYTE = 243  # A run of 2 bytes 121; 255 is a run of 14.
MAX_RUN = 14
_DIGIT_WEIGHTS = (81, 27, 9, 3, 1)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def packed_size(n: int) -> int:
  """Number of base-3^5 bytes of `n` ternary values."""
  return (n + 4) // 5


def quantize(values: tf.Tensor, sparsity_multiplier: float):
  """`(q int32, M float32)`: the three-value quantization (module doc)."""
  scale = tf.minimum(sparsity_multiplier * tf.reduce_max(tf.abs(values)), _FLOAT32_MAX)
  q = tf.round(tf.math.divide_no_nan(values, scale))
  return tf.cast(q, tf.int32), scale


def pack(q: tf.Tensor) -> tf.Tensor:
  """Base-3^5 bytes (`int32` in 0..242) of ternary `int32` values."""
  n = int(q.shape[0])
  groups = packed_size(n)
  digits = tf.reshape(tf.concat([q, tf.zeros([5 * groups - n], tf.int32)], 0) + 1,
                      [groups, 5])
  return tf.reduce_sum(digits * tf.constant(_DIGIT_WEIGHTS, tf.int32), axis=1)


def unpack(packed: tf.Tensor, n: int):
  """`(q, padding_ok)`: the `n` ternary values of base-3^5 bytes (0..242)."""
  digits = (packed[:, tf.newaxis] // tf.constant(_DIGIT_WEIGHTS, tf.int32)) % 3
  q = tf.reshape(digits, [-1]) - 1
  return q[:n], tf.reduce_all(tf.equal(q[n:], 0))


def zero_run_encode(packed: tf.Tensor) -> tf.Tensor:
  """ZRE of base-3^5 bytes (`int32`), as a `uint8` vector (module doc)."""
  size = tf.size(packed, out_type=tf.int64)
  position = tf.range(size)
  is_zero = tf.equal(packed, ZERO_BYTE)
  previous_zero = tf.concat([[False], is_zero[:-1]], 0)
  next_zero = tf.concat([is_zero[1:], [False]], 0)
  run_start = tf.where(is_zero & ~previous_zero)[:, 0]
  run_end = tf.where(is_zero & ~next_zero)[:, 0] + 1
  run_id = tf.math.cumsum(tf.cast(is_zero & ~previous_zero, tf.int64)) - 1
  safe_id = tf.maximum(run_id, 0)
  start = tf.gather(tf.concat([run_start, [0]], 0), safe_id)
  end = tf.gather(tf.concat([run_end, [0]], 0), safe_id)
  offset = position - start  # Position within the run of 121s.
  chunk = tf.minimum(end - position, MAX_RUN)  # Length of a chunk starting here.
  emit = ~is_zero | tf.equal(offset % MAX_RUN, 0)
  run_code = tf.where(tf.equal(chunk, 1), tf.constant(ZERO_BYTE, tf.int64),
                      FIRST_RUN_BYTE + chunk - 2)
  code = tf.where(is_zero, run_code, tf.cast(packed, tf.int64))
  return tf.cast(tf.boolean_mask(code, emit), tf.uint8)


def zero_run_decode(data: tf.Tensor, size: int):
  """`(packed int32 [size], ok)`: inverse of `zero_run_encode`.

  `ok` is False unless `data` expands to exactly `size` bytes and is in the
  canonical form `zero_run_encode` writes.
  """
  code = tf.cast(data, tf.int64)
  is_run = code >= FIRST_RUN_BYTE
  counts = tf.where(is_run, code - FIRST_RUN_BYTE + 2, 1)
  ok = tf.equal(tf.reduce_sum(counts), size)
  # Canonical: after 121 or a run shorter than 14 comes no 121 and no run.
  zero_code = is_run | tf.equal(code, ZERO_BYTE)
  open_run = zero_code & tf.not_equal(code, FIRST_RUN_BYTE + MAX_RUN - 2)
  ok &= ~tf.reduce_any(open_run[:-1] & zero_code[1:])
  expanded = tf.repeat(tf.where(is_run, tf.constant(ZERO_BYTE, tf.int64), code), counts)
  expanded = tf.concat([expanded, tf.fill([size], tf.constant(ZERO_BYTE, tf.int64))], 0)
  packed = tf.reshape(tf.cast(expanded[:size], tf.int32), [size])
  return packed, ok


class ThreeLCCompressor(compressor.StatelessCompressor):
  """3-value quantization, base-3^5 packing, zero-run encoding (module doc)."""

  def __init__(self, sparsity_multiplier: float = 1.0):
    self.sparsity_multiplier = validation.check_number(
        'sparsity_multiplier', sparsity_multiplier, low=1.0, high=2.0, high_open=True)

  def __repr__(self):
    return f'ThreeLCCompressor(sparsity_multiplier={self.sparsity_multiplier})'

  def encode(self, flat_values, params):
    del params  # Stateless.

    def encode_tensor(values, tensor_seed):
      del tensor_seed  # Deterministic.
      q, scale = quantize(values, self.sparsity_multiplier)
      parts = [bitstream.scalar_bytes(scale), zero_run_encode(pack(q))]
      return parts, tf.cast(q, tf.float32) * scale

    streams, total_error = _common.encode_tensors(flat_values, encode_tensor)
    return streams, collections.OrderedDict(squared_error=total_error)

  def decode(self, streams, sizes):
    ok = tf.constant(True)
    values, zeros = [], tf.constant(0, tf.int64)
    for stream, n in zip(streams, sizes):
      data = bitstream.string_to_bytes(stream)
      header, body = _common.split_header(data, 4)
      scale = _common.header_float32(header, 0)
      packed, tensor_ok = zero_run_decode(body, packed_size(n))
      q, padding_ok = unpack(packed, n)
      tensor_ok &= padding_ok & _common.finite_nonnegative(scale)
      q = tf.where(tensor_ok, q, tf.zeros_like(q))
      values.append(tf.cast(q, tf.float32) * tf.where(tensor_ok, scale, 0.0))
      zeros += tf.reduce_sum(tf.cast(tf.equal(q, 0), tf.int64))
      ok &= tensor_ok
    return collections.OrderedDict(
        values=values, ok=ok,
        side_info_bits=tf.constant(32 * len(sizes), tf.int64), zeros=zeros)


class ThreeLCFactory(compressed.CompressedMeanFactory):
  """Weighted mean of 3LC-compressed client updates (see module doc)."""

  def __init__(self, sparsity_multiplier: float = 1.0, *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory.

    Args:
      sparsity_multiplier: `m` in [1, 2): M = m * max|x|; larger is sparser.
      integrity: Send and verify the 32-bit checksum of each client's message
        (`tff_rdq.aggregators.compressed`); off only over a transport that
        already guarantees integrity.
      on_corrupt: `'drop'` or `'raise'`: what an invalid client message does
        (`tff_rdq.aggregators.compressed`).
    """
    super().__init__(ThreeLCCompressor(sparsity_multiplier),
                     integrity=integrity, on_corrupt=on_corrupt)


class ThreeLCSumFactory(compressed.CompressedSumFactory):
  """Sum of 3LC-compressed client updates (see module doc)."""

  def __init__(self, sparsity_multiplier: float = 1.0, *, integrity: bool = True,
               on_corrupt: str = 'drop'):
    """Initializes the factory; arguments as for `ThreeLCFactory`."""
    super().__init__(ThreeLCCompressor(sparsity_multiplier),
                     integrity=integrity, on_corrupt=on_corrupt)
