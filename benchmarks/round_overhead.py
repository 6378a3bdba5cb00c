"""Benchmark: round time of FedAvg with our aggregator against TFF's plain mean.

Builds two `build_weighted_fed_avg` processes from one experiment config (by
default `configs/stackoverflow_local.toml`: the 4,050,748-parameter model on the
local corpus), one with the config's aggregator and one with
`tff.aggregators.MeanFactory` (uncompressed), and runs them in the same process
on the same sampled clients, alternating round by round so that both see the
same machine load. Prints the median round time of each (first round, which
pays tracing, excluded) and the overhead ratio.
"""

import argparse
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position

from tff_rdq.experiments import config as config_lib  # pylint: disable=wrong-import-position
from tff_rdq.experiments import stackoverflow  # pylint: disable=wrong-import-position
from tff_rdq import data as data_lib  # pylint: disable=wrong-import-position
from tff_rdq import runtime  # pylint: disable=wrong-import-position


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--config', default='configs/stackoverflow_local.toml')
  parser.add_argument('--rounds', type=int, default=6)
  parser.add_argument('--set', dest='overrides', action='append', default=[])
  args = parser.parse_args(argv)
  config = config_lib.load(args.config, args.overrides)
  train, test = stackoverflow.load_data(config.data)
  vocab = stackoverflow.load_vocab(config.data, train)
  data = config.data
  preprocess = data_lib.make_preprocess_fn(
      vocab, batch_size=data.batch_size, sequence_length=data.sequence_length,
      num_epochs=data.client_epochs, max_elements=data.max_elements_per_client,
      shuffle_buffer_size=data.shuffle_buffer_size, seed=config.training.seed)
  element_spec = preprocess(test.create_tf_dataset_from_all_clients().take(1)).element_spec
  client_ids = sorted(train.client_ids)
  mean_config = config_lib.from_dict(config_lib.to_dict(config))
  mean_config.aggregator.method = 'mean'

  with runtime.local_execution_context():
    processes = {
        config.aggregator.method: stackoverflow.build_process(config, vocab, element_spec),
        'mean': stackoverflow.build_process(mean_config, vocab, element_spec),
    }
    states = {name: p.initialize() for name, p in processes.items()}
    times = {name: [] for name in processes}
    bits = []
    for round_num in range(1, args.rounds + 1):
      sampled = stackoverflow.sample_clients(
          client_ids, config.training.clients_per_round, config.training.seed, round_num)
      datasets = [preprocess(train.create_tf_dataset_for_client(c)) for c in sampled]
      for name, process in processes.items():
        start = time.perf_counter()
        output = process.next(states[name], datasets)
        times[name].append(time.perf_counter() - start)
        states[name] = output.state
        if name != 'mean':
          bits.append(float(output.metrics['aggregator']['bits_per_parameter']))
      print(f'round {round_num}: ' + ', '.join(
          f'{n} {t[-1]:.2f} s' for n, t in times.items()), flush=True)

  ours = config.aggregator.method
  median = {name: float(np.median(t[1:] or t)) for name, t in times.items()}
  print(f'{config.training.clients_per_round} clients per round, rounds 2..{args.rounds}, '
        f'median seconds per round')
  print(f'  {ours:>6}: {median[ours]:.2f} s  (mean {np.mean(bits):.3f} bits/parameter)')
  print(f'  {"mean":>6}: {median["mean"]:.2f} s  (32 bits/parameter, uncompressed)')
  print(f'  overhead of {ours} over mean: {median[ours] / median["mean"] - 1:+.1%}')


if __name__ == '__main__':
  main()
