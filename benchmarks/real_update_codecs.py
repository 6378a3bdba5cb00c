"""Benchmark: lossless codecs on real saved client updates.

Takes a run directory with saved client updates (`RUN_DIR/updates/*.npz` and
`index.json`, written by `aggregator.save_updates_rounds`; see
`tff_rdq.experiments.updates`) and, for every update and step size, quantizes
each tensor as the aggregator does (`uniform` rounding, `rms` normalization:
step `s * rms(tensor)`, `tff_rdq.quantizers.uniform`) and reports bits per
parameter of the integers (codec bytes only, without the aggregator's 4-byte
step per tensor) for:

- `eg`: Elias-gamma (`tff_rdq.codecs.elias_gamma`, blocked format);
- `rans`: the zeroth-order rANS coder (`tff_rdq.codecs.rans`);
- `rlr`: the context-modelled run-length rANS coder
  (`tff_rdq.codecs.run_length_rans`), side information included (`rlr_side`:
  its side information alone);
- `tfc`: tensorflow-compression's range coder (`tfc.create_range_encoder`,
  eager, one stream per tensor) driven by the same model and contexts as
  `rlr` (its frequency tables at 16-bit precision), plus the same raw bits
  and side information: the same model with another entropy coder;
- `ideal`: the ideal code length of `rlr`'s own model (`sum -log2 p` of its
  quantized tables over the coded symbols, plus raw bits and side
  information); `rlr_loss` = `rlr / ideal - 1` (lane states, lane restarts and
  rANS rounding);
- `H0`: `n * H` of the integers' empirical distribution, per tensor;
- `H1`: the empirical entropy conditioned on whether the previous integer
  (in the flattened tensor) is zero, per tensor.

Tensors that `rlr` codes with its Elias-gamma fallback count their Elias-gamma
bits in `rlr`, `tfc` and `ideal`.

With `--time` (default on), times `rlr` against Elias-gamma inside TFF's C++
worker: one `tff.tensorflow.computation` per codec that encodes and decodes
every tensor of an update as the aggregator does (all tensors in one loop
where the codec can: `rlr`'s `encode_many`, both codecs' `decode_many`) and
checks the round trip; calls alternate between
the codecs (`--repeats` pairs, medians); the time of a computation that only
receives the same tensors is subtracted from both (`time_ratio`).

Prints a markdown table of medians over updates per step (and per round with
`--per-round`); `--json PATH` writes every measurement.
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import tensorflow as tf

tf.get_logger().setLevel('ERROR')  # eager codecs trace once per tensor shape
import tensorflow_compression as tfc
import tensorflow_federated as tff

from tff_rdq import codecs
from tff_rdq.experiments import runtime
from tff_rdq.codecs import elias_gamma
from tff_rdq.codecs import rans
from tff_rdq.codecs import run_length_rans as rlr
from tff_rdq.quantizers import uniform

DEFAULT_STEPS = (0.015, 0.04, 0.1, 0.3, 1.0, 3.0, 7.0)


def load_updates(run_dir):
  """`(index entry, [float32 arrays])` of a run's saved updates, by round and client."""
  directory = pathlib.Path(run_dir) / 'updates'
  index_path = directory / 'index.json'
  if not index_path.exists():
    raise FileNotFoundError(
        f'{index_path} does not exist: save updates with --set '
        'aggregator.save_updates_rounds=[1,20,40] --set aggregator.save_updates_clients=3')
  entries = sorted(json.loads(index_path.read_text()),
                   key=lambda e: (e['round'], e['client']))
  result = []
  for entry in entries:
    with np.load(directory / entry['file']) as arrays:
      result.append((entry, [arrays[k] for k in sorted(arrays.files)]))
  return result


def quantize(tensors, step):
  """The aggregator's integers: uniform rounding with step `step * rms(tensor)`."""
  out = []
  for i, t in enumerate(tensors):
    values = tf.constant(t.reshape(-1), tf.float32)
    tensor_step = uniform.normalized_step(values, step, 'rms')
    out.append(uniform.quantize(values, tensor_step, 'uniform',
                                tf.constant([0, i], tf.int32)).numpy())
  return out


def entropy_bits(values: np.ndarray) -> float:
  """`n * H` of the empirical distribution of `values`."""
  if values.size == 0:
    return 0.0
  _, counts = np.unique(values, return_counts=True)
  return float(-(counts * np.log2(counts / values.size)).sum())


def first_order_entropy_bits(values: np.ndarray) -> float:
  """Empirical entropy conditioned on whether the previous value is zero."""
  previous_zero = np.concatenate([[True], values[:-1] == 0])
  return sum(entropy_bits(values[previous_zero == k]) for k in (False, True))


def _model_bits(values: np.ndarray, data: np.ndarray):
  """`(ideal, tfc)` bits of `rlr`'s model for a tensor it codes in its own format."""
  m = {k: v.numpy() for k, v in rlr.analyze(tf.constant(values)).items()}
  raw = int(m['raw_bits'])
  side = int(rlr.side_info_bits(tf.constant(data), values.size))
  ideal = raw + side
  lookups, lookup_len, streams = [], [], []
  for kind, alphabet in (('run', rlr.ALPHABET), ('value', rlr.VALUE_ALPHABET)):
    precision, freqs = m[f'{kind}_precision'], m[f'{kind}_freqs']
    ctx = m[f'{kind}_context']
    symbols = m['run_symbol'] if kind == 'run' else m['value_symbol']
    scaled = freqs.astype(np.int64) << (rlr.PRECISION - precision[:, None])
    p = scaled[ctx, symbols] / rlr.PROB_SCALE
    ideal += float(-np.log2(p).sum())
    for g in range(freqs.shape[0]):
      row = freqs[g].astype(np.int64)
      if precision[g] == 0:
        row = np.zeros(alphabet, np.int64)
        row[0] = 1  # unused context: any valid distribution
        t = 0
      else:
        t = int(precision[g])
      cdf = np.concatenate([[0], np.cumsum(row << (16 - t))])
      lookups.append(cdf)
    streams.append((ctx + (0 if kind == 'run' else freqs.shape[0]), symbols))
  width = max(len(c) for c in lookups)
  lookup = np.stack([np.concatenate([[16], c, np.full(width - len(c), c[-1])])
                     for c in lookups]).astype(np.int32)
  # Interleaved as the decoder needs them: run symbol, then value symbol.
  index = np.stack([streams[0][0], streams[1][0]], 1).reshape(-1).astype(np.int32)
  value = np.stack([streams[0][1], streams[1][1]], 1).reshape(-1).astype(np.int32)
  handle = tfc.create_range_encoder([], lookup)
  handle = tfc.entropy_encode_index(handle, index, value)
  coded = 8 * len(tfc.entropy_encode_finalize(handle).numpy())
  return ideal, coded + raw + side


def measure_sizes(tensors, step):
  """Bits of every codec and entropy for one update quantized with `step`."""
  integers = quantize(tensors, step)
  row = dict(eg=0, rans=0, rlr=0, rlr_side=0, tfc=0.0, ideal=0.0, H0=0.0, H1=0.0,
             fallback_tensors=0)
  for q in integers:
    v = tf.constant(q)
    eg = 8 * int(tf.size(elias_gamma.encode_to_bytes(v)))
    data = rlr.encode_to_bytes(v)
    bits = 8 * int(tf.size(data))
    decoded, ok = rlr.decode_from_bytes(data, q.size)
    if not (bool(ok) and np.array_equal(decoded.numpy(), q)):
      raise AssertionError('run_length_rans round trip failed')
    row['eg'] += eg
    row['rans'] += 8 * int(tf.size(rans.encode_to_bytes(v)))
    row['rlr'] += bits
    row['rlr_side'] += int(rlr.side_info_bits(data, q.size))
    if q.size and int(data[0]) >= rlr.MARKER and np.any(q):
      ideal, coded = _model_bits(q, data.numpy())
    else:
      ideal = coded = bits
      row['fallback_tensors'] += int(q.size > 0 and int(data[0]) < rlr.MARKER)
    row['ideal'] += ideal
    row['tfc'] += coded
    row['H0'] += entropy_bits(q)
    row['H1'] += first_order_entropy_bits(q)
  return row, integers


class Timer:
  """Encode+decode of a whole update inside TFF's worker, per codec."""

  def __init__(self, sizes):
    types = tff.StructType([(None, tff.TensorType(np.int32, [n])) for n in sizes])

    def computation(codec):
      # As the aggregator encodes and decodes: every tensor at once where the
      # codec can (`QuantizeEncodeCompressor.payloads`, `decode_many`).
      @tff.tensorflow.computation(types)
      def run(xs):
        encode_many = getattr(codec, 'encode_many', None)
        datas = (encode_many(xs) if encode_many is not None else
                 [codec.encode_to_bytes(x) for x in xs])
        sizes = [int(x.shape[0]) for x in xs]
        decode_many = getattr(codec, 'decode_many', None)
        decoded = (decode_many(datas, sizes) if decode_many is not None else
                   [codec.decode_from_bytes(d, n) for d, n in zip(datas, sizes)])
        total, ok = tf.constant(0, tf.int64), tf.constant(True)
        for x, data, (y, decoded_ok) in zip(xs, datas, decoded):
          ok &= decoded_ok & tf.reduce_all(tf.equal(y, x))
          total += tf.size(data, out_type=tf.int64)
        return total, ok
      return run

    @tff.tensorflow.computation(types)
    def receive(xs):
      return (tf.add_n([tf.reduce_sum(tf.cast(x, tf.int64)) for x in xs]),
              tf.constant(True))

    self.computations = dict(
        eg=computation(codecs.get_codec('elias_gamma')),
        rlr=computation(codecs.get_codec('run_length_rans')),
        receive=receive)

  def time(self, integers, repeats):
    """Median seconds per codec (alternating calls), after one warm-up call each."""
    args = [np.asarray(q, np.int32) for q in integers]
    times = {k: [] for k in self.computations}
    for rep in range(repeats + 1):
      for name, comp in self.computations.items():
        start = time.perf_counter()
        _, ok = comp(args)
        elapsed = time.perf_counter() - start
        if not ok:
          raise AssertionError(f'{name} round trip failed inside the worker')
        if rep:
          times[name].append(elapsed)
    return {k: float(np.median(v)) for k, v in times.items()}


def _median(rows, key):
  return float(np.median([r[key] for r in rows]))


def summarize(rows, group_keys=('step',)):
  """Medians over updates of each quantity, per group."""
  groups = {}
  for r in rows:
    groups.setdefault(tuple(r[k] for k in group_keys), []).append(r)
  table = []
  for key, members in sorted(groups.items()):
    entry = dict(zip(group_keys, key), updates=len(members))
    for name in ('eg', 'rans', 'rlr', 'rlr_side', 'tfc', 'ideal', 'H0', 'H1'):
      entry[name] = _median(members, name + '_bpp')
    entry['saving_vs_eg'] = _median(members, 'saving_vs_eg')
    entry['max_rlr_over_eg'] = float(max(r['rlr_bpp'] / r['eg_bpp'] for r in members))
    entry['rlr_loss'] = _median(members, 'rlr_loss')
    timed = [r for r in members if 'time_ratio' in r]
    if timed:
      entry['time_ratio'] = _median(timed, 'time_ratio')
      entry['time_rlr_s'] = _median(timed, 'time_rlr_s')
      entry['time_eg_s'] = _median(timed, 'time_eg_s')
    table.append(entry)
  return table


def format_table(table, group_keys=('step',)) -> str:
  header = list(group_keys) + [
      'updates', 'eg', 'rans', 'rlr', '(side)', 'tfc', 'ideal', 'H0', 'H1',
      'rlr vs eg', 'worst rlr/eg', 'rlr/ideal-1', 'time rlr/eg']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for e in table:
    cells = [f'{e[k]:g}' for k in group_keys] + [str(e['updates'])]
    cells += [f"{e[k]:.4f}" for k in ('eg', 'rans', 'rlr', 'rlr_side', 'tfc', 'ideal',
                                      'H0', 'H1')]
    cells += [f"{100 * e['saving_vs_eg']:+.1f} %", f"{e['max_rlr_over_eg']:.3f}",
              f"{100 * e['rlr_loss']:+.2f} %",
              f"{e['time_ratio']:.2f}" if 'time_ratio' in e else '-']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('run_dir', help='run directory with updates/ (saved client updates)')
  parser.add_argument('--steps', type=float, nargs='+', default=list(DEFAULT_STEPS),
                      help='step sizes (multiples of each tensor rms)')
  parser.add_argument('--rounds', type=int, nargs='*', help='only these rounds')
  parser.add_argument('--max-updates', type=int, help='at most this many updates')
  parser.add_argument('--time', action=argparse.BooleanOptionalAction, default=True,
                      help='time rlr against Elias-gamma inside the TFF worker')
  parser.add_argument('--time-every', type=int, default=1,
                      help='time every k-th update only (timing is slow)')
  parser.add_argument('--repeats', type=int, default=3, help='timed calls per codec')
  parser.add_argument('--per-round', action='store_true',
                      help='also print medians per round and step')
  parser.add_argument('--json', type=pathlib.Path, help='write all rows here')
  args = parser.parse_args(argv)

  updates = load_updates(args.run_dir)
  if args.rounds:
    updates = [u for u in updates if u[0]['round'] in args.rounds]
  if args.max_updates:
    updates = updates[:args.max_updates]
  if not updates:
    raise SystemExit('no saved updates selected')
  # The worker stops on leaving (after a long run it can ignore TFF's SIGINT).
  with runtime.local_execution_context():
    rows = _run(args, updates)
  table = summarize(rows)
  print(f'\n{len(updates)} updates of {args.run_dir}; bits per parameter, medians over '
        'updates\n')
  print(format_table(table))
  if args.per_round:
    print()
    print(format_table(summarize(rows, ('round', 'step')), ('round', 'step')))
  if args.json:
    args.json.write_text(json.dumps(dict(rows=rows, table=table), indent=1))
  return 0


def _run(args, updates):
  timer = Timer([t.size for t in updates[0][1]]) if args.time else None
  rows = []
  for u, (entry, tensors) in enumerate(updates):
    params = sum(t.size for t in tensors)
    for step in args.steps:
      start = time.perf_counter()
      sizes, integers = measure_sizes(tensors, step)
      row = dict(round=entry['round'], client=entry['client'], step=step,
                 parameters=params, **sizes)
      for k in ('eg', 'rans', 'rlr', 'rlr_side', 'tfc', 'ideal', 'H0', 'H1'):
        row[k + '_bpp'] = row[k] / params
      row['saving_vs_eg'] = row['rlr'] / row['eg'] - 1
      row['rlr_loss'] = row['rlr'] / row['ideal'] - 1
      if timer and u % args.time_every == 0:
        t = timer.time(integers, args.repeats)
        row['time_eg_s'], row['time_rlr_s'] = t['eg'], t['rlr']
        row['time_receive_s'] = t['receive']
        row['time_ratio'] = ((t['rlr'] - t['receive'])
                             / max(t['eg'] - t['receive'], 1e-9))
      rows.append(row)
      print(f"round {entry['round']} client {entry['client']} step {step:g}: "
            f"eg {row['eg_bpp']:.4f} rans {row['rans_bpp']:.4f} rlr {row['rlr_bpp']:.4f} "
            f"({100 * row['saving_vs_eg']:+.1f} %) tfc {row['tfc_bpp']:.4f} "
            f"ideal {row['ideal_bpp']:.4f} H0 {row['H0_bpp']:.4f} H1 {row['H1_bpp']:.4f}"
            + (f" time ratio {row['time_ratio']:.2f}" if 'time_ratio' in row else '')
            + f" [{time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
  return rows


if __name__ == '__main__':
  sys.exit(main())
