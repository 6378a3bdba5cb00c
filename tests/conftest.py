"""Shared pytest fixtures: one TFF execution context per session (compiling
without TFF's static Grappler pass, except inside `static_grappler()`), no
worker left behind; one tiny end-to-end run shared by the tests that only read
what it wrote (`tiny_run`); a stand-in for `stackoverflow.run` for the sweep tests (`fake_runs`).

Markers (`pyproject.toml`): `slow` (end-to-end runs and other tests of more than a
few seconds; `pytest -m "not slow"` is the quick subset) and `subprocess` (starts
Python or CLI processes).
"""

import contextlib
import csv
import dataclasses
import gc
import io
import json
import os
import pathlib
import shutil
import zlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_rdq import tff_internals
from tff_rdq.experiments import runtime
from tff_rdq.experiments.data import sqlite_format

REPO = pathlib.Path(__file__).resolve().parents[1]
WORDS = 'the a model layer tensor update client server round bits step size code'.split()


@pytest.fixture(scope='session', autouse=True)
def tff_context():
  """A local C++ execution context, stopped (with its worker) after the session."""
  runtime._refuse_new_local_workers(False)  # pylint: disable=protected-access
  # Unit tests compile without TFF's static Grappler pass: it only optimizes,
  # and it costs most of a codec computation's first call. The end-to-end
  # runs that stand for the experiment turn it back on (`static_grappler`).
  runtime.set_static_grappler(False)
  tff.backends.native.set_sync_local_cpp_execution_context()
  yield
  runtime.stop_tff_workers()
  runtime.set_static_grappler(True)
  gc.collect()


@contextlib.contextmanager
def static_grappler():
  """The `with` body's TFF contexts compile as the experiment does, with TFF's
  static Grappler pass (contexts installed inside it, e.g. by a runner)."""
  runtime.set_static_grappler(True)
  try:
    yield
  finally:
    runtime.set_static_grappler(False)


@pytest.fixture(autouse=True)
def local_context_available():
  """Reinstalls a local context where a runner (e.g. `tff_rdq.experiments.stackoverflow.run`)
  left the can't-run-anything context that `stop_tff_workers` installs."""
  if isinstance(tff.framework.get_context_stack().current,
                tff_internals.RuntimeErrorContext):
    # `runtime.stop_late_workers` (an interrupted CLI run) refuses new workers.
    runtime._refuse_new_local_workers(False)  # pylint: disable=protected-access
    tff.backends.native.set_sync_local_cpp_execution_context()
  yield


@pytest.fixture(scope='session')
def small_corpus(tmp_path_factory):
  """A generated `stackoverflow.sqlite`: 12 clients of sentences from a tiny grammar."""
  directory = tmp_path_factory.mktemp('corpus')
  rng = np.random.default_rng(0)
  records = []
  for c in range(12):
    for split, count in (('train', 12), ('heldout', 2), ('test', 3)):
      for _ in range(count):
        start = int(rng.integers(len(WORDS) - 6))
        tokens = ' '.join(WORDS[start:start + int(rng.integers(3, 7))])
        records.append(dict(
            split_name=split, client_id=f'client_{c:02d}', creation_date='2002-08-22',
            score=0, tags='t', title='title', tokens=tokens, type='question'))
  sqlite_format.write_stackoverflow_sqlite(directory / 'stackoverflow.sqlite', records)
  return directory


@pytest.fixture
def update_path(tmp_path):
  """A small saved update (`.npz` as `aggregator.save_updates_*` writes): a
  64 by 48 matrix with about 30 % nonzero rows and a vector of 300."""
  rng = np.random.default_rng(3)
  matrix = rng.laplace(size=(64, 48)) * (rng.random((64, 1)) < 0.3)
  path = tmp_path / 'update.npz'
  np.savez(path, tensor_00=matrix.astype(np.float32),
           tensor_01=rng.laplace(size=300).astype(np.float32))
  return path


# ---------------------------------------------------------------------------
# One tiny end-to-end run, shared.

TINY_TOML = REPO / 'configs' / 'tiny.toml'
# 5 rounds: evaluated after rounds 2 and 4 (every 2) and 5 (the end). 10 of the
# corpus's 36 test examples: runs that evaluated on other examples would differ.
TINY_RUN_SETTINGS = ('training.rounds=5', 'data.eval_max_elements=10')


@dataclasses.dataclass
class TinyRun:
  """What `tff-rdq run configs/tiny.toml` wrote, and how to make the same config."""
  settings: list  # Its `--set` values, all but output.root_dir.
  root: pathlib.Path
  returncode: int | None = None
  stdout: str = ''

  @property
  def run_dir(self) -> pathlib.Path:
    return self.root / 'tiny'

  def rows(self) -> list[dict]:
    return read_rows(self.run_dir)

  def summary(self) -> dict:
    return json.loads((self.run_dir / 'summary.json').read_text())

  def args(self, root) -> list[str]:
    """The CLI's `--set` arguments of the same config under `root` (run dir `root/tiny`)."""
    args = []
    for setting in [*self.settings, f'output.root_dir="{root}"']:
      args += ['--set', setting]
    return args

  def config(self, root, name='tiny'):
    """The same config under `root`, named `name` (run dir `root/name`)."""
    from tff_rdq.experiments import config as config_lib  # pylint: disable=g-import-not-at-top
    config = config_lib.load(TINY_TOML, [*self.settings, f'output.root_dir="{root}"'])
    config.name = name
    return config


def read_rows(run_dir) -> list[dict]:
  """The rows of `run_dir/metrics.csv`, as strings."""
  with (pathlib.Path(run_dir) / 'metrics.csv').open(newline='') as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope='session')
def tiny_run(small_corpus, tmp_path_factory):
  """`tff-rdq run configs/tiny.toml` on `small_corpus` (in this process, once),
  for the tests that only read what an uninterrupted run writes: its rows are
  also the reference that a resumed run and other codecs' runs must match."""
  from tff_rdq.experiments import cli  # pylint: disable=g-import-not-at-top
  run = TinyRun(settings=['data.source="stackoverflow"', f'data.cache_dir="{small_corpus}"',
                          *TINY_RUN_SETTINGS],
                root=tmp_path_factory.mktemp('tiny_run'))
  stdout = run.root / 'stdout.txt'
  # A real file: TFF's worker needs a real stdout file descriptor.
  with stdout.open('w') as out, contextlib.redirect_stdout(out), static_grappler():
    run.returncode = cli.main(['run', str(TINY_TOML), '--no-progress'] + run.args(run.root))
  run.stdout = stdout.read_text()
  return run


# ---------------------------------------------------------------------------
# A stand-in for `stackoverflow.run` in the sweep tests.


def _config_json(config) -> str:
  from tff_rdq.experiments import config as config_lib  # pylint: disable=g-import-not-at-top
  return json.dumps(config_lib.to_dict(config), indent=2, sort_keys=True)


def _csv_text(header, rows) -> str:
  out = io.StringIO(newline='')
  writer = csv.DictWriter(out, header)
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def _float(value) -> float:
  return float(value) if value not in (None, '') else float('nan')


def _summarize(rows, config, template: dict) -> dict:
  """`stackoverflow.run`'s summary of `rows` (strings, as in metrics.csv): the keys
  it computes from the rows, the others as in `template` (a real run's summary)."""
  final = rows[-1]
  times = [float(r['round_seconds']) for r in rows[1:]] or [
      float(r['round_seconds']) for r in rows]
  computed = {
      'name': config.name,
      'method': config.aggregator.method,
      'rounds': int(final['round']),
      'eval_loss': _float(final['eval_loss']),
      'eval_accuracy': _float(final['eval_accuracy']),
      'eval_accuracy_without_oov_or_eos': _float(final['eval_accuracy_without_oov_or_eos']),
      'mean_bits_per_parameter': float(np.mean([float(r['bits_per_parameter']) for r in rows])),
      'total_uplink_bytes': float(final['cumulative_uplink_bytes']),
      'mean_distortion': float(np.mean([float(r['distortion']) for r in rows])),
      'mean_relative_distortion': float(np.mean(
          [_float(r['relative_distortion']) for r in rows])),
      'mean_aggregate_relative_distortion': float(np.mean(
          [_float(r.get('aggregate_relative_distortion')) for r in rows])),
      'corrupt_clients': int(sum(_float(r['corrupt_clients']) for r in rows
                                 if r.get('corrupt_clients') not in (None, ''))),
      'median_round_seconds': float(np.median(times)),
      'train_seconds': float(sum(float(r['round_seconds']) for r in rows)),
  }
  # `mean_bits_per_parameter_<codec>` of the codecs the run compared (every row has one).
  compared = 'mean_bits_per_parameter_'
  for key in rows[0]:
    values = [_float(r.get(key)) for r in rows]
    if key.startswith('bits_per_parameter_') and not any(np.isnan(values)):
      computed[f'mean_{key}'] = float(np.mean(values))
  summary = {k: computed.get(k, v) for k, v in template.items()
             if not k.startswith(compared) or k in computed}
  summary.update((k, v) for k, v in computed.items() if k.startswith(compared))
  return summary


class FakeRuns:
  """`stackoverflow.run` for sweep tests: the first call runs for real; each
  later call writes into its run directory what a real run writes there and a
  sweep reads (`config.json`, `metrics.csv`, `summary.json`, `updates/` when the
  config saves updates) and returns the summary, all made from the real run's
  files: the same columns, keys and number formats (checked against the real
  run's files when it ends), its rows with the values a run of this config
  changes changed:

  - uncompressed methods: the bits TFF's mean sends, no distortion;
  - `rdq` at a fixed step, when the real run saved updates: its bits and
    distortion scaled by what this config's step and codec give against the
    real run's on those real updates (`frontier.quantize_update`), so a
    coarser step costs fewer bits and more distortion as in a real run;
  - other methods: bits and distortion scaled by a factor of the run's name;
  - losses and accuracies scaled by a factor of the run's name (runs differ).

  `calls` lists `(config, real)` of every call, to check what the sweep asked for.
  """

  def __init__(self, real_run):
    self._real_run = real_run
    self.calls = []
    self.template = None

  def __call__(self, config, progress=True, workers=()):
    if self.template is None:
      summary = self._real_run(config, progress=progress, workers=workers)
      self.calls.append((config, True))
      self._read_template(config, summary)
      return summary
    self.calls.append((config, False))
    return self._fake(config)

  def _read_template(self, config, summary):
    run_dir = config.run_dir
    rows = read_rows(run_dir)
    with (run_dir / 'metrics.csv').open(newline='') as f:
      header = next(csv.reader(f))
    # What the fake writes is what the real run wrote, byte for byte.
    assert (run_dir / 'config.json').read_text() == _config_json(config)
    assert (run_dir / 'metrics.csv').read_bytes().decode() == _csv_text(header, rows)
    real_summary = json.loads((run_dir / 'summary.json').read_text())
    assert real_summary == json.loads(json.dumps(summary))
    assert (run_dir / 'summary.json').read_text() == json.dumps(real_summary, indent=2)
    recomputed = _summarize(rows, config, real_summary)
    for key, value in real_summary.items():
      if isinstance(value, float):
        assert recomputed[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
      else:
        assert recomputed[key] == value, key
    updates = None
    if (run_dir / 'updates' / 'index.json').is_file():
      from tff_rdq.experiments import updates as updates_lib  # pylint: disable=g-import-not-at-top
      updates = [(entry, [np.asarray(t, np.float32).reshape(-1) for t in tensors])
                 for entry, tensors in updates_lib.load_updates(run_dir)]
    self.template = dict(config=config, header=header, rows=rows, summary=real_summary,
                         updates=updates, run_dir=run_dir)

  def _coded(self, aggregator, round_num):
    """(bytes, squared error) of `aggregator`'s rdq on the real updates of `round_num`."""
    from tff_rdq.experiments import frontier  # pylint: disable=g-import-not-at-top
    updates = self.template['updates']
    chosen = [flat for entry, flat in updates if int(entry['round']) == round_num] or [
        flat for entry, flat in updates if entry['round'] == updates[0][0]['round']]
    total_bytes, total_error = 0, 0.0
    for flat in chosen:
      m = frontier.quantize_update(flat, aggregator.step_size, aggregator.rounding,
                                   aggregator.codec, aggregator.normalization)
      total_bytes += m['bytes']
      total_error += m['squared_error']
    return total_bytes, total_error

  def _fake(self, config):
    from tff_rdq.experiments import methods  # pylint: disable=g-import-not-at-top
    t = self.template
    rows = [dict(r) for r in t['rows']]
    assert config.training.rounds == len(rows), (
        'the fake run copies the real run\'s rounds; give every sweep run as many')
    num_parameters = t['summary']['num_parameters']
    by_name = zlib.crc32(config.name.encode())
    quality = 1 + (by_name % 7) / 100
    real_aggregator = t['config'].aggregator
    a = config.aggregator
    scaled_by_codec = (
        a.method == real_aggregator.method == 'rdq' and t['updates'] is not None
        and a.step_control == real_aggregator.step_control == 'fixed')
    cumulative = 0.0
    for row in rows:
      round_num, clients = int(row['round']), int(row['clients'])
      compared = [k for k in row if k.startswith('bits_per_parameter_')]
      if methods.is_uncompressed(a):
        row.update(bits_per_parameter=32.0 * (num_parameters + 1) / num_parameters,
                   uplink_bytes=clients * 4.0 * (num_parameters + 1), side_info_bits=32 * clients,
                   distortion=0.0, relative_distortion=0.0, aggregate_relative_distortion=0.0,
                   sparsity='', step_size='', step_size_std='', dropped_clients=0,
                   corrupt_clients=0, **dict.fromkeys(compared, ''))
      else:
        if scaled_by_codec:
          ours_bytes, ours_error = self._coded(a, round_num)
          real_bytes, real_error = self._coded(real_aggregator, round_num)
          bits, distortion = ours_bytes / real_bytes, ours_error / real_error
          row.update(step_size=float(np.float32(a.step_size)))
        else:
          bits = 1 / (1 + (by_name % 50) / 100)
          distortion = 1 + (by_name % 30) / 10
        row.update(bits_per_parameter=float(row['bits_per_parameter']) * bits,
                   uplink_bytes=float(row['uplink_bytes']) * bits,
                   distortion=float(row['distortion']) * distortion,
                   relative_distortion=float(row['relative_distortion']) * distortion,
                   aggregate_relative_distortion=float(
                       row['aggregate_relative_distortion']) * distortion)
        # What another codec would have sent: only where this config compares it.
        for key in compared:
          asked = a.method == 'rdq' and key.removeprefix('bits_per_parameter_') in (
              a.compare_codecs)
          row[key] = float(row[key]) * bits if asked and row[key] != '' else ''
      cumulative += float(row['uplink_bytes'])
      row['cumulative_uplink_bytes'] = cumulative
      for key in ('train_loss', 'eval_loss'):
        if row[key] != '':
          row[key] = float(row[key]) * quality
      for key in ('train_accuracy', 'eval_accuracy', 'eval_accuracy_without_oov',
                  'eval_accuracy_without_oov_or_eos'):
        if row[key] != '':
          row[key] = float(row[key]) / quality
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / 'config.json').write_text(_config_json(config))
    with (run_dir / 'metrics.csv').open('w', newline='') as f:
      f.write(_csv_text(t['header'], rows))
    if a.save_updates_rounds and a.save_updates_clients > 0:
      real = t['config'].aggregator
      assert (a.save_updates_rounds, a.save_updates_clients) == (
          real.save_updates_rounds, real.save_updates_clients), (
              'the fake run copies the real run\'s saved updates; save the same ones')
      shutil.copytree(t['run_dir'] / 'updates', run_dir / 'updates', dirs_exist_ok=True)
    summary = _summarize(read_rows(run_dir), config, t['summary'])
    (run_dir / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


@pytest.fixture
def fake_runs(monkeypatch):
  """`stackoverflow.run`, where the sweeps look it up, replaced by a `FakeRuns`
  (the first run real, the others made from it)."""
  from tff_rdq.experiments import stackoverflow  # pylint: disable=g-import-not-at-top
  fake = FakeRuns(stackoverflow.run)
  monkeypatch.setattr(stackoverflow, 'run', fake)
  return fake
