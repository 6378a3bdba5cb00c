"""Benchmark: what a codec costs before its first round ends (TFF's compile).

For each codec, in a fresh process (nothing traced or compiled before), builds
`QuantizeEncodeFactory(step, codec=C)`'s aggregation process for the weights of
a config's model (its `[model]` and vocabulary size) and times, with
`--clients` clients of Laplacian updates:

  create   building the process (tracing the codec into TFF computations)
  first    the first `next`: TFF's native compiler runs Grappler over each
           TensorFlow computation, then the worker instantiates the graphs
           and runs the round
  next     the median of the `--rounds` calls after it (steady state)

`--no-static-grappler` also times each codec with TFF's compile step without
its Grappler pass (`transform_to_native_form(..., grappler_config=None)`), to
show what that pass costs; the project's runs keep TFF's compiler as it is.
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

_CODECS = ('elias_gamma', 'run_length_rans')


def measure_one(config_path, codec, step, clients, rounds, static_grappler):
  """`{create_s, first_s, next_s, bits_per_parameter, parameters}` of one codec."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  import tensorflow_federated as tff
  from tff_rdq.experiments import runtime
  from tff_rdq.aggregators import quantize_encode
  from tff_rdq.experiments import config as config_lib
  from tff_rdq.experiments import stackoverflow

  if not static_grappler:
    runtime.set_static_grappler(False)
  config = config_lib.load(config_path, [])
  vocab = [f'w{i}' for i in range(config.data.vocab_size)]
  weights = stackoverflow.build_keras_model(config.model, vocab).trainable_weights
  value_type = tff.types.to_type([tff.TensorType(np.float32, w.shape) for w in weights])
  rng = np.random.default_rng(0)
  updates = [[(rng.laplace(size=w.shape) * 0.01).astype(np.float32) for w in weights]
             for _ in range(clients)]
  with runtime.local_execution_context():
    start = time.perf_counter()
    process = quantize_encode.QuantizeEncodeFactory(step, codec=codec).create(
        value_type, tff.TensorType(np.float32))
    state = process.initialize()
    create_s = time.perf_counter() - start
    times = []
    for _ in range(rounds + 1):
      start = time.perf_counter()
      output = process.next(state, updates, [1.0] * clients)
      times.append(time.perf_counter() - start)
  return dict(create_s=create_s, first_s=times[0], next_s=float(np.median(times[1:])),
              bits_per_parameter=float(output.measurements['bits_per_parameter']),
              parameters=int(sum(w.shape.num_elements() for w in weights)))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--config', default='configs/stackoverflow_local.toml',
                      help='config whose model is measured')
  parser.add_argument('--codecs', nargs='+', default=list(_CODECS), choices=_CODECS)
  parser.add_argument('--step', type=float, default=0.01, help='quantization step')
  parser.add_argument('--clients', type=int, default=3)
  parser.add_argument('--rounds', type=int, default=3, help='rounds after the first')
  parser.add_argument('--no-static-grappler', action='store_true',
                      help='also time each codec without TFF compile step\'s Grappler pass')
  parser.add_argument('--one', nargs=2, metavar=('CODEC', 'GRAPPLER'), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.clients < 1 or args.rounds < 1:
    parser.error('--clients and --rounds must be at least 1')
  if not os.path.exists(args.config):
    parser.error(f'{args.config} does not exist')
  if args.one:
    result = measure_one(args.config, args.one[0], args.step, args.clients, args.rounds,
                         args.one[1] == 'on')
    print('RESULT ' + json.dumps(result), flush=True)
    return 0
  print(f'{args.config}: {args.clients} clients of Laplacian updates, step {args.step:g}; '
        'seconds (create: tracing; first: TFF compile + first round; next: median of '
        f'{args.rounds} rounds after it), each codec in a fresh process', flush=True)
  for codec in args.codecs:
    for grappler in ('on', 'off') if args.no_static_grappler else ('on',):
      done = subprocess.run(
          [sys.executable, os.path.abspath(__file__), '--config', args.config,
           '--step', str(args.step), '--clients', str(args.clients),
           '--rounds', str(args.rounds), '--one', codec, grappler],
          capture_output=True, text=True, check=False)
      lines = [l for l in done.stdout.splitlines() if l.startswith('RESULT ')]
      if done.returncode or not lines:
        raise SystemExit(f'{codec} (static Grappler {grappler}) failed:\n'
                         + done.stderr[-2000:])
      r = json.loads(lines[-1][len('RESULT '):])
      print(f'{codec:16s} static Grappler {grappler:3s}: create {r["create_s"]:6.1f}  '
            f'first {r["first_s"]:6.1f}  next {r["next_s"]:6.2f}  '
            f'({r["bits_per_parameter"]:.3f} bits/parameter, {r["parameters"]:,} parameters)',
            flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
