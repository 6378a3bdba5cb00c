"""Tests of the comparison sweep: config validation, Pareto front, a tiny sweep."""

import csv
import pathlib

import pytest

from tff_rdq.experiments import cli
from tff_rdq.experiments import compare
from tff_rdq.experiments import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _write(tmp_path, corpus, sweeps, aggregator=''):
  text = (REPO / 'configs' / 'tiny.toml').read_text().replace('name = "tiny"', 'name = "cmp"')
  text = text.replace('[data]', f'[data]\nsource = "stackoverflow"\ncache_dir = "{corpus}"')
  text = text.replace('[aggregator]', f'[aggregator]\n{aggregator}')
  text = text.replace('rounds = 3', 'rounds = 2')
  text += f'\n[output]\nroot_dir = "{tmp_path / "runs"}"\n' + sweeps
  path = tmp_path / 'cmp.toml'
  path.write_text(text)
  return path


def test_pareto_front():
  points = [(1.0, 0.5), (2.0, 0.6), (2.0, 0.4), (3.0, 0.6), (0.5, 0.1)]
  assert compare.pareto_front(points, higher_is_better=True) == [True, True, False, False, True]
  assert compare.pareto_front(points, higher_is_better=False) == [False, False, False, False, True]


def test_bad_sweeps_are_rejected(tmp_path, small_corpus):
  with pytest.raises(config_lib.ConfigError, match='at least one'):
    compare.load(_write(tmp_path, small_corpus, ''))
  with pytest.raises(config_lib.ConfigError, match='unknown keys'):
    compare.load(_write(tmp_path, small_corpus, '[[sweep]]\nmethod = "rdq"\nstep = 1\n'))
  with pytest.raises(config_lib.ConfigError, match='aggregator.step_size'):
    compare.load(_write(tmp_path, small_corpus,
                        '[[sweep]]\nmethod = "rdq"\nsettings = [{step_size = -1.0}]\n'))


@pytest.mark.slow
def test_tiny_sweep_writes_table_and_plots(tmp_path, small_corpus, capfd, fake_runs):
  # One real run (the first); the others are made from it by `fake_runs`
  # (conftest.py), their bits and distortion from their own step and codec on
  # the update the real run saved.
  path = _write(tmp_path, small_corpus, '''
[[sweep]]
method = "rdq"
settings = [{step_size = 0.001}, {step_size = 0.01, codec = "rans"}]
[[sweep]]
method = "qsgd"
settings = [{options = {levels = 2}}]
''', aggregator='save_updates_rounds = [1]\nsave_updates_clients = 1')
  assert cli.main(['compare', str(path), '--no-progress']) == 0
  # Each setting reached its run, the first of them real.
  assert [(c.name, real) for c, real in fake_runs.calls] == [
      ('rdq_step_size=0.001', True), ('rdq_codec=rans_step_size=0.01', False),
      ('qsgd_levels=2', False)]
  (real, _), (rans, _), (qsgd, _) = fake_runs.calls
  assert (real.aggregator.step_size, real.aggregator.codec) == (0.001, 'elias_gamma')
  assert (rans.aggregator.step_size, rans.aggregator.codec) == (0.01, 'rans')
  assert (qsgd.aggregator.method, qsgd.aggregator.options) == ('qsgd', {'levels': 2})
  assert {c.run_dir.parent for c, _ in fake_runs.calls} == {tmp_path / 'runs' / 'cmp'}
  out_dir = tmp_path / 'runs' / 'cmp'
  with (out_dir / 'comparison.csv').open() as f:
    rows = list(csv.DictReader(f))
  assert [r['label'] for r in rows] == [
      'rdq_step_size=0.001', 'rdq_codec=rans_step_size=0.01', 'qsgd_levels=2']
  for r in rows:
    assert 0 < float(r['mean_bits_per_parameter']) < 32
    assert float(r['total_uplink_bytes']) > 0
  # A coarser step costs fewer bits and more distortion.
  assert float(rows[1]['mean_bits_per_parameter']) < float(rows[0]['mean_bits_per_parameter'])
  assert float(rows[1]['mean_distortion']) > float(rows[0]['mean_distortion'])
  for name in ('comparison.md', 'accuracy_vs_bits.png', 'distortion_vs_bits.png'):
    assert (out_dir / name).is_file()
  assert 'rdq_step_size=0.001' in capfd.readouterr().out
