"""Benchmark: where one client's compression cost goes, inside TFF's worker.

Profiles the per-client work of our aggregator (`QuantizeEncodeCompressor`
inside `tff_rdq.aggregators.compressed`) on a real update of the main-job
model (`configs/stackoverflow_local.toml`: 4,050,748 parameters in 8 tensors;
by default the saved update `runs/updates_local/updates/round0020_client00.npz`)
with the config's aggregator (step, rounding, normalization), for the
Elias-gamma and the rANS codec. The stages, in the order a round runs them:

  checks           the client's finiteness check, the squared norm of its
                   update (relative distortion) and its seed
  normalization    the per-tensor step (the normalization statistic)
  quantization     values -> int32 integers
  squared error    the reconstruction and its squared error (the distortion
                   diagnostic)
  encoding         the codec's bytes of every tensor's integers
  strings          the payload strings (header + codec bytes -> tf.string)
                   and the rate diagnostic (their lengths)
  decoding         server: strings -> bytes -> header and integers (the codec's
                   decoder)
  dequantization   server: integers -> float32 values
  accumulation     server: the weighted sum and the measurement counters

Each stage is timed as the difference of two cumulative pipeline prefixes
(`prefix k` runs stages 1..k), each its own `tff.tensorflow.computation` run
in the worker: `tf.timestamp` ops in the graph, before and after the prefix,
time it there, so moving the 16 MB update into the worker and the outputs
out is not counted (a round does not pay it either). The
measured no-op (prefix 0: the same input, the same timestamps, no work) is
subtracted. With `--transport count` the encoding/strings/decoding stages are
those of `transport="count"` (closed-form bits, serialized integers).

All prefixes of a codec are run round-robin `--repeats` times (paired);
the table gives the median of each stage's per-repetition difference (ms per
client), its share of the sum of stages, and the sum. As a cross-check,
`--process-check` also times the real aggregation process with one client
against TFF's `MeanFactory` with one client (the whole call, both ways; the
difference is the aggregator's overhead per client, transfers included
equally in both). `--json` prints one JSON object per codec.
"""

import argparse
import collections
import gc
import json
import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position
import tensorflow_federated as tff  # pylint: disable=wrong-import-position

from tff_rdq import runtime  # pylint: disable=wrong-import-position
from tff_rdq.aggregators import compressor as compressor_lib  # pylint: disable=wrong-import-position
from tff_rdq.aggregators import quantize_encode  # pylint: disable=wrong-import-position
from tff_rdq.experiments import config as config_lib  # pylint: disable=wrong-import-position
from tff_rdq.quantizers import uniform  # pylint: disable=wrong-import-position

STAGES = ('checks', 'normalization', 'quantization', 'squared error', 'encoding', 'strings',
          'decoding', 'dequantization', 'accumulation')


def load_update(path):
  """The float32 tensors of a saved update (`tensor_00`, ... in model order)."""
  with np.load(path) as arrays:
    return [arrays[k].astype(np.float32) for k in sorted(arrays.files)]


def _pipeline(compressor, flat, num_stages, sizes):
  """Stages 1..num_stages of one client (module doc) on `flat`; all live outputs.

  The stages call the compressor's own building blocks, the ones its `encode`
  and `decode` use, in the same order.
  """
  c = collections.OrderedDict()
  out = [flat]
  step = tf.constant(compressor.step_size, tf.float32)
  weight = tf.constant(1.0, tf.float32)
  if num_stages >= 1:
    c['finite'] = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in flat])
    c['squared_norm'] = compressor_lib.squared_norm(flat) if hasattr(
        compressor_lib, 'squared_norm') else tf.add_n(
            [tf.reduce_sum(tf.square(tf.cast(v, tf.float64))) for v in flat])
    c['seed'] = compressor_lib.client_seed(flat)
  if num_stages >= 2:
    c['steps'] = [uniform.normalized_step(v, step, compressor.normalization) for v in flat]
  if num_stages >= 3:
    seeds = [tf.stack([c['seed'], tf.constant(i, tf.int32)]) for i in range(len(flat))]
    c['integers'] = [uniform.quantize(v, s, compressor.rounding, seed)
                     for v, s, seed in zip(flat, c['steps'], seeds)]
  if num_stages >= 4:
    c['squared_error'] = compressor.squared_error(
        flat, list(zip(c['steps'], seeds, c['integers'])))
  if num_stages >= 5:
    c['payloads'] = [compressor.payload(i) for i in c['integers']]
  if num_stages >= 6:
    c['streams'] = [compressor.stream(s, c['seed'], p)
                    for s, p in zip(c['steps'], c['payloads'])]
    c['rate'] = compressor.rate(flat, c['streams'], c['payloads'])
  if num_stages >= 7:
    c['lengths'] = tf.stack([tf.strings.length(s, unit='BYTE') for s in c['streams']])
    c['payload'] = [compressor.read_payload(s, n, i)
                    for i, (s, n) in enumerate(zip(c['streams'], sizes))]
  if num_stages >= 8:
    c['values'] = [uniform.dequantize(p['integers'], p['step'], compressor.rounding,
                                      p['tensor_seed']) for p in c['payload']]
  if num_stages >= 9:
    kept = tf.logical_not(tf.reduce_all(tf.equal(c['lengths'], 0)))
    c['value_sum'] = [tf.zeros([n], tf.float32) + weight * tf.where(kept, v, tf.zeros_like(v))
                      for n, v in zip(sizes, c['values'])]
    c['zeros'] = tf.add_n([tf.reduce_sum(tf.cast(tf.equal(p['integers'], 0), tf.int64))
                           for p in c['payload']])
    c['ok'] = tf.reduce_all([p['ok'] for p in c['payload']])
  out.extend(tf.nest.flatten(c))
  return out


def _prefix_computation(compressor, specs, sizes, num_stages):
  """`(seconds, outputs)` of prefix `num_stages`, timed in the worker (module doc).

  TFF compiles computations with a static Grappler pass (constant folding,
  arithmetic and dependency optimization): ops whose results are not returned
  are pruned even when a timestamp has a control dependency on them, and
  `0 * x` is folded away. So every live output is returned (its first element,
  after the closing timestamp; scalars whole), which keeps the whole stage in
  the graph and ordered between the timestamps.
  """

  @tff.tensorflow.computation([tff.TensorType(np.float32, s.shape) for s in specs])
  def prefix(values):
    start = tf.timestamp()
    with tf.control_dependencies([start]):
      flat = [tf.reshape(tf.identity(v), [-1]) for v in values]
    out = [t for t in tf.nest.flatten(_pipeline(compressor, flat, num_stages, sizes))
           if t is not None]
    with tf.control_dependencies(out):
      end = tf.timestamp()
    with tf.control_dependencies([end]):
      kept = [tf.identity(t if t.shape.rank == 0 else tf.reshape(t, [-1])[:1]) for t in out]
    return end - start, kept

  return prefix


def _process_check(compressor, update, repeats):
  """Seconds of one aggregation round (1 client): ours and TFF's MeanFactory."""
  value_type = tff.types.to_type([tff.TensorType(np.float32, u.shape) for u in update])
  weight_type = tff.TensorType(np.float32)
  from tff_rdq.aggregators import compressed  # pylint: disable=g-import-not-at-top
  processes = {
      'ours': compressed.CompressedMeanFactory(compressor).create(value_type, weight_type),
      'mean': tff.aggregators.MeanFactory().create(value_type, weight_type),
  }
  states = {n: p.initialize() for n, p in processes.items()}
  for n, p in processes.items():
    p.next(states[n], [update], [1.0])  # compilation
  times = {n: [] for n in processes}
  for _ in range(repeats):
    for n, p in processes.items():
      start = time.perf_counter()
      p.next(states[n], [update], [1.0])
      times[n].append(time.perf_counter() - start)
  diffs = np.subtract(times['ours'], times['mean'])
  return dict(ours_s=float(np.median(times['ours'])), mean_s=float(np.median(times['mean'])),
              ours_minus_mean_s=float(np.median(diffs)))


def profile(compressor, update, repeats, process_check):
  specs = [tf.TensorSpec(u.shape, tf.float32) for u in update]
  sizes = [int(u.size) for u in update]
  prefixes = [_prefix_computation(compressor, specs, sizes, k)
              for k in range(len(STAGES) + 1)]
  for p in prefixes:
    p(update)  # the worker's compilation
  times = [[] for _ in prefixes]
  for r in range(repeats):
    order = range(len(prefixes)) if r % 2 == 0 else reversed(range(len(prefixes)))
    for k in order:
      times[k].append(float(prefixes[k](update)[0]))
  times = np.array(times)  # [prefixes, repeats]
  stages = np.diff(times, axis=0)
  stage_ms = [1e3 * float(np.median(s)) for s in stages]
  record = dict(
      codec=compressor.codec.name, transport=getattr(compressor, 'transport', 'bytes'),
      parameters=int(sum(sizes)), step_size=float(compressor.step_size),
      normalization=compressor.normalization, rounding=compressor.rounding,
      repeats=repeats, no_op_ms=1e3 * float(np.median(times[0])),
      total_ms=1e3 * float(np.median(times[-1] - times[0])),
      stages=collections.OrderedDict(zip(STAGES, stage_ms)))
  if process_check:
    record['process_check'] = _process_check(compressor, update, repeats)
  return record


def print_table(record, file=sys.stdout):
  total = sum(record['stages'].values())
  print(f"codec {record['codec']} (transport {record['transport']}), "
        f"{record['parameters']:,} parameters, step {record['step_size']} "
        f"({record['normalization']}, {record['rounding']}); ms per client, medians of "
        f"{record['repeats']} paired repetitions", file=file)
  print(f"  {'stage':<16} {'ms':>8} {'share':>7}", file=file)
  for name, ms in record['stages'].items():
    print(f'  {name:<16} {ms:>8.1f} {ms / total:>7.1%}', file=file)
  print(f"  {'sum of stages':<16} {total:>8.1f}", file=file)
  print(f"  {'whole pipeline':<16} {record['total_ms']:>8.1f}   (minus no-op "
        f"{record['no_op_ms']:.2f} ms)", file=file)
  check = record.get('process_check')
  if check:
    print(f"  process check (1 client, whole call): ours {1e3 * check['ours_s']:.0f} ms, "
          f"MeanFactory {1e3 * check['mean_s']:.0f} ms, difference "
          f"{1e3 * check['ours_minus_mean_s']:.0f} ms", file=file)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', default='configs/stackoverflow_local.toml')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--update', default='runs/updates_local/updates/round0020_client00.npz')
  parser.add_argument('--codec', choices=['both', 'elias_gamma', 'rans'], default='both')
  parser.add_argument('--transport', choices=['bytes', 'count', 'both'], default='bytes',
                      help='transport of the Elias-gamma runs (count: closed-form bits)')
  parser.add_argument('--repeats', type=int, default=5, help='paired repetitions (medians)')
  parser.add_argument('--process-check', action='store_true',
                      help='also time the real process (1 client) against MeanFactory')
  parser.add_argument('--json', action='store_true', help='one JSON object per codec')
  args = parser.parse_args(argv)

  config = config_lib.load(args.config, args.overrides).aggregator
  update = load_update(args.update)
  runs = []
  for codec in (['elias_gamma', 'rans'] if args.codec == 'both' else [args.codec]):
    transports = ['bytes']
    if codec == 'elias_gamma' and args.transport != 'bytes':
      transports = ['bytes', 'count'] if args.transport == 'both' else ['count']
    for transport in transports:
      kwargs = dict(transport=transport) if transport != 'bytes' else {}
      runs.append(quantize_encode.QuantizeEncodeCompressor(
          config.step_size, rounding=config.rounding, normalization=config.normalization,
          codec=codec, extra_bits=compressor_lib.WEIGHT_BITS, **kwargs))
  with runtime.local_execution_context():
    for compressor in runs:
      record = profile(compressor, update, args.repeats, args.process_check)
      record['update'] = args.update
      if args.json:
        print(json.dumps(record), flush=True)
      else:
        print_table(record)
        print(flush=True)
  gc.collect()


if __name__ == '__main__':
  main()
