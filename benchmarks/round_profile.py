"""Benchmark: where one client's compression cost goes, inside TFF's worker.

Profiles the per-client work of our aggregator (`QuantizeEncodeCompressor`
inside `tff_rdq.aggregators.compressed`) on a real update of the full-size
model (`configs/stackoverflow_local_full.toml`: 4,050,748 parameters in 8 tensors;
by default the saved update `runs/updates_local/updates/round0020_client00.npz`)
with the config's aggregator (step, rounding, normalization), for the
Elias-gamma and the rANS codec (`--codec`: also the run-length rANS codec). The stages, in the order a round runs them:

  checks           client: the finiteness check and the squared norm of its
                   update (relative distortion); the seed (not with uniform
                   rounding, which uses none)
  normalization    the per-tensor step (the normalization statistic)
  quantization     values -> int32 integers
  squared error    the reconstruction and its squared error (the distortion
                   diagnostic)
  encoding         the codec's bytes of every tensor's integers
                   (`transport="count"`: the closed-form bit counts)
  strings          the payload strings (header + codec bytes -> tf.string;
                   count: the serialized integers), the rate, the message's
                   checksum over them (not computed in count mode)
  decoding         server: the checksum's verification, strings -> bytes ->
                   header and integers (the codec's decoder; count: parsing)
  dequantization   server: integers -> float32 values
  accumulation     server: the zero count (sparsity) and the weighted sum

All stages run in one `tff.tensorflow.computation` in the worker, in this
order and one after the other: each stage's inputs wait for a `tf.timestamp`
taken after the previous stage's outputs exist, so the differences of
successive timestamps time each stage there. Moving the 16 MB update into the
worker and the outputs out is not counted (a round does not pay it either);
the no-op (the same computation without stages) is measured and subtracted.
A second computation runs the same stages without the timestamps in between
(`whole`: the stages may overlap, as in a round). TFF compiles computations
with a static Grappler pass that prunes ops whose results are not returned,
even under a control dependency, and folds `0 * x`: every output is returned
(its first element), after the last timestamp.

`--before` replaces the quantizer/aggregator stages that the closed-form count changed
(checks, squared error, dequantization, zero count) by their previous code,
for the before/after table; the codec, quantization and string stages are
today's code either way.

Each computation runs `--repeats` times, alternating (paired); the table gives
the median of each stage (ms per client), its share of the sum of stages, and
the sum. `--process-check` also times the real aggregation process with one
client against TFF's `MeanFactory` with one client (whole calls, transfers
included equally in both). `--json` prints one JSON object per run.
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

from tff_rdq import codecs  # pylint: disable=wrong-import-position
from tff_rdq.experiments import runtime  # pylint: disable=wrong-import-position
from tff_rdq.aggregators import compressed  # pylint: disable=wrong-import-position
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


def _stages(compressor, sizes, before):
  """`[(name, fn)]`: `fn(c)` adds one stage's outputs to the dict `c` (module doc).

  The stages call the building blocks that `compressed` and the compressor's
  `encode` and `decode` use, in the same order.
  """
  # Graph constants, made while tracing.
  step = lambda: tf.constant(compressor.step_size, tf.float32)
  weight = lambda: tf.constant(1.0, tf.float32)
  checked = not compressed.counts_bits(compressor)  # checksum computed (module doc)

  def checks(c):
    flat = c['flat']
    if before:
      c['finite'] = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in flat])
      c['squared_norm'] = tf.add_n(
          [tf.reduce_sum(tf.square(tf.cast(v, tf.float64))) for v in flat])
    else:
      c['finite'], c['squared_norm'] = compressed.squared_norm(flat)
    if compressor.rounding != 'uniform':  # uniform rounding uses no seed (pruned)
      c['seed'] = compressor_lib.client_seed(flat)

  def normalization(c):
    c['steps'] = [uniform.normalized_step(v, step(), compressor.normalization) for v in c['flat']]

  def quantization(c):
    seed = c.get('seed', tf.constant(0, tf.int32))
    c['tensor_seeds'] = [tf.stack([seed, tf.constant(i, tf.int32)])
                         for i in range(len(sizes))]
    c['integers'] = [uniform.quantize(v, s, compressor.rounding, tensor_seed)
                     for v, s, tensor_seed in zip(c['flat'], c['steps'], c['tensor_seeds'])]

  def squared_error(c):
    tensors = list(zip(c['steps'], c['tensor_seeds'], c['integers']))
    if before:
      total = tf.constant(0.0, tf.float64)
      for values, (s, tensor_seed, q) in zip(c['flat'], tensors):
        reconstruction = uniform.dequantize(q, s, compressor.rounding, tensor_seed)
        total += tf.reduce_sum(tf.square(tf.cast(reconstruction - values, tf.float64)))
      c['squared_error'] = total
    else:
      c['squared_error'] = compressor.squared_error(c['flat'], tensors)

  def encoding(c):
    c['payloads'] = compressor.payloads(c['integers'])

  def strings(c):
    seed = c.get('seed', tf.constant(0, tf.int32))
    c['streams'] = [compressor.stream(s, seed, p) for s, p in zip(c['steps'], c['payloads'])]
    c['rate'] = compressor.rate(c['flat'], c['streams'], c['payloads'])
    c['message'] = compressed.seal(
        c['streams'], tf.logical_not(c['finite']), weight(), integrity=checked)

  def decoding(c):
    c['lengths'] = tf.stack([tf.strings.length(s, unit='BYTE') for s in c['streams']])
    if checked:
      c['verified'] = tf.equal(c['message']['checksum'], compressed.checksum(
          c['streams'], tf.logical_not(c['finite']), weight()))
    c['payload'] = compressor.read_payloads(c['streams'], sizes)

  def dequantization(c):
    if before:
      c['values'] = [uniform.dequantize(p['integers'], p['step'], compressor.rounding,
                                        p['tensor_seed']) for p in c['payload']]
    else:
      c['values'] = [compressor.reconstruct(p['integers'], p['step'], p['tensor_seed'])
                     for p in c['payload']]

  def accumulation(c):
    kept = tf.logical_not(tf.reduce_all(tf.equal(c['lengths'], 0)))
    c['value_sum'] = [tf.zeros([n], tf.float32) + weight() * tf.where(kept, v, tf.zeros_like(v))
                      for n, v in zip(sizes, c['values'])]
    if before:
      c['zeros'] = tf.add_n([tf.reduce_sum(tf.cast(tf.equal(p['integers'], 0), tf.int64))
                             for p in c['payload']])
    else:
      c['zeros'] = tf.add_n([tf.cast(tf.reduce_sum(tf.cast(tf.equal(p['integers'], 0),
                                                           tf.int32)), tf.int64)
                             for p in c['payload']])
    c['ok'] = tf.reduce_all([p['ok'] for p in c['payload']])

  fns = [checks, normalization, quantization, squared_error, encoding, strings, decoding,
         dequantization, accumulation]
  return list(zip(STAGES, fns))


def _live(c):
  return [t for t in tf.nest.flatten(c) if isinstance(t, tf.Tensor)]


def _gate(c, dependency):
  """`c` with every tensor made to wait for `dependency`."""
  with tf.control_dependencies([dependency]):
    return tf.nest.map_structure(
        lambda t: tf.identity(t) if isinstance(t, tf.Tensor) else t, c)


def _returned(c, end):
  """The first element of every tensor of `c` (scalars whole), after `end`."""
  with tf.control_dependencies([end]):
    return [tf.identity(t if t.shape.rank == 0 else tf.reshape(t, [-1])[:1]) for t in _live(c)]


def _computations(compressor, specs, sizes, before):
  """`(staged, whole, no_op)`: TFF computations of one client's stages (module doc)."""
  stages = _stages(compressor, sizes, before)
  arg_type = [tff.TensorType(np.float32, s.shape) for s in specs]

  def run(values, num_stages, gated):
    start = tf.timestamp()
    c = _gate(collections.OrderedDict(flat=[tf.reshape(v, [-1]) for v in values]), start)
    times = [start]
    for _, fn in stages[:num_stages]:
      known = set(c)
      fn(c)
      if gated:
        with tf.control_dependencies(_live({k: c[k] for k in c if k not in known})):
          times.append(tf.timestamp())
        c = _gate(c, times[-1])
    if not gated:
      with tf.control_dependencies(_live(c)):
        times.append(tf.timestamp())
    return tf.stack(times[1:]) - tf.stack(times[:-1]), _returned(c, times[-1])

  staged = tff.tensorflow.computation(lambda v: run(v, len(stages), True), arg_type)
  whole = tff.tensorflow.computation(lambda v: run(v, len(stages), False), arg_type)
  no_op = tff.tensorflow.computation(lambda v: run(v, 0, False), arg_type)
  return staged, whole, no_op


def _process_check(compressor, update, repeats):
  """Seconds of one aggregation round (1 client): ours and TFF's MeanFactory."""
  value_type = tff.types.to_type([tff.TensorType(np.float32, u.shape) for u in update])
  weight_type = tff.TensorType(np.float32)
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


def profile(compressor, update, repeats, before=False, process_check=False):
  """One JSON-able record: the stage times of `compressor` on `update` (module doc)."""
  specs = [tf.TensorSpec(u.shape, tf.float32) for u in update]
  sizes = [int(u.size) for u in update]
  staged, whole, no_op = _computations(compressor, specs, sizes, before)
  for computation in (staged, whole, no_op):
    computation(update)  # the worker's compilation
  stage_s, whole_s, no_op_s = [], [], []
  for r in range(repeats):
    calls = [(staged, stage_s), (whole, whole_s), (no_op, no_op_s)]
    for computation, out in (calls if r % 2 == 0 else calls[::-1]):
      out.append(np.asarray(computation(update)[0], np.float64))
  no_op_ms = 1e3 * float(np.median([t.sum() for t in no_op_s]))
  stage_ms = 1e3 * np.median(np.stack(stage_s), axis=0)
  record = dict(
      codec=compressor.codec.name, transport=compressor.transport, before=before,
      parameters=int(sum(sizes)), step_size=float(compressor.step_size),
      normalization=compressor.normalization, rounding=compressor.rounding,
      repeats=repeats, no_op_ms=no_op_ms,
      stages=collections.OrderedDict(
          (name, float(ms) - (no_op_ms if i == 0 else 0.0))
          for i, (name, ms) in enumerate(zip(STAGES, stage_ms))),
      whole_ms=1e3 * float(np.median([t.sum() for t in whole_s])) - no_op_ms)
  record['sum_ms'] = float(sum(record['stages'].values()))
  if process_check:
    record['process_check'] = _process_check(compressor, update, repeats)
  return record


def print_table(record, file=sys.stdout):
  total = record['sum_ms']
  print(f"codec {record['codec']}, transport {record['transport']}"
        f"{' (before the closed-form count)' if record['before'] else ''}: "
        f"{record['parameters']:,} parameters, step {record['step_size']} "
        f"({record['normalization']}, {record['rounding']}); ms per client, medians of "
        f"{record['repeats']} repetitions", file=file)
  print(f"  {'stage':<16} {'ms':>8} {'share':>7}", file=file)
  for name, ms in record['stages'].items():
    print(f'  {name:<16} {ms:>8.1f} {ms / total:>7.1%}', file=file)
  print(f"  {'sum of stages':<16} {total:>8.1f}", file=file)
  print(f"  {'whole':<16} {record['whole_ms']:>8.1f}   (stages free to overlap; no-op "
        f"{record['no_op_ms']:.2f} ms subtracted)", file=file)
  check = record.get('process_check')
  if check:
    print(f"  process check (1 client, whole calls): ours {1e3 * check['ours_s']:.0f} ms, "
          f"MeanFactory {1e3 * check['mean_s']:.0f} ms, difference "
          f"{1e3 * check['ours_minus_mean_s']:.0f} ms", file=file)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', default='configs/stackoverflow_local_full.toml')
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--update', default='runs/updates_local/updates/round0020_client00.npz')
  parser.add_argument('--codec', choices=['both', 'all', *codecs.CODEC_NAMES],
                      default='both',
                      help='both: Elias-gamma and rANS; all: also run-length rANS')
  parser.add_argument('--transport', choices=['bytes', 'count', 'both'], default='bytes',
                      help='transport of the Elias-gamma runs (count: closed-form bits)')
  parser.add_argument('--before', action='store_true',
                      help='also profile the stages as they were before the closed-form count')
  parser.add_argument('--repeats', type=int, default=5, help='repetitions (medians)')
  parser.add_argument('--process-check', action='store_true',
                      help='also time the real process (1 client) against MeanFactory')
  parser.add_argument('--json', action='store_true', help='one JSON object per run')
  args = parser.parse_args(argv)

  config = config_lib.load(args.config, args.overrides).aggregator
  update = load_update(args.update)
  runs = []
  names = {'both': ['elias_gamma', 'rans'], 'all': list(codecs.CODEC_NAMES)}
  for codec in names.get(args.codec, [args.codec]):
    transports = ['bytes']
    if codec == 'elias_gamma' and args.transport != 'bytes':
      transports = ['bytes', 'count'] if args.transport == 'both' else ['count']
    for transport in transports:
      compressor = quantize_encode.QuantizeEncodeCompressor(
          config.step_size, rounding=config.rounding, normalization=config.normalization,
          codec=codec, extra_bits=compressed.overhead_bits(weighted=True),
          transport=transport)
      for before in ([True, False] if args.before else [False]):
        runs.append((compressor, before))
  with runtime.local_execution_context():
    for compressor, before in runs:
      record = profile(compressor, update, args.repeats, before, args.process_check)
      record['update'] = args.update
      if args.json:
        print(json.dumps(record), flush=True)
      else:
        print_table(record)
        print(flush=True)
  gc.collect()


if __name__ == '__main__':
  main()
