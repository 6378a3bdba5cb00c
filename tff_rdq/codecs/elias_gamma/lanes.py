"""The decoding loops of the blocked format: every block a lane, one codeword per step.

`_decode_lanes_fast` decodes in int32 with a lookup table; `_decode_lanes_general`
decodes any codeword in int64 and finds the errors.
"""

import functools
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from tff_rdq.codecs import bitstream

# Table steps per iteration of the fast decoding loop (before its one
# general step), and the table's key bits (18 bits, a 1 MB table, are 3-7 %
# slower than 16 at steps 0.25-8: cache misses).
_TABLE_STEPS = 4
_TABLE_BITS = 16
# Fields of a table entry: the run in bits [0, R), gamma(run)'s length and the
# codeword's length 5 bits each from R, the signed value from R + 10 up. A
# codeword within the key has runs below 2**R and |v| below 2**(R - 1).
_ENTRY_RUN_BITS = _TABLE_BITS // 2
# Iterations of the fast loop's phases before the last (see `_decode_lanes_fast`).
_DECODE_PHASES = (16, 16, 32, 64, 128)


@functools.cache
def _lookup_table() -> np.ndarray:
  """The fast decoder's table of codewords of at most `_TABLE_BITS` bits.

  One `int32` entry per window `key` of `_TABLE_BITS` bits (a stream's next
  bits, LSB first), with the fields of `_ENTRY_RUN_BITS`: the run of
  gamma(run) at bit 0, its length `2 z1 + 1`, the length of the whole
  codeword gamma(run), sign, gamma(|v|), and the signed value. A length is 0
  where its code does not end within the window (and the run is 0 where
  gamma(run) does not), which marks the entry unusable.
  """
  key = np.arange(2**_TABLE_BITS, dtype=np.int64)

  def gamma_at(bits):
    """`(value, zero count)` of the gamma codes starting at bit 0 of `bits`."""
    zeros = np.where(bits > 0, np.log2(np.maximum(bits & -bits, 1)).astype(np.int64), 99)
    zeros_c = np.minimum(zeros, 30)
    value = (1 << zeros_c) | ((bits >> (zeros_c + 1)) & ((1 << zeros_c) - 1))
    return value, zeros

  run, z1 = gamma_at(key)
  run_bits = 2 * z1 + 1
  run_fits = run_bits <= _TABLE_BITS
  shift = np.minimum(run_bits + 1, 62)
  negative = ((key >> np.minimum(run_bits, 62)) & 1) == 0
  magnitude, z2 = gamma_at(key >> shift)
  code_bits = run_bits + 1 + 2 * z2 + 1
  code_fits = run_fits & (code_bits <= _TABLE_BITS)
  value = np.where(negative, -magnitude, magnitude)
  r = _ENTRY_RUN_BITS
  entry = np.where(run_fits, run | (run_bits << r), 0) | np.where(
      code_fits, (code_bits << (r + 5)) | ((value & (2**(22 - r) - 1)) << (r + 10)), 0)
  return entry.astype(np.uint32).view(np.int32)


class _Constants(NamedTuple):
  """The fast loop's graph constants, made once outside the loop body.

  Inside the body each would run every step. `one` and `c63` are `uint64`,
  `c14u` and `c15u` `uint32`, the others `int32`.
  """
  one: tf.Tensor
  c63: tf.Tensor
  zero: tf.Tensor
  c1: tf.Tensor
  c6: tf.Tensor
  c15: tf.Tensor
  c23: tf.Tensor
  c31: tf.Tensor
  c63_i32: tf.Tensor
  c127: tf.Tensor
  c14u: tf.Tensor
  c15u: tf.Tensor
  table: tf.Tensor
  table_mask: tf.Tensor
  run_mask: tf.Tensor
  run_len_at: tf.Tensor
  code_len_at: tf.Tensor
  value_at: tf.Tensor


def _constants() -> _Constants:
  """The graph constants of `_Constants`."""
  i32, u32 = tf.int32, tf.uint32
  c1, c6, c15, c23, c63_i32, c127 = (
      tf.constant(v, i32) for v in (1, 6, 15, 23, 63, 127))
  # A graph constant: the worker runs graphs without constant folding.
  table = tf.constant(_lookup_table())
  run_mask, run_len_at, code_len_at, value_at, c31 = (
      tf.constant(v, i32) for v in (2**_ENTRY_RUN_BITS - 1, _ENTRY_RUN_BITS,
                                    _ENTRY_RUN_BITS + 5, _ENTRY_RUN_BITS + 10, 31))
  return _Constants(
      one=tf.constant(1, tf.uint64), c63=tf.constant(63, tf.uint64),
      zero=tf.constant(0, i32), c1=c1, c6=c6, c15=c15, c23=c23, c31=c31,
      c63_i32=c63_i32, c127=c127, c14u=tf.constant(14, u32), c15u=tf.constant(15, u32),
      table=table, table_mask=tf.constant(2**_TABLE_BITS - 1, i32), run_mask=run_mask,
      run_len_at=run_len_at, code_len_at=code_len_at, value_at=value_at)


class _Phase(NamedTuple):
  """One phase's lanes, and what their steps read (tensors made outside the loop).

  `flat` holds the phase's rows of windows row-major (row `k` of lane `j` at
  `k * width + j`), `flat_next[i]` is `flat[i + width] << 1`; `blen` and
  `base` are the lanes' value counts and first indices minus one.
  """
  c: _Constants
  flat: tf.Tensor
  flat_next: tf.Tensor
  lane_iota: tf.Tensor
  width: tf.Tensor
  last_row: tf.Tensor
  blen: tf.Tensor
  base: tf.Tensor


def _window_rows(c: _Constants, words, block_start_bit, block_end_bit):
  """The lanes' 64-bit windows, row-major: `(rows, last_row)`.

  rows[k, lane] holds the 64 bits from bit 64 * k of the lane's block on. In a
  step the lanes read neighbouring rows, so the reads stay in cache (reading
  the stream itself jumps a block per lane).
  """
  i32 = tf.int32
  last_word = tf.shape(words, out_type=i32)[0] - 2
  # words_next[j] = words[j + 1] << 1: a window is one shift and OR of both.
  words_next = tf.concat(
      [tf.bitwise.left_shift(words[1:], c.one), tf.zeros([1], tf.uint64)], 0)
  start = tf.cast(block_start_bit, i32)
  num_rows = tf.cast(tf.reduce_max(
      tf.concat([block_end_bit - block_start_bit, [0]], 0)), i32) // 64 + 3
  word = tf.minimum(
      tf.range(num_rows)[:, tf.newaxis] + tf.bitwise.right_shift(start, 6), last_word)
  shift = tf.cast(tf.bitwise.bitwise_and(start, 63), tf.uint64)
  rows = tf.bitwise.bitwise_or(
      tf.bitwise.right_shift(tf.gather(words, word), shift),
      tf.bitwise.left_shift(tf.gather(words_next, word), tf.bitwise.bitwise_xor(shift, c.c63)))
  return rows, num_rows - 1


def _ctz32(c: _Constants, x):
  """Trailing zeros of int32 bit patterns; outside 0..30 for 0 and 2**31."""
  lowest = tf.bitwise.bitwise_and(x, tf.negative(x))
  # A power of two is exact in float32; its exponent field is the bit index.
  return tf.bitwise.right_shift(
      tf.bitcast(tf.cast(lowest, tf.float32), tf.int32), c.c23) - c.c127


def _read_window(p: _Phase, r):
  """The 64 bits from bit `r` of each lane's block."""
  k = tf.minimum(tf.bitwise.right_shift(r, p.c.c6), p.last_row) * p.width + p.lane_iota
  s = tf.cast(tf.bitwise.bitwise_and(r, p.c.c63_i32), tf.uint64)
  return tf.bitwise.bitwise_or(
      tf.bitwise.right_shift(tf.gather(p.flat, k), s),
      tf.bitwise.left_shift(tf.gather(p.flat_next, k), tf.bitwise.bitwise_xor(s, p.c.c63)))


def _decode_step(p: _Phase, r, pos, act):
  """One codeword in every lane: `r` bits into the block, `pos` values.

  int32 arithmetic: right shifts sign-extend, and every field is masked.
  """
  c, i32, u32 = p.c, tf.int32, tf.uint32
  w = _read_window(p, r)
  # gamma(run) and the sign lie in the low 30 bits (runs below 2**15).
  low = tf.cast(w, i32)
  z1 = _ctz32(c, low)
  z1c = tf.bitwise.bitwise_and(z1, c.c15)
  z1p = z1c + c.c1
  x = tf.bitwise.right_shift(low, z1p)
  top = tf.bitwise.left_shift(c.c1, z1c)
  run = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(x, top - c.c1), top)
  sign = tf.bitwise.bitwise_and(tf.bitwise.right_shift(x, z1c), c.c1)
  # gamma(|v|) from bit 2 * z1 + 2 on, within 31 bits (|v| below 2**16).
  mag_start = z1p + z1p
  t = tf.cast(tf.bitwise.right_shift(w, tf.cast(mag_start, tf.uint64)), i32)
  z2 = _ctz32(c, t)
  z2c = tf.bitwise.bitwise_and(z2, c.c15)
  top2 = tf.bitwise.left_shift(c.c1, z2c)
  magnitude = tf.bitwise.bitwise_or(
      tf.bitwise.bitwise_and(tf.bitwise.right_shift(t, z2c + c.c1), top2 - c.c1), top2)
  negative = sign - c.c1  # all ones for a negative value
  value = tf.bitwise.bitwise_xor(magnitude, negative) - negative
  new_pos = pos + run
  is_value = new_pos <= p.blen
  # Stop (for the general loop) where the run field is no run below 2**15
  # (z1 > 14, or no one bit in 32), or |v| is 2**16 or more.
  stall = act & ((tf.cast(z1, u32) > c.c14u) | (is_value & (tf.cast(z2, u32) > c.c15u)))
  go = act & tf.logical_not(stall)
  advance = tf.where(is_value, mag_start + z2c + z2c + c.c1, mag_start - c.c1)
  r, pos, index, value = _advance_lanes(p, r, pos, go, new_pos, is_value, advance, value)
  return r, pos, go & (new_pos < p.blen), index, value


def _table_step(p: _Phase, r, pos, act):
  """`_decode_step` by one lookup of the window's low `_TABLE_BITS` bits.

  A lane whose codeword (or, at its block end, trailing run) is longer
  than the lookup's bits stays where it is (advance 0) for `_decode_step`.
  """
  c = p.c
  w = _read_window(p, r)
  entry = tf.gather(c.table, tf.bitwise.bitwise_and(tf.cast(w, tf.int32), c.table_mask))
  new_pos = pos + tf.bitwise.bitwise_and(entry, c.run_mask)
  is_value = new_pos <= p.blen
  advance = tf.bitwise.bitwise_and(
      tf.bitwise.right_shift(entry, tf.where(is_value, c.code_len_at, c.run_len_at)), c.c31)
  go = act & (advance > c.zero)
  value = tf.bitwise.right_shift(entry, c.value_at)  # sign-extending
  r, pos, index, value = _advance_lanes(p, r, pos, go, new_pos, is_value, advance, value)
  # A lane whose codeword is too long stays active, for `_decode_step`.
  return r, pos, tf.where(go, new_pos < p.blen, act), index, value


def _advance_lanes(p: _Phase, r, pos, go, new_pos, is_value, advance, value):
  """The lanes that `go` move by one codeword: `(r, pos, index, value)`."""
  r = tf.where(go, r + advance, r)
  pos = tf.where(go, new_pos, pos)
  emit = go & is_value
  return (r, pos, tf.where(emit, p.base + new_pos, p.c.zero),
          tf.where(emit, value, p.c.zero))


def _run_phase(c: _Constants, last_row, rows, blen, base, r, pos, act, iterations):
  """Runs the loop for up to `iterations` on the lanes of `rows` ([rows, lanes]).

  Returns `(r, pos, act, index, values)`: the lanes' state after the phase,
  and per step (row 0 a placeholder of zeros) and lane the index and value
  that the step wrote.
  """
  i32 = tf.int32
  width = tf.shape(blen)[0]
  flat = tf.reshape(rows, [-1])
  flat_next = tf.concat(
      [tf.bitwise.left_shift(flat[width:], c.one), tf.zeros([width], tf.uint64)], 0)
  p = _Phase(c=c, flat=flat, flat_next=flat_next, lane_iota=tf.range(width), width=width,
             last_row=last_row, blen=blen, base=base)

  def body(step, r, pos, act, index_array, value_array):
    # Several codewords per loop iteration: less of the loop's own overhead.
    # The table steps decode short codewords; the last step decodes any, so
    # that every active lane moves at least once per iteration.
    for i, decode in enumerate((_table_step,) * _TABLE_STEPS + (_decode_step,)):
      r, pos, act, index, value = decode(p, r, pos, act)
      index_array = index_array.write(step + i, index)
      value_array = value_array.write(step + i, value)
    return step + _TABLE_STEPS + 1, r, pos, act, index_array, value_array

  # Row 0 is a placeholder, so that `stack` is defined without steps.
  _, r, pos, act, index_array, value_array = tf.while_loop(
      lambda step, r, pos, act, *_: tf.reduce_any(act),
      body,
      (tf.constant(1), r, pos, act,
       tf.TensorArray(i32, size=1, dynamic_size=True, element_shape=[None]).write(
           0, tf.zeros([width], i32)),
       tf.TensorArray(i32, size=1, dynamic_size=True, element_shape=[None]).write(
           0, tf.zeros([width], i32))),
      maximum_iterations=iterations)
  return r, pos, act, index_array.stack(), value_array.stack()


def _decode_lanes_fast(words, block_start_bit, block_end_bit, block_len, lane_base, n,
                       block_size):
  """Decodes every block as a lane in int32, one codeword per lane and step.

  Each step reads one 64-bit window per lane and decodes gamma(run), the sign
  and gamma(|v|) from it: `_TABLE_STEPS` steps by a table lookup of the
  window's low `_TABLE_BITS` bits (a lane whose codeword is longer waits), then one step
  arithmetically. A lane whose codeword does not fit the window (or whose run
  field is not a valid run) stops there; `_decode_lanes_general`
  finishes such lanes (and finds the errors). The loop runs in phases of
  `_DECODE_PHASES` iterations; each phase after the first continues only the
  lanes still running, gathered into fewer lanes (sparse blocks finish early,
  and most of a real update's blocks are sparse).

  Returns:
    `(end_bit, pos, error, index, values, first)`: per lane the bit after its
    last codeword (`int64`), the values consumed (B after a last value, B + 1
    after a trailing run) and an error flag; per lane and step the `int32`
    index and value of the decoded value, (0, 0) for steps without one; and
    the decoded value at index 0 (0 if none).
  """
  i32 = tf.int32
  c = _constants()
  blen = tf.cast(block_len, i32)
  base = tf.cast(lane_base, i32) - 1
  lanes = tf.shape(blen)[0]
  rows, last_row = _window_rows(c, words, block_start_bit, block_end_bit)
  r, pos, act, index, values = _run_phase(
      c, last_row, rows, blen, base, tf.zeros_like(blen), tf.zeros_like(blen), blen > 0,
      _DECODE_PHASES[0])
  # A value at index 0 can only be lane 0's first codeword, decoded in the
  # first step of this phase (or by the general loop): column 0 of this
  # phase's steps holds it; every other step with index 0 wrote value 0.
  first = tf.reduce_sum(tf.where(tf.equal(index[:, :1], 0), values[:, :1], 0))
  indices, all_values = [tf.reshape(index, [-1])], [tf.reshape(values, [-1])]
  for iterations in _DECODE_PHASES[1:] + (block_size + 2,):
    # The lanes still running, gathered (by their index among all lanes).
    running = tf.cast(tf.where(act)[:, 0], i32)
    keep = running[:, tf.newaxis]
    r_part, pos_part, act_part, index, values = _run_phase(
        c, last_row, tf.gather(rows, running, axis=1), tf.gather(blen, running),
        tf.gather(base, running), tf.gather(r, running), tf.gather(pos, running),
        tf.ones_like(running, tf.bool), iterations)
    r = tf.tensor_scatter_nd_update(r, keep, r_part)
    pos = tf.tensor_scatter_nd_update(pos, keep, pos_part)
    act = tf.tensor_scatter_nd_update(tf.zeros_like(act), keep, act_part)
    indices.append(tf.reshape(index, [-1]))
    all_values.append(tf.reshape(values, [-1]))
  # Lanes that stopped early (pos < B) continue in the general loop.
  end_bit, pos, error, index, values = _decode_lanes_general(
      words, block_start_bit + tf.cast(r, tf.int64), tf.cast(pos, tf.int64), pos < blen,
      block_len, lane_base, n, block_size, i32)
  # The general loop's lane 0 (its first step after the placeholder) may hold
  # lane 0's first value instead.
  first += tf.reduce_sum(tf.where(tf.equal(index[lanes:lanes + 1], 0),
                                  values[lanes:lanes + 1], 0))
  return (end_bit, pos, error, tf.concat(indices + [index], 0),
          tf.concat(all_values + [values], 0), first)


def _decode_lanes_general(words, bit, pos, active, block_len, lane_base, n,
                          block_size, index_type):
  """Decodes the lanes marked `active` from bit `bit` and `pos` values on.

  Any codeword (int64 arithmetic, two windows per step); one loop step per
  codeword. Returns as `_decode_lanes_fast` without `first`, with indices of
  `index_type`; row 0 of the steps (the first `lanes` entries) is a
  placeholder of zeros.
  """
  lanes = tf.shape(block_len)[0]
  # Row 0 is a placeholder, so that `stack` is defined without steps.
  arrays = (
      tf.constant(1),
      tf.TensorArray(index_type, size=1, dynamic_size=True, element_shape=[None]).write(
          0, tf.zeros([lanes], index_type)),
      tf.TensorArray(tf.int32, size=1, dynamic_size=True, element_shape=[None]).write(
          0, tf.zeros([lanes], tf.int32)))

  def body(step, bit, pos, go, error, index_array, value_array):
    window = bitstream.read_bits(words, bit)
    zeros = bitstream.trailing_zeros(window)
    bad = zeros > 31
    zeros = tf.minimum(zeros, 31)
    run = tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(bitstream.one(), tf.cast(zeros, tf.uint64)),
        bitstream.low_bits(
            tf.bitwise.right_shift(window, tf.cast(zeros + 1, tf.uint64)), zeros),
    )
    new_pos = pos + tf.cast(run, tf.int64)
    is_value = new_pos <= block_len
    bad |= new_pos > block_len + 1
    sign_bit = bit + 2 * zeros + 1
    window = bitstream.read_bits(words, sign_bit)
    rest = tf.bitwise.right_shift(window, bitstream.one())
    mag_zeros = bitstream.trailing_zeros(rest)
    bad |= is_value & (mag_zeros > 30)
    mag_zeros = tf.minimum(mag_zeros, 30)
    magnitude = tf.cast(
        tf.bitwise.bitwise_or(
            tf.bitwise.left_shift(bitstream.one(), tf.cast(mag_zeros, tf.uint64)),
            bitstream.low_bits(
                tf.bitwise.right_shift(rest, tf.cast(mag_zeros + 1, tf.uint64)),
                mag_zeros),
        ),
        tf.int32,
    )
    positive = tf.bitwise.bitwise_and(window, bitstream.one()) > 0
    value = tf.where(positive, magnitude, -magnitude)
    advance = go & tf.logical_not(bad)
    emit = advance & is_value
    index_array = index_array.write(
        step, tf.where(emit, tf.cast(lane_base + new_pos - 1, index_type),
                       tf.zeros([lanes], index_type)))
    value_array = value_array.write(step, tf.where(emit, value, 0))
    bit = tf.where(
        advance, tf.where(is_value, sign_bit + 2 * mag_zeros + 2, sign_bit), bit)
    pos = tf.where(advance, new_pos, pos)
    error |= go & bad
    return (step + 1, bit, pos, advance & (new_pos < block_len), error, index_array,
            value_array)

  step, index_array, value_array = arrays
  _, bit, pos, _, error, index_array, value_array = tf.while_loop(
      lambda step, bit, pos, go, *_: tf.reduce_any(go),
      body,
      loop_vars=(step, bit, pos, active & (pos < block_len), tf.zeros_like(active),
                 index_array, value_array),
      maximum_iterations=block_size + 2,
  )
  return (bit, pos, error, tf.reshape(index_array.stack(), [-1]),
          tf.reshape(value_array.stack(), [-1]))
