"""The Stack Overflow next-word-prediction experiment: federated training with
a compressing model aggregator, logging bitrate and distortion every round.

`run(config)` trains TFF's baseline recurrent model
(`tff.simulation.baselines.stackoverflow` word prediction: Embedding ->
LSTM -> Dense -> Dense) with `tff.learning.algorithms.build_weighted_fed_avg`,
the configured aggregator as `model_aggregator`, and per-round client sampling
seeded by `(training.seed, round)`. The run directory (`output.root_dir/name`)
holds:

  config.json          the resolved config
  metrics.csv          one row per round (columns `COLUMNS`)
  tensorboard/         TensorBoard event files with the same values
  checkpoints/         `tff.program.FileProgramStateManager` states
  summary.json         final numbers
  *.png                accuracy and bits/parameter against round, accuracy
                       against cumulative uplink bytes

A run restarted with the same config resumes from its last checkpoint: rows
logged after that checkpoint are dropped from `metrics.csv` and recomputed, so
the log has no gaps and no duplicated rounds. With `checkpoint_every = 1` a
killed run loses at most the round in progress.
"""

import asyncio
import csv
import json
import math
import pathlib
import signal
import sys
import time

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
import tqdm

from tff_rdq import codecs
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import methods
from tff_rdq.experiments import plots
from tff_rdq.experiments import updates
from tff_rdq.experiments import data as data_lib
from tff_rdq import tff_internals
from tff_rdq.experiments import runtime

# With `aggregator.compare_codecs` (rdq): the bits per parameter each other
# codec would have sent for the same integers; empty otherwise.
COMPARED_CODEC_COLUMNS = tuple(f'bits_per_parameter_{name}' for name in codecs.CODEC_NAMES)
COLUMNS = (
    'round', 'clients', 'bits_per_parameter', 'uplink_bytes', 'cumulative_uplink_bytes',
    'side_info_bits', 'distortion', 'relative_distortion', 'aggregate_relative_distortion',
    'sparsity', 'step_size', 'step_size_std', 'dropped_clients', 'corrupt_clients', 'train_loss', 'train_accuracy', 'round_seconds',
    'eval_loss', 'eval_accuracy', 'eval_accuracy_without_oov',
    'eval_accuracy_without_oov_or_eos', *COMPARED_CODEC_COLUMNS,
)
_NUM_OOV_BUCKETS = 1


class ExperimentError(RuntimeError):
  """A problem the user can fix (data, run directory); the message says how."""


def load_data(config: config_lib.DataConfig):
  """(train, test) ClientData; builds a built-in corpus on first use."""
  cache_dir = pathlib.Path(config.cache_dir)
  try:
    data_lib.prepare_corpus(config.source, cache_dir)
    train, _, test = data_lib.load_client_data(cache_dir)
  except (data_lib.CorpusNotFoundError, data_lib.CorpusFormatError,
          data_lib.CorpusPreparationError) as e:
    raise ExperimentError(str(e)) from None
  return train, test


def load_vocab(config: config_lib.DataConfig, train) -> list[str]:
  """The training split's most frequent words, cached beside the corpus."""
  # Keyed by the corpus file's size and mtime, so a rebuilt corpus gets a new vocabulary.
  stat = (pathlib.Path(config.cache_dir) / 'stackoverflow.sqlite').stat()
  path = pathlib.Path(config.cache_dir) / (
      f'vocab_{config.vocab_size}_{stat.st_size}_{int(stat.st_mtime)}.txt')
  if path.exists():
    return path.read_text().split('\n')
  vocab = data_lib.build_vocab(train, config.vocab_size)
  tmp = path.with_suffix('.tmp')
  tmp.write_text('\n'.join(vocab))
  tmp.replace(path)
  return vocab


def _metrics(vocab_size: int):
  """TFF's baseline word-prediction metrics (accuracy with and without OOV/EOS)."""
  special = tff_internals.word_prediction_preprocessing.get_special_tokens(
      vocab_size, num_out_of_vocab_buckets=_NUM_OOV_BUCKETS)
  pad, oov, eos = special.padding, special.out_of_vocab, special.end_of_sentence
  return [
      tff_internals.keras_metrics.MaskedCategoricalAccuracy(name='accuracy', masked_tokens=[pad]),
      tff_internals.keras_metrics.MaskedCategoricalAccuracy(
          name='accuracy_without_oov', masked_tokens=[pad] + oov),
      tff_internals.keras_metrics.MaskedCategoricalAccuracy(
          name='accuracy_without_oov_or_eos', masked_tokens=[pad, eos] + oov),
  ]


def extended_vocab_size(vocab) -> int:
  return len(vocab) + _NUM_OOV_BUCKETS + 3  # Padding, beginning and end of sentence.


def build_keras_model(config: config_lib.ModelConfig, vocab) -> tf.keras.Model:
  return tff_internals.word_prediction_models.create_recurrent_model(
      vocab_size=extended_vocab_size(vocab), embedding_size=config.embedding_size,
      lstm_size=config.lstm_size)


def build_process(config: config_lib.ExperimentConfig, vocab, input_spec):
  def model_fn():
    return tff.learning.models.from_keras_model(
        build_keras_model(config.model, vocab), input_spec=input_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=_metrics(len(vocab)))

  training = config.training
  if training.server_optimizer == 'adam':
    server_optimizer = tff.learning.optimizers.build_adam(
        learning_rate=training.server_learning_rate)
  else:
    server_optimizer = tff.learning.optimizers.build_sgdm(
        learning_rate=training.server_learning_rate,
        momentum=training.server_momentum or None)
  return tff.learning.algorithms.build_weighted_fed_avg(
      model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(
          learning_rate=training.client_learning_rate),
      server_optimizer_fn=server_optimizer,
      model_aggregator=methods.build_factory(config.aggregator))


def sample_clients(client_ids, num_clients: int, seed: int, round_num: int) -> list[str]:
  """`num_clients` distinct clients, a function of (seed, round) only."""
  rng = np.random.default_rng([seed, round_num])
  count = min(num_clients, len(client_ids))
  return [client_ids[i] for i in sorted(rng.choice(len(client_ids), count, replace=False))]


class MetricsLog:
  """`metrics.csv` plus TensorBoard events, truncated to a resume point."""

  def __init__(self, run_dir: pathlib.Path, resume_round: int):
    self.path = run_dir / 'metrics.csv'
    self.rows = []
    if self.path.exists():
      with self.path.open() as f:
        self.rows = [r for r in csv.DictReader(f) if int(r['round']) <= resume_round]
    with self.path.open('w', newline='') as f:
      writer = csv.DictWriter(f, COLUMNS)
      writer.writeheader()
      writer.writerows(self.rows)
    self._writer = tf.summary.create_file_writer(str(run_dir / 'tensorboard'))

  @property
  def cumulative_uplink_bytes(self) -> float:
    return float(self.rows[-1]['cumulative_uplink_bytes']) if self.rows else 0.0

  def append(self, row: dict) -> None:
    row = {k: row.get(k, '') for k in COLUMNS}
    self.rows.append(row)
    with self.path.open('a', newline='') as f:
      csv.DictWriter(f, COLUMNS).writerow(row)
      f.flush()
    with self._writer.as_default(step=int(row['round'])):
      for key, value in row.items():
        if key != 'round' and value != '':
          tf.summary.scalar(key, float(value))
    self._writer.flush()


def _aggregator_row(measurements, num_parameters: int, clients: int, uncompressed: bool):
  if uncompressed:
    # TFF's MeanFactory sends float32 values and a float32 weight: computed, not measured.
    bits = clients * 32 * (num_parameters + 1)
    return dict(bits_per_parameter=32.0 * (num_parameters + 1) / num_parameters,
                uplink_bytes=bits / 8, side_info_bits=32 * clients, distortion=0.0,
                relative_distortion=0.0, aggregate_relative_distortion=0.0,
                sparsity='', step_size='', step_size_std='', dropped_clients=0,
                corrupt_clients=0, aggregated_clients=clients)
  compared = {k: float(measurements[k]) for k in COMPARED_CODEC_COLUMNS if k in measurements}
  return dict(
      **compared,
      bits_per_parameter=float(measurements['bits_per_parameter']),
      uplink_bytes=float(measurements['uplink_bits']) / 8,
      side_info_bits=int(measurements['side_info_bits']),
      distortion=float(measurements['distortion']),
      relative_distortion=float(measurements['relative_distortion']),
      aggregate_relative_distortion=float(measurements['aggregate_relative_distortion']),
      sparsity=float(measurements['sparsity']),
      step_size=float(measurements.get('step_size', float('nan'))),
      step_size_std=float(measurements.get('step_size_std', float('nan'))),
      dropped_clients=int(measurements['dropped_clients']),
      corrupt_clients=int(measurements['corrupt_clients']),
      aggregated_clients=int(measurements['clients']))


def round_warning(round_num: int, row: dict) -> str | None:
  """The one-line warning for a round that lost clients, or None."""
  corrupt, dropped = int(row['corrupt_clients']), int(row['dropped_clients'])
  if row['aggregated_clients'] == 0:
    return (f'warning: round {round_num}: no client was aggregated ({dropped} dropped for NaN/Inf,'
            f' {corrupt} corrupt); the model is unchanged.')
  if corrupt:
    return (f'warning: round {round_num}: {corrupt} of {row["clients"]} client messages were'
            ' corrupt (checksum or decoding failed) and left out of the round.')
  return None


def _check_run_dir(run_dir: pathlib.Path, resolved: dict) -> None:
  config_path = run_dir / 'config.json'
  if config_path.exists():
    previous = json.loads(config_path.read_text())
    if previous != resolved:
      raise ExperimentError(
          f'{run_dir} holds a run with a different config; resume it with the same config, '
          'or choose another name (--set name=...) or output.root_dir.')
  run_dir.mkdir(parents=True, exist_ok=True)
  config_path.write_text(json.dumps(resolved, indent=2, sort_keys=True))


class Terminated(Exception):
  pass


def _raise_terminated(signum, frame):
  del frame
  # Once: a second SIGTERM (`uv run` forwards its own to its child) must not
  # interrupt the cleanup this one starts, which stops the TFF worker.
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  raise Terminated(f'stopped by signal {signum}')


def run(config: config_lib.ExperimentConfig, progress: bool = True,
        workers: tuple[str, ...] = ()) -> dict:
  """Runs (or resumes) the experiment; returns the summary (see module doc).

  Args:
    config: The validated experiment config.
    progress: Whether to show a progress bar.
    workers: `host:port` addresses of TFF workers (`tff-rdq worker`) to split
      each round's clients across; empty for one local worker process.
  """
  run_dir = config.run_dir
  _check_run_dir(run_dir, config_lib.to_dict(config))
  tf.keras.utils.set_random_seed(config.training.seed)
  train, test = load_data(config.data)
  vocab = load_vocab(config.data, train)
  data = config.data
  train_preprocess = data_lib.make_preprocess_fn(
      vocab, batch_size=data.batch_size, sequence_length=data.sequence_length,
      num_epochs=data.client_epochs, max_elements=data.max_elements_per_client,
      shuffle_buffer_size=data.shuffle_buffer_size, seed=config.training.seed)
  eval_preprocess = data_lib.make_preprocess_fn(
      vocab, batch_size=data.eval_batch_size, sequence_length=data.sequence_length,
      shuffle_buffer_size=1)
  # The same examples in the same order in every process (sorted client ids).
  eval_data = eval_preprocess(
      data_lib.evaluation_dataset(test, data.eval_max_elements)).cache()
  client_ids = sorted(train.client_ids)
  if not client_ids:
    raise ExperimentError(f'the training split in {data.cache_dir} has no clients.')

  uncompressed = methods.is_uncompressed(config.aggregator)

  previous_handler = signal.signal(signal.SIGTERM, _raise_terminated)
  try:
    context = (runtime.remote_execution_context(workers) if workers
               else runtime.local_execution_context())
    with context:
      process = build_process(config, vocab, eval_data.element_spec)
      runtime.check_splittable(process)  # With --workers: fail now, not at round 1.
      state = process.initialize()
      num_parameters = int(sum(
          np.prod(w.shape) for w in process.get_model_weights(state).trainable))
      manager = tff.program.FileProgramStateManager(
          str(run_dir / 'checkpoints'), keep_total=2)
      saved, start_round = asyncio.run(manager.load_latest(state))
      if saved is not None:
        state = saved
      else:
        start_round = 0
      log = MetricsLog(run_dir, start_round)
      summary = _train(config, process, state, manager, log, start_round, client_ids,
                       train, train_preprocess, eval_data, vocab, num_parameters,
                       uncompressed, progress)
  finally:
    signal.signal(signal.SIGTERM, previous_handler)
  summary['num_parameters'] = num_parameters
  (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
  plots.plot_run(log.rows, run_dir, title=config.name)
  return summary


def evaluate(process, state, model_config, eval_data, vocab) -> dict:
  """Loss and TFF's baseline accuracies of the global model on the test data."""
  # A fresh Keras model: Keras refuses models built before TFF traced its own
  # Keras models in graphs.
  eval_model = build_keras_model(model_config, vocab)
  process.get_model_weights(state).assign_weights_to(eval_model)
  metrics = _metrics(len(vocab))
  loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(
      from_logits=True, reduction=tf.keras.losses.Reduction.SUM)
  # Padding is masked out of the loss, as in TFF's baseline metrics.
  total_loss, total_tokens = 0.0, 0.0
  for x, y in eval_data:
    logits = eval_model(x, training=False)
    mask = tf.cast(tf.not_equal(y, 0), tf.float32)
    total_loss += float(loss_fn(y, logits, sample_weight=mask))
    total_tokens += float(tf.reduce_sum(mask))
    for metric in metrics:
      metric.update_state(y, logits)
  results = {m.name: float(m.result()) for m in metrics}
  return {
      'eval_loss': total_loss / max(total_tokens, 1.0),
      'eval_accuracy': results['accuracy'],
      'eval_accuracy_without_oov': results['accuracy_without_oov'],
      'eval_accuracy_without_oov_or_eos': results['accuracy_without_oov_or_eos'],
  }


def _train(config, process, state, manager, log, start_round, client_ids, train,
           train_preprocess, eval_data, vocab, num_parameters, uncompressed,
           progress) -> dict:
  training = config.training
  cumulative = log.cumulative_uplink_bytes
  bar = tqdm.tqdm(total=training.rounds, initial=start_round, disable=not progress,
                  unit='round', dynamic_ncols=True)
  for round_num in range(start_round + 1, training.rounds + 1):
    sampled = sample_clients(client_ids, training.clients_per_round, training.seed, round_num)
    datasets = [train_preprocess(train.create_tf_dataset_for_client(c)) for c in sampled]
    aggregator = config.aggregator
    if round_num in aggregator.save_updates_rounds and aggregator.save_updates_clients > 0:
      count = aggregator.save_updates_clients
      updates.save_round(
          config.run_dir, round_num, build_keras_model(config.model, vocab),
          [np.asarray(w) for w in process.get_model_weights(state).trainable],
          sampled[:count], datasets[:count], training.client_learning_rate)
    start = time.perf_counter()
    output = process.next(state, datasets)
    seconds = time.perf_counter() - start
    state = output.state
    train_metrics = output.metrics['client_work']['train']
    row = dict(round=round_num, clients=len(sampled), round_seconds=seconds,
               train_loss=float(train_metrics['loss']),
               train_accuracy=float(train_metrics['accuracy']))
    row.update(_aggregator_row(output.metrics['aggregator'], num_parameters,
                               len(sampled), uncompressed))
    warning = round_warning(round_num, row)
    if warning:
      tqdm.tqdm.write(warning, file=sys.stderr)
    if not math.isfinite(row['train_loss']):
      raise ExperimentError(
          f'training diverged at round {round_num} (loss {row["train_loss"]}); '
          'lower the learning rates or the step size.')
    cumulative += row['uplink_bytes']
    row['cumulative_uplink_bytes'] = cumulative
    if training.evaluates(round_num):
      row.update(evaluate(process, state, config.model, eval_data, vocab))
    log.append(row)
    if round_num % training.checkpoint_every == 0 or round_num == training.rounds:
      asyncio.run(manager.save(state, round_num))
    bar.update(1)
    bar.set_postfix(round=round_num, bits=f'{row["bits_per_parameter"]:.3f}',
                    distortion=f'{row["distortion"]:.2e}', loss=f'{row["train_loss"]:.3f}')
  bar.close()
  rows = log.rows
  final = rows[-1] if rows else {}
  times = [float(r['round_seconds']) for r in rows[1:]] or [
      float(r['round_seconds']) for r in rows]
  return {
      'name': config.name,
      'method': config.aggregator.method,
      'rounds': int(final.get('round', 0)),
      'eval_loss': _float(final.get('eval_loss')),
      'eval_accuracy': _float(final.get('eval_accuracy')),
      'eval_accuracy_without_oov_or_eos': _float(final.get('eval_accuracy_without_oov_or_eos')),
      'mean_bits_per_parameter': float(np.mean([float(r['bits_per_parameter']) for r in rows]))
      if rows else float('nan'),
      'total_uplink_bytes': float(final.get('cumulative_uplink_bytes', 0.0)),
      'mean_distortion': float(np.mean([float(r['distortion']) for r in rows]))
      if rows else float('nan'),
      'mean_relative_distortion': float(np.mean(
          [_float(r.get('relative_distortion')) for r in rows])) if rows else float('nan'),
      'mean_aggregate_relative_distortion': float(np.mean(
          [_float(r.get('aggregate_relative_distortion')) for r in rows]))
      if rows else float('nan'),
      'corrupt_clients': int(sum(_float(r['corrupt_clients']) for r in rows
                                 if r.get('corrupt_clients') not in (None, ''))),
      **_compared_codec_means(rows),
      'median_round_seconds': float(np.median(times)) if times else float('nan'),
      # Training rounds only (`process.next`), first round included; without evaluation.
      'train_seconds': float(sum(float(r['round_seconds']) for r in rows)),
  }


def _float(value) -> float:
  return float(value) if value not in (None, '') else float('nan')


def _compared_codec_means(rows) -> dict:
  """`mean_<column>` of each `COMPARED_CODEC_COLUMNS` column the rows fill (compare_codecs)."""
  means = {}
  for column in COMPARED_CODEC_COLUMNS:
    values = [_float(r.get(column)) for r in rows]
    if values and not any(math.isnan(v) for v in values):
      means[f'mean_{column}'] = float(np.mean(values))
  return means
