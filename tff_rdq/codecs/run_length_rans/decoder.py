"""The decoder of the run-length rANS format (`decode_from_bytes`, `decode_many`)."""

import functools

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import rans_core
from tff_rdq.codecs.run_length_rans.format import (
    _NOINLINE, ALPHABET, CARRY_BASE, EMPTY_BYTES, HEADER_BITS, MARKER,
    MAX_COLUMNS, MAX_RUN_CONTEXTS, MAX_VALUE_CONTEXTS, STATE_BITS, STATE_LOWER,
    THRESHOLD_BITS, VALUE_ALPHABET, _i64, _num_columns, _read, class_value,
    mantissa_bits)
from tff_rdq.codecs.run_length_rans.lanes import (
    _slot_table, carry_layout, decode_lanes)
from tff_rdq.codecs.run_length_rans.model import (
    context_counts, context_of_symbol, lane_contexts, model_tables, read_table)
from tff_rdq.codecs.run_length_rans.order import column_classes, column_order


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
  row_length, transposed, class_bits, num_columns, ok = _parse_order(
      n, row_length, transposed, class_bits, ok)
  num_nonzero = tf.clip_by_value(num_nonzero, 1, tf.maximum(n, 1))
  lane_size = tf.clip_by_value(lane_size, 1, num_nonzero)
  alphabet_r = tf.clip_by_value(alphabet_r, 1, ALPHABET)
  alphabet_m = tf.clip_by_value(alphabet_m, 1, ALPHABET)
  value_contexts = tf.minimum(value_contexts, MAX_VALUE_CONTEXTS // 2)
  value_rows = value_contexts * (1 + sign_mode)
  alphabet_v = alphabet_m * (1 + sign_mode)

  run_thresholds, value_thresholds, class_start, ok = _read_thresholds(
      words, run_contexts, value_contexts, ok)
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


def _parse_order(n, row_length, transposed, class_bits, ok):
  """The coded order `(W, t, k)`, checked; the vector as is unless `ok`.

  Returns:
    `(row_length, transposed, class_bits, num_columns, ok)`: `transposed` a
    bool, `num_columns` the columns with a class (0 without classes), and
    `ok` and that the order is well formed.
  """
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
  return row_length, transposed, class_bits, num_columns, ok


def _read_thresholds(words, run_contexts, value_contexts, ok):
  """The thresholds after the header.

  Returns:
    `(run_thresholds, value_thresholds, end, ok)`: 7 each, `ALPHABET + 1`
    past the `G - 1` used ones; the bit offset after them; `ok` and that the
    used thresholds are at most `ALPHABET` and non-decreasing.
  """
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
  return (run_thresholds, value_thresholds,
          HEADER_BITS + tf.reduce_sum(threshold_len), ok)


def _lane_inputs(data, num_elements):
  """`_parse`'s fields plus what the decoding loop needs, for this format.

  Adds `states`, `counts` (pairs per lane; all 0 unless `ok`), `steps`
  (`K`, or 0 unless `ok`), the slot tables, the context maps (indexed by the
  previous run symbol, and by `2 * run_symbol + previous sign bit`), the word
  `stream` with a zero sentinel, and `available` (its words before that).
  """
  f = _parse(data, num_elements)
  ok, words = f['ok'], f['words']
  num_nonzero, lane_size = f['num_nonzero'], f['lane_size']
  # Sized by clamped fields only; a bad header runs no loop steps.
  num_lanes = tf.where(ok, f['num_lanes'], _i64(1))
  states = _read(words, f['states_start'] + STATE_BITS * tf.range(num_lanes),
                 STATE_BITS)
  ok &= tf.reduce_all(states >= STATE_LOWER)
  value_ctx = context_of_symbol(f['value_thresholds'])
  stream, available = rans_core.word_stream(data, f['word_start'])
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
      stream=stream, available=available)


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
  n = f['n']
  ok = f['ok'] & (pointer <= f['available'])
  # Everything below is sized by `go` (a snapshot of `ok`), so that later
  # checks cannot make sizes inconsistent.
  go = ok
  symbols, ok = _decoded_symbols(f, pairs, go, ok)
  ok &= _canonical_tables(f, symbols)
  index, value, end, values_ok = _decoded_values(f, symbols, final, pointer, go)
  # The payload ends the stream, followed by zero bits up to a whole byte.
  ok &= values_ok & rans_core.ends_at(f['words'], end,
                                      tf.size(data, out_type=tf.int64))

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


def _decoded_symbols(f, pairs, go, ok):
  """The `N` decoded pairs' symbols, lane-major (all empty unless `go`).

  Returns:
    `(symbols, ok)`: a dict of `run_symbol`, `value_symbol`, `value_class`
    and `modelled_negative` (the sign bit of a value symbol, meaningful if
    `S = 1`), clamped to valid indices; `ok` and that the symbols lie in the
    header's alphabets.
  """
  pairs = tf.reshape(tf.transpose(pairs), [-1])
  total = tf.where(go, f['num_nonzero'], _i64(0))
  pairs = tf.concat([pairs, tf.zeros([total], tf.int64)], 0)[:total]
  run_symbol = tf.bitwise.bitwise_and(pairs, 255)
  value_symbol = tf.bitwise.right_shift(pairs, 8)
  ok &= tf.reduce_all(run_symbol < f['alphabet_r'])
  ok &= tf.reduce_all(value_symbol < f['alphabet_v'])
  run_symbol = tf.minimum(run_symbol, ALPHABET - 1)
  value_symbol = tf.minimum(value_symbol, VALUE_ALPHABET - 1)
  value_class = tf.where(f['sign_mode'] > 0, tf.bitwise.right_shift(value_symbol, 1),
                         value_symbol)
  value_class = tf.minimum(value_class, ALPHABET - 1)
  modelled_negative = tf.bitwise.bitwise_and(value_symbol, 1)
  return dict(run_symbol=run_symbol, value_symbol=value_symbol,
              value_class=value_class, modelled_negative=modelled_negative), ok


def _canonical_tables(f, symbols):
  """Whether the alphabets and tables are exactly those of the decoded symbols."""
  run_symbol, value_symbol = symbols['run_symbol'], symbols['value_symbol']
  sign_mode, modelled_negative = f['sign_mode'], symbols['modelled_negative']
  ok = tf.equal(tf.reduce_max(tf.concat([run_symbol, [-1]], 0)) + 1, f['alphabet_r'])
  ok &= tf.equal(tf.reduce_max(tf.concat([symbols['value_class'], [-1]], 0)) + 1,
                 f['alphabet_m'])
  model = dict(run_thresholds=f['run_thresholds'],
               value_thresholds=f['value_thresholds'], sign_mode=sign_mode)
  negative_for_context = tf.where(sign_mode > 0, modelled_negative,
                                  tf.zeros_like(modelled_negative))
  run_ctx, value_ctx_used = lane_contexts(run_symbol, negative_for_context,
                                          f['lane_size'], model)
  for ctx, symbol, rows, alphabet, precision, freqs in (
      (run_ctx, run_symbol, MAX_RUN_CONTEXTS, ALPHABET, f['run_precision'],
       f['run_freqs']),
      (value_ctx_used, value_symbol, MAX_VALUE_CONTEXTS, VALUE_ALPHABET,
       f['value_precision'], f['value_freqs'])):
    expected_precision, expected_freqs = model_tables(
        context_counts(tf.minimum(ctx, rows - 1), symbol, rows, alphabet))
    ok &= tf.reduce_all(tf.equal(expected_precision, precision))
    ok &= tf.reduce_all(tf.equal(expected_freqs, freqs))
  return ok


def _decoded_values(f, symbols, final, pointer, go):
  """Positions and values of the pairs, from their symbols and raw fields.

  The raw fields' carried bits come from the lanes' `final` states, the rest
  from the payload after the `pointer` words read.

  Returns:
    `(index, value, end, ok)`: `int64` positions (in the coded order) and
    values, the bit offset where the payload ends, and whether every lane
    ends in a state `2**35 + c` with `c < 2**c_j`, the positions lie below
    `n` and the values in the `int32` range.
  """
  run_symbol, value_class = symbols['run_symbol'], symbols['value_class']
  sign_mode = f['sign_mode']
  # Raw fields: carried bits from the final states, the rest from the payload.
  run_len = mantissa_bits(run_symbol)
  magnitude_len = mantissa_bits(value_class)
  sign_len = tf.where(sign_mode > 0, tf.zeros_like(run_len), tf.ones_like(run_len))
  field_len = run_len + sign_len + magnitude_len
  lanes_used = tf.where(go, f['num_lanes'], _i64(1))
  lane, within, carried, carried_bits, payload_offset = carry_layout(
      field_len, f['lane_size'], lanes_used)
  final = tf.concat([final, tf.fill([lanes_used], tf.constant(CARRY_BASE, tf.int64))],
                    0)[:lanes_used]
  carried_value = final - CARRY_BASE
  ok = tf.reduce_all((final >= CARRY_BASE) & (final < 2 * CARRY_BASE))
  ok &= tf.reduce_all(tf.equal(
      tf.bitwise.right_shift(tf.maximum(carried_value, 0), carried_bits), 0))
  payload_start = 8 * (f['word_start'] + 2 * pointer)
  low = tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(tf.cast(tf.gather(carried_value, lane), tf.uint64),
                             tf.cast(tf.minimum(within, 63), tf.uint64)),
      tf.bitwise.left_shift(bitstream.one(), tf.cast(carried, tf.uint64))
      - bitstream.one())
  high = bitstream.low_bits(
      bitstream.read_bits(f['words'], payload_start + payload_offset),
      field_len - carried)
  high = tf.where(carried < field_len,
                  tf.bitwise.left_shift(high, tf.cast(carried, tf.uint64)),
                  tf.zeros_like(high))
  field = _i64(tf.bitwise.bitwise_or(low, high))
  run_mantissa = tf.bitwise.bitwise_and(
      field, tf.bitwise.left_shift(tf.ones_like(field), run_len) - 1)
  sign_bit = tf.bitwise.bitwise_and(tf.bitwise.right_shift(field, run_len), 1)
  magnitude_mantissa = tf.bitwise.right_shift(field, run_len + sign_len)
  negative = tf.where(sign_mode > 0, symbols['modelled_negative'], sign_bit)
  runs = class_value(run_symbol, run_mantissa)
  magnitude = class_value(value_class, magnitude_mantissa) + 1
  index = tf.math.cumsum(runs + 1) - 1
  ok &= tf.reduce_all(index < f['n'])
  ok &= tf.reduce_all(magnitude <= tf.where(negative > 0, _i64(2**31), _i64(2**31 - 1)))
  value = tf.where(negative > 0, -magnitude, magnitude)
  end = payload_start + tf.reduce_sum(field_len - carried)
  return index, value, end, ok


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


def decode(stream, num_elements) -> tf.Tensor:
  """Decodes `encode`'s output; raises `InvalidArgumentError` if it is corrupt."""
  values, ok = decode_from_bytes(bitstream.string_to_bytes(stream), num_elements)
  check = tf.debugging.Assert(
      ok, [f'run-length rANS stream is truncated or corrupted (expected '
           f'{num_elements} values).'])
  with tf.control_dependencies([check]):
    return tf.identity(values)
