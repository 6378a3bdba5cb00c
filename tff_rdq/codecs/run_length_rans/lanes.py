"""The lanes of the run-length rANS format: raw bits, lane states, rANS loops.

Raw fields and the bits carried in lane states (`raw_fields`,
`carry_layout`), and the encoding and decoding loops over all lanes at once
(`encode_lanes`, `decode_lanes`), built on `rans_core`.
"""

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.codecs import rans_core
from tff_rdq.codecs.run_length_rans.format import (
    ALPHABET, CARRY_BITS, PRECISION, PROB_SCALE, STATE_LOWER, _i64)
from tff_rdq.codecs.run_length_rans.model import coding_table

_spec = rans_core.spec


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


def _lane_matrix(flat, lane_size, num_lanes, fill):
  """`[K, lanes]` of a per-pair vector, padded with `fill`."""
  padded = tf.concat(
      [flat, tf.fill([num_lanes * lane_size - tf.size(flat, out_type=tf.int64)],
                     tf.constant(fill, tf.int64))], 0)
  return tf.transpose(tf.reshape(padded, tf.stack([num_lanes, lane_size])))


@rans_core.graph_when_eager([_spec(None, None)] * 4 + [_spec(None)])
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
    x = rans_core.encode_step(x, tf.gather(value_f, t), tf.gather(value_c, t),
                              PRECISION)
    before_run = before_run.write(t, x)
    x = rans_core.encode_step(x, tf.gather(run_f, t), tf.gather(run_c, t),
                              PRECISION)
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


def _segment_refill(lanes, lane_segment, words, word_base, word_last):
  """`decode_lanes`' renormalization, per segment (see there).

  Returns:
    `(segment_first, refill)`: the first lane of each segment (the number of
    lanes for a segment without lanes), and `refill(x, need, pointer)`, which
    reads the next word of its segment's stream into each lane that `need`s
    one and returns the new states and pointers (`pointer`: per lane, the
    stream index of its segment's next word).
  """
  num_segments = tf.size(word_base, out_type=tf.int64)
  lane_index = tf.range(lanes)
  segment_first = tf.math.unsorted_segment_min(lane_index, lane_segment, num_segments)
  first = tf.gather(segment_first, lane_segment)
  last = tf.gather(tf.math.unsorted_segment_max(lane_index, lane_segment, num_segments),
                   lane_segment)
  last_word = tf.gather(word_base + word_last, lane_segment)

  def refill(x, need, pointer):
    reads = tf.cast(need, tf.int64)
    before = tf.math.cumsum(reads, exclusive=True)
    segment_before = tf.gather(before, first)
    at = tf.minimum(pointer + before - segment_before, last_word)
    x = rans_core.read_words(x, need, words, at)
    return x, pointer + tf.gather(before + reads, last) - segment_before

  return segment_first, refill


def _decode_symbol(x, table, row, active, pointer, refill):
  """Decodes one symbol in the `active` lanes from their slot-table `row`s.

  Returns:
    `(symbol, x, pointer)`: the symbols (meaningful where `active`), the
    states and the pointers after renormalization (`refill`).
  """
  entry = tf.gather(table, row + tf.bitwise.bitwise_and(x, PROB_SCALE - 1))
  freq = tf.bitwise.bitwise_and(tf.bitwise.right_shift(entry, 8), 8191)
  decoded = rans_core.decode_step(x, freq, tf.bitwise.right_shift(entry, 21),
                                  PRECISION)
  decoded, pointer = refill(decoded, active & (decoded < STATE_LOWER), pointer)
  return tf.bitwise.bitwise_and(entry, 255), tf.where(active, decoded, x), pointer


@rans_core.graph_when_eager(
    [_spec(None), _spec(None), _spec(None), _spec(None), _spec(None),
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
  sign_mask = tf.gather(tf.where(sign_mode > 0, _i64(1), _i64(0)), lane_segment)
  # Context maps to slot-table rows (context * 2**12), per lane's segment.
  run_rows = tf.bitwise.left_shift(run_context_of, PRECISION)
  value_rows = tf.bitwise.left_shift(value_context_of, PRECISION)
  run_map = lane_segment * RUN_CONTEXT_MAP
  value_map = lane_segment * VALUE_CONTEXT_MAP
  segment_first, refill = _segment_refill(lanes, lane_segment, words, word_base,
                                          word_last)
  counts = tf.cast(counts, tf.int32)

  def body(t, x, previous, previous_negative, pointer, pairs):
    for i in range(_DECODE_UNROLL):
      active = t + i < counts
      run, x, pointer = _decode_symbol(
          x, run_table, tf.gather(run_rows, run_map + previous), active, pointer,
          refill)
      value, x, pointer = _decode_symbol(
          x, value_table,
          tf.gather(value_rows, value_map + 2 * run + previous_negative), active,
          pointer, refill)
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
