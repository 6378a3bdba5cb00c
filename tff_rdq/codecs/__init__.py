"""Lossless codecs of integer vectors, in core TensorFlow ops.

A codec object has `encode_to_bytes(int32 vector) -> uint8 vector`,
`decode_from_bytes(uint8 vector, num_elements) -> (int32 vector, ok)` and
`side_info_bits(uint8 vector, num_elements) -> int64 scalar` (the bits of its
encoded bytes that are headers/tables rather than coded symbols). `get_codec`
turns a name into one.
"""

import dataclasses

from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import rans


@dataclasses.dataclass(frozen=True)
class EliasGammaCodec:
  """The blocked run-length Elias-gamma format of `elias_gamma`."""

  block_size: int = elias_gamma.DEFAULT_BLOCK_SIZE
  name = 'elias_gamma'

  def __post_init__(self):
    if not isinstance(self.block_size, int) or self.block_size < 1:
      raise ValueError(f'block_size must be an int >= 1, got {self.block_size!r}.')

  def encode_to_bytes(self, values):
    return elias_gamma.encode_to_bytes(values, self.block_size)

  def decode_from_bytes(self, data, num_elements):
    return elias_gamma.decode_from_bytes(data, num_elements, self.block_size)

  def side_info_bits(self, data, num_elements):
    return elias_gamma.side_info_bits(data, num_elements, self.block_size)


@dataclasses.dataclass(frozen=True)
class RansCodec:
  """The interleaved-lane rANS format of `rans` (near the empirical entropy)."""

  lane_overhead: float = rans.DEFAULT_LANE_OVERHEAD
  max_lanes: int = rans.DEFAULT_MAX_LANES
  name = 'rans'

  def __post_init__(self):
    if not isinstance(self.lane_overhead, (int, float)) or not self.lane_overhead > 0:
      raise ValueError(f'lane_overhead must be a number > 0, got {self.lane_overhead!r}.')
    if not isinstance(self.max_lanes, int) or self.max_lanes < 1:
      raise ValueError(f'max_lanes must be an int >= 1, got {self.max_lanes!r}.')

  def encode_to_bytes(self, values):
    return rans.encode_to_bytes(values, self.lane_overhead, self.max_lanes)

  def decode_from_bytes(self, data, num_elements):
    return rans.decode_from_bytes(data, num_elements)

  def side_info_bits(self, data, num_elements):
    return rans.side_info_bits(data, num_elements)


_CODECS = {'elias_gamma': EliasGammaCodec, 'rans': RansCodec}


def get_codec(codec):
  """A codec object from a name in `CODEC_NAMES` or a codec object itself."""
  if isinstance(codec, str):
    if codec not in _CODECS:
      raise ValueError(f'Unknown codec {codec!r}; choose one of {sorted(_CODECS)}.')
    return _CODECS[codec]()
  if not all(hasattr(codec, a) for a in ('encode_to_bytes', 'decode_from_bytes', 'side_info_bits')):
    raise TypeError(f'Not a codec: {codec!r}.')
  return codec


CODEC_NAMES = tuple(_CODECS)
