"""Lossless codecs of integer vectors, in core TensorFlow ops.

A codec object has `encode_to_bytes(int32 vector) -> uint8 vector`,
`decode_from_bytes(uint8 vector, num_elements) -> (int32 vector, ok)` and
`side_info_bits(uint8 vector, num_elements) -> int64 scalar` (the bits of its
encoded bytes that are headers/tables rather than coded symbols). `get_codec`
turns a name into one. A codec may also have `decode_many(uint8 vectors,
sizes) -> [(int32 vector, ok), ...]`: the same results as `decode_from_bytes`
of each, computed together, and `encode_many(int32 vectors) -> [uint8
vector, ...]`, the same bytes as `encode_to_bytes` of each (the aggregator
uses them when they exist).

A codec may also have a closed form of its coded length,
`coded_bits(int32 tensor [..., n]) -> int64 tensor [...]`: for every vector
`v` along the last axis, exactly `8 * len(encode_to_bytes(v))`, computed
without writing any bits. `has_closed_form(codec)` tells whether it has one
(step control uses it to size many candidate quantizations cheaply).
"""

import dataclasses

from tff_rdq import validation
from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import rans
from tff_rdq.codecs import run_length_rans


@dataclasses.dataclass(frozen=True)
class EliasGammaCodec:
  """The blocked run-length Elias-gamma format of `elias_gamma`."""

  block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE
  name = 'elias_gamma'

  def __post_init__(self):
    validation.check_int('block_size', self.block_size, low=1)

  def encode_to_bytes(self, values):
    return elias_gamma.encode_to_bytes(values, self.block_size)

  def decode_from_bytes(self, data, num_elements):
    return elias_gamma.decode_from_bytes(data, num_elements, self.block_size)

  def decode_many(self, datas, sizes):
    """`decode_from_bytes` of several vectors, in one decoding loop."""
    return elias_gamma.decode_many(datas, sizes, self.block_size)

  def side_info_bits(self, data, num_elements):
    return elias_gamma.side_info_bits(data, num_elements, self.block_size)

  def coded_bits(self, integers):
    """`8 * len(encode_to_bytes(v))` for each vector `v` on the last axis (int64)."""
    return elias_gamma.coded_bits(integers, self.block_size)


@dataclasses.dataclass(frozen=True)
class RansCodec:
  """The interleaved-lane rANS format of `rans` (near the empirical entropy)."""

  lane_overhead: float = rans.DEFAULT_LANE_OVERHEAD
  max_lanes: int = rans.DEFAULT_MAX_LANES
  name = 'rans'

  def __post_init__(self):
    validation.check_positive('lane_overhead', self.lane_overhead)
    validation.check_int('max_lanes', self.max_lanes, low=1)

  def encode_to_bytes(self, values):
    return rans.encode_to_bytes(values, self.lane_overhead, self.max_lanes)

  def decode_from_bytes(self, data, num_elements):
    return rans.decode_from_bytes(data, num_elements)

  def side_info_bits(self, data, num_elements):
    return rans.side_info_bits(data, num_elements)


@dataclasses.dataclass(frozen=True)
class RunLengthRansCodec:
  """The context-modelled run-length rANS format of `run_length_rans`.

  Zero runs and nonzero values coded with per-tensor context tables; never
  larger than `EliasGammaCodec(block_size)` (whose format it falls back to).
  """

  lane_overhead: float = run_length_rans.DEFAULT_LANE_OVERHEAD
  block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE
  name = 'run_length_rans'

  def __post_init__(self):
    validation.check_positive('lane_overhead', self.lane_overhead)
    validation.check_int('block_size', self.block_size, low=1)

  def encode_to_bytes(self, values):
    return run_length_rans.encode_to_bytes(values, self.lane_overhead, self.block_size)

  def encode_many(self, vectors):
    """`encode_to_bytes` of several vectors, in one encoding loop."""
    return run_length_rans.encode_many(vectors, self.lane_overhead, self.block_size)

  def decode_from_bytes(self, data, num_elements):
    return run_length_rans.decode_from_bytes(data, num_elements, self.block_size)

  def decode_many(self, datas, sizes):
    """`decode_from_bytes` of several vectors, in one decoding loop."""
    return run_length_rans.decode_many(datas, sizes, self.block_size)

  def side_info_bits(self, data, num_elements):
    return run_length_rans.side_info_bits(data, num_elements, self.block_size)


_CODECS = {'elias_gamma': EliasGammaCodec, 'rans': RansCodec,
           'run_length_rans': RunLengthRansCodec}


def get_codec(codec):
  """A codec object from a name in `CODEC_NAMES` or a codec object itself."""
  if isinstance(codec, str):
    if codec not in _CODECS:
      raise ValueError(f'Unknown codec {codec!r}; choose one of {sorted(_CODECS)}.')
    return _CODECS[codec]()
  if not all(hasattr(codec, a) for a in ('encode_to_bytes', 'decode_from_bytes', 'side_info_bits')):
    raise TypeError(f'Not a codec: {codec!r}.')
  return codec


def has_closed_form(codec) -> bool:
  """Whether `codec` sizes its output in closed form (a `coded_bits` method)."""
  return callable(getattr(codec, 'coded_bits', None))


CODEC_NAMES = tuple(_CODECS)
