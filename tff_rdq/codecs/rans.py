"""Interleaved-lane rANS coder of integer vectors, in core TensorFlow ops.

**A reference codec.** This is the zeroth-order rANS codec, kept because it
is the simplest rANS codec here: its bytes are checked bit-exact against a
numpy model of the format below, and its coded bits against
tensorflow-compression's range coder on the same symbols and quantized
tables (within 0.2 % of the ideal code length plus 36 bits per lane and 40
bits). On real model updates at 0.3-1 bits per parameter it measured larger
than Elias-gamma (`elias_gamma`) and 3-6x slower; for the fewest bits choose
`run_length_rans`.

Codes an `int32` vector with its own empirical zeroth-order distribution and
comes within a fraction of a percent of `n * H` bits (H: the empirical entropy
of the values) plus a small header and table. Only core TensorFlow ops are
used, so it runs eagerly and inside TFF federated computations (whose C++
worker has no tensorflow-compression ops). The values are split into `lanes`
contiguous blocks that are coded as independent rANS states in lock step:
one `tf.while_loop` iteration codes one symbol pair in every lane at once.

**Model.** The value distribution is factored into two kinds of symbols so
that (up to the quantization of probabilities and the ends of blocks) a
nonzero value `v` costs `-log2 P(v)` bits and a zero `-log2 P(0)`.

- *Run symbols* `r` in `0 .. R`: `r < R` means "`r` zeros, then a nonzero
  value" (`r + 1` values); `r = R` means "`R` zeros" (`R` values). Their
  frequencies are not sent: they follow from `n`, the nonzero count and `R`
  (`run_frequencies`), as `P0**r * (1 - P0)` and `P0**R` with `P0 = 1 -
  nonzero/n`. Long zero runs thus take few loop steps.
- *Value symbols* in `0 .. 2K + C - 1`, one per nonzero value, drawn from the
  sent histogram of the nonzero values: `0 .. K-1` are the values `-K .. -1`,
  `K .. 2K-1` the values `1 .. K`, and `2K + c` an *escape of class c*: a value
  with `m = |v| - K` in `[2**c, 2**(c+1))`, followed in the escape payload by
  its sign and the `c` low bits of `m` (Exp-Golomb classes, so a value near the
  int32 limits costs at most 32 raw bits plus its class symbol).

Frequencies are integers summing to `2**16` (`PRECISION`); every symbol that
occurs gets at least 1 (`quantize_frequencies`).

**rANS** (`rans_core` with 16-bit probabilities; Duda; 16-bit renormalisation
as in Giesen's `rans_word`): state `x` in `[L, L * 2**16)` with `L = 2**20`.
Encoding a symbol of frequency `f` and cumulative frequency `c` (symbols are
encoded last to first): if `x >= f * 2**20`, emit `x mod 2**16` and set `x
//= 2**16`; then `x = (x // f) * 2**16 + x mod f + c`. Decoding reverses it:
`slot = x mod 2**16` selects the symbol, `x = f * (x // 2**16) + slot - c`,
and if `x < L` a 16-bit word is read: `x = x * 2**16 + word`. The encoder
starts every lane at `x = L`; the decoder ends every lane there.

**Lanes.** With `B = ceil(n / lanes)`, lane `i` codes values `i*B ..
min(n, (i+1)*B) - 1` as run symbols (and, after a run symbol `r < R`, the value
symbol of the nonzero) in order; a block's trailing zeros end in run symbols
`R`, the last of which may run past the block end. Decoding step `t` decodes
the `t`-th run symbol of every unfinished lane, reads a word for each lane that
needs one (in lane order), then decodes the value symbols of the lanes whose
run symbol was `< R` and reads again (in lane order). The word stream is these
reads in this order.

**Byte format** (fields LSB-first as in `bitstream`; `n` is not stored):

  bits  0..31     nonzero count `N` (0 <= N <= n)
  bits 32..63     `lanes` (0 iff n = 0; else 1..n and `lanes = ceil(n / B)`)
  bits 64..79     `K`, the largest magnitude with its own value symbols
  bits 80..85     `C`, the number of escape classes (0..32)
  bits 86..101    `R`, the run length of run symbol `R` (1..4096)
  bits 102..133   `T`, the number of decoding steps: the largest number of
                  run symbols of a lane (0 iff n = 0; at most `B`)
  table           for the `V = 2K + C` value symbols: `V` 5-bit fields
                  `len_s = bit_length(f_s)` (0..17), then `V` fields with the
                  `len_s - 1` low bits of `f_s` (empty when `len_s <= 1`).
                  `sum f_s = 2**16` if `N > 0`; `V = 0` if `N = 0`.
  lane states     `lanes` 36-bit fields, each lane's initial decoder state
  zero bits up to a whole byte
  words           16-bit words (2 bytes each, little-endian), in read order
  escape payload  per escaped value, in value order: a sign bit (1 =
                  positive), then the `c` low bits of `|v| - K`
  zero bits up to a whole byte

Everything before the word stream except the lane states is side information
(`side_info_bits`): header, table and alignment. The lane states are the rANS
flush (about 28 bits of overhead per lane) and count as coded bits, as do the
words and the escape payload. The encoder picks `K`, `R` and `lanes` from the
data (see `encode_to_bytes`); the decoder reads them.

**Canonical decoding.** `K` (0..32767), `R` (1..4096) and `lanes` (any count
with `lanes = ceil(n / ceil(n / lanes))`, 0 iff `n = 0`) are the encoder's
free choices: the decoder accepts every value in these ranges. For given
values and given `(K, R, lanes)` exactly one byte string is valid, and
`decode_from_bytes` returns `ok = True` if and only if the data is that
string for the values it returns. It checks: `N` equals the number of
decoded nonzero values; `C` is the largest escape class used plus one (0
without escapes); every length field is at most 17 and the frequencies are
exactly `quantize_frequencies` of the decoded value symbols' counts (so a
symbol that does not occur has length 0); `T` is the exact number of
decoding steps; every lane state is at least `L`, and every lane ends in state
`L` with its block exactly filled (no value past the block end); the
alignment bits before the word stream are zero; the words are exactly the
words the decoder reads; an escaped value lies in the int32 range; the data
ends with the escape payload and fewer than 8 zero padding bits (no missing
or trailing bytes). A change that yields another valid stream (a flipped
sign or low bit in the escape payload, for one) is not detectable here: that
is for a checksum around the payload.
"""

import math

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import rans_core

PRECISION = 16
PROB_SCALE = 1 << PRECISION
WORD_BITS = rans_core.WORD_BITS
STATE_LOWER = rans_core.STATE_LOWER  # L: 4 bits above PRECISION keep rANS' loss ~1e-5.
STATE_BITS = rans_core.STATE_BITS  # Lane states lie in [L, L * 2**16).
LENGTH_FIELD_BITS = 5
HEADER_BITS = 134
MAX_CENTRAL = 32767  # The format's bound on K.
MAX_CLASSES = 32
MAX_RUN = 4096
# Encoder choices (not part of the format).
CENTRAL_CAP = 4095  # The encoder's bound on K.
CENTRAL_MIN_COUNT = 16  # A magnitude gets own symbols from this many values.
RUN_ZERO_PROBABILITY = 1 / 16  # R is chosen so that P(run symbol R) ~ this.
DEFAULT_LANE_OVERHEAD = 0.005
DEFAULT_MAX_LANES = 4096

_FIXED_BITS = 30  # Fixed-point bits of P0 powers in `run_frequencies`.
_MASK = PROB_SCALE - 1


def _i64(value) -> tf.Tensor:
  return tf.cast(value, tf.int64)


def quantize_frequencies(weights: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
  """Integer frequencies summing to `2**16`, at least 1 for present symbols.

  `f_s = 1 + floor(w_s * (2**16 - P) / W)` for each of the `P` present symbols
  (`W`: their total weight), 0 for the others; what is left of `2**16` goes to
  the first symbol of largest weight. All zeros if no symbol is present.
  Integer arithmetic only, so encoder and decoder agree bit for bit.

  Args:
    weights: `int64` vector of non-negative weights below 2**40.
    present: bool vector, the symbols that must be codable.

  Returns:
    An `int64` vector shaped like `weights`.
  """
  weights = tf.where(present, _i64(weights), tf.zeros_like(_i64(weights)))
  num_present = tf.reduce_sum(tf.cast(present, tf.int64))
  total = tf.maximum(tf.reduce_sum(weights), 1)
  freqs = tf.where(
      present, 1 + weights * (PROB_SCALE - num_present) // total,
      tf.zeros_like(weights))
  # The first largest weight, explicitly (argmax does not promise which tie
  # it returns, and encoder and decoder may run on different devices).
  index = tf.range(tf.size(weights, out_type=tf.int64))
  largest = tf.reduce_max(tf.concat([tf.where(present, weights, -1), [-1]], 0))
  top = tf.reduce_min(tf.concat(
      [tf.where(present & tf.equal(weights, largest), index,
                tf.size(weights, out_type=tf.int64)),
       [tf.size(weights, out_type=tf.int64)]], 0))
  freqs += tf.one_hot(top, tf.size(weights), dtype=tf.int64) * (
      PROB_SCALE - tf.reduce_sum(freqs))
  return tf.where(num_present > 0, freqs, tf.zeros_like(freqs))


def _fixed_power(base: tf.Tensor, exponents: tf.Tensor) -> tf.Tensor:
  """`base**e` in 2**-30 fixed point, by squaring (exponents < 2**13)."""
  result = tf.fill(tf.shape(exponents), tf.constant(1 << _FIXED_BITS, tf.int64))
  for bit in range(13):
    use = tf.bitwise.bitwise_and(exponents, 1 << bit) > 0
    result = tf.where(
        use, tf.bitwise.right_shift(result * base, _FIXED_BITS), result)
    base = tf.bitwise.right_shift(base * base, _FIXED_BITS)
  return result


def run_frequencies(num_elements, num_nonzero, run_limit) -> tf.Tensor:
  """Frequencies of the run symbols `0 .. R`, derived from counts only.

  With `q = floor((n - N) * 2**30 / n)` (`P0` in fixed point) and `z_r = q**r`
  (`_fixed_power`), the weights are `floor(z_r * (2**30 - q) / 2**30)` for
  `r < R` and `z_R` for `r = R`, quantized by `quantize_frequencies`; symbols
  `r < R` are present when `N > 0` (for `r > 0` also `N < n`), `R` when `N < n`.

  Args:
    num_elements: Scalar, `n`.
    num_nonzero: Scalar, `N` (`0 <= N <= n`).
    run_limit: Scalar, `R` (1..4096).

  Returns:
    An `int64` vector of `R + 1` frequencies.
  """
  n, nonzero, limit = _i64(num_elements), _i64(num_nonzero), _i64(run_limit)
  one = tf.constant(1 << _FIXED_BITS, tf.int64)
  q = tf.bitwise.left_shift(n - nonzero, _FIXED_BITS) // tf.maximum(n, 1)
  r = tf.range(limit + 1)
  power = _fixed_power(q, r)
  weights = tf.where(
      r < limit, tf.bitwise.right_shift(power * (one - q), _FIXED_BITS), power)
  present = tf.where(
      r < limit, (nonzero > 0) & (tf.equal(r, 0) | (nonzero < n)),
      tf.fill(tf.shape(r), nonzero < n))
  return quantize_frequencies(weights, present)


def _slot_tables(freqs: tf.Tensor):
  """Per slot `0 .. 2**16-1`: `(symbol, f_symbol, slot - c_symbol)`.

  `freqs` must sum to `2**16` (the callers substitute a valid table
  otherwise), so every slot belongs to exactly one symbol with `f > 0`.
  """
  cumulative = tf.math.cumsum(freqs)
  slots = tf.range(PROB_SCALE, dtype=tf.int64)
  symbol = tf.searchsorted(cumulative, slots, side='right', out_type=tf.int64)
  symbol = tf.minimum(symbol, tf.size(freqs, out_type=tf.int64) - 1)
  freq = tf.gather(freqs, symbol)
  bias = slots - (tf.gather(cumulative, symbol) - freq)
  return symbol, freq, bias


def _with_fallback(freqs: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
  """`freqs` plus a last symbol that gets all of `2**16` when not `valid`."""
  size = tf.size(freqs)
  fallback = tf.one_hot(size, size + 1, dtype=tf.int64) * PROB_SCALE
  return tf.where(valid, tf.concat([freqs, [0]], 0), fallback)


def _choose_central(magnitudes: tf.Tensor) -> tf.Tensor:
  """K: the largest magnitude (<= CENTRAL_CAP) that occurs often enough."""
  clipped = tf.cast(tf.minimum(magnitudes, CENTRAL_CAP + 1), tf.int32)
  counts = tf.math.bincount(
      clipped, minlength=CENTRAL_CAP + 2, maxlength=CENTRAL_CAP + 2)
  m = tf.range(CENTRAL_CAP + 2, dtype=tf.int64)
  frequent = (counts >= CENTRAL_MIN_COUNT) & (m >= 1) & (m <= CENTRAL_CAP)
  return tf.reduce_max(tf.where(frequent, m, 0))


_spec = rans_core.spec


@rans_core.graph_when_eager([_spec(None, None)] * 4 + [_spec(dtype=tf.int32)])
def _encode_lanes(run_f, run_c, value_f, value_c, lanes):
  """Runs the encoder over `[steps, lanes]` symbol parameters, last step first.

  Returns:
    `(states, before_run, before_value)`: the final states (`[lanes]`) and the
    states before coding each run / value symbol (`[steps, lanes]`), from
    which the emitted words follow.
  """
  steps = tf.shape(run_f)[0]

  def unstacked(matrix):
    return tf.TensorArray(tf.int64, size=steps).unstack(matrix)

  inputs = [unstacked(m) for m in (run_f, run_c, value_f, value_c)]

  def outputs():
    # One extra zero row keeps `stack` defined when there are no steps.
    array = tf.TensorArray(tf.int64, size=steps + 1)
    return array.write(steps, tf.zeros([lanes], tf.int64))

  def body(t, x, before_run, before_value):
    t -= 1
    rf, rc, vf, vc = (a.read(t) for a in inputs)
    # Reverse of the decoding order: the value symbol, then the run symbol.
    before_value = before_value.write(t, x)
    x = rans_core.encode_step(x, vf, vc, PRECISION)
    before_run = before_run.write(t, x)
    x = rans_core.encode_step(x, rf, rc, PRECISION)
    return t, x, before_run, before_value

  _, states, before_run, before_value = tf.while_loop(
      lambda t, *_: t > 0,
      body,
      (steps, tf.fill([lanes], tf.constant(STATE_LOWER, tf.int64)),
       outputs(), outputs()))
  return (states, before_run.stack()[:steps], before_value.stack()[:steps])


def _choose_lanes(n, num_nonzero, value_counts, payload_bits, lane_overhead,
                  max_lanes):
  """Lanes whose states cost about `lane_overhead` of the estimated bits."""
  nf = tf.cast(n, tf.float64)
  nonzero = tf.cast(num_nonzero, tf.float64)
  counts = tf.cast(value_counts, tf.float64)
  zeros = nf - nonzero
  nats = -(tf.math.xlogy(zeros, zeros / tf.maximum(nf, 1.0))
           + tf.math.xlogy(nonzero, nonzero / tf.maximum(nf, 1.0))
           + tf.reduce_sum(tf.math.xlogy(counts, counts / tf.maximum(nonzero, 1.0))))
  estimate = nats / math.log(2.0) + tf.cast(payload_bits, tf.float64)
  lanes = tf.cast(tf.floor(lane_overhead * estimate / STATE_BITS), tf.int64)
  lanes = tf.minimum(tf.clip_by_value(lanes, 1, max_lanes), tf.maximum(n, 1))
  block = tf.maximum((n + lanes - 1) // lanes, 1)
  # Recomputed so that no lane is empty; 0 lanes code an empty vector.
  lanes = tf.where(n > 0, (n + block - 1) // block, tf.zeros_like(n))
  return lanes, block


def _choose_run_limit(n, num_nonzero):
  """R with `P0**R ~ RUN_ZERO_PROBABILITY`: long runs cost few steps."""
  p0 = tf.cast(n - num_nonzero, tf.float64) / tf.cast(tf.maximum(n, 1), tf.float64)
  log_p0 = tf.math.log(tf.clip_by_value(p0, 1e-300, 1.0 - 1e-16))
  limit = tf.round(math.log(RUN_ZERO_PROBABILITY) / log_p0)
  limit = tf.cast(tf.clip_by_value(limit, 1.0, MAX_RUN), tf.int64)
  return tf.where(tf.equal(num_nonzero, 0), tf.constant(MAX_RUN, tf.int64), limit)


def _value_symbols(nonzero: tf.Tensor):
  """Value symbols and escape payload of the nonzero values (`int64`).

  Returns:
    `(K, C, symbols, payload, payload_len)`: the payload field of an escape
    is its sign bit plus, above it, the low `c` bits of `|v| - K` (`c + 1`
    bits); 0 bits for the other values.
  """
  magnitude = tf.abs(nonzero)
  central = _choose_central(magnitude)
  escaped = magnitude > central
  excess = tf.maximum(magnitude - central, 1)
  escape_class = bitstream.bit_length(excess) - 1
  num_classes = tf.reduce_max(
      tf.concat([tf.where(escaped, escape_class + 1, 0), [0]], 0))
  symbols = tf.where(
      escaped, 2 * central + escape_class,
      tf.where(nonzero < 0, nonzero + central, nonzero + central - 1))
  low_bits = excess - tf.bitwise.left_shift(tf.ones_like(excess), escape_class)
  payload = tf.bitwise.bitwise_or(
      tf.cast(nonzero > 0, tf.uint64),
      tf.bitwise.left_shift(tf.cast(low_bits, tf.uint64), bitstream.one()))
  payload = tf.where(escaped, payload, tf.zeros_like(payload))
  payload_len = tf.where(escaped, escape_class + 1, 0)
  return central, num_classes, symbols, payload, payload_len


def _lane_symbols(index, symbols, n, lanes, block, run_limit, num_symbols):
  """Lays the symbols out per decoding step and lane.

  Per nonzero value with `g` zeros before it in its block: `g // R` run
  symbols `R`, then run symbol `g % R` with the value symbol; a block's `r`
  trailing zeros: `ceil(r / R)` run symbols `R`.

  Args:
    index: `int64` positions of the nonzero values, increasing.
    symbols: Their value symbols.
    n, lanes, block, run_limit, num_symbols: Scalars `n`, lanes, `B`, `R`, `V`.

  Returns:
    `(runs, values, steps)`: `[steps, lanes]` run symbols and value symbols;
    steps past a lane's end hold run symbol `R + 1` and places without a
    value the value symbol `V` (both no-ops in `_coding_table`).
  """
  lane = index // block
  position = index - lane * block
  first = tf.not_equal(lane, tf.concat([[-1], lane[:-1]], 0))
  previous = tf.where(first, -tf.ones_like(position),
                      tf.concat([[-1], position[:-1]], 0))
  gap = position - previous - 1
  phrases = gap // run_limit + 1  # run symbols up to this value's
  run_symbol = gap - (phrases - 1) * run_limit
  lane_phrases = bitstream.sorted_segment(tf.math.segment_sum, phrases, lane, lanes)
  lane_end = tf.maximum(
      bitstream.sorted_segment(tf.math.segment_max, position + 1, lane, lanes), 0)
  block_len = tf.minimum(block, n - tf.range(lanes) * block)
  count = lane_phrases + (block_len - lane_end + run_limit - 1) // run_limit
  steps = tf.reduce_max(tf.concat([count, [0]], 0))
  rank = (tf.math.cumsum(phrases) - 1
          - tf.gather(tf.math.cumsum(lane_phrases, exclusive=True), lane))
  cell = tf.stack([lane, rank], 1)  # lane-major: sorted, as to_dense wants
  shape = tf.stack([lanes, steps])
  runs = tf.transpose(tf.sparse.to_dense(
      tf.SparseTensor(cell, run_symbol, shape), default_value=run_limit,
      validate_indices=False))
  active = tf.range(steps)[:, tf.newaxis] < count[tf.newaxis, :]
  runs = tf.where(active, runs, run_limit + 1)
  values = tf.transpose(tf.sparse.to_dense(
      tf.SparseTensor(cell, symbols, shape), default_value=num_symbols,
      validate_indices=False))
  return runs, values, steps


def _coding_table(freqs: tf.Tensor):
  """`(f, c)` per symbol, plus a no-op symbol (`f = 2**16`, `c = 0`)."""
  freqs = tf.concat([freqs, [PROB_SCALE]], 0)
  cumulative = tf.math.cumsum(freqs, exclusive=True)
  return freqs, tf.concat([cumulative[:-1], [0]], 0)


def encode_to_bytes(
    values: tf.Tensor,
    lane_overhead: float = DEFAULT_LANE_OVERHEAD,
    max_lanes: int = DEFAULT_MAX_LANES,
) -> tf.Tensor:
  """Encodes an `int32` vector in the format of the module docstring.

  The encoder's choices, all stored in the header: `K`, the largest magnitude
  (up to 4095) that occurs at least 16 times; `R`, such that a run symbol `R`
  has probability about 1/16; `lanes`, such that the 36-bit lane states cost
  about `lane_overhead` of the estimated coded bits (fewer lanes: fewer bits,
  more loop steps), at most `max_lanes` and `n`.

  Args:
    values: A rank-1 `int32` tensor (any values, including INT32_MIN).
    lane_overhead: Python float > 0, see above.
    max_lanes: Python int >= 1, see above.

  Returns:
    A `uint8` vector, the encoded bytes.
  """
  if not lane_overhead > 0:
    raise ValueError(f'lane_overhead must be > 0, got {lane_overhead}.')
  if not isinstance(max_lanes, int) or max_lanes < 1:
    raise ValueError(f'max_lanes must be an int >= 1, got {max_lanes!r}.')
  values = tf.convert_to_tensor(values)
  if values.dtype != tf.int32:
    raise TypeError(f'Expected int32 values, got {values.dtype}.')
  values = _i64(tf.reshape(values, [-1]))
  n = tf.size(values, out_type=tf.int64)

  index = tf.where(tf.not_equal(values, 0))[:, 0]
  num_nonzero = tf.size(index, out_type=tf.int64)
  central, num_classes, symbol, payload, payload_len = _value_symbols(
      tf.gather(values, index))
  num_symbols = 2 * central + num_classes
  counts = tf.math.bincount(
      tf.cast(symbol, tf.int32), minlength=tf.cast(num_symbols, tf.int32),
      maxlength=tf.cast(num_symbols, tf.int32), dtype=tf.int64)
  value_freqs = quantize_frequencies(counts, counts > 0)

  lanes, block = _choose_lanes(n, num_nonzero, counts,
                               tf.reduce_sum(payload_len), lane_overhead,
                               max_lanes)
  run_limit = _choose_run_limit(n, num_nonzero)
  states, words, steps = _code_lanes(
      index, symbol, n, lanes, block, run_limit, num_symbols,
      run_frequencies(n, num_nonzero, run_limit), value_freqs)
  side_info = _side_info_bytes(
      tf.stack([num_nonzero, lanes, central, num_classes, run_limit, steps]),
      num_symbols, value_freqs, lanes, states)
  return tf.concat([
      side_info,
      rans_core.word_bytes(words),
      rans_core.payload_bytes(
          payload, tf.math.cumsum(payload_len, exclusive=True), payload_len),
  ], 0)


def _code_lanes(index, symbol, n, lanes, block, run_limit, num_symbols,
                run_freqs, value_freqs):
  """rANS-codes the symbols of the nonzero values at `index` in `lanes` lanes.

  Returns:
    `(states, words, steps)`: the lanes' final encoder states (the decoder's
    initial states), the emitted words in read order, and `T`.
  """
  runs, value_symbols, steps = _lane_symbols(
      index, symbol, n, lanes, block, run_limit, num_symbols)
  run_f, run_c = _coding_table(run_freqs)
  value_f, value_c = _coding_table(value_freqs)
  run_fm, value_fm = tf.gather(run_f, runs), tf.gather(value_f, value_symbols)
  states, before_run, before_value = _encode_lanes(
      run_fm, tf.gather(run_c, runs), value_fm,
      tf.gather(value_c, value_symbols), tf.cast(lanes, tf.int32))
  # Read order: step, then run before value, then lane.
  words = rans_core.emitted_words(
      tf.stack([before_run, before_value], 1),
      tf.stack([run_fm, value_fm], 1), PRECISION)
  return states, words, steps


def _side_info_bytes(header_values, num_symbols, value_freqs, lanes, states):
  """Header (`header_values`: `[N, lanes, K, C, R, T]`), table and lane
  states (the decoder's initial states), padded with zero bits to a byte."""
  lengths = bitstream.bit_length(value_freqs)
  mantissa_len = tf.maximum(lengths - 1, 0)
  mantissa = tf.bitwise.bitwise_and(
      value_freqs,
      tf.bitwise.left_shift(tf.ones_like(value_freqs), mantissa_len) - 1)
  table_start = HEADER_BITS
  mantissa_start = table_start + LENGTH_FIELD_BITS * num_symbols
  states_start = mantissa_start + tf.reduce_sum(mantissa_len)
  side_bits = states_start + STATE_BITS * lanes
  side_bytes = (side_bits + 7) // 8
  header = bitstream.write_fields(
      values=[
          tf.cast(header_values, tf.uint64),
          tf.cast(lengths, tf.uint64),
          tf.cast(mantissa, tf.uint64),
          tf.cast(states, tf.uint64),
      ],
      offsets=[
          tf.constant([0, 32, 64, 80, 86, 102], tf.int64),
          table_start + LENGTH_FIELD_BITS * tf.range(num_symbols),
          mantissa_start + tf.math.cumsum(mantissa_len, exclusive=True),
          states_start + STATE_BITS * tf.range(lanes),
      ],
      # A spare word: empty fields may start at the very end.
      num_words=side_bytes // 8 + 2,
  )
  return bitstream.words_to_bytes(header, side_bytes)


def _read_field(words, offset, width):
  return _i64(bitstream.low_bits(bitstream.read_bits(words, offset), width))


def _parse(data: tf.Tensor, num_elements):
  """Reads header, table and lane states; clamps them to safe ranges.

  Returns:
    A dict of the (clamped) fields, derived sizes and `ok`, False when a
    field is out of range.
  """
  data = tf.reshape(data, [-1])
  n = _i64(num_elements)
  words = bitstream.bytes_to_words(data)
  nonzero = _read_field(words, [0], 32)[0]
  lanes = _read_field(words, [32], 32)[0]
  central = _read_field(words, [64], 16)[0]
  num_classes = _read_field(words, [80], 6)[0]
  run_limit = _read_field(words, [86], 16)[0]
  steps = _read_field(words, [102], 32)[0]
  ok = ((nonzero <= n) & (central <= MAX_CENTRAL)
        & (num_classes <= MAX_CLASSES) & (run_limit >= 1)
        & (run_limit <= MAX_RUN))
  nonzero = tf.minimum(nonzero, n)
  central = tf.minimum(central, MAX_CENTRAL)
  num_classes = tf.minimum(num_classes, MAX_CLASSES)
  run_limit = tf.clip_by_value(run_limit, 1, MAX_RUN)
  # Lanes: bounded by n before anything is sized by them.
  ok &= (lanes <= n) & tf.equal(lanes > 0, n > 0)
  lanes = tf.where(n > 0, tf.clip_by_value(lanes, 1, tf.maximum(n, 1)), 0)
  block = tf.maximum((n + lanes - 1) // tf.maximum(lanes, 1), 1)
  ok &= tf.equal(lanes, (n + block - 1) // block)
  ok &= (steps <= tf.where(n > 0, block, 0)) & tf.equal(steps > 0, n > 0)

  num_symbols = 2 * central + num_classes
  lengths = _read_field(
      words, HEADER_BITS + LENGTH_FIELD_BITS * tf.range(num_symbols),
      LENGTH_FIELD_BITS)
  ok &= tf.reduce_all(lengths <= PRECISION + 1)
  lengths = tf.minimum(lengths, PRECISION + 1)
  mantissa_len = tf.maximum(lengths - 1, 0)
  mantissa_start = HEADER_BITS + LENGTH_FIELD_BITS * num_symbols
  mantissa = _read_field(
      words, mantissa_start + tf.math.cumsum(mantissa_len, exclusive=True),
      mantissa_len)
  value_freqs = tf.where(
      lengths > 0,
      tf.bitwise.left_shift(tf.ones_like(lengths), mantissa_len) + mantissa,
      0)
  ok &= tf.where(nonzero > 0,
                 tf.equal(tf.reduce_sum(value_freqs), PROB_SCALE),
                 tf.equal(num_symbols, 0))
  states_start = mantissa_start + tf.reduce_sum(mantissa_len)
  states = _read_field(words, states_start + STATE_BITS * tf.range(lanes),
                       STATE_BITS)
  ok &= tf.reduce_all(states >= STATE_LOWER)
  side_bits = states_start + STATE_BITS * lanes
  word_start = (side_bits + 7) // 8
  # The alignment bits before the word stream must be zero.
  ok &= tf.equal(_read_field(words, tf.reshape(side_bits, [1]),
                             8 * word_start - side_bits)[0], 0)
  return dict(
      data=data, words=words, n=n, nonzero=nonzero, lanes=lanes, block=block,
      central=central, num_classes=num_classes, run_limit=run_limit,
      steps=steps,
      num_symbols=num_symbols, value_freqs=value_freqs,
      states=tf.maximum(states, STATE_LOWER), side_bits=side_bits,
      word_start=word_start, ok=ok)


def side_info_bits(data: tf.Tensor, num_elements) -> tf.Tensor:
  """Bits before the word stream other than lane states: header, table, pad."""
  fields = _parse(data, num_elements)
  return 8 * fields['word_start'] - STATE_BITS * fields['lanes']


def lane_state_bits(data: tf.Tensor, num_elements) -> tf.Tensor:
  """Bits of the lane states (the rANS flush), `36 * lanes`."""
  return STATE_BITS * _parse(data, num_elements)['lanes']


def decoding_steps(data: tf.Tensor, num_elements) -> tf.Tensor:
  """`T`, the dependent steps of decoding (and encoding): the most run symbols of a lane.

  Every lane's state after step `t` depends on its state after step `t - 1`,
  so any decoder of this format runs `T` steps one after the other.
  """
  return _parse(data, num_elements)['steps']


def _renormalize(x, need, pointer, words):
  """Reads the next word into each lane that `need`s one, in lane order."""
  need_count = tf.cast(need, tf.int64)
  at = tf.minimum(pointer + tf.math.cumsum(need_count, exclusive=True),
                  tf.size(words, out_type=tf.int64) - 1)
  return (rans_core.read_words(x, need, words, at),
          pointer + tf.reduce_sum(need_count))


_TABLE = (_spec(PROB_SCALE),) * 3


@rans_core.graph_when_eager([_spec(None), _spec(None), _spec(), _TABLE, _TABLE,
                             _spec(None), _spec(dtype=tf.int32)])
def _decode_lanes(states, block_len, run_limit, run_table, value_table, words,
                  max_steps):
  """Decodes every lane until its block is full.

  Returns:
    `(states, position, pointer, runs, value_slots)`: final states, values
    filled per lane, number of words read, and per step and lane (`[steps,
    lanes]`) the run symbol and the slot of the value symbol (meaningful where
    a value was decoded). Stops after `max_steps` steps.
  """
  run_symbol, run_f, run_bias = run_table
  _, value_f, value_bias = value_table
  lanes = tf.shape(states)[0]

  def outputs():
    # Row 0 is a dummy, so that `stack` is defined when there are no steps.
    return tf.TensorArray(tf.int64, size=1, dynamic_size=True).write(
        0, tf.zeros([lanes], tf.int64))

  def body(t, x, position, pointer, runs, value_slots):
    active = position < block_len
    slot = tf.bitwise.bitwise_and(x, _MASK)
    run = tf.gather(run_symbol, slot)
    decoded = rans_core.decode_step(x, tf.gather(run_f, slot),
                                    tf.gather(run_bias, slot), PRECISION)
    decoded, pointer = _renormalize(
        decoded, active & (decoded < STATE_LOWER), pointer, words)
    x = tf.where(active, decoded, x)
    has_value = active & (run < run_limit)
    slot = tf.bitwise.bitwise_and(x, _MASK)
    decoded = rans_core.decode_step(x, tf.gather(value_f, slot),
                                    tf.gather(value_bias, slot), PRECISION)
    decoded, pointer = _renormalize(
        decoded, has_value & (decoded < STATE_LOWER), pointer, words)
    x = tf.where(has_value, decoded, x)
    position = tf.where(
        active, position + tf.minimum(run + 1, run_limit), position)
    return (t + 1, x, position, pointer, runs.write(t, run),
            value_slots.write(t, slot))

  _, states, position, pointer, runs, value_slots = tf.while_loop(
      lambda t, x, position, *_: tf.reduce_any(position < block_len),
      body,
      (tf.constant(1), states, tf.zeros_like(states),
       tf.constant(0, tf.int64), outputs(), outputs()),
      maximum_iterations=max_steps)
  return (states, position, pointer, runs.stack()[1:],
          value_slots.stack()[1:])


def decode_from_bytes(
    data: tf.Tensor, num_elements) -> tuple[tf.Tensor, tf.Tensor]:
  """Decodes `encode_to_bytes`' format; never reads out of bounds.

  Args:
    data: A `uint8` vector.
    num_elements: The number of encoded values (Python int or scalar).

  Returns:
    `(values, ok)`: the decoded `int32` vector of `num_elements` values and a
    scalar bool, True if and only if `data` is the canonical encoding of the
    values for the header's `(K, R, lanes)` (module docstring, "Canonical
    decoding"); when False, `values` is all zeros.
  """
  f = _parse(data, num_elements)
  data, n, lanes, block = f['data'], f['n'], f['lanes'], f['block']
  run_limit, num_symbols = f['run_limit'], f['num_symbols']
  ok = f['ok']

  run_freqs = run_frequencies(n, f['nonzero'], run_limit)
  run_table = _slot_tables(_with_fallback(run_freqs, n > 0))
  value_table = _slot_tables(
      _with_fallback(f['value_freqs'], ok & (num_symbols > 0)))
  # 16-bit words from the byte after the lane states on (plus a zero guard).
  words, _ = rans_core.word_stream(data, f['word_start'])

  block_len = tf.minimum(block, n - tf.range(lanes) * block)
  # A bad header skips the loop: corrupt data is rejected fast, and the loop
  # runs at most T (<= B) steps.
  states, position, pointer, runs, value_slots = _decode_lanes(
      f['states'], block_len, run_limit, run_table, value_table, words,
      tf.cast(tf.where(ok, f['steps'], 0), tf.int32))
  ok &= tf.reduce_all(position >= block_len)
  ok &= tf.equal(tf.shape(runs, out_type=tf.int64)[0], f['steps'])
  ok &= tf.reduce_all(tf.equal(states, STATE_LOWER))

  index, symbol, symbols_ok = _decoded_symbols(
      f, runs, value_slots, block_len, value_table[0])
  payload_start = 8 * f['word_start'] + WORD_BITS * pointer
  value, end, values_ok = _decoded_values(f, symbol, payload_start)
  # The payload ends the stream, followed by zero bits up to a whole byte.
  ok &= symbols_ok & values_ok & rans_core.ends_at(
      f['words'], end, tf.size(data, out_type=tf.int64))

  index = tf.where(ok, index, tf.zeros_like(index))
  value = tf.where(ok, tf.cast(value, tf.int32), 0)
  dense = tf.sparse.to_dense(
      tf.SparseTensor(index[:, tf.newaxis], value, tf.reshape(n, [1])),
      validate_indices=False)
  return dense, ok


def _decoded_symbols(f, runs, value_slots, block_len, slot_symbol):
  """Positions and value symbols of the values `_decode_lanes` decoded.

  Returns:
    `(index, symbol, ok)`, in increasing index order (`slot_symbol`: the
    value symbol of each slot); `ok` is False when a value lies past its
    block end, the count is not `N` or a symbol is the fallback symbol.
  """
  run_limit = f['run_limit']
  # Positions of the decoded values, lane-major (= increasing index).
  length = tf.minimum(runs + 1, run_limit)
  before = tf.math.cumsum(length, axis=0, exclusive=True)
  has_value = (before < block_len) & (runs < run_limit)
  offset = before + runs
  ok = tf.reduce_all(tf.logical_not(has_value) | (offset < block_len))
  lane_start = tf.range(f['lanes']) * f['block']
  index = tf.boolean_mask(
      tf.transpose(offset + lane_start), tf.transpose(has_value))
  symbol = tf.gather(slot_symbol, tf.boolean_mask(
      tf.transpose(value_slots), tf.transpose(has_value)))
  ok &= tf.equal(tf.size(index, out_type=tf.int64), f['nonzero'])
  ok &= tf.reduce_all(symbol < f['num_symbols'])  # not the fallback symbol
  return index, symbol, ok


def _decoded_values(f, symbol, payload_start):
  """The values of value symbols; escapes read the payload at `payload_start`.

  Returns:
    `(values, end, ok)`: `int64` values, the bit offset where the payload
    ends, and whether the escaped values lie in the `int32` range and the
    table is canonical (`C` and the frequencies exactly those of `symbol`).
  """
  central, num_symbols = f['central'], f['num_symbols']
  escape_class = tf.maximum(symbol - 2 * central, 0)
  escaped = symbol >= 2 * central
  payload_len = tf.where(escaped, escape_class + 1, 0)
  window = bitstream.read_bits(
      f['words'], payload_start + tf.math.cumsum(payload_len, exclusive=True))
  excess = _i64(tf.bitwise.bitwise_or(
      tf.bitwise.left_shift(bitstream.one(), tf.cast(escape_class, tf.uint64)),
      bitstream.low_bits(tf.bitwise.right_shift(window, bitstream.one()),
                         escape_class)))
  magnitude = central + excess
  positive = tf.bitwise.bitwise_and(window, bitstream.one()) > 0
  escape_value = tf.where(positive, magnitude, -magnitude)
  ok = tf.reduce_all(
      tf.logical_not(escaped) | (escape_value <= 2**31 - 1)
      & (escape_value >= -2**31))
  # Canonical table: C is the largest escape class + 1, and the frequencies
  # are exactly those the encoder derives from the decoded symbols.
  ok &= tf.equal(f['num_classes'], tf.reduce_max(
      tf.concat([tf.where(escaped, escape_class + 1, 0), [0]], 0)))
  num_symbols_32 = tf.cast(num_symbols, tf.int32)
  counts = tf.math.bincount(
      tf.cast(symbol, tf.int32), minlength=num_symbols_32,
      maxlength=num_symbols_32, dtype=tf.int64)
  ok &= tf.reduce_all(tf.equal(
      quantize_frequencies(counts, counts > 0), f['value_freqs']))
  value = tf.where(escaped, escape_value,
                   tf.where(symbol < central, symbol - central,
                            symbol - central + 1))
  return value, payload_start + tf.reduce_sum(payload_len), ok


def encode(values: tf.Tensor, lane_overhead: float = DEFAULT_LANE_OVERHEAD,
           max_lanes: int = DEFAULT_MAX_LANES) -> tf.Tensor:
  """Encodes an `int32` vector as a scalar `tf.string` (`encode_to_bytes`)."""
  return bitstream.bytes_to_string(
      encode_to_bytes(values, lane_overhead, max_lanes))


def decode(stream: tf.Tensor, num_elements) -> tf.Tensor:
  """Decodes `encode`'s output; raises `InvalidArgumentError` if it is corrupt."""
  values, ok = decode_from_bytes(bitstream.string_to_bytes(stream),
                                 num_elements)
  check = tf.debugging.Assert(
      ok, [f'rANS stream is truncated or corrupted (expected {num_elements}'
           ' values).'])
  with tf.control_dependencies([check]):
    return tf.identity(values)
