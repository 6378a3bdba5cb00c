"""Context-modelled run-length rANS coder of integer vectors, in core TF ops.

Codes an `int32` vector (a flattened tensor of quantized update values) with a
two-pass, per-vector static model of what real updates look like: long runs of
zeros whose lengths depend on the previous run (dense rows and all-zero rows
of embeddings, scale differences between rows and columns), and nonzero values
whose magnitude depends on the length of the zero run before them and whose
sign may depend on the previous sign. Only core TensorFlow ops are used, so it
runs eagerly and inside TFF federated computations. When the run-length Elias-
gamma format of `elias_gamma` is not larger (tiny or peculiar vectors), the
output *is* that format, byte for byte, so this codec is never larger than
Elias-gamma on any vector.

**Coded order.** The values are coded in index order (`W = 0`) or, for a
vector that looks like a matrix, as the `n / W` by `W` matrix, possibly
transposed, with its columns grouped by class (a stable sort of the columns
by class), read row by row (`analyze`, `choose_order`): zeros of the rows of
unseen words then form long runs. Below, "index order" means this order.

**Symbols.** The nonzero values `v_0 .. v_{N-1}` (in index order) are coded
as pairs: the number `r_i >= 0` of zeros before `v_i` (after `v_{i-1}`), then
`v_i`. Zeros after the last nonzero value are implied by `N`. Both `r` and
`m = |v| - 1` (`0 .. 2**31 - 1`) are mapped to *class symbols* (`class_symbol`):
`x < 4` is symbol `x` with no extra bits; otherwise, with `u = x - 3` and
`e = bit_length(u) - 1`, symbol `4 + e` followed by the `e` low bits of `u`
(its *mantissa*, coded raw). Symbols are below 35 (`ALPHABET`).

- *Run symbol* of `v_i`: the class symbol of `r_i`.
- *Value symbol* of `v_i`: in sign mode `S = 0`, the class symbol `c` of
  `|v_i| - 1`, and the sign is a raw bit; in `S = 1`, `2c + s` with `s = 1`
  for a negative value (the sign is modelled).

**Contexts.** Run symbol `i` is coded in context `ctx_r(p)`, `p` the previous
run symbol (`p = 0` at the start of a lane); value symbol `i` in context
`ctx_v(q)` (`S = 0`) or `2 ctx_v(q) + s'` (`S = 1`), `q` the run symbol of `v_i`
and `s'` the sign bit of the previous value (0 at the start of a lane). A
context map with `G` contexts and thresholds `b_1 <= .. <= b_{G-1}` maps `p`
to `#{k : b_k <= p}` (`context_of_symbol`). The encoder chooses `G_r` in {1, 2,
4, 8}, `G_v` in {1, 2, 4}, `S` and the thresholds (quantiles of the symbols'
distribution) minimizing the estimated size (tables included); see
`encode_to_bytes`.

**Tables.** Each context `g` has precision `T_g` (0 for a context that codes
nothing, else `table_precision(n_g, k_g)` of its symbol count `n_g` and number
of distinct symbols `k_g`) and frequencies `f_s` summing to `2**T_g`
(`quantize_frequencies`: at least 1 for each symbol that occurs). The rANS
coder uses `f_s * 2**(12 - T_g)` out of `2**12` (`PRECISION`).

**rANS** (as in `rans`, with 12-bit probabilities): state `x` in `[L, L *
2**16)`, `L = 2**20`. Encoding a symbol of frequency `F` and cumulative
frequency `C` (last to first): if `x >= F * 2**24`, emit `x mod 2**16` and set
`x //= 2**16`; then `x = (x // F) * 2**12 + x mod F + C`. Decoding: `slot = x
mod 2**12` selects the symbol, `x = F * (x // 2**12) + slot - C`, and if `x <
L`, `x = x * 2**16 + (next word)`.

**Lanes.** With lane size `K` (nonzero values per lane, the encoder's
choice), lane `j` codes the pairs `j*K .. min(N, (j+1)*K) - 1`, so all lanes
but the last have exactly `K` pairs and decoding takes `K` steps. Step `t`
decodes the `t`-th run symbol of every lane that has one, reads a word for each
lane that needs one (in lane order), then decodes those lanes' value symbols
and reads again (in lane order). The word stream is these reads in this order.

**Raw bits and lane states** ("bits back"). The raw bits of pair `i` form one
field: the mantissa of `r_i`, then (if `S = 0`) the sign bit (1 = negative),
then the mantissa of `|v_i| - 1`. The fields of a lane, concatenated, are its
raw bits; the first `c_j = min(35, (its raw bit count))` of them are not
written to the payload: the encoder starts lane `j` in state `2**35 + (those
bits)` instead of `L`, and the decoder recovers them from the lane's final
state. A lane state thus costs about 8 bits instead of about 28.

**Byte format** (fields LSB-first as in `bitstream`; `n` is not stored):

  bits 0..7    byte 0: bit 7 = 1 (this format; Elias-gamma's first byte is
               below 128), bits 0..2 `G_r - 1`, bits 3..5 `G_v - 1`, bit 6 `S`
  bits 8..39   `N`, the number of nonzero values (1 <= N <= n; the vector of
               `n` zeros is the 5 bytes `0x80 0 0 0 0`)
  bits 40..71  `K` (1..N)
  bits 72..77  `A_r`: the largest run symbol plus one (1..35)
  bits 78..83  `A_m`: the largest magnitude class symbol plus one (1..35)
  bits 84..99  `W`, the row length of the coded order (0: the vector as is;
               else a divisor of `n` in `2 .. min(n // 2, 65535)`)
  bit  100     `t`: 1 if the `n / W` by `W` matrix is coded transposed
  bits 101..103 `k`: the column classes are `2**k` (`k` in 0..4; 0 = none)
  thresholds   `G_r - 1` run thresholds, then `G_v - 1` value thresholds,
               6 bits each (0..35, non-decreasing)
  classes      if `k > 0`: each column's class (`column_classes`), `k` bits
               per column of the coded matrix (at most 65535 columns)
  run table    the tables of the `G_r` run contexts (alphabet `A = A_r`)
  value table  the tables of the `G_v * (1 + S)` value contexts (alphabet
               `A = A_m * (1 + S)`)
  lane states  `ceil(N / K)` 36-bit fields, each lane's initial decoder state
  zero bits up to a whole byte
  words        16-bit words (2 bytes each, little-endian), in read order
  payload      the raw bits of the lanes in lane order, each lane without its
               first `c_j` bits
  zero bits up to a whole byte

A table of `G` contexts over an alphabet of `A` symbols (`write_table`):
`G` 4-bit precisions `T_g` (0..12); then for each context with `T_g > 0`, `A`
presence bits (1 = the symbol has `f_s > 0`); then for each present symbol (in
context, then symbol order) `bit_length(f_s) - 1` (0..`T_g`) in
`bit_length(T_g)` bits; then for each present symbol the `bit_length(f_s) - 1`
low bits of `f_s`.

Everything before the word stream except the lane states is side information
(`side_info_bits`): header, thresholds, column classes, tables and alignment.

**Canonical decoding.** `G_r`, `G_v`, `S`, the thresholds, `K` and the order
(`W`, `t`, `k`) are the encoder's free choices. For given values and choices
exactly one byte string is valid: `decode_from_bytes` checks that the order is
well formed (`W = 0` with `t = k = 0`, or `W` a divisor of `n` as above with
`t = 1` or `k > 0`) and its classes are exactly the `column_classes` of the
decoded columns, that `N`, `A_r` and `A_m` are exact, that every table is
exactly the quantized table of the symbols decoded in its context (so an
unused context has `T_g = 0`), that every lane ends in a state `2**35 + c`
with `c < 2**c_j`, that all words are read, that the decoded values lie in the
`int32` range, and that the stream ends with the payload and fewer than 8 zero
padding bits. A byte string whose first byte is below 128 is decoded (and
checked) by `elias_gamma`.
"""

import functools

import numpy as np
import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma

PRECISION = 12
PROB_SCALE = 1 << PRECISION
WORD_BITS = 16
STATE_LOWER = 1 << 20
STATE_BITS = 36
CARRY_BITS = 35
CARRY_BASE = 1 << CARRY_BITS
DIRECT = 4  # Class symbols 0..3 are the values 0..3 themselves.
ALPHABET = DIRECT + 31  # Class symbols are below this.
MAX_PRECISION = PRECISION
PRECISION_FIELD_BITS = 4
THRESHOLD_BITS = 6
MARKER = 0x80
HEADER_BITS = 104
ORDER_SAMPLE_VALUES = 1 << 18
MAX_COLUMNS = 65535
COLUMN_CLASSES = 16  # The encoder's K when it groups columns.
_HUGE = 1 << 60
MAX_ROW_LENGTH = 65535
ROW_LENGTH_SAMPLES = 2048
EMPTY_BYTES = 5  # The format of a vector without nonzero values.
RUN_CONTEXT_CHOICES = (1, 2, 4, 8)
VALUE_CONTEXT_CHOICES = (1, 2, 4)
MAX_RUN_CONTEXTS = 8
MAX_VALUE_CONTEXTS = 8  # G_v * (1 + S)
VALUE_ALPHABET = 2 * ALPHABET
DEFAULT_LANE_OVERHEAD = 0.003
MIN_LANE_SIZE = 32
_NOOP_FREQUENCY = PROB_SCALE  # F = 2**12, C = 0 leaves the rANS state as is.
_LOG_BITS = 16
# round(log2(f) * 2**16) for f = 0..4096 (0 for f = 0): size estimates are
# exact integers, so the encoder's choices do not depend on float rounding.
LOG2_TABLE = np.concatenate(
    [[0], np.round(np.log2(np.arange(1, PROB_SCALE + 1)) * (1 << _LOG_BITS))]
).astype(np.int64)


def _i64(value) -> tf.Tensor:
  return tf.cast(value, tf.int64)


# ----------------------------------------------------------------------------
# Model: symbols, contexts, tables (small pure functions).


def class_symbol(values: tf.Tensor):
  """Class symbol, mantissa and mantissa length of non-negative `int64` values.

  `x < 4`: `(x, 0, 0)`. Otherwise `u = x - 3`, `e = bit_length(u) - 1`:
  `(4 + e, u - 2**e, e)`. Exact for `x < 2**31`.
  """
  u = tf.maximum(values - (DIRECT - 1), 1)
  e = bitstream.bit_length(u) - 1
  direct = values < DIRECT
  symbol = tf.where(direct, values, DIRECT + e)
  mantissa = tf.where(direct, tf.zeros_like(u),
                      u - tf.bitwise.left_shift(tf.ones_like(u), e))
  return symbol, mantissa, tf.where(direct, tf.zeros_like(e), e)


def class_value(symbol: tf.Tensor, mantissa: tf.Tensor) -> tf.Tensor:
  """Inverse of `class_symbol`: the value of a class symbol and its mantissa."""
  e = tf.maximum(symbol - DIRECT, 0)
  return tf.where(symbol < DIRECT, symbol,
                  DIRECT - 1 + tf.bitwise.left_shift(tf.ones_like(e), e) + mantissa)


def mantissa_bits(symbol: tf.Tensor) -> tf.Tensor:
  """Number of mantissa bits of class symbols."""
  return tf.maximum(symbol - DIRECT, 0)


def quantile_thresholds(histogram: tf.Tensor, num_contexts: int) -> tf.Tensor:
  """Thresholds splitting a symbol histogram into `num_contexts` quantiles.

  With `c_s` the cumulative count up to symbol `s` and `N` the total,
  `b_k = #{s : c_s < ceil(k N / G)} + 1` for `k = 1 .. G - 1`.

  Args:
    histogram: `int64` vector of `ALPHABET` counts.
    num_contexts: Python int `G >= 1`.

  Returns:
    An `int64` vector of `G - 1` non-decreasing thresholds in `1 .. ALPHABET`.
  """
  cumulative = tf.math.cumsum(histogram)
  total = cumulative[-1]
  k = tf.range(1, num_contexts, dtype=tf.int64)
  target = (k * total + num_contexts - 1) // num_contexts
  below = tf.cast(cumulative[tf.newaxis, :] < target[:, tf.newaxis], tf.int64)
  return tf.reduce_sum(below, axis=1) + 1


def context_of_symbol(thresholds: tf.Tensor, size: int = ALPHABET + 1) -> tf.Tensor:
  """`#{k : b_k <= p}` for each symbol `p` in `0 .. size - 1` (`int64`)."""
  p = tf.range(size, dtype=tf.int64)
  return tf.reduce_sum(
      tf.cast(thresholds[tf.newaxis, :] <= p[:, tf.newaxis], tf.int64), axis=1)


def table_precision(count: tf.Tensor, distinct: tf.Tensor) -> tf.Tensor:
  """`T` of a context with `count` symbols of which `distinct` differ.

  0 if `count = 0`; else `min(12, max(1, ceil(ceil(log2 count) / 2) + 2,
  ceil(log2 distinct)))` (about half the bits of the count, as a two-part code
  wants, and enough slots for every symbol that occurs).
  """
  half = (bitstream.bit_length(tf.maximum(count - 1, 0)) + 1) // 2 + 2
  need = bitstream.bit_length(tf.maximum(distinct - 1, 0))
  precision = tf.minimum(tf.maximum(half, need), MAX_PRECISION)
  return tf.where(count > 0, tf.maximum(precision, 1), tf.zeros_like(precision))


def quantize_frequencies(counts: tf.Tensor, precision: tf.Tensor) -> tf.Tensor:
  """Frequencies summing to `2**T` per row, at least 1 for each present symbol.

  Per row (context) with counts `c_s`, `k` present symbols, total `n` and
  `M = 2**T`: `f_s = 1 + floor(c_s (M - k) / n)` for present symbols, 0 for the
  others; the rest of `M` goes to the first symbol of largest count. A row
  with `T = 0` (no symbols) is all zeros. Integer arithmetic only.

  Args:
    counts: `int64` tensor `[..., A]`.
    precision: `int64` tensor `[...]`, `table_precision` of each row.

  Returns:
    An `int64` tensor shaped like `counts`.
  """
  present = counts > 0
  k = tf.reduce_sum(tf.cast(present, tf.int64), axis=-1, keepdims=True)
  total = tf.maximum(tf.reduce_sum(counts, axis=-1, keepdims=True), 1)
  scale = tf.bitwise.left_shift(tf.ones_like(k), precision[..., tf.newaxis])
  freqs = tf.where(present, 1 + counts * (scale - k) // total,
                   tf.zeros_like(counts))
  size = tf.shape(counts, out_type=tf.int64)[-1]
  index = tf.range(size)
  largest = tf.reduce_max(counts, axis=-1, keepdims=True)
  top = tf.reduce_min(tf.where(present & tf.equal(counts, largest), index, size),
                      axis=-1, keepdims=True)
  rest = scale - tf.reduce_sum(freqs, axis=-1, keepdims=True)
  freqs += tf.where(tf.equal(index, top), rest, tf.zeros_like(freqs))
  return tf.where(precision[..., tf.newaxis] > 0, freqs, tf.zeros_like(freqs))


def model_tables(counts: tf.Tensor):
  """`(T, f)` of context counts `[..., G, A]`: precisions and frequencies."""
  distinct = tf.reduce_sum(tf.cast(counts > 0, tf.int64), axis=-1)
  precision = table_precision(tf.reduce_sum(counts, axis=-1), distinct)
  return precision, quantize_frequencies(counts, precision)


def table_bits(precision: tf.Tensor, freqs: tf.Tensor, num_contexts,
               alphabet) -> tf.Tensor:
  """Bits of `write_table` for the first `num_contexts` rows and `alphabet` symbols.

  `4 G + sum over rows with T > 0 of (A + sum over present symbols of
  (bit_length(T) + bit_length(f) - 1))`. Rows and symbols beyond must be zero.
  """
  used = precision > 0
  per_symbol = tf.where(
      freqs > 0,
      bitstream.bit_length(precision)[..., tf.newaxis]
      + bitstream.bit_length(freqs) - 1, tf.zeros_like(freqs))
  rows = tf.where(used, _i64(alphabet) + tf.reduce_sum(per_symbol, axis=-1),
                  tf.zeros_like(precision))
  return PRECISION_FIELD_BITS * _i64(num_contexts) + tf.reduce_sum(rows, axis=-1)


def coded_cost(counts: tf.Tensor, precision: tf.Tensor,
               freqs: tf.Tensor) -> tf.Tensor:
  """`sum c_s (T - log2 f_s)` in units of `2**-16` bits (exact integers)."""
  log_f = tf.gather(tf.constant(LOG2_TABLE), freqs)
  per_symbol = counts * (
      tf.bitwise.left_shift(precision, _LOG_BITS)[..., tf.newaxis] - log_f)
  return tf.reduce_sum(tf.where(counts > 0, per_symbol, tf.zeros_like(counts)),
                       axis=[-2, -1])


def _first_min(costs: tf.Tensor) -> tf.Tensor:
  """Index of the first smallest entry (explicitly: argmin promises no tie order)."""
  index = tf.range(tf.size(costs, out_type=tf.int64))
  return tf.reduce_min(tf.where(tf.equal(costs, tf.reduce_min(costs)), index,
                                tf.size(costs, out_type=tf.int64)))


def candidate_thresholds(histogram: tf.Tensor, choices) -> tf.Tensor:
  """`quantile_thresholds` for several context counts at once.

  Args:
    histogram: `int64` vector of `ALPHABET` counts.
    choices: Python ints, the context counts `G` (at most 8).

  Returns:
    An `int64` tensor `[len(choices), 7]`: row `c` holds the `G_c - 1`
    thresholds of `quantile_thresholds(histogram, G_c)`, then `ALPHABET + 1`
    (a threshold no symbol reaches).
  """
  cumulative = tf.math.cumsum(histogram)
  total = cumulative[-1]
  k = np.arange(1, MAX_RUN_CONTEXTS)[np.newaxis, :]
  g = np.array(choices)[:, np.newaxis]
  target = (tf.constant(k, tf.int64) * total + tf.constant(g - 1, tf.int64)) // g
  below = tf.cast(cumulative[tf.newaxis, tf.newaxis, :] < target[:, :, tf.newaxis],
                  tf.int64)
  return tf.where(tf.constant(k < g), tf.reduce_sum(below, axis=-1) + 1,
                  _i64(ALPHABET + 1))


def _context_counts_by_candidate(counts, contexts, rows: int):
  """Sums the rows of `counts` (`[ALPHABET, ...]`) per candidate context map.

  Args:
    counts: `int64` tensor `[ALPHABET, ...]`, indexed first by the symbol
      that selects the context.
    contexts: `int64` `[C, ALPHABET]`, each candidate's context of each symbol.
    rows: Python int, the number of contexts per candidate.

  Returns:
    `int64` `[C, rows, ...]`.
  """
  num = contexts.shape[0]
  tiled = tf.tile(counts[tf.newaxis], [num] + [1] * counts.shape.rank)
  tiled = tf.reshape(tiled, [num * ALPHABET] + counts.shape[1:].as_list())
  ids = tf.reshape(contexts + rows * tf.range(num, dtype=tf.int64)[:, tf.newaxis], [-1])
  summed = tf.math.unsorted_segment_sum(tiled, ids, num * rows)
  return tf.reshape(summed, [num, rows] + counts.shape[1:].as_list())


def choose_model(run_symbols, value_classes, negative, num_nonzero):
  """The encoder's choice of contexts and sign mode (see `encode_to_bytes`).

  Counts pairs with the previous pair's symbols in a single lane (lane starts
  are ignored) and picks, separately for runs and values, the candidate of
  smallest `coded_cost + 2**16 * (table bits + threshold bits (+ N raw sign
  bits if S = 0))`; the first candidate on ties. Run candidates: `G_r` in
  `RUN_CONTEXT_CHOICES` with thresholds `quantile_thresholds` of the previous
  run symbols; value candidates: `S = 0`, then `S = 1`, each with `G_v` in
  `VALUE_CONTEXT_CHOICES` and thresholds of the pairs' run symbols.

  Returns:
    A dict: `run_contexts` (G_r), `value_contexts` (G_v), `sign_mode` (S),
    `run_thresholds` and `value_thresholds` (padded to 7 with ALPHABET + 1),
    `estimate` (the chosen candidates' cost in 2**-16 bits), `alphabet_r`,
    `alphabet_m`.
  """
  n = _i64(num_nonzero)
  previous = tf.concat([[0], run_symbols[:-1]], 0)
  previous_negative = tf.concat([[0], negative[:-1]], 0)
  pair_counts = tf.reshape(tf.math.bincount(
      tf.cast(previous * ALPHABET + run_symbols, tf.int32),
      minlength=ALPHABET * ALPHABET, maxlength=ALPHABET * ALPHABET,
      dtype=tf.int64), [ALPHABET, ALPHABET])
  signed_value = 2 * value_classes + negative
  value_counts = tf.reshape(tf.math.bincount(
      tf.cast((run_symbols * 2 + previous_negative) * VALUE_ALPHABET
              + signed_value, tf.int32),
      minlength=ALPHABET * 2 * VALUE_ALPHABET,
      maxlength=ALPHABET * 2 * VALUE_ALPHABET, dtype=tf.int64),
      [ALPHABET, 2, VALUE_ALPHABET])
  alphabet_r = tf.reduce_max(tf.concat([run_symbols, [-1]], 0)) + 1
  alphabet_m = tf.reduce_max(tf.concat([value_classes, [-1]], 0)) + 1
  symbols = tf.range(ALPHABET, dtype=tf.int64)

  def contexts_of(thresholds):
    return tf.reduce_sum(tf.cast(
        thresholds[:, tf.newaxis, :] <= symbols[tf.newaxis, :, tf.newaxis],
        tf.int64), axis=-1)

  # Runs: contexts from the previous run symbol.
  run_choices = np.array(RUN_CONTEXT_CHOICES)
  run_thresholds = candidate_thresholds(tf.reduce_sum(pair_counts, axis=1),
                                        RUN_CONTEXT_CHOICES)
  counts = _context_counts_by_candidate(pair_counts, contexts_of(run_thresholds),
                                        MAX_RUN_CONTEXTS)
  precision, freqs = model_tables(counts)
  run_costs = coded_cost(counts, precision, freqs) + tf.bitwise.left_shift(
      table_bits(precision, freqs, run_choices, alphabet_r)
      + THRESHOLD_BITS * (run_choices - 1), _LOG_BITS)

  # Values: contexts from the pair's run symbol (and the previous sign).
  choices = VALUE_CONTEXT_CHOICES
  value_choices = np.array(choices * 2)
  sign_modes = np.repeat([0, 1], len(choices))
  thresholds = candidate_thresholds(tf.reduce_sum(pair_counts, axis=0), choices)
  contexts = contexts_of(thresholds)
  by_magnitude = tf.reduce_sum(
      tf.reshape(value_counts, [ALPHABET, 2, ALPHABET, 2]), axis=[1, 3])
  unsigned = _context_counts_by_candidate(by_magnitude, contexts, MAX_VALUE_CONTEXTS)
  unsigned = tf.pad(unsigned, [[0, 0], [0, 0], [0, VALUE_ALPHABET - ALPHABET]])
  signed = tf.reshape(
      _context_counts_by_candidate(value_counts, contexts, MAX_VALUE_CONTEXTS // 2),
      [len(choices), MAX_VALUE_CONTEXTS, VALUE_ALPHABET])
  counts = tf.concat([unsigned, signed], 0)
  precision, freqs = model_tables(counts)
  alphabet = tf.stack([alphabet_m] * len(choices) + [2 * alphabet_m] * len(choices))
  value_costs = coded_cost(counts, precision, freqs) + tf.bitwise.left_shift(
      table_bits(precision, freqs, value_choices * (1 + sign_modes),
                 alphabet[:, tf.newaxis])
      + THRESHOLD_BITS * (value_choices - 1)
      + tf.where(tf.constant(sign_modes > 0), _i64(0), n), _LOG_BITS)
  value_thresholds = tf.concat([thresholds, thresholds], 0)

  best_run, best_value = _first_min(run_costs), _first_min(value_costs)
  return dict(
      run_contexts=tf.gather(tf.constant(run_choices, tf.int64), best_run),
      value_contexts=tf.gather(tf.constant(value_choices, tf.int64), best_value),
      sign_mode=tf.gather(tf.constant(sign_modes, tf.int64), best_value),
      run_thresholds=tf.gather(run_thresholds, best_run),
      value_thresholds=tf.gather(value_thresholds, best_value),
      estimate=tf.gather(run_costs, best_run) + tf.gather(value_costs, best_value),
      alphabet_r=alphabet_r, alphabet_m=alphabet_m)


def choose_lane_size(estimate_bits, raw_bits, num_nonzero,
                     lane_overhead: float = DEFAULT_LANE_OVERHEAD):
  """`K`: lanes whose states cost about `lane_overhead` of the estimated bits.

  A lane state costs about 8 bits when its lane has 35 raw bits to carry and
  about 36 otherwise, so `lanes = min(E // D8, max(E // D36, raw // 35))`
  (`E`: estimated bits, `D8 = round(8 / lane_overhead)`, `D36 = round(36 /
  lane_overhead)`), clipped to `1 .. max(1, N // 32)`; `K = ceil(N / lanes)`.
  """
  d8, d36 = round(8 / lane_overhead), round(36 / lane_overhead)
  n = _i64(num_nonzero)
  lanes = tf.minimum(estimate_bits // d8,
                     tf.maximum(estimate_bits // d36, raw_bits // CARRY_BITS))
  lanes = tf.clip_by_value(lanes, 1, tf.maximum(n // MIN_LANE_SIZE, 1))
  return tf.maximum((n + lanes - 1) // lanes, 1)


def lane_contexts(run_symbols, negative, lane_size, model):
  """Contexts of every pair's run and value symbol, lanes restarting.

  Returns:
    `(run_context, value_context, value_symbol)`.
  """
  n = tf.size(run_symbols, out_type=tf.int64)
  first = tf.equal(tf.range(n) % lane_size, 0)
  previous = tf.where(first, tf.zeros_like(run_symbols),
                      tf.concat([[0], run_symbols[:-1]], 0))
  previous_negative = tf.where(first, tf.zeros_like(negative),
                               tf.concat([[0], negative[:-1]], 0))
  run_ctx = tf.gather(context_of_symbol(model['run_thresholds']), previous)
  value_ctx = tf.gather(context_of_symbol(model['value_thresholds']), run_symbols)
  value_ctx = tf.where(model['sign_mode'] > 0, 2 * value_ctx + previous_negative,
                       value_ctx)
  return run_ctx, value_ctx


def context_counts(contexts, symbols, num_rows: int, alphabet: int) -> tf.Tensor:
  """`[num_rows, alphabet]` counts of `(context, symbol)` pairs."""
  return tf.reshape(tf.math.bincount(
      tf.cast(contexts * alphabet + symbols, tf.int32),
      minlength=num_rows * alphabet, maxlength=num_rows * alphabet,
      dtype=tf.int64), [num_rows, alphabet])


# ----------------------------------------------------------------------------
# Bit fields.


def table_fields(precision, freqs, num_contexts, alphabet, start):
  """`(values, offsets, end)` of `write_table` at bit `start` (see module doc).

  `precision` `[R]` and `freqs` `[R, W]` are static-size; only the first
  `num_contexts` rows and `alphabet` columns are written (the rest must be 0).
  """
  rows = tf.shape(freqs, out_type=tf.int64)[0]
  width = tf.shape(freqs, out_type=tf.int64)[1]
  in_table = tf.range(rows) < num_contexts
  used = (precision > 0) & in_table
  presence_len = tf.where(
      used[:, tf.newaxis] & (tf.range(width)[tf.newaxis, :] < alphabet),
      tf.ones_like(freqs), tf.zeros_like(freqs))
  present = freqs > 0
  length_width = tf.where(present, bitstream.bit_length(precision)[:, tf.newaxis],
                          tf.zeros_like(freqs))
  mantissa_len = tf.where(present, bitstream.bit_length(freqs) - 1,
                          tf.zeros_like(freqs))
  mantissa = tf.where(
      present, freqs - tf.bitwise.left_shift(tf.ones_like(freqs), mantissa_len),
      tf.zeros_like(freqs))
  flat = lambda t: tf.reshape(t, [-1])
  precision_start = start
  presence_start = precision_start + PRECISION_FIELD_BITS * _i64(num_contexts)
  length_start = presence_start + tf.reduce_sum(presence_len)
  mantissa_start = length_start + tf.reduce_sum(length_width)
  end = mantissa_start + tf.reduce_sum(mantissa_len)
  precision_len = tf.where(in_table, _i64(PRECISION_FIELD_BITS), _i64(0))
  values = [
      tf.cast(tf.where(in_table, precision, tf.zeros_like(precision)), tf.uint64),
      tf.cast(flat(tf.cast(present, tf.int64) * presence_len), tf.uint64),
      tf.cast(flat(mantissa_len), tf.uint64),
      tf.cast(flat(mantissa), tf.uint64),
  ]
  offsets = [
      precision_start + tf.math.cumsum(_i64(precision_len), exclusive=True),
      presence_start + tf.math.cumsum(flat(presence_len), exclusive=True),
      length_start + tf.math.cumsum(flat(length_width), exclusive=True),
      mantissa_start + tf.math.cumsum(flat(mantissa_len), exclusive=True),
  ]
  return values, offsets, end


def _read(words, offset, width):
  return _i64(bitstream.low_bits(bitstream.read_bits(words, offset), width))


def read_table(words, start, num_contexts, alphabet, rows: int, width: int):
  """Reads `write_table` at bit `start`: `(precision [rows], freqs [rows, width], end, ok)`.

  `num_contexts <= rows` and `alphabet <= width` must hold (clamped by the
  caller). `ok` is False when a precision exceeds 12, a length exceeds its
  row's precision or a used row does not sum to `2**T`.
  """
  in_table = tf.range(rows, dtype=tf.int64) < num_contexts
  precision_len = tf.where(in_table, _i64(PRECISION_FIELD_BITS), 0)
  precision = _read(words, start + tf.math.cumsum(precision_len, exclusive=True),
                    precision_len)
  ok = tf.reduce_all(precision <= MAX_PRECISION)
  precision = tf.minimum(precision, MAX_PRECISION)
  used = precision > 0
  presence_len = tf.where(
      used[:, tf.newaxis]
      & (tf.range(width, dtype=tf.int64)[tf.newaxis, :] < alphabet),
      tf.ones([rows, width], tf.int64), tf.zeros([rows, width], tf.int64))
  flat_len = tf.reshape(presence_len, [-1])
  presence_start = start + PRECISION_FIELD_BITS * num_contexts
  present = tf.reshape(
      _read(words, presence_start + tf.math.cumsum(flat_len, exclusive=True),
            flat_len), [rows, width]) > 0
  length_start = presence_start + tf.reduce_sum(flat_len)
  length_width = tf.where(present, bitstream.bit_length(precision)[:, tf.newaxis],
                          tf.zeros([rows, width], tf.int64))
  flat_width = tf.reshape(length_width, [-1])
  lengths = tf.reshape(
      _read(words, length_start + tf.math.cumsum(flat_width, exclusive=True),
            flat_width), [rows, width])
  ok &= tf.reduce_all(lengths <= precision[:, tf.newaxis])
  lengths = tf.minimum(lengths, precision[:, tf.newaxis])
  mantissa_start = length_start + tf.reduce_sum(flat_width)
  flat_mantissa = tf.reshape(tf.where(present, lengths, tf.zeros_like(lengths)), [-1])
  mantissa = tf.reshape(
      _read(words, mantissa_start + tf.math.cumsum(flat_mantissa, exclusive=True),
            flat_mantissa), [rows, width])
  freqs = tf.where(present,
                   tf.bitwise.left_shift(tf.ones_like(lengths), lengths) + mantissa,
                   tf.zeros_like(lengths))
  scale = tf.bitwise.left_shift(tf.ones_like(precision), precision)
  ok &= tf.reduce_all(tf.logical_not(used)
                      | tf.equal(tf.reduce_sum(freqs, axis=1), scale))
  end = mantissa_start + tf.reduce_sum(flat_mantissa)
  return precision, freqs, end, ok


def coding_table(precision, freqs):
  """`(F, C)` per `[context, symbol]`: frequencies scaled to `2**12` and cumulative."""
  scaled = tf.bitwise.left_shift(freqs, (PRECISION - precision)[:, tf.newaxis])
  return scaled, tf.math.cumsum(scaled, axis=1, exclusive=True)


def raw_fields(run_mantissa, run_len, magnitude_mantissa, magnitude_len,
               negative, sign_mode):
  """Per pair: raw field value (`uint64`) and length (run, sign, magnitude)."""
  sign_len = tf.where(sign_mode > 0, tf.zeros_like(run_len), tf.ones_like(run_len))
  value = tf.bitwise.bitwise_or(
      tf.cast(run_mantissa, tf.uint64),
      tf.bitwise.left_shift(
          tf.bitwise.bitwise_or(
              tf.cast(negative * sign_len, tf.uint64),
              tf.bitwise.left_shift(tf.cast(magnitude_mantissa, tf.uint64),
                                    tf.cast(sign_len, tf.uint64))),
          tf.cast(run_len, tf.uint64)))
  return value, run_len + sign_len + magnitude_len


def carry_layout(field_len, lane_size, num_lanes):
  """Where each raw field goes: carried into its lane state or the payload.

  Returns:
    `(lane, lane_start, carried, carried_bits, payload_offset)`: per field its
    lane, the raw-bit offset of the field within its lane, the number of its
    low bits carried in the lane state, and the payload bit offset of the rest;
    per lane the number of carried bits `c_j`.
  """
  n = tf.size(field_len, out_type=tf.int64)
  lane = tf.range(n) // lane_size
  offset = tf.math.cumsum(field_len, exclusive=True)
  lane_bits = bitstream.sorted_segment(tf.math.segment_sum, field_len, lane,
                                       num_lanes)
  lane_start = tf.math.cumsum(lane_bits, exclusive=True)
  carried_bits = tf.minimum(lane_bits, CARRY_BITS)
  carried_before = tf.math.cumsum(carried_bits)  # including the own lane
  within = offset - tf.gather(lane_start, lane)
  cut = tf.gather(carried_bits, lane)
  carried = tf.clip_by_value(cut - within, 0, field_len)
  payload_offset = (tf.maximum(offset, tf.gather(lane_start, lane) + cut)
                    - tf.gather(carried_before, lane))
  return lane, within, carried, carried_bits, payload_offset


# ----------------------------------------------------------------------------
# rANS loops.


def _graph_when_eager(signature):
  """Runs the function as one traced graph when called eagerly; inlined when traced."""
  def decorator(fn):
    traced = tf.function(fn, input_signature=signature, autograph=False)

    def call(*args):
      return traced(*args) if tf.executing_eagerly() else fn(*args)

    call.__doc__ = fn.__doc__
    return call
  return decorator


def _spec(*shape, dtype=tf.int64):
  return tf.TensorSpec(shape, dtype)


def _encode_step(x, freq, cumulative):
  emit = x >= tf.bitwise.left_shift(freq, STATE_BITS - PRECISION)
  x = tf.where(emit, tf.bitwise.right_shift(x, WORD_BITS), x)
  quotient = x // freq
  return tf.bitwise.left_shift(quotient, PRECISION) + (x - quotient * freq) + cumulative


@_graph_when_eager([_spec(None, None)] * 4 + [_spec(None)])
def encode_lanes(run_f, run_c, value_f, value_c, initial):
  """rANS-encodes `[steps, lanes]` symbols, last step first, from `initial` states.

  Returns:
    `(states, before_run, before_value)`: final states and the states before
    coding each run / value symbol (`[steps, lanes]`).
  """
  steps = tf.shape(run_f)[0]
  lanes = tf.shape(run_f)[1]

  def outputs():
    array = tf.TensorArray(tf.int64, size=steps + 1)
    return array.write(steps, tf.zeros([lanes], tf.int64))

  def body(t, x, before_run, before_value):
    t -= 1
    before_value = before_value.write(t, x)
    x = _encode_step(x, tf.gather(value_f, t), tf.gather(value_c, t))
    before_run = before_run.write(t, x)
    x = _encode_step(x, tf.gather(run_f, t), tf.gather(run_c, t))
    return t, x, before_run, before_value

  _, states, before_run, before_value = tf.while_loop(
      lambda t, *_: t > 0, body, (steps, initial, outputs(), outputs()))
  return states, before_run.stack()[:steps], before_value.stack()[:steps]


def _slot_table(precision, freqs, rows: int, width: int):
  """Per `context * 2**12 + slot`: `symbol | F << 8 | (slot - C) << 21`.

  Unused contexts (and any row not summing to `2**12`) decode to the invalid
  symbol `width` with `F = 2**12`.
  """
  scaled, _ = coding_table(precision, freqs)
  valid = tf.equal(tf.reduce_sum(scaled, axis=1), PROB_SCALE)
  scaled = tf.where(valid[:, tf.newaxis], scaled, tf.zeros_like(scaled))
  full = tf.concat([scaled, tf.where(valid, _i64(0), _i64(PROB_SCALE))[:, tf.newaxis]], 1)
  flat = tf.reshape(full, [-1])
  cumulative = tf.math.cumsum(flat)
  slots = tf.range(rows * PROB_SCALE, dtype=tf.int64)
  index = tf.minimum(
      tf.searchsorted(cumulative, slots, side='right', out_type=tf.int64),
      rows * (width + 1) - 1)
  freq = tf.gather(flat, index)
  bias = slots - (tf.gather(cumulative, index) - freq)
  symbol = index % (width + 1)
  return tf.bitwise.bitwise_or(
      symbol, tf.bitwise.bitwise_or(tf.bitwise.left_shift(freq, 8),
                                    tf.bitwise.left_shift(bias, 21)))


RUN_CONTEXT_MAP = ALPHABET + 1  # Entries of a segment's run context map.
VALUE_CONTEXT_MAP = 2 * (ALPHABET + 1)  # Of its value context map.
# Decoding steps per iteration of the decoding loop (less of the loop's own
# per-iteration cost).
_DECODE_UNROLL = 2


@_graph_when_eager([_spec(None), _spec(None), _spec(None), _spec(None), _spec(None),
                    _spec(None), _spec(None), _spec(None), _spec(None), _spec(None),
                    _spec(None), _spec(dtype=tf.int32)])
def decode_lanes(states, counts, lane_segment, run_table, run_context_of,
                 value_table, value_context_of, sign_mode, words, word_base,
                 word_last, steps):
  """Decodes `steps` pairs in every lane (lane `j` stops after `counts[j]`).

  The lanes may belong to several coded vectors (*segments*, `lane_segment`,
  non-decreasing, every segment with at least one lane): segment `g` has its
  own word stream `words[word_base[g] .. word_base[g] + word_last[g]]` (ending
  in a zero sentinel), sign mode `sign_mode[g]` and context maps
  `run_context_of[36 g .. 36 g + 35]` and `value_context_of[72 g .. 72 g +
  71]`, whose contexts index the rows (of `2**12` slots) of the concatenated
  slot tables `run_table`/`value_table`. One loop for all segments pays the
  loop's per-step cost once.

  A refill reads, for lane `j`, the word at `min(p + i, word_last)` of its
  segment's stream, `p` the segment's words read so far and `i` the number of
  lanes before `j` in its segment that read in the same refill; an over-read
  reads the segment's final word (the sentinel).

  Returns:
    `(states, pointer, pairs)`: final states, words read per segment, and
    `[steps, lanes]` `run_symbol | value_symbol << 8` (entries of a lane after
    its `counts[j]` pairs are unspecified).
  """
  lanes = tf.size(states, out_type=tf.int64)
  num_segments = tf.size(word_base, out_type=tf.int64)
  sign_mask = tf.gather(tf.where(sign_mode > 0, _i64(1), _i64(0)), lane_segment)
  # Context maps to slot-table rows (context * 2**12), per lane's segment.
  run_rows = tf.bitwise.left_shift(run_context_of, PRECISION)
  value_rows = tf.bitwise.left_shift(value_context_of, PRECISION)
  run_map = lane_segment * RUN_CONTEXT_MAP
  value_map = lane_segment * VALUE_CONTEXT_MAP
  lane_index = tf.range(lanes)
  segment_first = tf.math.unsorted_segment_min(lane_index, lane_segment, num_segments)
  first = tf.gather(segment_first, lane_segment)
  last = tf.gather(tf.math.unsorted_segment_max(lane_index, lane_segment, num_segments),
                   lane_segment)
  last_word = tf.gather(word_base + word_last, lane_segment)
  counts = tf.cast(counts, tf.int32)

  def refill(x, need, pointer):
    # `pointer`: per lane, the stream index of its segment's next word.
    reads = tf.cast(need, tf.int64)
    before = tf.math.cumsum(reads, exclusive=True)
    segment_before = tf.gather(before, first)
    at = tf.minimum(pointer + before - segment_before, last_word)
    refilled = tf.bitwise.bitwise_or(tf.bitwise.left_shift(x, WORD_BITS),
                                     tf.gather(words, at))
    pointer += tf.gather(before + reads, last) - segment_before
    return tf.where(need, refilled, x), pointer

  def decode_symbol(x, table, row, active, pointer):
    entry = tf.gather(table, row + tf.bitwise.bitwise_and(x, PROB_SCALE - 1))
    freq = tf.bitwise.bitwise_and(tf.bitwise.right_shift(entry, 8), 8191)
    decoded = (freq * tf.bitwise.right_shift(x, PRECISION)
               + tf.bitwise.right_shift(entry, 21))
    decoded, pointer = refill(decoded, active & (decoded < STATE_LOWER), pointer)
    return tf.bitwise.bitwise_and(entry, 255), tf.where(active, decoded, x), pointer

  def body(t, x, previous, previous_negative, pointer, pairs):
    for i in range(_DECODE_UNROLL):
      active = t + i < counts
      run, x, pointer = decode_symbol(
          x, run_table, tf.gather(run_rows, run_map + previous), active, pointer)
      value, x, pointer = decode_symbol(
          x, value_table,
          tf.gather(value_rows, value_map + 2 * run + previous_negative), active,
          pointer)
      pairs = pairs.write(t + i, tf.bitwise.bitwise_or(run, tf.bitwise.left_shift(value, 8)))
      # A lane that stopped stays stopped: the contexts of its (unused)
      # further symbols need not be kept (symbols are below 36, so they stay
      # valid indices of the context maps).
      previous = run
      previous_negative = tf.bitwise.bitwise_and(value, sign_mask)
    return t + _DECODE_UNROLL, x, previous, previous_negative, pointer, pairs

  # Placeholder rows at the end (and for the last iteration's extra steps),
  # so that `stack` is defined without steps.
  size = steps + _DECODE_UNROLL
  pairs = tf.TensorArray(tf.int64, size=size)
  for i in range(_DECODE_UNROLL):
    pairs = pairs.write(steps + i, tf.zeros([lanes], tf.int64))
  zeros = tf.zeros([lanes], tf.int64)
  _, states, _, _, pointer, pairs = tf.while_loop(
      lambda t, *_: t < steps, body,
      (tf.constant(0), states, zeros, zeros, tf.gather(word_base, lane_segment), pairs))
  # Words read per segment: the pointer of its first lane (0 for a segment
  # without lanes).
  has_lanes = segment_first < lanes
  pointer = tf.gather(tf.concat([pointer, [0]], 0),
                      tf.where(has_lanes, segment_first, lanes))
  return states, tf.where(has_lanes, pointer - word_base, _i64(0)), pairs.stack()[:steps]


# ----------------------------------------------------------------------------
# Encoder.


def _symbols(values):
  """Positions, run symbols, value classes, signs and raw parts of the nonzeros."""
  index = tf.where(tf.not_equal(values, 0))[:, 0]
  nonzero = tf.gather(values, index)
  runs = index - tf.concat([[-1], index[:-1]], 0) - 1
  run_symbol, run_mantissa, run_len = class_symbol(runs)
  magnitude = tf.abs(nonzero) - 1
  value_class, magnitude_mantissa, magnitude_len = class_symbol(magnitude)
  negative = tf.cast(nonzero < 0, tf.int64)
  return dict(run_symbol=run_symbol, run_mantissa=run_mantissa, run_len=run_len,
              value_class=value_class, magnitude_mantissa=magnitude_mantissa,
              magnitude_len=magnitude_len, negative=negative)


def row_length_candidate(values) -> tf.Tensor:
  """`W`: the row length under which the vector looks most column-structured.

  Over `S = 2048` sampled nonzero values (the `floor(s N / S)`-th, `s = 0 ..
  S - 1`), `p(d) = floor(2**20 h(d) / max(m(d), 1))` where `m(d)` counts those
  with an index `i >= d` and `h(d)` those whose value at `i - d` is nonzero
  too. The contrast of a divisor `W` of `n` (`2 <= W <= min(n // 2, 65535)`)
  is `p(W) - floor((p(W - 1) + p(W + 1)) / 2)`: how much more often the value
  above (in an `n / W` by `W` matrix) is nonzero than its diagonal
  neighbours. `W` is the smallest divisor whose contrast is positive and at
  least 15/16 of the largest (multiples of the true row length score about
  as well); 0 if there is none. A heuristic: the encoder uses `W` only when
  its model says that is smaller (`analyze`).
  """
  values = tf.reshape(values, [-1])
  n = tf.size(values, out_type=tf.int64)
  candidates = tf.range(2, MAX_ROW_LENGTH + 1, dtype=tf.int64)
  candidates = tf.boolean_mask(
      candidates, tf.equal(n % candidates, 0) & (candidates <= n // 2))
  nonzero = tf.not_equal(values, 0)
  index = tf.where(nonzero)[:, 0]
  count = tf.size(index, out_type=tf.int64)
  sample = tf.gather(index, tf.range(ROW_LENGTH_SAMPLES, dtype=tf.int64) * count
                     // ROW_LENGTH_SAMPLES)
  offsets = candidates[:, tf.newaxis] + tf.constant([[-1, 0, 1]], tf.int64)
  above = sample[tf.newaxis, tf.newaxis, :] - offsets[:, :, tf.newaxis]
  valid = above >= 0
  hits = valid & tf.gather(nonzero, tf.maximum(above, 0))
  score = (tf.bitwise.left_shift(tf.reduce_sum(tf.cast(hits, tf.int64), axis=2), 20)
           // tf.maximum(tf.reduce_sum(tf.cast(valid, tf.int64), axis=2), 1))
  contrast = score[:, 1] - (score[:, 0] + score[:, 2]) // 2
  best = tf.reduce_max(tf.concat([contrast, [0]], 0))
  num = tf.size(candidates, out_type=tf.int64)
  first = tf.reduce_min(tf.concat(
      [tf.where((contrast > 0) & (16 * contrast >= 15 * best), tf.range(num), num),
       [num]], 0))
  return tf.where((count > 0) & (first < num),
                  tf.gather(tf.concat([candidates, [0]], 0), first), _i64(0))


def column_classes(matrix, num_classes: int) -> tf.Tensor:
  """Quantile classes of the columns of an integer matrix by their activity.

  With `a_j = sum_i |M_ij|` and `rank_j` the position of column `j` when the
  columns are sorted stably by `a_j`, column `j` is in class
  `floor(rank_j K / cols)` (`K` classes of nearly equal size).
  """
  activity = tf.reduce_sum(tf.abs(matrix), axis=0)
  cols = tf.size(activity, out_type=tf.int64)
  rank = tf.math.invert_permutation(tf.argsort(activity, stable=True))
  return _i64(rank) * num_classes // tf.maximum(cols, 1)


def column_order(classes) -> tf.Tensor:
  """The columns grouped by class: a stable sort of the column indices by class."""
  return _i64(tf.argsort(classes, stable=True))


def coded_matrix(values, row_length, transposed):
  """The vector as a matrix in the coded orientation.

  `n / W` by `W` (row-major, `W = row_length`, 1 if 0), or its transpose.
  """
  matrix = tf.reshape(values, tf.stack([-1, tf.maximum(row_length, 1)]))
  return tf.transpose(matrix) if transposed else matrix


def _variant(values, row_length, transposed: bool, num_classes: int):
  """Symbols, model and estimated bits of one coded order (see `analyze`).

  `estimate` counts the coded data (`_estimate_bits`), not the class map.
  """
  matrix = coded_matrix(values, row_length, transposed)
  if num_classes > 1:
    classes = column_classes(matrix, num_classes)
    matrix = tf.gather(matrix, column_order(classes), axis=1)
  else:
    classes = tf.zeros([0], tf.int64)
  s = _symbols(tf.reshape(matrix, [-1]))
  model = choose_model(s['run_symbol'], s['value_class'], s['negative'],
                       tf.size(s['run_symbol'], out_type=tf.int64))
  # Padded (or cut) to a fixed size: an order with more columns than
  # MAX_COLUMNS is estimated (`choose_order`) but never chosen.
  classes = tf.concat(
      [classes[:MAX_COLUMNS + 1],
       tf.zeros([tf.maximum(MAX_COLUMNS + 1 - tf.size(classes), 0)], tf.int64)], 0)
  return dict(symbols=s, model=model, estimate=_estimate_bits(s, model),
              classes=classes)


def sample_rows(values, row_length):
  """Every `s`-th row of the `n / W` by `W` matrix, flattened, and its row count.

  `s = ceil(R / max(1, floor(2**18 / W)))` with `R = n / W` rows: about
  `2**18` values on which the encoder compares the coded orders.
  """
  width = tf.maximum(row_length, 1)
  matrix = tf.reshape(values, tf.stack([-1, width]))
  rows = tf.shape(matrix, out_type=tf.int64)[0]
  target = tf.maximum(ORDER_SAMPLE_VALUES // width, 1)
  stride = tf.maximum((rows + target - 1) // target, 1)
  sample = tf.strided_slice(matrix, tf.zeros([2], tf.int64), tf.stack([rows, width]),
                            tf.stack([stride, _i64(1)]))
  return tf.reshape(sample, [-1]), (rows + stride - 1) // stride


def _estimate_bits(s, model):
  """The chosen model's estimated size (bits, rounded up) including mantissas."""
  return ((model['estimate'] + (1 << _LOG_BITS) - 1) // (1 << _LOG_BITS)
          + tf.reduce_sum(s['run_len']) + tf.reduce_sum(s['magnitude_len']))


# The coded orders the encoder compares: (transposed, column classes).
ORDERS = ((False, 1), (False, COLUMN_CLASSES), (True, 1), (True, COLUMN_CLASSES))


def choose_order(values, row_length):
  """Index into `ORDERS` of the coded order of smallest estimated size.

  Each order is estimated on `sample_rows` (`_variant`'s estimate scaled by
  `R / (sampled rows)`, rounded down) plus, with column classes, 4 bits per
  column of the full matrix. Orders with classes and more than 65535 columns
  are not candidates. The first on ties; 0 if `W = 0`.
  """
  n = tf.size(values, out_type=tf.int64)
  width = tf.maximum(row_length, 1)
  rows = n // width

  def estimates():
    sample, sampled_rows = sample_rows(values, row_length)
    costs = []
    for transposed, num_classes in ORDERS:
      cost = _variant(sample, row_length, transposed, num_classes)['estimate']
      cost = cost * rows // tf.maximum(sampled_rows, 1)
      if num_classes > 1:
        columns = rows if transposed else width
        cost = tf.where(columns <= MAX_COLUMNS,
                        cost + columns * (num_classes.bit_length() - 1), _i64(_HUGE))
      costs.append(cost)
    return _first_min(tf.stack(costs))

  return tf.cond(row_length > 0, estimates, lambda: _i64(0))


def analyze(values, lane_overhead: float = DEFAULT_LANE_OVERHEAD):
  """The model the encoder uses for `values`: order, symbols, contexts, tables.

  The coded order: with `W = row_length_candidate(values)`, the vector as an
  `n / W` by `W` matrix, as is or transposed, with its columns as they are or
  grouped into 16 `column_classes` (`column_order`), read row by row; of the
  (up to) four orders (`ORDERS`; only the vector as is if `W = 0`) the one
  `choose_order` picks.

  Returns:
    A dict with `row_length` (`W`, or 0 for the vector as is), `transposed`,
    `num_classes` (`K`), `classes` (padded to 65536), the entries of
    `_symbols` and of the chosen model (`choose_model`) for that order,
    `lane_size`, `num_lanes`, `run_context`, `value_context`,
    `value_symbol`, and per table kind `run_precision`/`run_freqs` `[8, 35]`
    and `value_precision`/`value_freqs` `[8, 70]`.
  """
  values = _i64(tf.reshape(values, [-1]))
  width = row_length_candidate(values)
  best = choose_order(values, width)
  chosen = tf.switch_case(
      tf.cast(best, tf.int32),
      [lambda t=t, k=k: _variant(values, width, t, k) for t, k in ORDERS])
  s, model, estimate = chosen['symbols'], chosen['model'], chosen['estimate']
  classes = chosen['classes']
  transposed = tf.gather(tf.constant([t for t, _ in ORDERS]), best)
  num_classes = tf.gather(tf.constant([k for _, k in ORDERS], tf.int64), best)
  row_length = tf.where(best > 0, width, _i64(0))
  num_nonzero = tf.size(s['run_symbol'], out_type=tf.int64)
  sign_mode = model['sign_mode']
  raw_bits = (tf.reduce_sum(s['run_len']) + tf.reduce_sum(s['magnitude_len'])
              + tf.where(sign_mode > 0, _i64(0), num_nonzero))
  lane_size = choose_lane_size(estimate, raw_bits, num_nonzero, lane_overhead)
  num_lanes = (num_nonzero + lane_size - 1) // lane_size
  run_ctx, value_ctx = lane_contexts(s['run_symbol'], s['negative'], lane_size, model)
  value_symbol = tf.where(sign_mode > 0, 2 * s['value_class'] + s['negative'],
                          s['value_class'])
  run_precision, run_freqs = model_tables(
      context_counts(run_ctx, s['run_symbol'], MAX_RUN_CONTEXTS, ALPHABET))
  value_precision, value_freqs = model_tables(
      context_counts(value_ctx, value_symbol, MAX_VALUE_CONTEXTS, VALUE_ALPHABET))
  return dict(s, **model, row_length=row_length, transposed=transposed,
              num_classes=num_classes, classes=classes, num_nonzero=num_nonzero,
              raw_bits=raw_bits, lane_size=lane_size, num_lanes=num_lanes,
              run_context=run_ctx, value_context=value_ctx, value_symbol=value_symbol,
              run_precision=run_precision, run_freqs=run_freqs,
              value_precision=value_precision, value_freqs=value_freqs)


def _lane_matrix(flat, lane_size, num_lanes, fill):
  """`[K, lanes]` of a per-pair vector, padded with `fill`."""
  padded = tf.concat(
      [flat, tf.fill([num_lanes * lane_size - tf.size(flat, out_type=tf.int64)],
                     tf.constant(fill, tf.int64))], 0)
  return tf.transpose(tf.reshape(padded, tf.stack([num_lanes, lane_size])))


def _num_columns(n, row_length, transposed):
  """Columns of the coded matrix: `W`, or `n / W` if transposed."""
  width = tf.maximum(row_length, 1)
  return tf.where(transposed, n // width, width)


def _encoder_inputs(values, lane_overhead):
  """The model and rANS loop inputs of a vector with at least one nonzero value.

  Returns:
    A dict with the analysis `model` (`analyze`), the `[K, lanes]` symbol
    frequencies and cumulative frequencies `run_f`, `run_c`, `value_f`,
    `value_c`, the lanes' `initial` states and the raw `payload` fields with
    their `payload_offset` and `payload_len`.
  """
  m = analyze(values, lane_overhead)
  lane_size, num_lanes, sign_mode = m['lane_size'], m['num_lanes'], m['sign_mode']

  # rANS symbols.
  run_f, run_c = coding_table(m['run_precision'], m['run_freqs'])
  value_f, value_c = coding_table(m['value_precision'], m['value_freqs'])
  run_index = m['run_context'] * ALPHABET + m['run_symbol']
  value_index = m['value_context'] * VALUE_ALPHABET + m['value_symbol']
  matrices = [
      _lane_matrix(tf.gather(tf.reshape(table, [-1]), index), lane_size,
                   num_lanes, fill)
      for table, index, fill in ((run_f, run_index, _NOOP_FREQUENCY),
                                 (run_c, run_index, 0),
                                 (value_f, value_index, _NOOP_FREQUENCY),
                                 (value_c, value_index, 0))]

  # Raw fields: the first bits of each lane go into its initial state.
  field, field_len = raw_fields(m['run_mantissa'], m['run_len'],
                                m['magnitude_mantissa'], m['magnitude_len'],
                                m['negative'], sign_mode)
  lane, within, carried, carried_bits, payload_offset = carry_layout(
      field_len, lane_size, num_lanes)
  carried_part = tf.bitwise.bitwise_and(
      field, tf.bitwise.left_shift(bitstream.one(), tf.cast(carried, tf.uint64))
      - bitstream.one())
  carried_part = tf.where(carried > 0, tf.bitwise.left_shift(
      carried_part, tf.cast(tf.minimum(within, 63), tf.uint64)),
                          tf.zeros_like(carried_part))
  initial = CARRY_BASE + _i64(bitstream.sorted_segment(
      tf.math.segment_sum, carried_part, lane, num_lanes))
  payload = tf.where(carried < field_len,
                     tf.bitwise.right_shift(field, tf.cast(carried, tf.uint64)),
                     tf.zeros_like(field))
  payload_len = field_len - carried

  return dict(model=m, run_f=matrices[0], run_c=matrices[1], value_f=matrices[2],
              value_c=matrices[3], initial=initial, payload=payload,
              payload_offset=payload_offset, payload_len=payload_len)


def _encoded_bytes(values, inputs, states, before_run, before_value):
  """This format's bytes, given `_encoder_inputs` and the results of its lanes' loop."""
  m = inputs['model']
  payload, payload_offset = inputs['payload'], inputs['payload_offset']
  payload_len = inputs['payload_len']
  num_nonzero, lane_size, num_lanes = m['num_nonzero'], m['lane_size'], m['num_lanes']
  sign_mode = m['sign_mode']
  run_contexts = m['run_contexts']
  value_rows = m['value_contexts'] * (1 + sign_mode)
  alphabet_r, alphabet_m = m['alphabet_r'], m['alphabet_m']
  alphabet_v = alphabet_m * (1 + sign_mode)
  before = tf.stack([before_run, before_value], 1)
  freqs = tf.stack([inputs['run_f'], inputs['value_f']], 1)
  emitted = before >= tf.bitwise.left_shift(freqs, STATE_BITS - PRECISION)
  words = tf.boolean_mask(tf.bitwise.bitwise_and(before, 0xFFFF), emitted)

  # Header, thresholds, tables and lane states.
  byte0 = (MARKER + (run_contexts - 1) + 8 * (m['value_contexts'] - 1)
           + 64 * sign_mode)
  threshold_len = tf.concat([
      tf.where(tf.range(MAX_RUN_CONTEXTS - 1, dtype=tf.int64) < run_contexts - 1,
               _i64(THRESHOLD_BITS), _i64(0)),
      tf.where(tf.range(MAX_VALUE_CONTEXTS - 1, dtype=tf.int64)
               < m['value_contexts'] - 1, _i64(THRESHOLD_BITS), _i64(0))], 0)
  thresholds = tf.concat([m['run_thresholds'], m['value_thresholds']], 0)
  thresholds = tf.where(threshold_len > 0, thresholds, tf.zeros_like(thresholds))
  class_start = HEADER_BITS + tf.reduce_sum(threshold_len)
  class_bits = bitstream.bit_length(m['num_classes']) - 1
  num_columns = tf.where(m['num_classes'] > 1, _num_columns(
      tf.size(values, out_type=tf.int64), m['row_length'], m['transposed']), _i64(0))
  class_len = tf.where(tf.range(MAX_COLUMNS + 1, dtype=tf.int64) < num_columns,
                       class_bits, _i64(0))
  run_start = class_start + num_columns * class_bits
  run_values, run_offsets, value_start = table_fields(
      m['run_precision'], m['run_freqs'], run_contexts, alphabet_r, run_start)
  value_values, value_offsets, states_start = table_fields(
      m['value_precision'], m['value_freqs'], value_rows, alphabet_v, value_start)
  side_bits = states_start + STATE_BITS * num_lanes
  side_bytes = (side_bits + 7) // 8
  header = bitstream.write_fields(
      values=[tf.cast(tf.stack([byte0, num_nonzero, lane_size, alphabet_r,
                                alphabet_m, m['row_length'],
                                tf.cast(m['transposed'], tf.int64), class_bits]),
                      tf.uint64),
              tf.cast(thresholds, tf.uint64),
              tf.cast(tf.where(class_len > 0, m['classes'], tf.zeros_like(m['classes'])),
                      tf.uint64)]
      + run_values + value_values + [tf.cast(states, tf.uint64)],
      offsets=[tf.constant([0, 8, 40, 72, 78, 84, 100, 101], tf.int64),
               HEADER_BITS + tf.math.cumsum(threshold_len, exclusive=True),
               class_start + tf.math.cumsum(class_len, exclusive=True)]
      + run_offsets + value_offsets
      + [states_start + STATE_BITS * tf.range(num_lanes)],
      num_words=side_bytes // 8 + 2)
  payload_bits = tf.reduce_sum(payload_len)
  payload_bytes = (payload_bits + 7) // 8
  payload_words = bitstream.write_fields(
      values=[payload], offsets=[payload_offset],
      num_words=payload_bytes // 8 + 2)
  word_bytes = tf.reshape(tf.bitcast(tf.cast(words, tf.uint16), tf.uint8), [-1])
  return tf.concat([
      bitstream.words_to_bytes(header, side_bytes),
      word_bytes,
      bitstream.words_to_bytes(payload_words, payload_bytes),
  ], 0)


def elias_gamma_bits(values, block_size: int) -> tf.Tensor:
  """`8 * len(elias_gamma.encode_to_bytes(values, block_size))`, in closed form.

  As `elias_gamma.coded_bits`, for one vector of any (also dynamic) length:
  per block of `B` values, the sum over nonzero values of `2 bit_length(run)
  + 2 bit_length(|v|) - 1` plus `2 bit_length(r + 1) - 1` for `r > 0` trailing
  zeros, in whole bytes; plus `1 + ceil(m w / 8)` header bytes (`m` blocks,
  `w` the bit length of the largest block's byte count).
  """
  values = tf.maximum(tf.reshape(values, [-1]), -(2**31 - 1))
  n = tf.size(values, out_type=tf.int64)
  num_blocks = (n + block_size - 1) // block_size
  index = tf.where(tf.not_equal(values, 0))[:, 0]
  magnitude = tf.abs(_i64(tf.gather(values, index)))
  block = index // block_size
  position = index - block * block_size
  first = tf.not_equal(block, tf.concat([[-1], block[:-1]], 0))
  run = tf.where(first, position + 1,
                 position - tf.concat([[-1], position[:-1]], 0))
  codeword = 2 * bitstream.bit_length(run) + 2 * bitstream.bit_length(magnitude) - 1
  nonzero_bits = bitstream.sorted_segment(tf.math.segment_sum, codeword, block,
                                          num_blocks)
  last_plus_one = bitstream.sorted_segment(tf.math.segment_max, position + 1, block,
                                           num_blocks)
  block_len = tf.minimum(_i64(block_size), n - tf.range(num_blocks) * block_size)
  trailing = block_len - last_plus_one
  trail_bits = tf.where(trailing > 0, 2 * bitstream.bit_length(trailing + 1) - 1,
                        tf.zeros_like(trailing))
  block_bytes = (nonzero_bits + trail_bits + 7) // 8
  width = bitstream.bit_length(tf.reduce_max(tf.concat([block_bytes, [0]], 0)))
  return 8 * (1 + (num_blocks * width + 7) // 8 + tf.reduce_sum(block_bytes))


def elias_gamma_lower_bound(model) -> tf.Tensor:
  """A lower bound on `elias_gamma_bits` of the vector `analyze` modelled.

  `8 + sum over nonzero values of (2 bit_length(min(|v|, 2**31 - 1)) + 1)`:
  a codeword has at least 2 bits of run and a sign bit, the header at least a
  byte, and the other terms are non-negative. The magnitudes do not depend on
  the coded order.
  """
  magnitude = class_value(model['value_class'], model['magnitude_mantissa']) + 1
  return 8 + tf.reduce_sum(
      2 * bitstream.bit_length(tf.minimum(magnitude, 2**31 - 1)) + 1)


def _encode_many(vectors, lane_overhead, block_size):
  """`encode_to_bytes` of each vector, the lanes of all in one `encode_lanes` loop."""
  vectors = [tf.reshape(values, [-1]) for values in vectors]
  has_nonzero = [tf.reduce_any(tf.not_equal(values, 0)) for values in vectors]
  # A vector of zeros is coded without the model (5 bytes): a one-value
  # stand-in keeps the shared loop's inputs well formed.
  model_inputs = _traced_encoder_inputs(lane_overhead)
  inputs = [model_inputs(tf.cond(nonzero, lambda values=values: values,
                                 lambda: tf.ones([1], tf.int32)))
            for values, nonzero in zip(vectors, has_nonzero)]
  steps = tf.reduce_max(tf.stack([tf.shape(f['run_f'])[0] for f in inputs]))
  num_lanes = [tf.shape(f['run_f'])[1] for f in inputs]
  lane_start = tf.math.cumsum(tf.stack(num_lanes), exclusive=True)

  def joined(key, fill):
    # Steps past a vector's `K` are no-ops (`_NOOP_FREQUENCY`), coded first.
    return tf.concat([tf.pad(f[key], [[0, steps - tf.shape(f[key])[0]], [0, 0]],
                             constant_values=fill) for f in inputs], 1)

  states, before_run, before_value = encode_lanes(
      joined('run_f', _NOOP_FREQUENCY), joined('run_c', 0),
      joined('value_f', _NOOP_FREQUENCY), joined('value_c', 0),
      tf.concat([f['initial'] for f in inputs], 0))
  vector_bytes = _traced_vector_bytes(block_size)
  datas = []
  for g, (values, nonzero, f) in enumerate(zip(vectors, has_nonzero, inputs)):
    lanes = tf.range(lane_start[g], lane_start[g] + num_lanes[g])
    own_steps = tf.shape(f['run_f'])[0]
    datas.append(vector_bytes(values, nonzero, f, tf.gather(states, lanes),
                              tf.gather(before_run[:own_steps], lanes, axis=1),
                              tf.gather(before_value[:own_steps], lanes, axis=1)))
  return datas


def _vector_bytes(values, nonzero, inputs, states, before_run, before_value, block_size):
  """One vector's bytes from its lanes' loop results: this format's or Elias-gamma's."""
  data = tf.cond(
      nonzero,
      lambda: _encoded_bytes(values, inputs, states, before_run, before_value),
      lambda: tf.constant([MARKER, 0, 0, 0, 0], tf.uint8))
  n = tf.size(values, out_type=tf.int64)
  bits = 8 * tf.size(data, out_type=tf.int64)
  # The closed form: the Elias-gamma bytes are only written if chosen; and
  # its exact size only computed if a lower bound does not settle the choice.
  eg_lower = tf.where(nonzero, elias_gamma_lower_bound(inputs['model']), _i64(0))
  smaller = tf.cond(bits < eg_lower, lambda: tf.constant(True),
                    lambda: bits < elias_gamma_bits(values, block_size))
  # Elias-gamma codes INT32_MIN as -(2**31 - 1): never fall back then.
  lossy = tf.reduce_any(tf.equal(values, tf.int32.min))
  use_ours = (n > 0) & (smaller | lossy)
  return tf.cond(use_ours, lambda: tf.identity(data),
                 lambda: elias_gamma.encode_to_bytes(values, block_size))


# The per-vector parts of `_encode_many` are not inlined: each is one library
# function, optimized once and called per vector (inlined, the large model
# search would be copied and optimized for every vector).
_NOINLINE = {'_noinline': True}


@functools.lru_cache(maxsize=None)
def _traced_vector_bytes(block_size):
  return tf.function(functools.partial(_vector_bytes, block_size=block_size),
                     autograph=False, reduce_retracing=True,
                     experimental_attributes=_NOINLINE)


@functools.lru_cache(maxsize=None)
def _traced_encoder_inputs(lane_overhead):
  return tf.function(lambda values: _encoder_inputs(values, lane_overhead),
                     input_signature=[tf.TensorSpec([None], tf.int32)],
                     autograph=False, experimental_attributes=_NOINLINE)


@functools.lru_cache(maxsize=None)
def _traced_encode(lane_overhead, block_size, count: int):
  # One graph function for `count` vectors of any lengths: eagerly it runs as
  # a graph; in a traced graph (TFF) it is one library function, shared by
  # all the calls with the same settings, called by a function-call op.
  return tf.function(
      lambda *vectors: _encode_many(vectors, lane_overhead, block_size),
      input_signature=[tf.TensorSpec([None], tf.int32)] * count, autograph=False)


def encode_to_bytes(values, lane_overhead: float = DEFAULT_LANE_OVERHEAD,
                    block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE) -> tf.Tensor:
  """Encodes an `int32` vector in the format of the module docstring.

  The encoder's choices: per table kind, the candidate contexts
  (`choose_model`) of smallest estimated size; `K` from `choose_lane_size`
  (lane states about `lane_overhead` of the bits). If the Elias-gamma blocked
  format (`elias_gamma`, with `block_size`) is not larger, that format instead
  (unless the vector holds INT32_MIN, which that format cannot represent).

  Args:
    values: A rank-1 `int32` tensor (any values, including INT32_MIN).
    lane_overhead: Python float > 0, see above.
    block_size: Python int, the Elias-gamma fallback's block size.

  Returns:
    A `uint8` vector, the encoded bytes.
  """
  return encode_many([values], lane_overhead, block_size)[0]


def encode_many(vectors, lane_overhead: float = DEFAULT_LANE_OVERHEAD,
                block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE) -> list:
  """`[encode_to_bytes(v, lane_overhead, block_size) for v in vectors]`, at once.

  The same bytes as separate calls; the lanes of all vectors run in one
  `encode_lanes` loop (`K` steps for the largest `K` rather than the sum of
  the vectors' `K`), so the loop's cost per step is paid once.

  Args:
    vectors: Rank-1 `int32` tensors.
    lane_overhead: Python float > 0, see `encode_to_bytes`.
    block_size: Python int, the Elias-gamma fallback's block size.

  Returns:
    A list of `uint8` vectors, the encoded bytes of each.
  """
  if not lane_overhead > 0:
    raise ValueError(f'lane_overhead must be > 0, got {lane_overhead}.')
  vectors = [tf.convert_to_tensor(values) for values in vectors]
  for index, values in enumerate(vectors):
    if values.dtype != tf.int32:
      raise TypeError(f'Expected int32 values, got {values.dtype.name}'
                      + (f' (vector {index}).' if len(vectors) > 1 else '.'))
  if not vectors:
    return []
  return list(_traced_encode(float(lane_overhead), int(block_size), len(vectors))(
      *[tf.reshape(values, [-1]) for values in vectors]))


# ----------------------------------------------------------------------------
# Decoder.


def _parse(data, num_elements):
  """Header, thresholds and tables (clamped to safe ranges) and `ok`."""
  n = _i64(num_elements)
  words = bitstream.bytes_to_words(data)
  fields = _read(words, tf.constant([0, 8, 40, 72, 78, 84, 100, 101], tf.int64),
                 tf.constant([8, 32, 32, 6, 6, 16, 1, 3], tf.int64))
  (byte0, num_nonzero, lane_size, alphabet_r, alphabet_m, row_length, transposed,
   class_bits) = tf.unstack(fields)
  run_contexts = tf.bitwise.bitwise_and(byte0, 7) + 1
  value_contexts = tf.bitwise.bitwise_and(tf.bitwise.right_shift(byte0, 3), 7) + 1
  sign_mode = tf.bitwise.bitwise_and(tf.bitwise.right_shift(byte0, 6), 1)
  ok = ((num_nonzero >= 1) & (num_nonzero <= n) & (lane_size >= 1)
        & (lane_size <= num_nonzero) & (alphabet_r >= 1) & (alphabet_r <= ALPHABET)
        & (alphabet_m >= 1) & (alphabet_m <= ALPHABET)
        & (value_contexts <= MAX_VALUE_CONTEXTS // 2)
        & (class_bits <= 4))
  # Orders: W = 0 (the vector as is) or a divisor of n; not both as is.
  num_columns = _num_columns(n, row_length, transposed > 0)
  ok &= tf.where(
      tf.equal(row_length, 0),
      tf.equal(transposed, 0) & tf.equal(class_bits, 0),
      (row_length >= 2) & (row_length <= tf.minimum(n // 2, MAX_COLUMNS))
      & tf.equal(n % tf.maximum(row_length, 1), 0)
      & ((transposed > 0) | (class_bits > 0))
      & (tf.equal(class_bits, 0) | (num_columns <= MAX_COLUMNS)))
  row_length = tf.where(ok, row_length, _i64(0))
  transposed = ok & (transposed > 0)
  class_bits = tf.where(ok, class_bits, _i64(0))
  num_columns = tf.where(class_bits > 0, num_columns, _i64(0))
  num_nonzero = tf.clip_by_value(num_nonzero, 1, tf.maximum(n, 1))
  lane_size = tf.clip_by_value(lane_size, 1, num_nonzero)
  alphabet_r = tf.clip_by_value(alphabet_r, 1, ALPHABET)
  alphabet_m = tf.clip_by_value(alphabet_m, 1, ALPHABET)
  value_contexts = tf.minimum(value_contexts, MAX_VALUE_CONTEXTS // 2)
  value_rows = value_contexts * (1 + sign_mode)
  alphabet_v = alphabet_m * (1 + sign_mode)

  threshold_len = tf.concat([
      tf.where(tf.range(MAX_RUN_CONTEXTS - 1, dtype=tf.int64) < run_contexts - 1,
               _i64(THRESHOLD_BITS), _i64(0)),
      tf.where(tf.range(MAX_VALUE_CONTEXTS - 1, dtype=tf.int64)
               < value_contexts - 1, _i64(THRESHOLD_BITS), _i64(0))], 0)
  thresholds = _read(words, HEADER_BITS
                     + tf.math.cumsum(threshold_len, exclusive=True), threshold_len)
  thresholds = tf.where(threshold_len > 0, thresholds, _i64(ALPHABET + 1))
  run_thresholds = thresholds[:MAX_RUN_CONTEXTS - 1]
  value_thresholds = thresholds[MAX_RUN_CONTEXTS - 1:]
  for b, g in ((run_thresholds, run_contexts), (value_thresholds, value_contexts)):
    used = tf.range(MAX_RUN_CONTEXTS - 1, dtype=tf.int64) < g - 1
    ok &= tf.reduce_all(tf.logical_not(used) | (b <= ALPHABET))
    ok &= tf.reduce_all(tf.logical_not(used[1:]) | (b[1:] >= b[:-1]))
  class_start = HEADER_BITS + tf.reduce_sum(threshold_len)
  class_len = tf.where(tf.range(MAX_COLUMNS + 1, dtype=tf.int64) < num_columns,
                       class_bits, _i64(0))
  classes = _read(words, class_start + tf.math.cumsum(class_len, exclusive=True),
                  class_len)[:num_columns]
  run_start = class_start + num_columns * class_bits
  run_precision, run_freqs, value_start, run_ok = read_table(
      words, run_start, run_contexts, alphabet_r, MAX_RUN_CONTEXTS, ALPHABET)
  value_precision, value_freqs, states_start, value_ok = read_table(
      words, value_start, value_rows, alphabet_v, MAX_VALUE_CONTEXTS,
      VALUE_ALPHABET)
  ok &= run_ok & value_ok
  num_lanes = (num_nonzero + lane_size - 1) // lane_size
  side_bits = states_start + STATE_BITS * num_lanes
  word_start = (side_bits + 7) // 8
  ok &= 8 * tf.size(data, out_type=tf.int64) >= 8 * word_start
  # The alignment bits before the word stream must be zero.
  ok &= tf.equal(_read(words, tf.reshape(side_bits, [1]), 8 * word_start - side_bits)[0],
                 0)
  return dict(
      words=words, n=n, num_nonzero=num_nonzero, lane_size=lane_size,
      num_lanes=num_lanes, run_contexts=run_contexts,
      value_contexts=value_contexts, value_rows=value_rows, sign_mode=sign_mode,
      alphabet_r=alphabet_r, alphabet_m=alphabet_m, alphabet_v=alphabet_v,
      row_length=row_length, transposed=transposed, class_bits=class_bits,
      classes=classes, run_thresholds=run_thresholds, value_thresholds=value_thresholds,
      run_precision=run_precision, run_freqs=run_freqs,
      value_precision=value_precision, value_freqs=value_freqs,
      states_start=states_start, side_bits=side_bits, word_start=word_start,
      ok=ok)


def _lane_inputs(data, num_elements):
  """`_parse`'s fields plus what the decoding loop needs, for this format.

  Adds `states`, `counts` (pairs per lane; all 0 unless `ok`), `steps`
  (`K`, or 0 unless `ok`), the slot tables, the context maps (indexed by the
  previous run symbol, and by `2 * run_symbol + previous sign bit`), the word
  `stream` with a zero sentinel, and `available` (its words before that).
  """
  f = _parse(data, num_elements)
  ok, words = f['ok'], f['words']
  num_bytes = tf.size(data, out_type=tf.int64)
  num_nonzero, lane_size = f['num_nonzero'], f['lane_size']
  # Sized by clamped fields only; a bad header runs no loop steps.
  num_lanes = tf.where(ok, f['num_lanes'], _i64(1))
  states = _read(words, f['states_start'] + STATE_BITS * tf.range(num_lanes),
                 STATE_BITS)
  ok &= tf.reduce_all(states >= STATE_LOWER)
  value_ctx = context_of_symbol(f['value_thresholds'])
  start = tf.minimum(f['word_start'], num_bytes)
  available = (num_bytes - start) // 2
  pairs16 = tf.reshape(_i64(tf.slice(data, [start], [2 * available])), [-1, 2])
  counts = tf.minimum(lane_size, num_nonzero - tf.range(num_lanes) * lane_size)
  return dict(
      f, ok=ok, num_lanes=num_lanes, states=tf.maximum(states, STATE_LOWER),
      counts=tf.where(ok, counts, tf.zeros_like(counts)),
      steps=tf.where(ok, lane_size, _i64(0)),
      run_table=_slot_table(f['run_precision'], f['run_freqs'], MAX_RUN_CONTEXTS,
                            ALPHABET),
      value_table=_slot_table(f['value_precision'], f['value_freqs'],
                              MAX_VALUE_CONTEXTS, VALUE_ALPHABET),
      run_context_of=context_of_symbol(f['run_thresholds']),
      value_context_of=tf.reshape(tf.where(
          f['sign_mode'] > 0,
          2 * value_ctx[:, tf.newaxis] + tf.range(2, dtype=tf.int64)[tf.newaxis, :],
          tf.tile(value_ctx[:, tf.newaxis], [1, 2])), [-1]),
      stream=tf.concat([pairs16[:, 0] + tf.bitwise.left_shift(pairs16[:, 1], 8),
                        [0]], 0),
      available=available)


def _decode_context_rans(data, num_elements):
  """Decodes this format (first byte >= 128); see `decode_from_bytes`."""
  f = _lane_inputs(data, num_elements)
  final, pointer, pairs = decode_lanes(
      f['states'], f['counts'], tf.zeros_like(f['states']), f['run_table'],
      f['run_context_of'], f['value_table'], f['value_context_of'],
      tf.reshape(f['sign_mode'], [1]), f['stream'], tf.zeros([1], tf.int64),
      tf.reshape(f['available'], [1]), tf.cast(f['steps'], tf.int32))
  return _finish_decoding(data, f, final, pointer[0], pairs)


def _finish_decoding(data, f, final, pointer, pairs):
  """The values and `ok` from the loop's final states, words read and pairs."""
  ok, words, n = f['ok'], f['words'], f['n']
  num_bytes = tf.size(data, out_type=tf.int64)
  num_nonzero, lane_size, num_lanes = f['num_nonzero'], f['lane_size'], f['num_lanes']
  sign_mode = f['sign_mode']
  ok &= pointer <= f['available']
  # Everything below is sized by `go` (a snapshot of `ok`), so that later
  # checks cannot make sizes inconsistent.
  go = ok

  pairs = tf.reshape(tf.transpose(pairs), [-1])
  total = tf.where(go, num_nonzero, _i64(0))
  pairs = tf.concat([pairs, tf.zeros([total], tf.int64)], 0)[:total]
  run_symbol = tf.bitwise.bitwise_and(pairs, 255)
  value_symbol = tf.bitwise.right_shift(pairs, 8)
  ok &= tf.reduce_all(run_symbol < f['alphabet_r'])
  ok &= tf.reduce_all(value_symbol < f['alphabet_v'])
  run_symbol = tf.minimum(run_symbol, ALPHABET - 1)
  value_symbol = tf.minimum(value_symbol, VALUE_ALPHABET - 1)
  value_class = tf.where(sign_mode > 0, tf.bitwise.right_shift(value_symbol, 1),
                         value_symbol)
  value_class = tf.minimum(value_class, ALPHABET - 1)
  modelled_negative = tf.bitwise.bitwise_and(value_symbol, 1)

  # Canonical: exact alphabets and tables of the decoded symbols.
  ok &= tf.equal(tf.reduce_max(tf.concat([run_symbol, [-1]], 0)) + 1, f['alphabet_r'])
  ok &= tf.equal(tf.reduce_max(tf.concat([value_class, [-1]], 0)) + 1,
                 f['alphabet_m'])
  model = dict(run_thresholds=f['run_thresholds'],
               value_thresholds=f['value_thresholds'], sign_mode=sign_mode)
  negative_for_context = tf.where(sign_mode > 0, modelled_negative,
                                  tf.zeros_like(modelled_negative))
  run_ctx, value_ctx_used = lane_contexts(run_symbol, negative_for_context,
                                          lane_size, model)
  for ctx, symbols, rows, alphabet, precision, freqs in (
      (run_ctx, run_symbol, MAX_RUN_CONTEXTS, ALPHABET, f['run_precision'],
       f['run_freqs']),
      (value_ctx_used, value_symbol, MAX_VALUE_CONTEXTS, VALUE_ALPHABET,
       f['value_precision'], f['value_freqs'])):
    expected_precision, expected_freqs = model_tables(
        context_counts(tf.minimum(ctx, rows - 1), symbols, rows, alphabet))
    ok &= tf.reduce_all(tf.equal(expected_precision, precision))
    ok &= tf.reduce_all(tf.equal(expected_freqs, freqs))

  # Raw fields: carried bits from the final states, the rest from the payload.
  run_len = mantissa_bits(run_symbol)
  magnitude_len = mantissa_bits(value_class)
  sign_len = tf.where(sign_mode > 0, tf.zeros_like(run_len), tf.ones_like(run_len))
  field_len = run_len + sign_len + magnitude_len
  lanes_used = tf.where(go, num_lanes, _i64(1))
  lane, within, carried, carried_bits, payload_offset = carry_layout(
      field_len, lane_size, lanes_used)
  final = tf.concat([final, tf.fill([lanes_used], tf.constant(CARRY_BASE, tf.int64))],
                    0)[:lanes_used]
  carried_value = final - CARRY_BASE
  ok &= tf.reduce_all((final >= CARRY_BASE) & (final < 2 * CARRY_BASE))
  ok &= tf.reduce_all(tf.equal(
      tf.bitwise.right_shift(tf.maximum(carried_value, 0), carried_bits), 0))
  payload_start = 8 * (f['word_start'] + 2 * pointer)
  low = tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(tf.cast(tf.gather(carried_value, lane), tf.uint64),
                             tf.cast(tf.minimum(within, 63), tf.uint64)),
      tf.bitwise.left_shift(bitstream.one(), tf.cast(carried, tf.uint64))
      - bitstream.one())
  high = bitstream.low_bits(
      bitstream.read_bits(words, payload_start + payload_offset),
      field_len - carried)
  high = tf.where(carried < field_len,
                  tf.bitwise.left_shift(high, tf.cast(carried, tf.uint64)),
                  tf.zeros_like(high))
  field = _i64(tf.bitwise.bitwise_or(low, high))
  run_mantissa = tf.bitwise.bitwise_and(
      field, tf.bitwise.left_shift(tf.ones_like(field), run_len) - 1)
  sign_bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(field, run_len), 1)
  magnitude_mantissa = tf.bitwise.right_shift(field, run_len + sign_len)
  negative = tf.where(sign_mode > 0, modelled_negative, sign_bit)
  runs = class_value(run_symbol, run_mantissa)
  magnitude = class_value(value_class, magnitude_mantissa) + 1
  index = tf.math.cumsum(runs + 1) - 1
  ok &= tf.reduce_all(index < n)
  ok &= tf.reduce_all(magnitude <= tf.where(negative > 0, _i64(2**31), _i64(2**31 - 1)))
  value = tf.where(negative > 0, -magnitude, magnitude)

  # The payload ends the stream, followed by zero bits up to a whole byte.
  end = payload_start + tf.reduce_sum(field_len - carried)
  padding = 8 * num_bytes - end
  ok &= (padding >= 0) & (padding < 8)
  ok &= tf.equal(bitstream.low_bits(
      bitstream.read_bits(words, tf.reshape(end, [1])),
      tf.clip_by_value(padding, 0, 8))[0], 0)

  index = tf.where(ok, index, tf.zeros_like(index))
  value = tf.where(ok, tf.cast(value, tf.int32), 0)
  keep = tf.where(ok, tf.size(index), 0)
  dense = tf.sparse.to_dense(
      tf.SparseTensor(index[:keep, tf.newaxis], value[:keep], tf.reshape(n, [1])),
      validate_indices=False)
  values, classes_ok = _restore_order(dense, f)
  ok &= classes_ok
  # Not a `where`: that would be a pass over all values for the rare corrupt case.
  return tf.cond(ok, lambda: values, lambda: tf.zeros_like(values)), ok


def _restore_order(coded, f):
  """The values in index order from the coded order; `ok`: canonical classes."""
  matrix = tf.reshape(coded, tf.stack([-1, tf.maximum(f['row_length'], 1)]))
  matrix = tf.cond(f['transposed'],
                   lambda: tf.reshape(coded, tf.stack([tf.maximum(f['row_length'], 1), -1])),
                   lambda: matrix)
  num_classes = tf.bitwise.left_shift(_i64(1), f['class_bits'])

  def ungroup():
    classes = f['classes']
    ungrouped = tf.gather(matrix, tf.math.invert_permutation(column_order(classes)),
                          axis=1)
    # Canonical: the classes are those of the decoded columns.
    expected = column_classes(ungrouped, num_classes)
    return ungrouped, tf.reduce_all(tf.equal(expected, classes))

  matrix, ok = tf.cond(f['class_bits'] > 0, ungroup, lambda: (matrix, tf.constant(True)))
  matrix = tf.cond(f['transposed'], lambda: tf.transpose(matrix), lambda: matrix)
  return tf.reshape(matrix, [-1]), ok


def _format_of(data):
  """`(ours, empty)`: whether `data` is in this format, and its empty vector."""
  first = tf.cast(tf.concat([data, [0]], 0)[0], tf.int64)
  empty = tf.equal(tf.size(data), EMPTY_BYTES) & tf.reduce_all(
      tf.equal(tf.concat([data, tf.zeros([EMPTY_BYTES], tf.uint8)], 0)[:EMPTY_BYTES],
               tf.constant([MARKER, 0, 0, 0, 0], tf.uint8)))
  return first >= MARKER, empty


def _decode_by_format(data, num_elements, block_size, decode_context_rans):
  """`(values, ok)` by the first byte: `decode_context_rans()`, empty, or Elias-gamma."""
  n = _i64(num_elements)
  ours, empty = _format_of(data)

  def context_rans():
    return tf.cond(empty, lambda: (tf.zeros(tf.reshape(n, [1]), tf.int32), n > 0),
                   decode_context_rans)

  def eg():
    values, ok = elias_gamma.decode_from_bytes(data, num_elements, block_size)
    return tf.reshape(values, tf.reshape(n, [1])), ok

  return tf.cond(ours, context_rans, eg)


def _decode(data, num_elements, block_size):
  data = tf.reshape(data, [-1])
  return _decode_by_format(data, num_elements, block_size,
                           lambda: _decode_context_rans(data, _i64(num_elements)))


@functools.lru_cache(maxsize=None)
def _traced_decode(block_size):
  return tf.function(
      lambda data, n: _decode(data, n, block_size),
      input_signature=[tf.TensorSpec([None], tf.uint8), tf.TensorSpec([], tf.int64)],
      autograph=False)


def decode_from_bytes(data, num_elements,
                      block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE):
  """Decodes `encode_to_bytes`' output; never reads out of bounds.

  Args:
    data: A `uint8` vector.
    num_elements: The number of encoded values (Python int or scalar).
    block_size: The Elias-gamma fallback's block size.

  Returns:
    `(values, ok)`: the decoded `int32` vector of `num_elements` values and a
    scalar bool that is False when the data is truncated, corrupted or not in
    canonical form (then `values` is all zeros).
  """
  values, ok = _traced_decode(int(block_size))(
      tf.reshape(tf.convert_to_tensor(data, tf.uint8), [-1]),
      tf.cast(num_elements, tf.int64))
  if isinstance(num_elements, int):
    values = tf.ensure_shape(values, [num_elements])
  return values, ok


def decode_many(datas, sizes, block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE) -> list:
  """`[decode_from_bytes(d, n, block_size) for d, n in zip(datas, sizes)]`, at once.

  The lanes of all vectors in this format run as the segments of one
  `decode_lanes` loop (`K` steps for the largest `K` rather than the sum of
  the vectors' `K`), so the loop's cost per step is paid once. Results and
  `ok` flags are exactly those of separate calls; corrupt data of one vector
  does not affect another's values or flag. Eagerly, separate calls.

  Args:
    datas: `uint8` vectors produced by `encode_to_bytes`.
    sizes: The numbers of encoded values (Python ints).
    block_size: The Elias-gamma fallback's block size.

  Returns:
    A list of `(values, ok)` pairs, as `decode_from_bytes`.
  """
  datas, sizes = bitstream.byte_vectors(datas, sizes)
  if tf.executing_eagerly() or len(datas) < 2:
    return [decode_from_bytes(d, n, block_size) for d, n in zip(datas, sizes)]
  empty = tf.constant([MARKER, 0, 0, 0, 0], tf.uint8)
  lane_inputs = _traced_lane_inputs()
  inputs = []
  for data, n in zip(datas, sizes):
    ours, is_empty = _format_of(data)
    # Data in another format is parsed as the empty vector: no lanes, no steps.
    parsed = tf.cond(ours & ~is_empty, lambda data=data: data, lambda: empty)
    inputs.append(lane_inputs(parsed, tf.constant(n, tf.int64)))
  num_lanes = [tf.size(f['states'], out_type=tf.int64) for f in inputs]
  lane_start = tf.math.cumsum(tf.stack(num_lanes), exclusive=True)
  stream_size = tf.stack([tf.size(f['stream'], out_type=tf.int64) for f in inputs])
  final, pointer, pairs = decode_lanes(
      tf.concat([f['states'] for f in inputs], 0),
      tf.concat([f['counts'] for f in inputs], 0),
      tf.repeat(tf.range(len(inputs), dtype=tf.int64), tf.stack(num_lanes)),
      tf.concat([f['run_table'] for f in inputs], 0),
      tf.concat([f['run_context_of'] + g * MAX_RUN_CONTEXTS
                 for g, f in enumerate(inputs)], 0),
      tf.concat([f['value_table'] for f in inputs], 0),
      tf.concat([f['value_context_of'] + g * MAX_VALUE_CONTEXTS
                 for g, f in enumerate(inputs)], 0),
      tf.stack([f['sign_mode'] for f in inputs]),
      tf.concat([f['stream'] for f in inputs], 0),
      tf.math.cumsum(stream_size, exclusive=True),
      tf.stack([f['available'] for f in inputs]),
      tf.cast(tf.reduce_max(tf.stack([f['steps'] for f in inputs])), tf.int32))
  vector_values = _traced_vector_values(int(block_size))
  results = []
  for g, (data, n, f) in enumerate(zip(datas, sizes, inputs)):
    lanes = tf.range(lane_start[g], lane_start[g] + num_lanes[g])
    values, ok = vector_values(data, tf.constant(n, tf.int64), f, tf.gather(final, lanes),
                               pointer[g], tf.gather(pairs[:f['steps']], lanes, axis=1))
    results.append((tf.ensure_shape(values, [n]), ok))
  return results


def _vector_values(data, num_elements, f, final, pointer, pairs, block_size):
  """One vector's `(values, ok)` in `decode_many`, given its lanes' loop results."""
  finish = functools.partial(_finish_decoding, data, f, final, pointer, pairs)
  return _decode_by_format(data, num_elements, block_size, finish)


# As in the encoder, the per-vector parts of `decode_many` are library
# functions called per vector: inlined, each vector's copy of the decoder
# (with Elias-gamma's, for the fallback) made the first call of a model's
# decoding graph take tens of seconds to trace and instantiate.
@functools.lru_cache(maxsize=None)
def _traced_lane_inputs():
  return tf.function(_lane_inputs, autograph=False, experimental_attributes=_NOINLINE,
                     input_signature=[tf.TensorSpec([None], tf.uint8),
                                      tf.TensorSpec([], tf.int64)])


@functools.lru_cache(maxsize=None)
def _traced_vector_values(block_size):
  return tf.function(functools.partial(_vector_values, block_size=block_size),
                     autograph=False, reduce_retracing=True,
                     experimental_attributes=_NOINLINE)


def side_info_bits(data, num_elements,
                   block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE) -> tf.Tensor:
  """Bits before the word stream other than lane states (header, tables, padding).

  For the Elias-gamma fallback, `elias_gamma.side_info_bits`.
  """
  data = tf.reshape(tf.convert_to_tensor(data, tf.uint8), [-1])
  first = tf.cast(tf.concat([data, [0]], 0)[0], tf.int64)

  def ours():
    f = _parse(data, num_elements)
    return tf.where(tf.size(data) <= EMPTY_BYTES, 8 * tf.size(data, out_type=tf.int64),
                    8 * f['word_start'] - STATE_BITS * f['num_lanes'])

  return tf.cond(first >= MARKER, ours,
                 lambda: _i64(elias_gamma.side_info_bits(data, num_elements,
                                                         block_size)))


def encode(values, lane_overhead: float = DEFAULT_LANE_OVERHEAD) -> tf.Tensor:
  """Encodes an `int32` vector as a scalar `tf.string` (`encode_to_bytes`)."""
  return bitstream.bytes_to_string(encode_to_bytes(values, lane_overhead))


def decode(stream, num_elements) -> tf.Tensor:
  """Decodes `encode`'s output; raises `InvalidArgumentError` if it is corrupt."""
  values, ok = decode_from_bytes(bitstream.string_to_bytes(stream), num_elements)
  check = tf.debugging.Assert(
      ok, [f'run-length rANS stream is truncated or corrupted (expected '
           f'{num_elements} values).'])
  with tf.control_dependencies([check]):
    return tf.identity(values)
