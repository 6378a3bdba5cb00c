"""Benchmark: in-graph codecs inside a TFF computation vs tensorflow-compression's C++ op.

For each step size, quantizes a Laplacian "update" of 4,050,748 values (the Stack Overflow
model's size) to integers, then times in the same process:
  - each selected codec of ours (`--codec`: `rans`, `elias_gamma` or `both`): encode and
    decode, each as its own `tff.tensorflow.computation` run in TFF's C++ worker (the time
    includes moving the input tensor to the worker and the result back; the line `transfer`
    times an identity computation on the same tensor for reference);
  - tfc: `tfc.run_length_gamma_encode` / `run_length_gamma_decode`, eagerly in Python.
Reports the median of `--repeats` timings and, per codec, bits per parameter: total, side
information (`side_info_bits`), for rans also the lane states (the rANS flush, counted as
coded bits), the excess over `n * H + side info` (H: the empirical zeroth-order entropy of
the integers, bits per value) and the saving against elias_gamma's bits. Time ratios are
against tfc's eager encode+decode (`x tfc`) and our elias_gamma's (`x eg`, when it is run).
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
from tff_rdq.codecs import rans


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


def _computations(codec, n, block):
  """`(encode, decode, side_info_bits, lane_state_bits)` of one codec."""
  int_type = tff.TensorType(np.int32, [n])
  if codec == 'rans':
    encode_fn, decode_fn = rans.encode, lambda s: rans.decode(s, n)
    side = lambda data: rans.side_info_bits(data, n)
    states = lambda data: rans.lane_state_bits(data, n)
  else:
    encode_fn = lambda x: elias_gamma.encode(x, block)
    decode_fn = lambda s: elias_gamma.decode(s, n, block)
    side = lambda data: elias_gamma.side_info_bits(data, n, block)
    states = lambda data: 0

  @tff.tensorflow.computation(int_type)
  def encode(x):
    return encode_fn(x)

  @tff.tensorflow.computation(tff.TensorType(np.str_))
  def decode(s):
    return decode_fn(s)

  return encode, decode, side, states


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--size', type=int, default=4_050_748)
  parser.add_argument('--steps', type=float, nargs='+', default=[0.25, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 16.0])
  parser.add_argument('--block-size', type=int, default=elias_gamma.DEFAULT_BLOCK_SIZE,
                      help='elias_gamma block size')
  parser.add_argument('--codec', choices=['both', 'rans', 'elias_gamma'], default='both')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args(argv)

  n, block = args.size, args.block_size
  codecs = ['elias_gamma', 'rans'] if args.codec == 'both' else [args.codec]
  tff.backends.native.set_sync_local_cpp_execution_context()
  computations = {codec: _computations(codec, n, block) for codec in codecs}

  @tff.tensorflow.computation(tff.TensorType(np.int32, [n]))
  def identity(x):
    return tf.identity(x)

  rng = np.random.default_rng(0)
  update = rng.laplace(size=n).astype(np.float32)
  print(f'{n:,} values, elias_gamma block size {block}, median of {args.repeats} runs '
        '(seconds); bits per parameter (b/p)')
  print(f"{'step':>6} {'codec':>11} {'entropy':>8} {'b/p':>7} {'side':>7} {'states':>7} "
        f"{'excess':>7} {'vs eg':>7} {'enc':>7} {'dec':>7} {'total':>7} {'x tfc':>6} {'x eg':>6}")
  identity(np.zeros(n, np.int32))
  transfer, _ = _median_time(lambda: identity(np.zeros(n, np.int32)), args.repeats)
  for step in args.steps:
    ints = np.round(update / step).astype(np.int32)
    entropy = empirical_entropy(ints)
    tensor = tf.constant(ints)
    tfc_enc, ref = _median_time(lambda: tfc.run_length_gamma_encode(tensor), args.repeats)
    tfc_dec, ref_decoded = _median_time(
        lambda: tfc.run_length_gamma_decode(ref, [n]), args.repeats)
    assert np.array_equal(ref_decoded.numpy(), ints)
    tfc_bits = 8 * len(ref.numpy())
    rows = {}
    for codec in codecs:
      encode, decode, side_fn, states_fn = computations[codec]
      encode(ints)  # first call pays tracing and compilation
      enc_time, stream = _median_time(lambda: encode(ints), args.repeats)
      decode(stream)
      dec_time, decoded = _median_time(lambda: decode(stream), args.repeats)
      if not np.array_equal(decoded, ints):
        raise SystemExit(f'{codec}: round trip failed at step {step}')
      data = tf.constant(np.frombuffer(stream, np.uint8))
      rows[codec] = (8 * len(stream), int(side_fn(data)), int(states_fn(data)),
                     enc_time, dec_time)
    rows['tfc (eager)'] = (tfc_bits, 0, 0, tfc_enc, tfc_dec)
    eg_bits = rows['elias_gamma'][0] if 'elias_gamma' in rows else tfc_bits
    eg_time = sum(rows['elias_gamma'][3:]) if 'elias_gamma' in rows else None
    for codec, (bits, side, states, enc_time, dec_time) in rows.items():
      total = enc_time + dec_time
      excess = bits / (n * entropy + side) - 1 if entropy > 0 else float('nan')
      x_eg = f'{total / eg_time:>6.2f}' if eg_time else f"{'-':>6}"
      print(f'{step:>6} {codec:>11} {entropy:>8.4f} {bits / n:>7.4f} {side / n:>7.5f} '
            f'{states / n:>7.5f} {excess:>+7.2%} {1 - bits / eg_bits:>+7.1%} {enc_time:>7.3f} '
            f'{dec_time:>7.3f} {total:>7.3f} {total / (tfc_enc + tfc_dec):>6.2f} {x_eg}',
            flush=True)
  print(f'transfer (identity computation on {n:,} int32 in and out): {transfer:.3f}')
  print('excess: bits / (n * entropy + side) - 1; vs eg: bits saved against elias_gamma '
        '(tfc\'s stream when elias_gamma is not run); states: included in b/p, not in side.')
  # Stop the TFF worker this process started.
  tff.backends.native.set_sync_local_cpp_execution_context()
  gc.collect()


if __name__ == '__main__':
  main()
