"""Tests of `tff_rdq.codecs` (the codec objects, `get_codec`, `has_closed_form`)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tff_rdq import codecs
from tff_rdq.codecs import elias_gamma


@pytest.mark.slow
def test_closed_form_elias_gamma_bits_equal_real_encoded_length():
  rng = np.random.default_rng(0)
  cases = []
  for n, block in [(1, 1024), (1023, 1024), (1024, 1024), (1025, 1024), (3000, 1024),
                   (500, 7), (64, 64), (2000, 5000)]:
    for scale in (0.05, 0.7, 3.0, 1e5):
      q = np.round(rng.laplace(size=(3, n)) * scale).astype(np.int32)
      q[1, -min(n, 40):] = 0  # trailing zeros
      q[2, :] = 0 if scale == 0.05 else q[2, :]  # an all-zero row
      cases.append((q, block))
  extreme = np.array([[np.iinfo(np.int32).min, 2**31 - 1, 0, 0, 5, 0, -1, 0]], np.int32)
  cases.append((extreme, 3))
  for q, block in cases:
    codec = codecs.EliasGammaCodec(block)
    got = codec.coded_bits(tf.constant(q)).numpy()
    real = [8 * len(codec.encode_to_bytes(tf.constant(row)).numpy()) for row in q]
    np.testing.assert_array_equal(got, real)
    # A single vector gives a scalar; extra batch axes are kept.
    assert int(codec.coded_bits(tf.constant(q[0]))) == real[0]
    assert codec.coded_bits(tf.constant(q[None])).shape == (1, len(q))
  # The single-block case agrees with tensorflow-compression's op (+1 header byte
  # and the 1-entry length table).
  q = np.round(rng.laplace(size=(1, 900)) * 2).astype(np.int32)
  stream = len(tfc.run_length_gamma_encode(tf.constant(q[0])).numpy())
  assert codecs.EliasGammaCodec().coded_bits(tf.constant(q)).numpy()[0] == 8 * (
      1 + (stream.bit_length() + 7) // 8 + stream)


def test_coded_size_is_the_same_on_the_fast_and_the_general_path():
  # Up to 64 vectors are counted one by one in int32 where the encoder's fast
  # path applies; a larger batch takes the int64 path as a whole.
  rng = np.random.default_rng(4)
  scales = [0.05, 0.7, 3.0, 300.0, 1e5] * 13
  q = np.round(rng.laplace(size=(65, 3000)) * np.array(scales)[:, None]).astype(np.int32)
  q[3] = 0
  q[7, -1500:] = 0
  q[9, :2] = [np.iinfo(np.int32).min, 2**31 - 1]
  for block in (1024, 7):
    whole = elias_gamma.coded_size(tf.constant(q), block)
    for k in (0, 3, 7, 9, 40, 64):
      data = elias_gamma.encode_to_bytes(tf.constant(q[k]), block)
      for size in (whole, elias_gamma.coded_size(tf.constant(q[k]), block),
                   elias_gamma.coded_size(tf.constant(q[k:k + 1]), block)):
        bits, header_bits = (np.reshape(t.numpy(), [-1]) for t in size)
        index = k if bits.size > 1 else 0
        assert bits[index] == 8 * int(tf.size(data)), (block, k)
        assert header_bits[index] == int(elias_gamma.side_info_bits(data, 3000, block))


def test_coded_size_of_a_scalar_or_unknown_length_is_a_clear_error():
  with pytest.raises(ValueError, match='rank >= 1'):
    elias_gamma.coded_size(tf.constant(3), 1024)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
  def unknown_length(values):
    return elias_gamma.coded_size(values, 1024)

  with pytest.raises(ValueError, match='static last dimension'):
    unknown_length.get_concrete_function()


def test_coded_bits_is_the_module_function():
  q = tf.constant(np.arange(-50, 50, dtype=np.int32))
  assert int(codecs.EliasGammaCodec(16).coded_bits(q)) == int(elias_gamma.coded_bits(q, 16))


class _NoClosedForm:
  name = 'no_closed_form'

  def encode_to_bytes(self, values):
    return codecs.EliasGammaCodec().encode_to_bytes(values)

  def decode_from_bytes(self, data, num_elements):
    return codecs.EliasGammaCodec().decode_from_bytes(data, num_elements)

  def side_info_bits(self, data, num_elements):
    return codecs.EliasGammaCodec().side_info_bits(data, num_elements)


def test_has_closed_form():
  assert codecs.has_closed_form(codecs.get_codec('elias_gamma'))
  assert not codecs.has_closed_form(codecs.get_codec('rans'))
  codec = _NoClosedForm()
  assert codecs.get_codec(codec) is codec and not codecs.has_closed_form(codec)


def test_get_codec_and_bad_arguments():
  assert {'elias_gamma', 'rans'} <= set(codecs.CODEC_NAMES)
  assert isinstance(codecs.get_codec('rans'), codecs.RansCodec)
  with pytest.raises(ValueError, match='zip'):
    codecs.get_codec('zip')
  with pytest.raises(TypeError, match='Not a codec'):
    codecs.get_codec(object())
  with pytest.raises(ValueError, match='block_size'):
    codecs.EliasGammaCodec(0)
  with pytest.raises(TypeError, match='block_size'):
    codecs.EliasGammaCodec(16.0)
  with pytest.raises(ValueError, match='lane_overhead'):
    codecs.RansCodec(lane_overhead=0.0)
  with pytest.raises(ValueError, match='max_lanes'):
    codecs.RansCodec(max_lanes=0)
