"""The rANS primitives of the codecs `rans` and `run_length_rans`, in core TF ops.

Both codecs code symbols with the same rANS state machine (Duda's asymmetric
numeral systems, with 16-bit renormalisation as in Giesen's `rans_word`),
vectorized over *lanes*: independent states coded in lock step. They differ
only in the precision `P` of their probabilities (16 bits in `rans`, 12 in
`run_length_rans`) and in how symbols, tables and lanes are laid out.

**State.** A state `x` lies in `[L, L * 2**16)` with `L = 2**20`
(`STATE_LOWER`), so it fits in 36 bits (`STATE_BITS`).

**Encoding** a symbol of frequency `f` and cumulative frequency `c` (out of
`2**P`; symbols are encoded last to first): if `x >= f * 2**(36 - P)`, emit
the word `x mod 2**16` and set `x //= 2**16`; then `x = (x // f) * 2**P + x
mod f + c` (`encode_step`). The emitted words, reversed, are the word stream.

**Decoding** reverses it: `slot = x mod 2**P` selects the symbol (the one
with `c <= slot < c + f`), `x = f * (x // 2**P) + slot - c` (`decode_step`),
and if `x < L` the next word of the stream is read: `x = x * 2**16 + word`
(`read_words`). A decoder that ends in the encoder's initial state has read
exactly the words the encoder emitted.

**No-op symbol.** `f = 2**P`, `c = 0` leaves every state unchanged in either
direction (no word is emitted or read): the codecs code it in lanes that have
no symbol at a step.

**Words** are 16 bits, stored as 2 bytes, least significant first
(`word_bytes`, `word_stream`).
"""

import tensorflow as tf

from tff_rdq.codecs import bitstream

WORD_BITS = 16
STATE_LOWER = 1 << 20  # L
STATE_BITS = 36  # States lie in [L, L * 2**16) = [2**20, 2**36).
_WORD_MASK = (1 << WORD_BITS) - 1


def graph_when_eager(signature):
  """Runs the decorated function as one traced graph when called eagerly.

  Eagerly, a `tf.while_loop` runs op by op from Python (about a millisecond
  per step); traced once (without autograph, with `signature` as its input
  signature), it runs as a graph. When a graph is being built (`tf.function`,
  TFF) the function is called as plain Python, so its ops are inlined into
  that graph and TFF's worker sees no function-call ops.
  """
  def decorator(fn):
    traced = tf.function(fn, input_signature=signature, autograph=False)

    def call(*args):
      return traced(*args) if tf.executing_eagerly() else fn(*args)

    call.__doc__ = fn.__doc__
    return call
  return decorator


def spec(*shape, dtype=tf.int64) -> tf.TensorSpec:
  """`tf.TensorSpec(shape, dtype)`, for `graph_when_eager`'s signatures."""
  return tf.TensorSpec(shape, dtype)


def emits(x, freq, precision: int) -> tf.Tensor:
  """Whether encoding a symbol of frequency `freq` into state `x` emits a word.

  `x >= freq * 2**(36 - precision)`: elementwise on `int64` tensors;
  `precision` is the Python int `P`.
  """
  return x >= tf.bitwise.left_shift(freq, STATE_BITS - precision)


def encode_step(x, freq, cumulative, precision: int) -> tf.Tensor:
  """One rANS encoding step: the state after encoding a symbol into `x`.

  Elementwise on `int64` tensors (one state per lane): emits (drops) the low
  16 bits of `x` where `emits`, then `x = (x // f) * 2**P + x mod f + c`.
  The emitted words are recovered afterwards from the states before the step
  (`emitted_words`).

  Args:
    x: States.
    freq: Frequencies `f` of the symbols, `1 .. 2**P`.
    cumulative: Their cumulative frequencies `c`.
    precision: Python int `P`.

  Returns:
    The states after the step.
  """
  x = tf.where(emits(x, freq, precision), tf.bitwise.right_shift(x, WORD_BITS), x)
  quotient = x // freq
  return (tf.bitwise.left_shift(quotient, precision) + (x - quotient * freq)
          + cumulative)


def emitted_words(before, freq, precision: int) -> tf.Tensor:
  """The words `encode_step` emits: `before mod 2**16` where it `emits`.

  Args:
    before: `int64` states before each step, in the order of the words wanted
      (row-major).
    freq: The frequencies coded at those steps, shaped like `before`.
    precision: Python int `P`.

  Returns:
    An `int64` vector of the emitted words, in row-major order of `before`.
  """
  return tf.boolean_mask(tf.bitwise.bitwise_and(before, _WORD_MASK),
                         emits(before, freq, precision))


def word_bytes(words) -> tf.Tensor:
  """16-bit words as a `uint8` vector, 2 bytes per word, low byte first.

  (Little-endian bytes on a little-endian host, as `bitstream` assumes.)
  """
  return tf.reshape(tf.bitcast(tf.cast(words, tf.uint16), tf.uint8), [-1])


def decode_step(x, freq, bias, precision: int) -> tf.Tensor:
  """One rANS decoding step before renormalization: `f * (x // 2**P) + bias`.

  Elementwise on `int64` tensors; `bias` is `slot - c` of the decoded symbol
  (`slot = x mod 2**P`). The result may lie below `L`: then `read_words`.
  """
  return freq * tf.bitwise.right_shift(x, precision) + bias


def read_words(x, need, words, at) -> tf.Tensor:
  """Renormalization: `x * 2**16 + words[at]` where `need`, else `x`.

  Args:
    x: `int64` states.
    need: bool, the states that read a word (those below `L`).
    words: `int64` vector, the word stream.
    at: `int64` index into `words` per state (in range; meaningful where
      `need`).
  """
  refilled = tf.bitwise.bitwise_or(tf.bitwise.left_shift(x, WORD_BITS),
                                   tf.gather(words, at))
  return tf.where(need, refilled, x)


def word_stream(data, word_start):
  """The 16-bit words of `data` (a `uint8` vector) from byte `word_start` on.

  Returns:
    `(words, available)`: an `int64` vector of the `available` whole words
    from `min(word_start, len(data))` on, plus a zero word (a sentinel that
    over-reads of corrupt data read), and `available`.
  """
  num_bytes = tf.size(data, out_type=tf.int64)
  start = tf.minimum(word_start, num_bytes)
  available = (num_bytes - start) // 2
  pairs = tf.reshape(
      tf.cast(tf.slice(data, [start], [2 * available]), tf.int64), [-1, 2])
  words = tf.concat(
      [pairs[:, 0] + tf.bitwise.left_shift(pairs[:, 1], 8), [0]], 0)
  return words, available


def ends_at(words, end, num_bytes) -> tf.Tensor:
  """Whether a stream of `num_bytes` bytes ends at bit `end` plus zero padding.

  True iff fewer than 8 bits follow bit `end` and they are all zero: the end
  of both codecs' formats, which rejects missing and trailing bytes.

  Args:
    words: The stream as `bitstream.bytes_to_words` reads it.
    end: `int64` scalar, the bit offset where the coded data ends.
    num_bytes: `int64` scalar, the length of the stream in bytes.
  """
  padding = 8 * num_bytes - end
  ok = (padding >= 0) & (padding < 8)
  return ok & tf.equal(bitstream.low_bits(
      bitstream.read_bits(words, tf.reshape(end, [1])),
      tf.clip_by_value(padding, 0, 8))[0], 0)


def payload_bytes(fields, offsets, lengths) -> tf.Tensor:
  """Raw bit fields as bytes, padded with zero bits to a whole byte.

  The payload that follows the word stream in both codecs' formats.

  Args:
    fields: `uint64` field values, each below `2**length`.
    offsets: `int64` bit offset of each field (non-overlapping).
    lengths: `int64` bit length of each field; the payload has their sum.
  """
  num_bytes = (tf.reduce_sum(lengths) + 7) // 8
  words = bitstream.write_fields(
      values=[fields], offsets=[offsets], num_words=num_bytes // 8 + 2)
  return bitstream.words_to_bytes(words, num_bytes)
