"""The encoder of the run-length rANS format (`encode_to_bytes`, `encode_many`)."""

import functools

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import rans_core
from tff_rdq.codecs.run_length_rans.format import (
    _NOINLINE, _NOOP_FREQUENCY, ALPHABET, CARRY_BASE, DEFAULT_LANE_OVERHEAD,
    HEADER_BITS, MARKER, MAX_COLUMNS, MAX_RUN_CONTEXTS, MAX_VALUE_CONTEXTS,
    PRECISION, STATE_BITS, THRESHOLD_BITS, VALUE_ALPHABET, _i64, _num_columns,
    class_value)
from tff_rdq.codecs.run_length_rans.lanes import (
    _lane_matrix, carry_layout, encode_lanes, raw_fields)
from tff_rdq.codecs.run_length_rans.model import coding_table, table_fields
from tff_rdq.codecs.run_length_rans.order import analyze


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
  words = rans_core.emitted_words(
      tf.stack([before_run, before_value], 1),
      tf.stack([inputs['run_f'], inputs['value_f']], 1), PRECISION)

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
  return tf.concat([
      bitstream.words_to_bytes(header, side_bytes),
      rans_core.word_bytes(words),
      rans_core.payload_bytes(payload, payload_offset, payload_len),
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
  """Encodes an `int32` vector in the format of the package docstring.

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


def encode(values, lane_overhead: float = DEFAULT_LANE_OVERHEAD) -> tf.Tensor:
  """Encodes an `int32` vector as a scalar `tf.string` (`encode_to_bytes`)."""
  return bitstream.bytes_to_string(encode_to_bytes(values, lane_overhead))
