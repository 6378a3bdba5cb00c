"""The model of the run-length rANS format: contexts and frequency tables.

Small pure functions on symbol counts (`quantize_frequencies`,
`model_tables`, `coded_cost`), the encoder's model search (`choose_model`,
`choose_lane_size`) and the tables' bit fields (`table_fields`,
`read_table`); see the package docstring.
"""

import numpy as np
import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs.run_length_rans.format import (
    _LOG_BITS, ALPHABET, CARRY_BITS, DEFAULT_LANE_OVERHEAD, LOG2_TABLE,
    MAX_PRECISION, MAX_RUN_CONTEXTS, MAX_VALUE_CONTEXTS, MIN_LANE_SIZE,
    PRECISION, PRECISION_FIELD_BITS, RUN_CONTEXT_CHOICES, THRESHOLD_BITS,
    VALUE_ALPHABET, VALUE_CONTEXT_CHOICES, _i64, _read)


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
  run_choices, run_thresholds, run_costs = _run_candidates(
      pair_counts, symbols, alphabet_r)
  value_choices, sign_modes, value_thresholds, value_costs = _value_candidates(
      pair_counts, value_counts, symbols, alphabet_m, n)

  best_run, best_value = _first_min(run_costs), _first_min(value_costs)
  return dict(
      run_contexts=tf.gather(tf.constant(run_choices, tf.int64), best_run),
      value_contexts=tf.gather(tf.constant(value_choices, tf.int64), best_value),
      sign_mode=tf.gather(tf.constant(sign_modes, tf.int64), best_value),
      run_thresholds=tf.gather(run_thresholds, best_run),
      value_thresholds=tf.gather(value_thresholds, best_value),
      estimate=tf.gather(run_costs, best_run) + tf.gather(value_costs, best_value),
      alphabet_r=alphabet_r, alphabet_m=alphabet_m)


def _contexts_of(thresholds, symbols):
  """`[candidates, ALPHABET]`: each candidate's context of each symbol."""
  return tf.reduce_sum(tf.cast(
      thresholds[:, tf.newaxis, :] <= symbols[tf.newaxis, :, tf.newaxis],
      tf.int64), axis=-1)


def _run_candidates(pair_counts, symbols, alphabet_r):
  """`choose_model`'s run candidates: contexts from the previous run symbol.

  Returns:
    `(choices, thresholds, costs)`: per candidate `G_r` (numpy), its
    thresholds and its cost.
  """
  run_choices = np.array(RUN_CONTEXT_CHOICES)
  run_thresholds = candidate_thresholds(tf.reduce_sum(pair_counts, axis=1),
                                        RUN_CONTEXT_CHOICES)
  counts = _context_counts_by_candidate(
      pair_counts, _contexts_of(run_thresholds, symbols), MAX_RUN_CONTEXTS)
  precision, freqs = model_tables(counts)
  run_costs = coded_cost(counts, precision, freqs) + tf.bitwise.left_shift(
      table_bits(precision, freqs, run_choices, alphabet_r)
      + THRESHOLD_BITS * (run_choices - 1), _LOG_BITS)
  return run_choices, run_thresholds, run_costs


def _value_candidates(pair_counts, value_counts, symbols, alphabet_m, n):
  """`choose_model`'s value candidates: contexts from the pair's run symbol.

  With `S = 1`, also from the previous pair's sign.

  Returns:
    `(choices, sign_modes, thresholds, costs)`: per candidate `G_v` and `S`
    (numpy), its thresholds and its cost.
  """
  choices = VALUE_CONTEXT_CHOICES
  value_choices = np.array(choices * 2)
  sign_modes = np.repeat([0, 1], len(choices))
  thresholds = candidate_thresholds(tf.reduce_sum(pair_counts, axis=0), choices)
  contexts = _contexts_of(thresholds, symbols)
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
  return value_choices, sign_modes, value_thresholds, value_costs


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


def table_fields(precision, freqs, num_contexts, alphabet, start):
  """`(values, offsets, end)` of `write_table` at bit `start` (see package doc).

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
