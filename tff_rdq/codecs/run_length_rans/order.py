"""The coded order of the run-length rANS format and the encoder's analysis.

A vector that looks like a matrix is coded as that matrix, possibly
transposed, with its columns grouped by class (`row_length_candidate`,
`column_classes`, `choose_order`); `analyze` gives the encoder's whole model
of a vector in its coded order.
"""

import tensorflow as tf

from tff_rdq.codecs.run_length_rans.format import (
    _HUGE, _LOG_BITS, ALPHABET, COLUMN_CLASSES, DEFAULT_LANE_OVERHEAD,
    MAX_COLUMNS, MAX_ROW_LENGTH, MAX_RUN_CONTEXTS, MAX_VALUE_CONTEXTS,
    ORDER_SAMPLE_VALUES, ROW_LENGTH_SAMPLES, VALUE_ALPHABET, _i64,
    class_symbol)
from tff_rdq.codecs.run_length_rans.model import (
    _first_min, choose_lane_size, choose_model, context_counts, lane_contexts,
    model_tables)


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
