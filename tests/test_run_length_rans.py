"""Tests of the context-modelled run-length rANS codec (`codec='run_length_rans'`)."""

import collections
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

import decode_many_check
import run_length_rans_reference as ref
from tff_rdq import codecs
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import quantize_encode
from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import run_length_rans as rlr

tf.get_logger().setLevel('ERROR')  # eager encoding traces once per length

_RNG = np.random.default_rng(12)
INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
HUGE = 2**31 - 128


def _rows(num_rows, width, fraction, scale):
  """Embedding-like: a few dense rows, the other rows all zero."""
  rows = np.round(_RNG.laplace(size=(num_rows, width)) * scale)
  rows *= (_RNG.random(num_rows) < fraction)[:, None]
  return rows.reshape(-1).astype(np.int32)


def _scaled_matrix(rows, cols, seed):
  """A matrix with random row and column scales, flattened row-major."""
  rng = np.random.default_rng(seed)
  return np.round(rng.laplace(size=(rows, cols))
                  * np.exp(rng.normal(size=(rows, 1)) * 2.5)
                  * np.exp(rng.normal(size=cols) * 2.5) * 0.3).reshape(-1).astype(np.int32)


CASES = {
    'empty': np.zeros(0, np.int32),
    'single_zero': np.zeros(1, np.int32),
    'single_value': np.array([-7], np.int32),
    'single_min': np.array([INT32_MIN], np.int32),
    'all_zero_small': np.zeros(40, np.int32),
    'all_zero': np.zeros(5000, np.int32),
    'huge': np.tile(np.array([HUGE, -HUGE, 0, 0, 0, 1, INT32_MIN, INT32_MAX, 0, -1],
                             np.int32), 60),
    'laplace_dense': np.round(_RNG.laplace(size=6000) * 3).astype(np.int32),
    'laplace_wide': np.round(_RNG.laplace(size=3000) * 400).astype(np.int32),
    'laplace_sparse': np.round(_RNG.laplace(size=20000) * 0.25).astype(np.int32),
    'long_zero_runs': np.where(_RNG.random(30000) < 0.003, 3, 0).astype(np.int32),
    'rows': _rows(300, 48, 0.1, 1.5),
    # Signs in long same-sign stretches: the sign model (S = 1) pays.
    'sign_runs': (np.where(np.sin(np.arange(8000) / 40.0) > 0, 1, -1)
                  * np.round(np.abs(_RNG.laplace(size=8000)) * 2)).astype(np.int32),
    'escapes': np.round(_RNG.standard_cauchy(size=3000) * 4).clip(INT32_MIN, INT32_MAX)
               .astype(np.int32),
    'no_zeros': (_RNG.integers(1, 6, size=3000)
                 * _RNG.choice([-1, 1], 3000)).astype(np.int32),
    'trailing_nonzero': np.concatenate([np.zeros(100, np.int32), [5]]).astype(np.int32),
    # A matrix (flattened row-major) whose columns differ in scale: coded in
    # another order (transposed and/or columns grouped by activity).
    'column_scales': np.round(_RNG.laplace(size=(120, 90))
                              * np.exp(_RNG.normal(size=90) * 1.5) * 0.3)
                     .reshape(-1).astype(np.int32),
    'row_scales': np.round(_RNG.laplace(size=(64, 150))
                           * np.exp(_RNG.normal(size=(64, 1)) * 1.5) * 0.3)
                  .reshape(-1).astype(np.int32),
    # A 600 by 40 matrix with column scales: transposed.
    'wide_column_scales': np.round(_RNG.laplace(size=(40, 600))
                                   * np.exp(_RNG.normal(size=(40, 1)) * 2.5) * 0.5)
                          .T.reshape(-1).astype(np.int32),
    # Row and column scales: transposed with the (then) columns grouped.
    'row_and_column_scales': _scaled_matrix(40, 600, seed=1),
}
# 0.5 asks for one lane per ~16 estimated bits: many lanes (of >= 32 pairs).
LANE_OVERHEADS = [rlr.DEFAULT_LANE_OVERHEAD, 0.5]


def _encode(values, lane_overhead=rlr.DEFAULT_LANE_OVERHEAD):
  return bytes(rlr.encode_to_bytes(tf.constant(values, tf.int32), lane_overhead).numpy())


def _decode(data: bytes, n: int):
  values, ok = rlr.decode_from_bytes(tf.constant(np.frombuffer(data, np.uint8)), n)
  return values.numpy(), bool(ok)


@pytest.mark.slow
@pytest.mark.parametrize('lane_overhead', LANE_OVERHEADS)
@pytest.mark.parametrize('name', list(CASES))
def test_round_trip_and_bytes_equal_numpy_reference(name, lane_overhead):
  values = CASES[name]
  data = _encode(values, lane_overhead)
  assert data == ref.encode(values, lane_overhead)
  decoded, ok = _decode(data, values.size)
  assert ok
  np.testing.assert_array_equal(decoded, values)
  # Never larger than Elias-gamma; its exact bytes when it is not larger
  # (unless INT32_MIN occurs, which Elias-gamma cannot code).
  if np.any(values == INT32_MIN):
    return
  eg = bytes(elias_gamma.encode_to_bytes(tf.constant(values)).numpy())
  assert len(data) <= len(eg)
  if len(ref.encode_context_rans(values, lane_overhead)) >= len(eg) or not values.size:
    assert data == eg


def test_cases_cover_the_format():
  """The cases reach every context count, both sign modes and the fallback."""
  modes = collections.Counter()
  for values in CASES.values():
    data = _encode(values)
    if data[0] < rlr.MARKER:
      modes['elias_gamma'] += 1
    elif len(data) == rlr.EMPTY_BYTES:
      modes['all_zero'] += 1
    else:
      modes[f'run_contexts_{(data[0] & 7) + 1}'] += 1
      modes[f'value_contexts_{((data[0] >> 3) & 7) + 1}'] += 1
      modes[f'sign_mode_{(data[0] >> 6) & 1}'] += 1
      header = int.from_bytes(data[:14], 'little')
      row_length, transposed, class_bits = (
          (header >> 84) & 0xFFFF, (header >> 100) & 1, (header >> 101) & 7)
      modes[f'order_{bool(row_length)}_{transposed}_{class_bits}'] += 1
  for key in ('elias_gamma', 'all_zero', 'sign_mode_0', 'sign_mode_1', 'run_contexts_1',
              'value_contexts_1'):
    assert modes[key] > 0, modes
  assert sum(modes[f'run_contexts_{g}'] for g in (2, 4, 8)) > 0, modes
  assert sum(modes[f'value_contexts_{g}'] for g in (2, 4)) > 0, modes
  for order in ('order_False_0_0', 'order_True_1_0', 'order_True_0_4', 'order_True_1_4'):
    assert modes[order] > 0, modes


@pytest.mark.parametrize('name', ['laplace_dense', 'rows', 'sign_runs', 'huge', 'all_zero',
                                  'single_value'])
def test_side_info_bits(name):
  values = CASES[name]
  data = _encode(values)
  side = int(rlr.side_info_bits(tf.constant(np.frombuffer(data, np.uint8)), values.size))
  if data[0] >= rlr.MARKER:
    assert side == ref.side_info_bits(values)
  else:
    assert side == int(elias_gamma.side_info_bits(
        tf.constant(np.frombuffer(data, np.uint8)), values.size,
        elias_gamma.DEFAULT_BLOCK_SIZE))
  assert 0 < side <= 8 * len(data)
  codec = codecs.get_codec('run_length_rans')
  assert int(codec.side_info_bits(tf.constant(np.frombuffer(data, np.uint8)),
                                  values.size)) == side


@pytest.mark.parametrize('name', [k for k, v in CASES.items() if np.any(v)])
def test_elias_gamma_lower_bound_is_below_its_exact_size(name):
  # The encoder skips the exact Elias-gamma size when its own bytes are below
  # this bound: the bound must never exceed the size Elias-gamma would take.
  values = tf.constant(CASES[name])
  bound = int(rlr.elias_gamma_lower_bound(rlr.analyze(values)))
  exact = 8 * len(elias_gamma.encode_to_bytes(values).numpy())
  assert int(rlr.elias_gamma_bits(values, elias_gamma.DEFAULT_BLOCK_SIZE)) == exact
  assert bound <= exact
  assert bound >= 8 + 3 * np.count_nonzero(CASES[name])  # and not vacuous


def test_model_beats_elias_gamma_on_structured_data():
  for name in ('rows', 'laplace_sparse', 'long_zero_runs', 'sign_runs'):
    values = CASES[name]
    eg = elias_gamma.encode_to_bytes(tf.constant(values))
    assert len(_encode(values)) < 0.9 * int(tf.size(eg)), name


def test_coded_bits_near_the_models_ideal_length():
  values = np.round(_RNG.laplace(size=200_000) * 0.4).astype(np.int32)
  data = _encode(values)
  m = {k: v.numpy() for k, v in rlr.analyze(tf.constant(values)).items()}
  ideal = int(m['raw_bits']) + int(rlr.side_info_bits(
      tf.constant(np.frombuffer(data, np.uint8)), values.size))
  for kind, symbols in (('run', m['run_symbol']), ('value', m['value_symbol'])):
    precision, freqs = m[f'{kind}_precision'], m[f'{kind}_freqs']
    context = m[f'{kind}_context']
    p = freqs[context, symbols] / 2.0 ** precision[context]
    ideal += -np.log2(p).sum()
  assert ideal <= 8 * len(data) <= 1.01 * ideal


@pytest.mark.slow
def test_encode_and_decode_inside_tff_computations():
  values = CASES['rows']
  n = values.size

  @tff.tensorflow.computation(tff.TensorType(np.int32, [n]))
  def encode(x):
    return rlr.encode(x)

  @tff.tensorflow.computation(tff.TensorType(np.str_))
  def decode(stream):
    decoded, ok = rlr.decode_from_bytes(
        tf.io.decode_raw(stream, tf.uint8), n)
    # In traced graphs compare with tf.equal, never `==` on a Python scalar.
    return decoded, ok, tf.reduce_all(tf.equal(decoded, tf.constant(values)))

  stream = encode(values)
  assert stream == _encode(values)
  decoded, ok, equal = decode(stream)
  assert ok and equal
  np.testing.assert_array_equal(decoded, values)
  _, ok, _ = decode(stream[:-1])
  assert not ok


@pytest.mark.slow
@pytest.mark.parametrize('name', ['laplace_dense', 'rows', 'sign_runs', 'huge'])
def test_rejects_truncated_extended_and_corrupted_streams(name):
  values = CASES[name]
  data = _encode(values)
  assert data[0] >= rlr.MARKER
  n = values.size
  for bad in (data[:-1], data[:len(data) // 2], data[:12], data[:1], b'', data + b'\0',
              data + data):
    decoded, ok = _decode(bad, n)
    assert not ok, len(bad)
    assert decoded.shape == (n,) and not decoded.any()
  # Flips in the header and tables are caught, as are nearly all in the lane
  # states and the first half of the rANS words. A flip in the payload's raw
  # bits, or in one of the last words (which hold the raw bits carried in the
  # lane states), or one that swaps two symbols of a context, can give
  # another valid stream: that is a checksum's job.
  side_bytes = int(rlr.side_info_bits(tf.constant(np.frombuffer(data, np.uint8)), n)) // 8
  words_end = len(data) - _payload_bytes(values)
  accepted = collections.Counter()
  for position in (_RNG.integers(0, side_bytes, 30).tolist()
                   + _RNG.integers(side_bytes, (side_bytes + words_end) // 2, 60).tolist()
                   + [words_end, len(data) - 1]):
    corrupt = bytearray(data)
    corrupt[position] ^= 1 << int(_RNG.integers(8))
    decoded, ok = _decode(bytes(corrupt), n)
    assert decoded.shape == (n,)
    assert not ok or not np.array_equal(decoded, values)
    accepted['tables' if position < side_bytes else 'words' if position < words_end
             else 'payload'] += ok
  assert accepted['tables'] == 0 and accepted['words'] <= 2, accepted


def _payload_bytes(values):
  """Bytes of the payload (raw bits not carried in lane states) of `values`."""
  m = {k: v.numpy() for k, v in rlr.analyze(tf.constant(values)).items()}
  field_len = m['run_len'] + m['magnitude_len'] + (1 - m['sign_mode'])
  lane = np.arange(field_len.size) // m['lane_size']
  carried = np.minimum(np.bincount(lane, field_len), rlr.CARRY_BITS).sum()
  return (int(field_len.sum() - carried) + 7) // 8


def test_garbage_never_crashes():
  n = 3000
  for i in range(60):
    length = int(_RNG.integers(1, 400)) if i % 5 else int(_RNG.integers(9, 400))
    data = _RNG.integers(0, 256, length).astype(np.uint8)
    if i % 3:
      data[0] |= 0x80  # this format's marker
    if i % 5 == 0:
      data[1:9] = np.frombuffer(np.array([50, 1], np.uint32).tobytes(), np.uint8)
    decoded, ok = _decode(bytes(data), n)
    assert decoded.shape == (n,)
    assert not ok


def test_all_zero_stream_needs_the_right_length():
  data = _encode(CASES['all_zero'])
  assert data == bytes([rlr.MARKER, 0, 0, 0, 0])
  assert _decode(data, 5000)[1]
  assert not _decode(bytes([rlr.MARKER, 0, 0, 0, 0, 0]), 5000)[1]
  assert not _decode(bytes([rlr.MARKER, 0, 0, 0]), 5000)[1]
  assert not _decode(bytes([rlr.MARKER | 1, 0, 0, 0, 0]), 5000)[1]


def test_codec_registry_and_arguments():
  codec = codecs.get_codec('run_length_rans')
  assert codec.name == 'run_length_rans' and 'run_length_rans' in codecs.CODEC_NAMES
  with pytest.raises(ValueError):
    codecs.RunLengthRansCodec(lane_overhead=0.0)
  with pytest.raises((TypeError, ValueError)):
    codecs.RunLengthRansCodec(block_size=0)
  with pytest.raises(TypeError):
    rlr.encode_to_bytes(tf.constant([1.0]))


SHAPES = collections.OrderedDict(kernel=(60, 40), bias=(40,), embedding=(200, 16))
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    (k, tff.TensorType(np.float32, s)) for k, s in SHAPES.items()))
NUM_PARAMS = sum(int(np.prod(s)) for s in SHAPES.values())
STEP = 0.05


def _updates(num_clients, seed=0):
  rng = np.random.default_rng(seed)
  updates = []
  for i in range(num_clients):
    update = collections.OrderedDict(
        (k, (rng.laplace(size=s) * 0.05 * (i + 1)).astype(np.float32))
        for k, s in SHAPES.items())
    update['embedding'] *= (rng.random((200, 1)) < 0.1)  # rows of unseen words
    updates.append(update)
  return updates


@pytest.mark.slow
def test_weighted_mean_round_with_the_codec():
  process = quantize_encode.QuantizeEncodeFactory(STEP, codec='run_length_rans').create(
      VALUE_TYPE, tff.TensorType(np.float32))
  updates, weights = _updates(3), [1.0, 2.0, 5.0]
  output = process.next(process.initialize(), updates, weights)
  bits, reconstructions = [], []
  for update in updates:
    client_bits = compressed.overhead_bits(True)  # status, checksum, weight
    recon = collections.OrderedDict()
    for k, v in update.items():
      q = np.round(v / np.float32(STEP)).astype(np.int32)
      recon[k] = q.astype(np.float32) * np.float32(STEP)
      client_bits += 8 * (4 + len(ref.encode(q.reshape(-1))))
    bits.append(client_bits)
    reconstructions.append(recon)
  for k in SHAPES:
    expected = sum(w * r[k] for w, r in zip(weights, reconstructions)) / sum(weights)
    np.testing.assert_allclose(output.result[k], expected, rtol=1e-5, atol=1e-7)
  m = output.measurements
  assert m['uplink_bits'] == sum(bits)
  assert m['clients'] == 3 and m['dropped_clients'] == 0
  assert 0 < m['side_info_bits'] < m['uplink_bits'] / 4


def test_orders_with_more_columns_than_the_class_map_holds():
  # Period-2 structure: the row length candidate is 2, so the transposed
  # order has n / 2 = 150,000 columns (more than MAX_COLUMNS): it is
  # estimated but must never be chosen with column classes. (This crashed
  # the encoder on real updates.)
  values = np.zeros(300_000, np.int32)
  values[::2] = np.round(_RNG.laplace(size=150_000) * 3).astype(np.int32)
  assert int(rlr.row_length_candidate(tf.constant(values, tf.int64))) == 2
  data = _encode(values)
  decoded, ok = _decode(data, values.size)
  assert ok
  np.testing.assert_array_equal(decoded, values)
  assert len(data) < int(tf.size(elias_gamma.encode_to_bytes(tf.constant(values))))


@pytest.mark.slow
def test_decode_many_equals_separate_decodes_with_corruption():
  # One decoding loop for the lanes of several vectors: the same values and
  # flags as separate calls, and a corrupt vector leaves the others intact.
  # The vectors cover this format with both sign modes, many lanes, another
  # order, the empty vector, the Elias-gamma fallback and no values at all.
  rng = np.random.default_rng(78)
  names = ['laplace_dense', 'all_zero', 'sign_runs', 'single_value', 'empty',
           'row_and_column_scales', 'rows']
  vectors = [CASES[name] for name in names]
  sizes = [v.size for v in vectors]
  clean = [_encode(v, 0.5 if name == 'laplace_dense' else rlr.DEFAULT_LANE_OVERHEAD)
           for name, v in zip(names, vectors)]
  assert [d[0] >= rlr.MARKER for d in clean] == [True, True, True, False, False,
                                                 True, True]
  specs = [tf.TensorSpec([None], tf.uint8)] * len(sizes)

  @tf.function(input_signature=specs)
  def many(*datas):
    return codecs.get_codec('run_length_rans').decode_many(list(datas), sizes)

  @tf.function(input_signature=specs)
  def separate(*datas):
    return [rlr.decode_from_bytes(d, n) for d, n in zip(datas, sizes)]

  def as_arrays(data):
    return [tf.constant(np.frombuffer(d, np.uint8)) for d in data]

  for (values, ok), want in zip(many(*as_arrays(clean)), vectors):
    assert bool(ok)
    np.testing.assert_array_equal(values, want)
  rejected = decode_many_check.rejected_corruptions(
      many, separate, clean, vectors, [0, 2, 3, 5, 6], 15, rng)
  assert rejected > 10


@pytest.mark.slow
@pytest.mark.parametrize('lane_overhead', LANE_OVERHEADS)
def test_encode_many_equals_separate_encodes(lane_overhead):
  # One encoding loop for the lanes of all vectors (of different `K`, lane
  # counts and formats, the empty and all-zero ones included): the same bytes.
  vectors = [tf.constant(values) for values in CASES.values()]
  together = codecs.RunLengthRansCodec(lane_overhead).encode_many(vectors)
  assert len(together) == len(CASES)
  for name, data in zip(CASES, together):
    assert bytes(data.numpy()) == _encode(CASES[name], lane_overhead), name
  assert rlr.encode_many([]) == []
  with pytest.raises(TypeError, match=r'int32 values, got float32 \(vector 1\)'):
    rlr.encode_many([vectors[0], tf.constant([1.0])])
