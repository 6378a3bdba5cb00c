"""Benchmark: in-graph Elias-gamma codec inside a TFF computation vs tensorflow-compression's C++ op.

For each step size, quantizes a Laplacian "update" of 4,050,748 values (the Stack Overflow
model's size) to integers, then times in the same process:
  - ours: encode and decode, each as its own `tff.tensorflow.computation` run in TFF's C++ worker
    (the time includes moving the input tensor to the worker and the result back; the row
    `transfer` times an identity computation on the same tensor for reference);
  - tfc: `tfc.run_length_gamma_encode` / `run_length_gamma_decode`, eagerly in Python.
Reports median of `--repeats` timings, bits per parameter of both formats, and the empirical
entropy of the integers (zeroth order, bits per value).
"""

import argparse
import gc
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
import tensorflow_federated as tff

from tff_rdq.codecs import elias_gamma


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times)), result


def empirical_entropy(values: np.ndarray) -> float:
  _, counts = np.unique(values, return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log2(p)).sum())


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--size', type=int, default=4_050_748)
  parser.add_argument('--steps', type=float, nargs='+', default=[0.25, 0.5, 1.0, 2.0, 4.0])
  parser.add_argument('--block-size', type=int, default=elias_gamma.DEFAULT_BLOCK_SIZE)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)

  n, block = args.size, args.block_size
  tff.backends.native.set_sync_local_cpp_execution_context()
  int_type = tff.TensorType(np.int32, [n])

  @tff.tensorflow.computation(int_type)
  def encode(x):
    return elias_gamma.encode(x, block)

  @tff.tensorflow.computation(tff.TensorType(np.str_))
  def decode(s):
    return elias_gamma.decode(s, n, block)

  @tff.tensorflow.computation(int_type)
  def identity(x):
    return tf.identity(x)

  rng = np.random.default_rng(0)
  update = rng.laplace(size=n).astype(np.float32)
  print(f'{n:,} values, block size {block}, median of {args.repeats} runs (seconds)')
  header = (f"{'step':>6} {'entropy':>8} {'ours b/p':>9} {'tfc b/p':>8} {'ours enc':>9} "
            f"{'tfc enc':>8} {'ours dec':>9} {'tfc dec':>8} {'enc x':>6} {'dec x':>6} {'total x':>7}")
  print(header)
  identity(np.zeros(n, np.int32))
  transfer, _ = _median_time(lambda: identity(np.zeros(n, np.int32)), args.repeats)
  for step in args.steps:
    ints = np.round(update / step).astype(np.int32)
    encode(ints)  # first call pays tracing and compilation
    ours_enc, stream = _median_time(lambda: encode(ints), args.repeats)
    decode(stream)
    ours_dec, decoded = _median_time(lambda: decode(stream), args.repeats)
    if not np.array_equal(decoded, ints):
      raise SystemExit(f'round trip failed at step {step}')
    tensor = tf.constant(ints)
    tfc_enc, ref = _median_time(lambda: tfc.run_length_gamma_encode(tensor), args.repeats)
    tfc_dec, ref_decoded = _median_time(
        lambda: tfc.run_length_gamma_decode(ref, [n]), args.repeats)
    assert np.array_equal(ref_decoded.numpy(), ints)
    print(f'{step:>6} {empirical_entropy(ints):>8.3f} {8 * len(stream) / n:>9.3f} '
          f'{8 * len(ref.numpy()) / n:>8.3f} {ours_enc:>9.3f} {tfc_enc:>8.3f} {ours_dec:>9.3f} '
          f'{tfc_dec:>8.3f} {ours_enc / tfc_enc:>6.2f} {ours_dec / tfc_dec:>6.2f} '
          f'{(ours_enc + ours_dec) / (tfc_enc + tfc_dec):>7.2f}')
  print(f'transfer (identity computation on {n:,} int32 in and out): {transfer:.3f}')
  # Stop the TFF worker this process started.
  tff.backends.native.set_sync_local_cpp_execution_context()
  gc.collect()


if __name__ == '__main__':
  main()
