"""End-to-end tests of the experiment runner and the `tff-rdq` CLI on generated data.

Runs are shared where tests only read what a run wrote: `tiny_run` (conftest.py)
is one uninterrupted `tff-rdq run configs/tiny.toml` of 5 rounds on 10 test
examples; the column checks read it, and it is the reference that the run
stopped by SIGTERM and resumed (`interrupted_run`) and the `run_length_rans`
run must match.
"""

import contextlib
import csv
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

import conftest

from tff_rdq.experiments import cli
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import stackoverflow

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = REPO / 'configs' / 'tiny.toml'


@pytest.fixture(name='corpus')
def _corpus(small_corpus):
  return small_corpus


def _overrides(corpus, root, rounds=3):
  return [f'data.source="stackoverflow"', f'data.cache_dir="{corpus}"',
          f'output.root_dir="{root}"', f'training.rounds={rounds}']


def _rows(run_dir):
  with (run_dir / 'metrics.csv').open() as f:
    return list(csv.DictReader(f))


def _config_with(corpus, root, name, rounds=3):
  config = config_lib.load(TINY, _overrides(corpus, root, rounds))
  config.name = name
  return config


@pytest.mark.slow
def test_cli_run_writes_all_columns(tiny_run):
  assert tiny_run.returncode == 0
  run_dir = tiny_run.run_dir
  rows = _rows(run_dir)
  assert [int(r['round']) for r in rows] == [1, 2, 3, 4, 5]
  assert list(rows[0]) == list(stackoverflow.COLUMNS)
  for r in rows:
    assert 0 < float(r['bits_per_parameter']) < 32
    assert float(r['uplink_bytes']) > 0
    assert 0 < float(r['distortion']) < 1e-3
    assert 0 <= float(r['sparsity']) <= 1
    assert float(r['step_size']) == pytest.approx(0.002)
    assert np.isfinite(float(r['train_loss']))
    assert 0 <= float(r['train_accuracy']) <= 1
    assert float(r['round_seconds']) > 0
  cumulative = np.cumsum([float(r['uplink_bytes']) for r in rows])
  np.testing.assert_allclose([float(r['cumulative_uplink_bytes']) for r in rows], cumulative)
  # Evaluation every 2 rounds and at the end.
  assert [r['eval_accuracy'] != '' for r in rows] == [False, True, False, True, True]
  assert 0 <= float(rows[-1]['eval_accuracy_without_oov_or_eos']) <= 1
  for name in ('config.json', 'summary.json', 'accuracy_loss_bits_vs_round.png',
               'accuracy_vs_uplink_bytes.png'):
    assert (run_dir / name).is_file(), name
  assert list((run_dir / 'tensorboard').iterdir())
  summary = json.loads((run_dir / 'summary.json').read_text())
  assert summary['rounds'] == 5
  assert summary['total_uplink_bytes'] == pytest.approx(cumulative[-1])
  assert 'summary:' in tiny_run.stdout


@pytest.mark.slow
def test_uncompressed_mean_trains_like_near_lossless_rdq(corpus, tmp_path):
  """TFF's uncompressed mean aggregates the same updates as rdq at a step so
  fine that quantization is negligible: the same clients, the same losses
  after the first aggregate, and 32 bits per value and weight against rdq's
  fewer."""
  mean = _config_with(corpus, tmp_path, 'mean', rounds=2)
  mean.aggregator.method = 'mean'
  mean_summary = stackoverflow.run(mean, progress=False)
  fine = _config_with(corpus, tmp_path, 'fine', rounds=2)
  fine.aggregator.step_size = 1e-7
  fine_summary = stackoverflow.run(fine, progress=False)
  mean_rows, fine_rows = _rows(mean.run_dir), _rows(fine.run_dir)
  num_parameters = mean_summary['num_parameters']
  assert num_parameters == fine_summary['num_parameters'] > 1000
  for m, f in zip(mean_rows, fine_rows):
    assert float(m['uplink_bytes']) == 3 * 4 * (num_parameters + 1)
    assert 0 < float(f['distortion']) < 1e-14
    assert float(f['bits_per_parameter']) < 32
  # Round 1 trains from the same initial model; round 2 from the aggregate:
  # equal round-2 losses and final evaluation mean equal aggregates.
  assert float(mean_rows[0]['train_loss']) == pytest.approx(float(fine_rows[0]['train_loss']),
                                                            rel=1e-6)
  assert float(mean_rows[1]['train_loss']) == pytest.approx(float(fine_rows[1]['train_loss']),
                                                            rel=1e-4)
  assert mean_summary['eval_loss'] == pytest.approx(fine_summary['eval_loss'], rel=1e-4)
  assert float(mean_rows[1]['train_loss']) != pytest.approx(float(mean_rows[0]['train_loss']),
                                                            rel=1e-3)


@pytest.mark.slow
def test_bit_budget_step_control_runs(corpus, tmp_path):
  # Two rounds: the controller sets round 2's step from round 1's rates.
  config = _config_with(corpus, tmp_path, 'budget', rounds=2)
  config.aggregator.step_control = 'bit_budget'
  config.aggregator.step_control_options = {'target_bits': 2.0, 'initial': 0.002}
  stackoverflow.run(config, progress=False)
  steps = [float(r['step_size']) for r in _rows(config.run_dir)]
  assert steps[0] == pytest.approx(0.002)
  assert len(set(steps)) > 1  # The controller moved the step.


def _process_group(pgid: int) -> list[int]:
  """PIDs of the live processes in process group `pgid` (Linux /proc)."""
  pids = []
  for entry in os.listdir('/proc'):
    if entry.isdigit():
      try:
        fields = pathlib.Path(f'/proc/{entry}/stat').read_text().rsplit(')', 1)[1].split()
      except OSError:
        continue
      if fields[0] not in ('Z', 'X') and int(fields[2]) == pgid:
        pids.append(int(entry))
  return pids


def _checkpoint_rounds(run_dir) -> list[int]:
  """The rounds of the checkpoints in `run_dir/checkpoints` (`program_state_R`)."""
  directory = run_dir / 'checkpoints'
  names = [p.name for p in directory.iterdir()] if directory.is_dir() else []
  return sorted(int(m.group(1)) for m in (re.search(r'_(\d+)$', n) for n in names) if m)


@pytest.fixture(scope='module')
def interrupted_run(tiny_run, tmp_path_factory):
  """`tiny_run`'s config as a `tff-rdq run` process (in its own process group,
  with its TFF worker) stopped by SIGTERM after its second round, then resumed
  by the same command (in this process). What each step left, for the tests."""
  root = tmp_path_factory.mktemp('interrupted')
  command = [sys.executable, '-m', 'tff_rdq.experiments.cli', 'run', str(TINY),
             '--no-progress'] + tiny_run.args(root)
  env = dict(os.environ, PYTHONPATH=str(REPO))
  process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  run_dir = root / 'tiny'
  result = types.SimpleNamespace(run_dir=run_dir)
  try:
    deadline = time.monotonic() + 600  # Generous: a loaded machine is slow.
    while not ((run_dir / 'metrics.csv').exists() and len(_rows(run_dir)) >= 2):
      assert process.poll() is None, 'the run ended before it could be stopped'
      assert time.monotonic() < deadline, 'the run logged no rounds in time'
      time.sleep(0.1)
    # Twice, as under `uv run`, which forwards its own SIGTERM to the child.
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    if process.poll() is None:
      process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    result.returncode, result.stderr = process.returncode, stderr.decode()
    # The TFF worker was in the run's process group.
    result.left_in_group = _process_group(process.pid)
  finally:
    if _process_group(process.pid):
      os.killpg(process.pid, signal.SIGKILL)
      process.wait()
  result.rows_when_stopped = _rows(run_dir)
  result.checkpoints_when_stopped = _checkpoint_rounds(run_dir)
  with (root / 'resume_out.txt').open('w') as out, contextlib.redirect_stdout(
      out), contextlib.redirect_stderr(out), conftest.static_grappler():
    result.resume_returncode = cli.main(
        ['run', str(TINY), '--no-progress'] + tiny_run.args(root))
  result.resume_output = (root / 'resume_out.txt').read_text()
  result.rows = _rows(run_dir)
  return result


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigterm_stops_the_run_and_its_worker(interrupted_run):
  run = interrupted_run
  assert run.returncode == 130
  assert 'interrupted; rerun the same command to resume' in run.stderr
  # Nothing of the run's process group (its TFF worker) is left.
  assert run.left_in_group == []
  # Stopped mid-run, checkpointed up to a logged round.
  stopped_at = len(run.rows_when_stopped)
  assert 2 <= stopped_at < 5
  assert run.checkpoints_when_stopped
  assert 1 <= run.checkpoints_when_stopped[-1] <= stopped_at


@pytest.mark.slow
@pytest.mark.subprocess
def test_resume_after_sigterm_gives_same_rows(interrupted_run, tiny_run):
  """A run stopped mid-way and restarted matches an uninterrupted run."""
  run = interrupted_run
  assert run.resume_returncode == 0, run.resume_output
  rows = run.rows
  assert [int(r['round']) for r in rows] == [1, 2, 3, 4, 5]
  # Resumed, not started over: the checkpointed rounds' rows (their times too)
  # are the stopped process's own.
  resumed_from = run.checkpoints_when_stopped[-1]
  assert rows[:resumed_from] == run.rows_when_stopped[:resumed_from]
  reference = tiny_run.rows()
  assert len(reference) == len(rows)
  for ours, ref in zip(rows, reference):
    for key in stackoverflow.COLUMNS:
      if key == 'round_seconds':
        continue
      if ref[key] == '':
        assert ours[key] == ''
      else:
        assert float(ours[key]) == pytest.approx(float(ref[key]), rel=1e-4, abs=1e-9), key


@pytest.mark.slow
@pytest.mark.subprocess
def test_two_runs_evaluate_on_the_same_examples(interrupted_run, tiny_run):
  # Both on 10 of the corpus's 36 test examples: a differently shuffled client
  # order would pick other examples and give other numbers. The stopped run
  # evaluated in another process, and again in this one after resuming.
  columns = ('eval_loss', 'eval_accuracy', 'eval_accuracy_without_oov',
             'eval_accuracy_without_oov_or_eos')
  results = [[[r[c] for c in columns] for r in rows]
             for rows in (tiny_run.rows(), interrupted_run.rows)]
  assert results[0] == results[1]
  assert any(v != '' for row in results[0] for v in row)


@pytest.mark.parametrize('override,message', [
    ('training.rounds=0', 'training.rounds: must be > 0'),
    ('training.roundz=3', 'unknown key training.roundz'),
    ('aggregator.rounding="nearest"', 'aggregator.rounding: must be one of'),
    ('aggregator.method="gzip"', "unknown method 'gzip'"),
    ('training.rounds="many"', 'training.rounds: expected int'),
])
def test_config_errors_are_one_line(override, message, corpus, tmp_path, capsys):
  argv = ['run', str(TINY), '--no-progress', '--set',
          f'output.root_dir="{tmp_path}"', '--set', f'data.cache_dir="{corpus}"',
          '--set', 'data.source="stackoverflow"', '--set', override]
  assert cli.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert message in err and '\n' not in err


def test_missing_data_and_config_are_one_line_errors(tmp_path, capsys):
  argv = ['run', str(TINY), '--set', f'output.root_dir="{tmp_path}"',
          '--set', f'data.cache_dir="{tmp_path / "nothing"}"', '--set', 'data.source="stackoverflow"']
  assert cli.main(argv) == 2
  assert 'stackoverflow.sqlite' in capsys.readouterr().err
  assert cli.main(['run', str(tmp_path / 'absent.toml')]) == 2
  assert 'does not exist' in capsys.readouterr().err


@pytest.mark.slow
def test_saved_update_matches_tff_client_update(corpus, tmp_path):
  """The eagerly recomputed client update equals the one TFF's FedAvg applied."""
  from tff_rdq.experiments import updates
  from tff_rdq.experiments import data as data_lib
  config = _config_with(corpus, tmp_path, 'upd', rounds=1)
  config.training.server_learning_rate = 1.0
  config.aggregator.method = 'mean'
  train, _ = stackoverflow.load_data(config.data)
  vocab = stackoverflow.load_vocab(config.data, train)
  preprocess = data_lib.make_preprocess_fn(
      vocab, batch_size=config.data.batch_size, sequence_length=config.data.sequence_length,
      max_elements=config.data.max_elements_per_client, seed=0)
  dataset = preprocess(train.create_tf_dataset_for_client(sorted(train.client_ids)[0]))
  process = stackoverflow.build_process(config, vocab, dataset.element_spec)
  state = process.initialize()
  start = [np.asarray(w) for w in process.get_model_weights(state).trainable]
  after = process.next(state, [dataset]).state
  applied = [np.asarray(w) - s for w, s in zip(process.get_model_weights(after).trainable, start)]
  # One client, mean aggregation, server SGD at learning rate 1: the global
  # model moves by exactly that client's update.
  update, examples = updates.client_update(
      stackoverflow.build_keras_model(config.model, vocab), start, dataset,
      config.training.client_learning_rate)
  assert examples > 0
  for ours, tffs in zip(update, applied):
    np.testing.assert_allclose(ours, tffs, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_prepare_data_unwritable_cache_dir_is_one_line(tmp_path):
  # A regular file where a directory is needed: no user can create it.
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  command = [sys.executable, '-m', 'tff_rdq.experiments.cli', 'prepare-data',
             '--cache-dir', str(blocker / 'corpus')]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  # TensorFlow's start-up registration lines are not shown either.
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]
  assert result.stderr.startswith('tff-rdq: error: Cannot write the corpus to ')
  assert 'cuBLAS' not in result.stderr and 'Traceback' not in result.stderr


@pytest.mark.slow
def test_fedavg_with_run_length_rans_trains_like_elias_gamma_in_fewer_bits(tiny_run, tmp_path):
  """A short FedAvg run with the context-modelled coder: both codecs are
  lossless, so the same quantized updates give the same losses and
  distortion; `run_length_rans` is never larger than Elias-gamma, and on this
  model's updates it is smaller. The Elias-gamma run is `tiny_run` (the same
  config with the default codec): its first 2 rounds, evaluated after round 2."""
  config = tiny_run.config(tmp_path, 'run_length_rans')
  assert config.aggregator.codec == 'elias_gamma'  # What tiny_run ran.
  config.aggregator.codec = 'run_length_rans'
  config.training.rounds = 2
  with conftest.static_grappler():  # As tiny_run compiled: equal floats.
    summary = stackoverflow.run(config, progress=False)
  rows = {'elias_gamma': tiny_run.rows()[:2], 'run_length_rans': _rows(config.run_dir)}
  assert [int(r['round']) for r in rows['run_length_rans']] == [1, 2]
  for eg, rlr in zip(rows['elias_gamma'], rows['run_length_rans']):
    for key in ('train_loss', 'distortion', 'sparsity', 'step_size'):
      assert float(rlr[key]) == float(eg[key]), key
    assert float(rlr['uplink_bytes']) < float(eg['uplink_bytes'])
  assert summary['eval_loss'] == float(rows['elias_gamma'][1]['eval_loss'])
