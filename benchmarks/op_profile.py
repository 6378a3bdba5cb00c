"""Benchmark: where a codec's time goes, op by op (TensorFlow's profiler).

Quantizes one saved update as the aggregator does (uniform rounding, step
`--step` times each tensor's RMS; `real_update_codecs.quantize`), then encodes
and decodes its integers with one codec, each phase as one traced graph
(`codec_ab.phase_graphs`: `encode_many` and `decode_many` where the codec
has them, as the aggregator calls them), and traces `--repeats` calls of each phase with `tf.profiler`.
Per phase it prints:

  wall      median seconds per call, untraced (`--repeats` calls)
  busy      the executor's time summed over its threads
            (`ExecutorState::Process` events), per call
  kernels   the ops' own time summed (every op event), per call
  ops       op executions per call
  overhead  1 - kernels / busy: the share of the executor's time not spent
            in ops' kernels (scheduling, per-op dispatch)

and the op types of largest kernel time. A high overhead means many small ops
(fewer ops would pay); a low one means the kernels' own work dominates (less
data or fewer passes would pay). `busy` above `wall` means the executor ran
ops on more than one thread at once.

The graphs run in this process, not inside TFF's worker (the profiler sees only
this process); both execute the same graphs with TensorFlow's executor.
`--trace-dir DIR` keeps the trace for TensorBoard's profile plugin.
"""

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=wrong-import-position

import codec_ab  # pylint: disable=wrong-import-position
import real_update_codecs  # pylint: disable=wrong-import-position

_EXECUTOR_EVENT = 'ExecutorState::Process'


def summarize_trace(trace_dir, calls):
  """Per-call totals of a `tf.profiler` trace of `calls` calls.

  Returns:
    A dict: `busy_s` (executor events), `kernel_s` and `ops` (op events, whose
    names are `name:type`), and `by_type` (op type -> (kernel seconds, count)).
  """
  paths = glob.glob(os.path.join(trace_dir, 'plugins', 'profile', '*', '*.xplane.pb'))
  if not paths:
    raise FileNotFoundError(f'no profiler trace under {trace_dir}')
  space = xplane_pb2.XSpace()
  # The newest trace: a kept `--trace-dir` holds one per run.
  with open(max(paths, key=os.path.getmtime), 'rb') as f:
    space.ParseFromString(f.read())
  busy_ps, kernel_ps, ops = 0, 0, 0
  by_type = collections.defaultdict(lambda: [0, 0])
  for plane in space.planes:
    metadata = plane.event_metadata
    for line in plane.lines:
      if not line.name.startswith('tf_Compute'):
        continue  # the executor's threads; not the Python thread's calls
      for event in line.events:
        name = metadata[event.metadata_id].name
        if name == _EXECUTOR_EVENT:
          busy_ps += event.duration_ps
        elif ':' in name:
          op_type = name.rsplit(':', 1)[1]
          kernel_ps += event.duration_ps
          ops += 1
          by_type[op_type][0] += event.duration_ps
          by_type[op_type][1] += 1
  return dict(busy_s=busy_ps * 1e-12 / calls, kernel_s=kernel_ps * 1e-12 / calls,
              ops=ops / calls,
              by_type={k: (v[0] * 1e-12 / calls, v[1] / calls) for k, v in by_type.items()})


def profile_phase(fn, args, repeats, trace_dir):
  """Untraced median wall seconds and the trace summary of `repeats` calls."""
  def call():
    outputs = fn(*args)
    for t in tf.nest.flatten(outputs):
      t.numpy()

  call()  # tracing and the first run's allocations
  walls = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    walls.append(time.perf_counter() - start)
  tf.profiler.experimental.start(trace_dir)
  try:
    for _ in range(repeats):
      call()
  finally:
    tf.profiler.experimental.stop()
  return dict(wall_s=float(np.median(walls)), **summarize_trace(trace_dir, repeats))


def format_phase(name, record, top):
  busy, kernels = record['busy_s'], record['kernel_s']
  lines = [f'{name}: wall {1e3 * record["wall_s"]:.1f} ms, busy {1e3 * busy:.1f} ms, '
           f'kernels {1e3 * kernels:.1f} ms, {record["ops"]:.0f} ops, '
           f'overhead {100 * (1 - kernels / busy) if busy else 0:.0f} % (per call)']
  ranked = sorted(record['by_type'].items(), key=lambda kv: -kv[1][0])[:top]
  for op_type, (seconds, count) in ranked:
    lines.append(f'  {op_type:<24} {1e3 * seconds:8.2f} ms {count:8.0f} ops')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--update', default='runs/updates_local/updates/round0020_client00.npz',
                      help='a saved update (.npz; see aggregator.save_updates_rounds)')
  parser.add_argument('--codec', default='run_length_rans',
                      choices=sorted(codec_ab.MODULES))
  parser.add_argument('--step', type=float, default=0.3, help='step (multiple of each RMS)')
  parser.add_argument('--repeats', type=int, default=3, help='calls per phase')
  parser.add_argument('--top', type=int, default=12, help='op types listed per phase')
  parser.add_argument('--trace-dir', help='keep the trace here (default: a temporary directory)')
  args = parser.parse_args(argv)
  integers = real_update_codecs.quantize(codec_ab.checked_update(parser, args), args.step)
  vectors = [tf.constant(q) for q in integers]
  sizes = [int(q.size) for q in integers]
  encode, decode = codec_ab.phase_graphs(codec_ab.MODULES[args.codec], sizes)
  datas = encode(*vectors)
  decoded, oks = decode(*datas)
  if not all(bool(ok) for ok in oks) or not all(
      np.array_equal(y.numpy(), q) for y, q in zip(decoded, integers)):
    raise SystemExit(f'{args.codec}: round trip failed')
  bits = 8 * sum(int(tf.size(d)) for d in datas)
  print(f'{args.codec}, {args.update}, step {args.step:g}: {sum(sizes):,} values, '
        f'{bits / sum(sizes):.4f} bits/parameter; {args.repeats} calls per phase')
  with tempfile.TemporaryDirectory() as scratch:
    for name, fn, inputs in (('encode', encode, vectors), ('decode', decode, datas)):
      trace_dir = os.path.join(args.trace_dir or scratch, name)
      print(format_phase(name, profile_phase(fn, inputs, args.repeats, trace_dir),
                         args.top))
  return 0


if __name__ == '__main__':
  sys.exit(main())
