"""Tests of `tff_rdq.aggregators.compressor`: the protocol, the stateless base and
the client seed."""

import numpy as np
import pytest
import tensorflow as tf

from tff_rdq import baselines
from tff_rdq.aggregators import compressor
from tff_rdq.aggregators import quantize_encode
from tff_rdq.baselines import tff_builtin


def test_every_compressor_implements_the_protocol():
  for instance in (quantize_encode.QuantizeEncodeCompressor(0.1),
                   baselines.TopKCompressor(0.1), baselines.DriveCompressor(),
                   baselines.ThreeLCCompressor(), baselines.QSGDCompressor(4),
                   baselines.TernGradCompressor(),
                   tff_builtin.TensorEncodingCompressor(tff_builtin.uniform_encoder_fn(8)),
                   tff_builtin.DiscretizationCompressor(8)):
    assert isinstance(instance, compressor.Compressor), instance
  assert not isinstance(object(), compressor.Compressor)


def test_stateless_base_needs_encode_and_decode():
  with pytest.raises(TypeError, match='abstract'):
    compressor.StatelessCompressor()  # pylint: disable=abstract-class-instantiated

  class Identity(compressor.StatelessCompressor):

    def encode(self, flat_values, params):
      raise NotImplementedError

    def decode(self, streams, sizes):
      raise NotImplementedError

  identity = Identity()
  state = identity.initial_state()
  assert state.dtype == tf.int32 and int(state) == 0
  assert identity.client_params(state) is state
  # The state is the round counter, broadcast as the per-round nonce.
  assert int(identity.update_state(state, {'squared_error': 1.0})) == 1
  assert identity.diagnostic_names == ('squared_error',)


def test_client_seed_is_the_bits_of_the_float32_l1_norm():
  values = [np.array([0.5, -1.25], np.float32), np.array([3.0], np.float32)]
  seed = compressor.client_seed([tf.constant(v) for v in values])
  assert seed.dtype == tf.int32
  assert int(seed) == int(np.array(4.75, np.float32).view(np.int32))
  # Nonce 0 (the first round) leaves it unchanged.
  assert int(compressor.client_seed([tf.constant(v) for v in values], 0)) == int(seed)


def test_client_seed_is_fresh_every_round():
  values = [tf.constant([0.5, -1.25], tf.float32)]
  l1_bits = int(compressor.client_seed(values))
  seeds = [int(compressor.client_seed(values, tf.constant(t, tf.int64))) for t in range(50)]
  assert len(set(seeds)) == 50  # Distinct in every round for the same update.
  for t, seed in enumerate(seeds):  # L1 bits XOR the low 32 bits of t * 0x9E3779B1.
    mixed = np.array([t * 0x9E3779B1 % 2**32], np.uint32).view(np.int32)[0]
    assert seed == l1_bits ^ int(mixed)
  assert int(compressor.client_seed(values, 7)) == seeds[7]  # Reproducible.


def test_message_bits():
  assert compressor.WEIGHT_BITS == 32
  assert compressor.CHECKSUM_BITS == 32
  assert compressor.STATUS_BITS == 8
