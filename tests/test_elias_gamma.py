"""Tests of the in-graph Elias-gamma codec against tensorflow-compression's C++ op."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc
import tensorflow_federated as tff

import decode_many_check
from tff_rdq.codecs import bitstream
from tff_rdq.codecs import elias_gamma

_RNG = np.random.default_rng(1234)
INT32_MAX = 2**31 - 1

CASES = {
    'empty': np.zeros(0, np.int32),
    'single_zero': np.zeros(1, np.int32),
    'single_value': np.array([-7], np.int32),
    'all_zero': np.zeros(3000, np.int32),
    'huge': np.array([INT32_MAX, -INT32_MAX, 0, 0, -2**31, 1, 2**30, 0], np.int32),
    'laplace_dense': np.round(_RNG.laplace(size=5000) * 3).astype(np.int32),
    'laplace_sparse': np.round(_RNG.laplace(size=4097) * 0.2).astype(np.int32),
    'trailing_nonzero': np.array([0, 0, 0, 5], np.int32),
}


def _expected(values):
  # The op codes INT32_MIN as -(2**31 - 1).
  return np.maximum(values, -INT32_MAX)


@pytest.mark.parametrize('name', sorted(CASES))
def test_stream_is_byte_identical_to_tfc(name):
  values = CASES[name]
  ours = elias_gamma.encode_stream(tf.constant(values)).numpy()
  reference = tfc.run_length_gamma_encode(tf.constant(values)).numpy()
  assert ours == reference


@pytest.mark.parametrize('name', sorted(CASES))
def test_decodes_tfc_output(name):
  values = CASES[name]
  reference = tfc.run_length_gamma_encode(tf.constant(values))
  decoded = elias_gamma.decode_stream(reference, len(values)).numpy()
  np.testing.assert_array_equal(decoded, _expected(values))


def _split_blocks(data: bytes, num_elements: int, block_size: int):
  """Parses the blocked format's header in numpy; returns the block streams."""
  num_blocks = -(-num_elements // block_size)
  width = data[0]
  bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder='little')
  lengths = [
      int(sum(int(b) << j for j, b in enumerate(bits[8 + i * width: 8 + (i + 1) * width])))
      for i in range(num_blocks)
  ]
  start = 1 + (num_blocks * width + 7) // 8
  streams = []
  for length in lengths:
    streams.append(data[start:start + length])
    start += length
  assert start == len(data)
  return streams


@pytest.mark.slow
@pytest.mark.parametrize('block_size', [1, 7, 1024])
@pytest.mark.parametrize('name', sorted(CASES))
def test_every_block_is_a_tfc_stream(name, block_size):
  values = CASES[name]
  data = elias_gamma.encode(tf.constant(values), block_size).numpy()
  streams = _split_blocks(data, len(values), block_size)
  assert len(streams) == -(-len(values) // block_size)
  for i, stream in enumerate(streams):
    block = values[i * block_size:(i + 1) * block_size]
    decoded = tfc.run_length_gamma_decode(tf.constant(stream), [len(block)]).numpy()
    np.testing.assert_array_equal(decoded, _expected(block))
    assert stream == tfc.run_length_gamma_encode(tf.constant(block)).numpy()
  decoded = elias_gamma.decode(tf.constant(data), len(values), block_size).numpy()
  np.testing.assert_array_equal(decoded, _expected(values))


def test_side_info_bits_counts_header_and_table():
  values = CASES['laplace_dense']
  data = elias_gamma.encode_to_bytes(tf.constant(values), 1024)
  num_blocks = 5
  width = int(data[0])
  expected = 8 * (1 + (num_blocks * width + 7) // 8)
  assert int(elias_gamma.side_info_bits(data, len(values), 1024)) == expected


def _corruptions(data: bytes):
  yield 'truncated_one_byte', data[:-1]
  yield 'truncated_half', data[:len(data) // 2]
  yield 'extra_byte', data + b'\x00'
  yield 'empty', b''
  yield 'width_garbage', bytes([200]) + data[1:]
  yield 'table_changed', data[:1] + bytes([data[1] ^ 0x01]) + data[2:]
  yield 'all_ones', b'\xff' * len(data)


@pytest.mark.parametrize('corruption', [c for c, _ in _corruptions(b'xyz')])
def test_corrupt_streams_are_detected(corruption):
  values = CASES['laplace_dense']
  data = elias_gamma.encode(tf.constant(values), 256).numpy()
  bad = dict(_corruptions(data))[corruption]
  decoded, ok = elias_gamma.decode_from_bytes(
      bitstream.string_to_bytes(tf.constant(bad)), len(values), 256)
  assert not bool(ok)
  assert not np.any(decoded.numpy())  # Nothing is decoded from a bad stream.
  with pytest.raises(tf.errors.InvalidArgumentError, match='truncated or corrupted'):
    elias_gamma.decode(tf.constant(bad), len(values), 256)


@pytest.mark.slow
def test_bit_flips_never_decode_silently_wrong():
  values = CASES['laplace_sparse']
  data = bytearray(elias_gamma.encode(tf.constant(values), 512).numpy())
  rng = np.random.default_rng(7)
  for _ in range(40):
    flipped = bytearray(data)
    position = int(rng.integers(len(flipped) * 8))
    flipped[position // 8] ^= 1 << (position % 8)
    decoded, ok = elias_gamma.decode_from_bytes(
        bitstream.string_to_bytes(tf.constant(bytes(flipped))), len(values), 512)
    # A flip either is detected or (rarely) yields another valid stream; then
    # the values must be exactly what that stream encodes.
    if bool(ok):
      reencoded = elias_gamma.encode(decoded, 512).numpy()
      assert reencoded == bytes(flipped)


def test_rejects_bad_arguments():
  with pytest.raises(TypeError, match='int32'):
    elias_gamma.encode(tf.constant([1.0]))
  with pytest.raises(ValueError, match='block_size'):
    elias_gamma.encode(tf.constant([1]), 0)


@pytest.mark.slow
def test_runs_inside_federated_computation():
  values = CASES['laplace_dense']
  n = len(values)

  @tff.tensorflow.computation(tff.TensorType(np.int32, [n]))
  def round_trip(x):
    stream = elias_gamma.encode(x, 256)
    return stream, elias_gamma.decode(stream, n, 256)

  stream, decoded = round_trip(values)
  np.testing.assert_array_equal(decoded, values)
  assert stream == elias_gamma.encode(tf.constant(values), 256).numpy()

  @tff.tensorflow.computation(tff.TensorType(np.str_))
  def decode(s):
    return elias_gamma.decode(s, n, 256)

  with pytest.raises(Exception, match='truncated or corrupted'):
    decode(stream[:-3])


@pytest.mark.slow
def test_general_paths_run_inside_federated_computation():
  # Values beyond the fast paths (|v| >= 2**16, INT32_MIN, codewords longer
  # than 32 bits) run the general encoder and the general decoding loop.
  values = np.zeros(3000, np.int32)
  values[[0, 5, 1023, 1024, 2000, 2999]] = [INT32_MAX, -2**31, 70000, -1, 3, 2**20]
  medium = np.zeros(3000, np.int32)
  medium[[10, 1500, 2990]] = [-60000, 40000, 7]  # fast, with 64-bit codewords

  @tff.tensorflow.computation(tff.TensorType(np.int32, [3000]))
  def round_trip(x):
    stream = elias_gamma.encode(x, 1024)
    return stream, elias_gamma.decode(stream, 3000, 1024)

  for case in (values, medium):
    stream, decoded = round_trip(case)
    np.testing.assert_array_equal(decoded, _expected(case))
    assert stream == elias_gamma.encode(tf.constant(case), 1024).numpy()


@pytest.mark.slow
def test_many_random_streams_match_tfc():
  # Covers streams that end exactly on a 64-bit word boundary, with and
  # without a trailing run (a field of length 0 at the very end).
  rng = np.random.default_rng(99)
  word_aligned = 0
  for _ in range(150):
    n = int(rng.integers(1, 120))
    scale = float(rng.choice([0.1, 1.0, 30.0, 1e5]))
    values = np.round(rng.laplace(size=n) * scale).astype(np.int32)
    if rng.random() < 0.5:
      values[-1] = int(rng.integers(1, 50))
    ours = elias_gamma.encode_stream(tf.constant(values)).numpy()
    assert ours == tfc.run_length_gamma_encode(tf.constant(values)).numpy()
    word_aligned += len(elias_gamma.encode(tf.constant(values), 16).numpy()) % 8 == 0
  assert word_aligned > 5


def test_lookup_table_entries_decode_their_window():
  # A scalar parse of each window (LSB first), independent of the table's
  # vectorized construction.
  bits, r = elias_gamma._TABLE_BITS, elias_gamma._ENTRY_RUN_BITS
  table = elias_gamma._lookup_table().astype(np.int64)
  usable = 0
  for key in range(2**bits):
    entry = int(table[key])
    z1 = (key & -key).bit_length() - 1  # -1 for key 0
    if key == 0 or 2 * z1 + 1 > bits:
      assert entry == 0, key
      continue
    run = 1 << z1 | (key >> (z1 + 1)) & ((1 << z1) - 1)
    assert (entry & ((1 << r) - 1), (entry >> r) & 31) == (run, 2 * z1 + 1), key
    start = 2 * z1 + 2
    rest = key >> start
    z2 = (rest & -rest).bit_length() - 1
    if rest == 0 or start + 2 * z2 + 1 > bits:
      assert (entry >> (r + 5)) & 31 == 0 and entry >> (r + 10) == 0, key
      continue
    magnitude = 1 << z2 | (rest >> (z2 + 1)) & ((1 << z2) - 1)
    value = magnitude if (key >> (2 * z1 + 1)) & 1 else -magnitude
    assert (entry >> (r + 5)) & 31 == start + 2 * z2 + 1, key
    assert entry >> (r + 10) == value, key  # int32 entries: the shift sign-extends
    usable += 1
  assert usable > 2**(bits - 1)


@pytest.mark.slow
def test_codewords_around_the_decoders_lookup_length_round_trip():
  # The fast decoder looks up codewords of at most `_TABLE_BITS` (16) bits
  # in a table and decodes longer ones arithmetically: codewords of 3 to 55
  # bits, and trailing runs whose gamma code is 15, 17 or 19 bits long, all
  # mixed in one lane.
  rng = np.random.default_rng(7)
  pieces = []
  for run in [1, 2, 7, 8, 127, 128, 255, 256, 511, 512]:
    for magnitude in [1, 2, 63, 64, 127, 128, 255, 256, 2**15, 2**16, 2**17]:
      pieces.append(np.zeros(run - 1, np.int32))
      pieces.append(np.array([magnitude * rng.choice([-1, 1])], np.int32))
  order = rng.permutation(len(pieces) // 2)
  values = np.concatenate([pieces[j] for i in order for j in (2 * i, 2 * i + 1)])
  for trailing in (127, 255, 511):
    data = np.concatenate([values, np.zeros(trailing, np.int32)])
    reference = tfc.run_length_gamma_encode(tf.constant(data))
    np.testing.assert_array_equal(
        elias_gamma.decode_stream(reference, len(data)).numpy(), data)
    for block_size in (700, 1024):
      decoded, ok = elias_gamma.decode_from_bytes(
          elias_gamma.encode_to_bytes(tf.constant(data), block_size), len(data), block_size)
      assert bool(ok)
      np.testing.assert_array_equal(decoded.numpy(), data)


# --- Canonical decoding: every non-canonical form is rejected. ---

_CANON_BLOCK = 100


def _canon_values():
  rng = np.random.default_rng(321)
  values = np.round(rng.laplace(size=1000) * 3).astype(np.int32)
  # Every block ends with +1, whose codeword ends with the stream's last one
  # bit (gamma(1) = '1'): the end of the codewords is visible in the bytes.
  values[_CANON_BLOCK - 1::_CANON_BLOCK] = 1
  return values


def _assemble(streams, width, table_padding=0, trailing=b''):
  """The blocked format from block streams, with a chosen width and padding."""
  bits = [(width >> j) & 1 for j in range(8)]
  for stream in streams:
    bits += [(len(stream) >> j) & 1 for j in range(width)]
  bits += [(table_padding >> j) & 1 for j in range(-len(bits) % 8)]
  header = np.packbits(np.array(bits, np.uint8), bitorder='little').tobytes()
  return header + b''.join(streams) + trailing


def _codeword_end(stream: bytes) -> int:
  """Bit position after the last one bit (the end of a block ending in +1)."""
  bits = np.unpackbits(np.frombuffer(stream, np.uint8), bitorder='little')
  return int(np.flatnonzero(bits)[-1]) + 1


def _set_bit(stream: bytes, position: int) -> bytes:
  stream = bytearray(stream + b'\x00' * (position // 8 + 1 - len(stream)))
  stream[position // 8] |= 1 << (position % 8)
  return bytes(stream)


def _non_canonical_forms(data: bytes, n: int, block: int):
  streams = _split_blocks(data, n, block)
  width = data[0]
  assert _assemble(streams, width) == data
  table_bits = 8 + len(streams) * width
  assert table_bits % 8, 'the test needs table padding bits'
  padded = [i for i, s in enumerate(streams) if _codeword_end(s) < 8 * len(s)]
  full = [i for i, s in enumerate(streams) if _codeword_end(s) == 8 * len(s)]
  assert padded, 'the test needs a block with padding bits'
  i = padded[0]
  yield 'width_one_wider', _assemble(streams, width + 1)
  yield 'width_much_wider', _assemble(streams, 32)
  yield 'width_above_32', _assemble(streams, 33)
  yield 'width_byte_garbage', bytes([200]) + data[1:]
  yield 'table_padding_bit', _assemble(streams, width, table_padding=1)
  yield 'table_padding_high_bit', _assemble(
      streams, width, table_padding=1 << (-table_bits % 8 - 1))
  # A '1' after the last codeword: a padding bit, or the empty trailing run
  # gamma(1) (the same bits).
  yield 'block_padding_bit', _assemble(
      streams[:i] + [_set_bit(streams[i], _codeword_end(streams[i]))] + streams[i + 1:],
      width)
  yield 'block_last_padding_bit', _assemble(
      streams[:i] + [_set_bit(streams[i], 8 * len(streams[i]) - 1)] + streams[i + 1:],
      width)
  if full:
    j = full[0]
    yield 'empty_trailing_run_new_byte', _assemble(
        streams[:j] + [_set_bit(streams[j], 8 * len(streams[j]))] + streams[j + 1:],
        width)
  yield 'block_extra_zero_byte', _assemble(
      streams[:i] + [streams[i] + b'\x00'] + streams[i + 1:], width)
  yield 'last_block_extra_zero_byte', _assemble(
      streams[:-1] + [streams[-1] + b'\x00'], width)
  yield 'zero_block_length', _assemble(
      [b''] + [streams[0] + streams[1]] + streams[2:], width)
  yield 'lengths_shifted', _assemble(
      [streams[0] + streams[1][:1]] + [streams[1][1:]] + streams[2:], width)
  yield 'trailing_zero_byte', data + b'\x00'
  yield 'trailing_byte', data + b'\x01'
  yield 'trailing_bytes', data + b'\x00' * 9
  yield 'missing_last_byte', data[:-1]
  yield 'header_only', data[:1 + (table_bits + 7) // 8 - 1]
  yield 'empty', b''


_FORM_NAMES = [c for c, _ in _non_canonical_forms(
    elias_gamma.encode(tf.constant(_canon_values()), _CANON_BLOCK).numpy(),
    1000, _CANON_BLOCK)]


def _decode_bytes(data: bytes, n: int, block: int):
  values, ok = elias_gamma.decode_from_bytes(
      tf.constant(np.frombuffer(data, np.uint8)), n, block)
  return values.numpy(), bool(ok)


def test_canonical_test_data_round_trips():
  values = _canon_values()
  data = elias_gamma.encode(tf.constant(values), _CANON_BLOCK).numpy()
  decoded, ok = _decode_bytes(data, len(values), _CANON_BLOCK)
  assert ok
  np.testing.assert_array_equal(decoded, values)
  assert 'empty_trailing_run_new_byte' in _FORM_NAMES


@pytest.mark.parametrize('form', _FORM_NAMES)
def test_non_canonical_forms_are_rejected(form):
  values = _canon_values()
  data = elias_gamma.encode(tf.constant(values), _CANON_BLOCK).numpy()
  bad = dict(_non_canonical_forms(data, len(values), _CANON_BLOCK))[form]
  assert bad != data
  decoded, ok = _decode_bytes(bad, len(values), _CANON_BLOCK)
  assert not ok
  assert not np.any(decoded)
  with pytest.raises(tf.errors.InvalidArgumentError, match='truncated or corrupted'):
    elias_gamma.decode(tf.constant(bad), len(values), _CANON_BLOCK)


def test_empty_vector_has_one_encoding():
  assert elias_gamma.encode(tf.zeros([0], tf.int32)).numpy() == b'\x00'
  for n in [0, tf.constant(0)]:
    assert _decode_bytes(b'\x00', n, 16)[1]
    for bad in [b'', b'\x01', b'\x00\x00', b'\x08\x00', b'\x00\x01']:
      values, ok = elias_gamma.decode_from_bytes(
          tf.constant(np.frombuffer(bad, np.uint8)), n, 16)
      assert not bool(ok) and values.shape == (0,)


def test_non_canonical_forms_are_rejected_inside_federated_computation():
  values = _canon_values()
  n = len(values)
  data = elias_gamma.encode(tf.constant(values), _CANON_BLOCK).numpy()

  @tff.tensorflow.computation(tff.TensorType(np.str_))
  def decode(s):
    return elias_gamma.decode_from_bytes(
        bitstream.string_to_bytes(s), n, _CANON_BLOCK)

  decoded, ok = decode(data)
  assert ok
  np.testing.assert_array_equal(decoded, values)
  for form, bad in _non_canonical_forms(data, n, _CANON_BLOCK):
    decoded, ok = decode(bad)
    assert not ok, form
    assert not np.any(decoded), form


@pytest.mark.slow
def test_accepted_streams_are_exactly_the_encodings():
  # Seeded fuzz: whatever is accepted re-encodes to the very same bytes.
  rng = np.random.default_rng(2027)
  accepted = 0
  for case in range(200):
    # Few shapes: each (n, block) traces the decoder once.
    n, block = [(37, 1), (150, 16), (150, 64), (200, 256)][case % 4]
    values = np.round(rng.laplace(size=n) * rng.choice([0.2, 2.0, 50.0])).astype(np.int32)
    data = bytearray(elias_gamma.encode(tf.constant(values), block).numpy())
    kind = case // 4 % 4
    if kind == 0:  # bit flips, header included
      for _ in range(int(rng.integers(1, 4))):
        position = int(rng.integers(len(data) * 8))
        data[position // 8] ^= 1 << (position % 8)
    elif kind == 1:  # a flip in the width byte or the length table
      position = int(rng.integers(8 * (1 + (-(-n // block) * data[0] + 7) // 8)))
      data[position // 8] ^= 1 << (position % 8)
    elif kind == 2:  # truncation or extension
      data = data[:int(rng.integers(len(data)))] if rng.random() < 0.5 else (
          data + bytes(rng.integers(0, 256, int(rng.integers(1, 4)), np.uint8)))
    else:  # a random byte anywhere
      data[int(rng.integers(len(data)))] = int(rng.integers(256))
    decoded, ok = _decode_bytes(bytes(data), n, block)
    if ok:
      accepted += 1
      assert elias_gamma.encode(tf.constant(decoded), block).numpy() == bytes(data)
    else:
      assert not np.any(decoded)
  assert accepted < 100


@pytest.mark.slow
def test_decode_many_equals_separate_decodes_with_corruption():
  # One decoding loop for several vectors: the same values and flags as
  # separate calls, and a corrupt vector leaves the others intact.
  rng = np.random.default_rng(77)
  block = 64
  sizes = [300, 1, 0, 2000, 70]
  vectors = [np.round(rng.laplace(size=n) * s).astype(np.int32)
             for n, s in zip(sizes, [3.0, 1.0, 1.0, 0.3, 40.0])]
  vectors[3][:1500] = 0  # long zero runs, as in embedding rows
  clean = [elias_gamma.encode(tf.constant(v), block).numpy() for v in vectors]
  specs = [tf.TensorSpec([None], tf.uint8)] * len(sizes)

  @tf.function(input_signature=specs)
  def many(*datas):
    return elias_gamma.decode_many(list(datas), sizes, block)

  @tf.function(input_signature=specs)
  def separate(*datas):
    return [elias_gamma.decode_from_bytes(d, n, block) for d, n in zip(datas, sizes)]

  def as_arrays(data):
    return [tf.constant(np.frombuffer(d, np.uint8)) for d in data]

  for result in many(*as_arrays(clean)):
    assert bool(result[1])
  for got, want in zip(many(*as_arrays(clean)), vectors):
    np.testing.assert_array_equal(got[0], want)
  rejected = decode_many_check.rejected_corruptions(
      many, separate, clean, vectors, [0, 1, 3, 4], 40, rng)
  assert rejected > 30
