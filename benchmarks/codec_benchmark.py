"""Benchmark: in-graph codecs inside TFF's worker vs tensorflow-compression's C++ op.

For each step size, quantizes a Laplacian "update" of 4,050,748 values (the Stack Overflow
model's size) to integers, then times in the same process, paired repetition by repetition:
  - each selected codec of ours (`--codec`: `rans`, `elias_gamma` or `both`) with the data
    already inside TFF's C++ worker: one `tff.tensorflow.computation` encodes the integers
    `--inner` times in sequence (each run starts when the previous one has ended), then
    decodes the stream `--inner` times; `tf.timestamp` ops inside the computation, before
    and after each sequence, time encode and decode there. So the times are coding alone,
    as in a round, where the integers never leave the worker; moving 16 MB of int32 in or
    out (`transfer`, printed) is not counted. As a cross-check, the whole call minus a no-op
    call with the same input and output types, divided by `--inner`, is printed
    (`call-noop`: noisy, since the transfer is large against the coding at high steps);
  - tfc: `tfc.run_length_gamma_encode` / `run_length_gamma_decode`, eagerly in Python on an
    eager tensor (C++, single-threaded).
Reports medians over `--repeats` and, per codec, bits per parameter: total, side
information (`side_info_bits`), for rans also the lane states (the rANS flush, counted as
coded bits), the excess over `n * H + side info` (H: the empirical zeroth-order entropy of
the integers, bits per value) and the saving against elias_gamma's bits. Time ratios are
against tfc's encode+decode (`x tfc`) and our elias_gamma's (`x eg`, when it is run).
`steps` is each format's number of dependent decoding steps, which no decoder can run in
parallel: elias_gamma's most codewords in a block, rans's `T` (`rans.decoding_steps`).
`--json` prints one JSON object per step and codec instead of the table.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
import tensorflow_federated as tff

from tff_rdq.experiments import runtime
from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import rans


def _timed(fn):
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def empirical_entropy(values: np.ndarray) -> float:
  _, counts = np.unique(values, return_counts=True)
  p = counts / counts.sum()
  return float(-(p * np.log2(p)).sum())


def _chain(fn, x, inner):
  """`fn(x)` `inner` times in sequence: each run starts after the previous one ended."""
  out = None
  for _ in range(inner):
    arg = x
    if out is not None:
      with tf.control_dependencies(tf.nest.flatten(out)):
        arg = tf.identity(x)
    out = fn(arg)
  return out


def _timed_in_graph(fn, x, inner):
  """`(fn(x) run inner times in sequence, seconds per run)`, timed inside the graph.

  `tf.timestamp` ops before the first run starts and after the last one ended
  measure the coding alone, inside TFF's worker: no transfer in or out. The
  first waits for `x`: a timestamp without inputs runs when the graph starts,
  so for a decode it would have counted the encode that produces `x` too.
  """
  with tf.control_dependencies(tf.nest.flatten(x)):
    start = tf.timestamp()
  with tf.control_dependencies([start]):
    x = tf.nest.map_structure(tf.identity, x)
  out = _chain(fn, x, inner)
  with tf.control_dependencies(tf.nest.flatten(out)):
    end = tf.timestamp()
  with tf.control_dependencies([end]):
    out = tf.nest.map_structure(tf.identity, out)
  return out, (end - start) / inner


def _computation(codec, n, block, inner):
  """`(round_trip, side_info_bits, lane_state_bits)` of one codec.

  `round_trip(x)` encodes `x` `inner` times in sequence, then decodes the last
  stream `inner` times, inside one computation; it returns the stream, the
  decoded values and the seconds per encode and per decode, each measured in the
  worker with `tf.timestamp` (`_timed_in_graph`).
  """
  if codec == 'rans':
    encode_fn, decode_fn = rans.encode, lambda s: rans.decode(s, n)
    side = lambda data: rans.side_info_bits(data, n)
    states = lambda data: rans.lane_state_bits(data, n)
  else:
    encode_fn = lambda x: elias_gamma.encode(x, block)
    decode_fn = lambda s: elias_gamma.decode(s, n, block)
    side = lambda data: elias_gamma.side_info_bits(data, n, block)
    states = lambda data: 0

  @tff.tensorflow.computation(tff.TensorType(np.int32, [n]))
  def round_trip(x):
    stream, encode_s = _timed_in_graph(encode_fn, x, inner)
    decoded, decode_s = _timed_in_graph(decode_fn, stream, inner)
    return stream, decoded, encode_s, decode_s

  return round_trip, side, states


def max_codewords_per_block(integers: np.ndarray, block: int) -> int:
  """The most Elias-gamma codewords of a block: its nonzero values, plus one for a trailing run.

  A block's codewords decode one after the other, so no decoder of the
  format needs fewer dependent steps than this.
  """
  padded = np.zeros(-(-integers.size // block) * block, bool)
  padded[:integers.size] = integers != 0
  blocks = padded.reshape(-1, block)
  lengths = np.minimum(block, integers.size - block * np.arange(blocks.shape[0]))
  last = np.where(blocks.any(axis=1), block - 1 - np.argmax(blocks[:, ::-1], axis=1), -1)
  return int((blocks.sum(axis=1) + (last + 1 < lengths)).max())


def _no_op(n):
  """A computation with `round_trip`'s input and output types that does no coding."""

  @tff.tensorflow.computation(tff.TensorType(np.int32, [n]))
  def no_op(x):
    zero = tf.constant(0.0, tf.float64)
    return tf.strings.as_string(x[0]), tf.identity(x), zero, zero

  return no_op


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--size', type=int, default=4_050_748)
  parser.add_argument('--steps', type=float, nargs='+',
                      default=[0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])
  parser.add_argument('--block-size', type=int, default=elias_gamma.DEFAULT_BLOCK_SIZE,
                      help='elias_gamma block size')
  parser.add_argument('--codec', choices=['both', 'rans', 'elias_gamma'], default='both')
  parser.add_argument('--repeats', type=int, default=5, help='paired repetitions (medians)')
  parser.add_argument('--inner', type=int, default=4,
                      help='codings in sequence per computation call')
  parser.add_argument('--json', action='store_true',
                      help='one JSON object per step and codec on stdout, no table')
  parser.add_argument('--markdown', action='store_true',
                      help="after the table, the README's summary table (markdown)")
  args = parser.parse_args(argv)

  n, block, inner = args.size, args.block_size, args.inner
  codecs = ['elias_gamma', 'rans'] if args.codec == 'both' else [args.codec]
  # The worker stops on leaving (after a long run it can ignore TFF's SIGINT).
  with runtime.local_execution_context():
    _run(args, n, block, inner, codecs)


def _run(args, n, block, inner, codecs):
  computations = {codec: _computation(codec, n, block, inner) for codec in codecs}
  no_op = _no_op(n)
  log = sys.stderr if args.json else sys.stdout

  rng = np.random.default_rng(0)
  update = rng.laplace(size=n).astype(np.float32)
  print(f'{n:,} values, elias_gamma block size {block}; our times: coding inside the TFF '
        f'worker (tf.timestamp around {inner} codings in sequence); medians of '
        f'{args.repeats} paired repetitions (seconds); bits per parameter (b/p)', file=log)
  if not args.json:
    print(f"{'step':>6} {'codec':>11} {'entropy':>8} {'b/p':>7} {'side':>7} {'states':>7} "
          f"{'excess':>7} {'vs eg':>7} {'enc':>7} {'dec':>7} {'total':>7} {'x tfc':>6} "
          f"{'x eg':>6} {'call-noop':>9} {'steps':>6}")
  records = []
  zeros = np.zeros(n, np.int32)
  no_op(zeros)
  transfer = float(np.median([_timed(lambda: no_op(zeros))[0] for _ in range(3)]))
  for step in args.steps:
    ints = np.round(update / step).astype(np.int32)
    entropy = empirical_entropy(ints)
    tensor = tf.constant(ints)
    ref = tfc.run_length_gamma_encode(tensor)
    assert np.array_equal(tfc.run_length_gamma_decode(ref, [n]).numpy(), ints)
    tfc_bits = 8 * len(ref.numpy())
    streams = {}
    for codec in codecs:
      round_trip = computations[codec][0]
      stream, decoded, _, _ = round_trip(ints)  # the first call pays the worker's compilation
      if not np.array_equal(decoded, ints):
        raise SystemExit(f'{codec}: round trip failed at step {step}')
      streams[codec] = stream
    times = {codec: ([], [], []) for codec in codecs + ['tfc']}
    for _ in range(args.repeats):
      for codec in codecs:
        base, _ = _timed(lambda: no_op(ints))
        full, (_, _, encode_s, decode_s) = _timed(lambda: computations[codec][0](ints))
        times[codec][0].append(float(encode_s))
        times[codec][1].append(float(decode_s))
        # Cross-check: the whole call minus a no-op call, per encode + decode.
        times[codec][2].append((full - base) / inner)
      times['tfc'][0].append(_timed(lambda: tfc.run_length_gamma_encode(tensor).numpy())[0])
      times['tfc'][1].append(_timed(lambda: tfc.run_length_gamma_decode(ref, [n]).numpy())[0])
      times['tfc'][2].append(times['tfc'][0][-1] + times['tfc'][1][-1])
    medians = {c: (float(np.median(e)), float(np.median(d)), float(np.median(w)))
               for c, (e, d, w) in times.items()}
    # Ratios: medians of the per-repetition ratios (paired), not ratios of medians.
    totals = {c: np.add(times[c][0], times[c][1]) for c in times}
    rows = {}
    for codec in codecs:
      stream = streams[codec]
      _, side_fn, states_fn = computations[codec]
      data = tf.constant(np.frombuffer(stream, np.uint8))
      rows[codec] = (8 * len(stream), int(side_fn(data)), int(states_fn(data)))
    rows['tfc'] = (tfc_bits, 0, 0)
    steps = {'elias_gamma': max_codewords_per_block(ints, block), 'tfc': None}
    if 'rans' in streams:
      steps['rans'] = int(rans.decoding_steps(
          tf.constant(np.frombuffer(streams['rans'], np.uint8)), n))
    eg_bits = rows['elias_gamma'][0] if 'elias_gamma' in rows else tfc_bits
    tfc_enc, tfc_dec, _ = medians['tfc']
    for codec, (bits, side, states) in rows.items():
      enc_time, dec_time, call_time = medians[codec]
      x_tfc = float(np.median(totals[codec] / totals['tfc']))
      x_eg = (float(np.median(totals[codec] / totals['elias_gamma']))
              if 'elias_gamma' in rows else None)
      excess = bits / (n * entropy + side) - 1 if entropy > 0 else None
      record = dict(
          step=step, codec=codec, n=n, entropy=entropy, bits_per_param=bits / n,
          side_bits_per_param=side / n, state_bits_per_param=states / n, excess=excess,
          saving_vs_eg=1 - bits / eg_bits, encode_s=enc_time, decode_s=dec_time,
          total_s=enc_time + dec_time, tfc_encode_s=tfc_enc, tfc_decode_s=tfc_dec,
          tfc_s=tfc_enc + tfc_dec, ratio_tfc=x_tfc, ratio_eg=x_eg,
          call_minus_no_op_s=call_time if codec != 'tfc' else None,
          decoding_steps=steps[codec],
          block_size=block if codec == 'elias_gamma' else None, repeats=args.repeats,
          inner=inner if codec != 'tfc' else 1, transfer_s=transfer)
      records.append(record)
      if args.json:
        print(json.dumps(record), flush=True)
        continue
      excess_text = f'{excess:>+7.2%}' if excess is not None else f"{'-':>7}"
      x_eg_text = f'{x_eg:>6.2f}' if x_eg is not None else f"{'-':>6}"
      steps_text = f'{steps[codec]:>6}' if steps[codec] is not None else f"{'-':>6}"
      print(f'{step:>6} {codec:>11} {entropy:>8.4f} {bits / n:>7.4f} {side / n:>7.5f} '
            f'{states / n:>7.5f} {excess_text} {1 - bits / eg_bits:>+7.1%} {enc_time:>7.4f} '
            f'{dec_time:>7.4f} {enc_time + dec_time:>7.4f} {x_tfc:>6.2f} {x_eg_text} '
            f'{call_time:>9.4f} {steps_text}', flush=True)
  print(f'transfer (no-op computation, {n:,} int32 in and out; not in the times above): '
        f'{transfer:.3f} s', file=log)
  if not args.json:
    print('excess: bits / (n * entropy + side) - 1; vs eg: bits saved against elias_gamma '
          '(tfc\'s stream when elias_gamma is not run); states: included in b/p, not in side; '
          'x tfc, x eg: medians of the paired per-repetition time ratios; call-noop: the '
          'whole call minus a no-op call, per encode + decode (a noisy cross-check); steps: '
          'dependent decoding steps of the format (elias_gamma: the most codewords of a '
          'block; rans: T, the most run symbols of a lane).')
  if args.markdown:
    print(_markdown_table(records))


def _markdown_table(records) -> str:
  """The README's table: one row per step, Elias-gamma and rANS against tfc."""
  header = ['step', 'entropy (bits)', 'EG b/p', 'rANS b/p', 'rANS over n·H', 'rANS saving vs EG',
            'EG enc+dec s', 'tfc s', '**EG ÷ tfc**', 'rANS s', 'rANS ÷ EG', 'EG steps',
            'rANS steps']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for step in dict.fromkeys(r['step'] for r in records):
    by_codec = {r['codec']: r for r in records if r['step'] == step}
    eg, rans, tfc_row = (by_codec.get(c) for c in ('elias_gamma', 'rans', 'tfc'))
    cells = [f'{step:g}', f"{tfc_row['entropy']:.3f}",
             f"{eg['bits_per_param']:.3f}" if eg else '-',
             f"{rans['bits_per_param']:.3f}" if rans else '-',
             f"{rans['excess']:+.2%}" if rans and rans['excess'] is not None else '-',
             f"{rans['saving_vs_eg']:.1%}" if rans and eg else '-',
             f"{eg['total_s']:.4f}" if eg else '-', f"{tfc_row['tfc_s']:.4f}",
             f"**{eg['ratio_tfc']:.2f}**" if eg else '-',
             f"{rans['total_s']:.3f}" if rans else '-',
             f"{rans['ratio_eg']:.2f}" if rans and eg else '-',
             f"{eg['decoding_steps']}" if eg else '-',
             f"{rans['decoding_steps']}" if rans else '-']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
