"""The client-to-server payload of the quantize-encode aggregators.

A client's payload is one scalar `tf.string` per tensor of the update:

  bytes 0-3   the tensor's effective step size, float32 little-endian
  bytes 4-7   (dithered rounding only) the dither seed, int32 little-endian;
              the dither of tensor `i` is drawn with seed `[seed, i]`
  then        the codec's bytes of the tensor's integers, flattened row-major

A client whose update holds NaN or Inf sends an empty string for every tensor:
it is dropped from the aggregate and counted (`dropped_clients`); its payload
still counts its (zero) bytes.

Everything in the payload is counted as uplink bits. Side information is the
step and seed bytes plus the codec's own header bits.
"""

import collections

import tensorflow as tf

from tff_rdq.codecs import bitstream
from tff_rdq.quantizers import uniform

_STEP_BYTES = 4
_SEED_BYTES = 4


def header_size(rounding: str) -> int:
  """Bytes before the codec's bytes in each tensor's payload."""
  return _STEP_BYTES + (_SEED_BYTES if rounding == 'dithered' else 0)


def client_seed(flat_values: list[tf.Tensor]) -> tf.Tensor:
  """A per-client `int32` seed derived from the update itself.

  The bit pattern of the update's float32 L1 norm: deterministic for a given
  update (reproducible runs) and different across clients and rounds.
  """
  total = tf.add_n([tf.reduce_sum(tf.abs(v)) for v in flat_values])
  return tf.bitcast(tf.cast(total, tf.float32), tf.int32)


def _scalar_bytes(value: tf.Tensor) -> tf.Tensor:
  return tf.reshape(tf.bitcast(value, tf.uint8), [-1])


def encode_update(flat_values, steps, *, rounding, codec):
  """Quantizes and encodes finite float32 tensors (client side).

  Args:
    flat_values: A list of float32 vectors.
    steps: A list of float32 scalars, the effective step of each tensor.
    rounding: One of `uniform.ROUNDINGS`.
    codec: A codec object (see `tff_rdq.codecs`).

  Returns:
    `(streams, squared_error)`: a list of scalar `tf.string` payloads and the
    float64 sum of squared reconstruction errors over all elements (the
    server reconstructs exactly what the client computes here).
  """
  seed = client_seed(flat_values)
  streams, squared_error = [], tf.constant(0.0, tf.float64)
  for i, (values, step) in enumerate(zip(flat_values, steps)):
    tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
    integers = uniform.quantize(values, step, rounding, tensor_seed)
    reconstruction = uniform.dequantize(integers, step, rounding, tensor_seed)
    squared_error += tf.reduce_sum(
        tf.square(tf.cast(reconstruction - values, tf.float64))
    )
    parts = [_scalar_bytes(step)]
    if rounding == 'dithered':
      parts.append(_scalar_bytes(seed))
    parts.append(codec.encode_to_bytes(integers))
    streams.append(bitstream.bytes_to_string(tf.concat(parts, 0)))
  return streams, squared_error


def decode_update(streams, sizes, *, rounding, codec):
  """Decodes one client's payload (server side).

  Args:
    streams: A list of scalar `tf.string`, one per tensor.
    sizes: A list of Python ints, the number of elements of each tensor.
    rounding: One of `uniform.ROUNDINGS`.
    codec: The codec object the clients used.

  Returns:
    An `OrderedDict` with `values` (list of float32 vectors, zeros for a
    dropped client), `dropped` (bool: all streams empty), `ok` (bool: every
    stream parsed and decoded exactly), `bits` and `side_info_bits` (int64:
    8 x payload bytes, and the part of it that is side information) and
    `zeros` (int64: zero integers decoded).
  """
  header = header_size(rounding)
  lengths = [tf.strings.length(s, unit='BYTE') for s in streams]
  dropped = tf.reduce_all(tf.equal(tf.stack(lengths), 0))
  ok = tf.constant(True)
  values, zeros = [], tf.constant(0, tf.int64)
  bits = 8 * tf.cast(tf.add_n(lengths), tf.int64)
  side_bits = tf.constant(0, tf.int64)
  for i, (stream, size) in enumerate(zip(streams, sizes)):
    data = bitstream.string_to_bytes(stream)
    # Zero padding keeps the fixed-size header reads in bounds for any input.
    padded = tf.concat([data, tf.zeros([header], tf.uint8)], 0)
    step = tf.bitcast(padded[:_STEP_BYTES], tf.float32)
    seed = tf.bitcast(padded[_STEP_BYTES:_STEP_BYTES + _SEED_BYTES], tf.int32)
    body = data[header:]
    integers, decoded_ok = codec.decode_from_bytes(body, size)
    ok &= decoded_ok & (tf.size(data) > header)
    ok &= tf.math.is_finite(step) & (step > 0)
    tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
    safe_step = tf.where(tf.math.is_finite(step) & (step > 0), step, 1.0)
    values.append(
        uniform.dequantize(integers, safe_step, rounding, tensor_seed)
    )
    zeros += tf.reduce_sum(tf.cast(tf.equal(integers, 0), tf.int64))
    side_bits += 8 * header + tf.cast(codec.side_info_bits(body, size), tf.int64)
  keep = tf.logical_not(dropped)
  return collections.OrderedDict(
      values=[tf.where(keep, v, tf.zeros_like(v)) for v in values],
      dropped=dropped,
      ok=ok | dropped,
      bits=bits,
      side_info_bits=tf.where(keep, side_bits, 0),
      zeros=tf.where(keep, zeros, 0),
  )
