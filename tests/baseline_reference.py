"""NumPy references shared by the baseline tests (`tests/test_baseline_*.py`).

NumPy re-implementations of what the TF code computes (the client seed, the
weighted mean of 3 clients), a small test structure of two tensors, the
Elias-gamma byte counts from the codec's own closed form, and the bits of a
client's message outside its streams (`MESSAGE_BITS`: status byte, checksum
and weight; see `tff_rdq.aggregators.compressed`).
"""

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import codecs

# Keys deliberately not sorted: the compressors see the tensors in `tf.nest`
# order (sorted keys: bias, kernel), which `flat` and `SIZES` follow.
SHAPES = collections.OrderedDict(kernel=(20, 30), bias=(50,))
ORDER = sorted(SHAPES)
SIZES = [int(np.prod(SHAPES[name])) for name in ORDER]
NUM_PARAMETERS = sum(SIZES)
# An OrderedDict container: `compressed` needs a Python container type (a plain
# named `tff.StructType` fails in `tff.types.type_to_tf_tensor_specs`).
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    (name, tff.TensorType(np.float32, shape)) for name, shape in SHAPES.items()))
WEIGHT_TYPE = tff.TensorType(np.float32)
WEIGHTS = [1.0, 2.0, 3.5]
WEIGHT_BITS = 32
STATUS_BITS = 8  # Whether the client was dropped.
CHECKSUM_BITS = 32  # The message checksum (integrity on, the default).
# Bits of a client's message besides its streams, all side information:
# weighted form (status, checksum, weight) and sum form (status, checksum).
MESSAGE_BITS = STATUS_BITS + CHECKSUM_BITS + WEIGHT_BITS
SUM_MESSAGE_BITS = STATUS_BITS + CHECKSUM_BITS


def client_values(num_clients=3, seed=0):
  """Client updates of multiples of 1/64 below 150/64 in magnitude: every
  float32 sum, sum of squares and Hadamard transform of them is exact, so TF
  and NumPy agree bit for bit on norms, seeds and signs."""
  rng = np.random.default_rng(seed)
  clients = []
  for c in range(num_clients):
    clients.append(collections.OrderedDict(
        (name, (rng.integers(-50, 51, size=shape) * (c + 1) / 64.0).astype(np.float32))
        for name, shape in SHAPES.items()))
  return clients


def flat(client):
  """The client's tensors as flat float32 vectors, in `tf.nest` order."""
  return [np.asarray(client[name], np.float32).reshape(-1) for name in ORDER]


def client_seed(flat_values, nonce=0) -> int:
  """`compressor.client_seed`: the bits of the float32 L1 norm, XOR the low
  32 bits of `nonce * 0x9E3779B1` (the round's nonce; 0 in the first round)."""
  total = np.float32(sum(np.abs(v.astype(np.float64)).sum() for v in flat_values))
  mixed = np.array([nonce * 0x9E3779B1 % 2**32], np.uint32).view(np.int32)[0]
  return int(np.array(total, np.float32).view(np.int32) ^ mixed)


def weighted_mean(decoded_clients, weights=WEIGHTS):
  """The weighted mean (float64) of per-client lists of flat vectors."""
  total = sum(weights)
  return [sum(w * np.asarray(d[i], np.float64) for w, d in zip(weights, decoded_clients)) / total
          for i in range(len(decoded_clients[0]))]


def assert_result_close(result, expected_flat, rtol=1e-5, atol=1e-6):
  """`result` (the process's structure) against flat vectors in `tf.nest` order."""
  for name, want in zip(ORDER, expected_flat):
    got = np.asarray(result[name])
    assert got.shape == SHAPES[name]
    np.testing.assert_allclose(got.reshape(-1), want, rtol=rtol, atol=atol, err_msg=name)


def elias_gamma_num_bytes(values, block_size=1024) -> int:
  """Bytes of `elias_gamma.encode_to_bytes(values, block_size)` (the codec's
  closed form, itself tested against tensorflow-compression in test_codecs)."""
  values = tf.constant(np.asarray(values, np.int32).reshape(-1))
  return int(codecs.EliasGammaCodec(block_size).coded_bits(values)) // 8


def elias_gamma_header_bits(values, block_size=1024) -> int:
  """Header and block-table bits of that format (its side information)."""
  codec = codecs.EliasGammaCodec(block_size)
  values = tf.constant(np.asarray(values, np.int32).reshape(-1))
  return int(codec.side_info_bits(codec.encode_to_bytes(values), int(values.shape[0])))


def graph_decode(compressor, sizes=SIZES):
  """`compressor.decode` as a `tf.function` of the list of streams (the
  eager `tf.while_loop` of the Elias-gamma decoder is slow)."""
  return tf.function(lambda streams: compressor.decode(streams, sizes))


def assert_rejected(compressor, bad_inputs, sizes=SIZES, decode=None):
  """`compressor.decode` (or `decode`, its `graph_decode`) gives ok=False
  for each list of corrupted streams."""
  decode = decode or graph_decode(compressor, sizes)
  for bad in bad_inputs:
    assert not bool(decode([tf.constant(b) for b in bad])['ok']), bad


def assert_truncation_rejected_eagerly(compressor, stream, size):
  """Eager `decode` of one stream cut by one byte, and of an empty one."""
  for bad in (stream[:-1], b''):
    result = compressor.decode([tf.constant(bad)], [size])
    assert not bool(result['ok'])
    assert result['values'][0].shape == (size,)
