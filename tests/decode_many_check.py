"""The corruption check shared by the codecs' `decode_many` tests."""

import numpy as np
import tensorflow as tf


def rejected_corruptions(many, separate, clean, vectors, victims, cases, rng) -> int:
  """Corrupts one vector per case; checks `many` against `separate`; counts rejections.

  Each case truncates, extends or bit-flips `clean[victim]`; `many` must give
  the values and flags of `separate`, and every other vector its clean values.
  """
  def as_arrays(data):
    return [tf.constant(np.frombuffer(d, np.uint8)) for d in data]

  rejected = 0
  for case in range(cases):
    data = [bytearray(d) for d in clean]
    victim = victims[case % len(victims)]
    if case % 3 == 0:  # truncation or trailing bytes
      data[victim] = (data[victim][:int(rng.integers(len(data[victim])))] if case % 2
                      else data[victim] + b'\x00\x07')
    else:  # bit flips
      for _ in range(int(rng.integers(1, 3))):
        position = int(rng.integers(len(data[victim]) * 8))
        data[victim][position // 8] ^= 1 << (position % 8)
    data = [bytes(d) for d in data]
    got, want = many(*as_arrays(data)), separate(*as_arrays(data))
    for i, ((values, ok), (want_values, want_ok)) in enumerate(zip(got, want)):
      assert bool(ok) == bool(want_ok), (case, i)
      np.testing.assert_array_equal(values, want_values)
      if i != victim:
        assert bool(ok)
        np.testing.assert_array_equal(values, vectors[i])
    rejected += not bool(got[victim][1])
  return rejected
