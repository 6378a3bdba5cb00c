"""Benchmark: round time of FedAvg with our aggregator against TFF's plain mean.

Builds `build_weighted_fed_avg` processes from one experiment config (by
default `configs/stackoverflow_local_full.toml`: the 4,050,748-parameter model on the
local corpus): the config's aggregator with real bytes (`transport="bytes"`),
the same with `transport="count"` (closed-form bits, no coding; only for
`rdq` with the Elias-gamma codec, `--no-count` leaves it out) and
`tff.aggregators.MeanFactory` (uncompressed). It runs them in the same
process on the same sampled clients, round by round, rotating which process
goes first, so that all see the same machine load. Prints the median round
time of each (the first round, which pays tracing, excluded), the median of
the paired per-round ratios to the mean's time (overhead), and `--json` one
object with everything.
"""

import argparse
import json
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position

from tff_rdq.experiments import data as data_lib  # pylint: disable=wrong-import-position
from tff_rdq.experiments import runtime  # pylint: disable=wrong-import-position
from tff_rdq.experiments import config as config_lib  # pylint: disable=wrong-import-position
from tff_rdq.experiments import stackoverflow  # pylint: disable=wrong-import-position


def _variant(config, **aggregator):
  variant = config_lib.from_dict(config_lib.to_dict(config))
  for key, value in aggregator.items():
    setattr(variant.aggregator, key, value)
  return variant


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--config', default='configs/stackoverflow_local_full.toml')
  parser.add_argument('--rounds', type=int, default=6)
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  parser.add_argument('--no-count', action='store_true', help='leave out transport="count"')
  parser.add_argument('--json', action='store_true', help='also print one JSON object')
  args = parser.parse_args(argv)
  config = config_lib.load(args.config, args.overrides)
  train, test = stackoverflow.load_data(config.data)
  vocab = stackoverflow.load_vocab(config.data, train)
  data = config.data
  preprocess = data_lib.make_preprocess_fn(
      vocab, batch_size=data.batch_size, sequence_length=data.sequence_length,
      num_epochs=data.client_epochs, max_elements=data.max_elements_per_client,
      shuffle_buffer_size=data.shuffle_buffer_size, seed=config.training.seed)
  element_spec = preprocess(
      test.create_tf_dataset_for_client(sorted(test.client_ids)[0])).element_spec
  client_ids = sorted(train.client_ids)
  ours = config.aggregator.method
  configs = {f'{ours} (bytes)': _variant(config, transport='bytes')}
  if (ours == 'rdq' and config.aggregator.codec == 'elias_gamma' and not args.no_count):
    configs[f'{ours} (count)'] = _variant(config, transport='count')
  configs['mean'] = _variant(config, method='mean')
  names = list(configs)

  with runtime.local_execution_context():
    processes = {n: stackoverflow.build_process(c, vocab, element_spec)
                 for n, c in configs.items()}
    states = {n: p.initialize() for n, p in processes.items()}
    if f'{ours} (count)' in states:  # The same model: the same figures (a check).
      states[f'{ours} (count)'] = states[f'{ours} (bytes)']
    times = {n: [] for n in names}
    bits = {n: [] for n in names if n != 'mean'}
    for round_num in range(1, args.rounds + 1):
      sampled = stackoverflow.sample_clients(
          client_ids, config.training.clients_per_round, config.training.seed, round_num)
      datasets = [preprocess(train.create_tf_dataset_for_client(c)) for c in sampled]
      shift = (round_num - 1) % len(names)
      for name in names[shift:] + names[:shift]:
        start = time.perf_counter()
        output = processes[name].next(states[name], datasets)
        times[name].append(time.perf_counter() - start)
        states[name] = output.state
        if name in bits:
          bits[name].append(float(output.metrics['aggregator']['bits_per_parameter']))
      print(f'round {round_num}: ' + ', '.join(
          f'{n} {t[-1]:.2f} s' for n, t in times.items()), flush=True)

  counted = slice(1, None) if args.rounds > 1 else slice(None)
  median = {n: float(np.median(t[counted])) for n, t in times.items()}
  overhead = {n: float(np.median(np.divide(times[n][counted], times['mean'][counted]))) - 1
              for n in names if n != 'mean'}
  print(f'{config.training.clients_per_round} clients per round, rounds '
        f'{"2" if args.rounds > 1 else "1"}..{args.rounds}, median seconds per round; '
        'overhead: median of the paired per-round ratios to mean, minus 1')
  for name in names:
    if name == 'mean':
      print(f'  {name:>12}: {median[name]:.2f} s  (32 bits/parameter, uncompressed)')
    else:
      print(f'  {name:>12}: {median[name]:.2f} s  (mean {np.mean(bits[name]):.3f} '
            f'bits/parameter)  overhead {overhead[name]:+.1%}')
  if len(bits) == 2:
    same = bits[f'{ours} (bytes)'] == bits[f'{ours} (count)']
    print(f'  bits_per_parameter of bytes and count identical every round: {same}')
  if args.json:
    print(json.dumps(dict(config=args.config, rounds=args.rounds,
                          clients_per_round=config.training.clients_per_round,
                          times=times, median_s=median, overhead=overhead,
                          bits_per_parameter={n: float(np.mean(b)) for n, b in bits.items()})))


if __name__ == '__main__':
  main()
