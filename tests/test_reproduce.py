"""Tests of the reproduction sweep: config parsing, a tiny sweep, the claims report."""

import csv
import json
import math
import pathlib

import pytest

from tff_rdq.experiments import claims
from tff_rdq.experiments import cli
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import reproduce

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY_SETTINGS = '''
[[setting]]
name = "a_fedavg"
corpus = "local"
optimizer = "fedavg"
save_updates = {rounds = [1, 2], clients = 1, steps = [1.0, 4.0, 16.0]}
[[setting.sweep]]
method = "mean"
[[setting.sweep]]
method = "rdq"
settings = [{step_size = 0.002}]

[[setting]]
name = "b_fedadam"
corpus = "local"
optimizer = "fedadam"
set = {"training.server_optimizer" = "adam", "training.server_learning_rate" = 0.01}
[[setting.sweep]]
method = "rdq"
settings = [{step_size = 0.002}, {step_size = 0.01, "training.seed" = 1}]
'''


def _write(tmp_path, corpus, settings):
  text = (REPO / 'configs' / 'tiny.toml').read_text().replace('name = "tiny"', 'name = "rep"')
  text = text.replace('[data]', f'[data]\nsource = "stackoverflow"\ncache_dir = "{corpus}"')
  text = text.replace('rounds = 3', 'rounds = 2')
  text += f'\n[output]\nroot_dir = "{tmp_path / "runs"}"\n' + settings
  path = tmp_path / 'rep.toml'
  path.write_text(text)
  return path


def test_repository_config_loads():
  loaded = reproduce.load(REPO / 'configs' / 'reproduce_local.toml')
  # The first sweep: no pre-registered rules, its report where it always was.
  assert loaded.analysis is None and loaded.docs_dir == 'docs/reproduction'
  runs = loaded.runs
  settings = {r.setting for r in runs}
  assert settings == {'local_fedadam', 'sotu_fedadam', 'local_fedavg', 'sotu_fedavg'}
  assert sum(r.saves_updates for r in runs) == 4
  for setting in ('local_fedadam', 'sotu_fedadam'):
    seeds = [r.config.training.seed for r in runs
             if r.setting == setting and r.config.aggregator.method == 'mean']
    assert seeds == [0, 1], setting
  assert all(r.config.data.source == 'sotu' for r in runs if r.corpus == 'sotu')
  assert all(r.config.training.server_optimizer == 'sgd' for r in runs
             if r.optimizer == 'fedavg')


def test_settings_and_runs(tmp_path):
  runs = reproduce.load(_write(tmp_path, tmp_path, TINY_SETTINGS)).runs
  assert [(r.setting, r.label) for r in runs] == [
      ('a_fedavg', 'mean'), ('a_fedavg', 'rdq_step_size=0.002'),
      ('b_fedadam', 'rdq_step_size=0.002'), ('b_fedadam', 'rdq_step_size=0.01_training.seed=1')]
  assert [r.saves_updates for r in runs] == [False, True, False, False]
  saver = runs[1].config
  assert saver.aggregator.save_updates_rounds == [1, 2]
  assert saver.aggregator.save_updates_clients == 1
  assert runs[1].frontier_steps == (1.0, 4.0, 16.0) and runs[0].frontier_steps == ()
  assert saver.run_dir == tmp_path / 'runs' / 'rep' / 'a_fedavg' / 'rdq_step_size=0.002'
  assert runs[2].config.training.server_optimizer == 'adam'
  assert runs[0].config.training.server_optimizer == 'sgd'
  assert runs[3].config.training.seed == 1 and runs[3].config.aggregator.step_size == 0.01
  # The sweep alternates between the settings, updates-saving runs first.
  assert [(r.setting, r.label) for r in reproduce.run_order(runs)] == [
      ('a_fedavg', 'rdq_step_size=0.002'), ('a_fedavg', 'mean'),
      ('b_fedadam', 'rdq_step_size=0.002'), ('b_fedadam', 'rdq_step_size=0.01_training.seed=1')]


@pytest.mark.parametrize('settings, message', [
    ('', 'at least one'),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\nseed = 1\n'
     '[[setting.sweep]]\nmethod = "mean"\n', r"unknown keys \['seed'\]"),
    ('[[setting]]\nname = "a"\ncorpus = "local"\n[[setting.sweep]]\nmethod = "mean"\n',
     r"missing keys \['optimizer'\]"),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n'
     'set = {"training.nope" = 1}\n[[setting.sweep]]\nmethod = "mean"\n', 'training.nope'),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n'
     'set = {"nope.key" = 1}\n[[setting.sweep]]\nmethod = "mean"\n', r'unknown section \[nope\]'),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n'
     'set = {seed = 1}\n[[setting.sweep]]\nmethod = "mean"\n', 'not a section.key'),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n'
     'save_updates = {rounds = [1], clients = 2, every = 3}\n[[setting.sweep]]\nmethod = "mean"\n',
     r"\['every'\]"),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n'
     'save_updates = {rounds = [1], clients = 2, steps = [0.0]}\n[[setting.sweep]]\n'
     'method = "rdq"\n', 'save_updates.steps'),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n'
     'save_updates = {rounds = [1], clients = 2}\n[[setting.sweep]]\nmethod = "mean"\n',
     'save_updates.run None'),
    ('[[setting]]\nname = "a"\ncorpus = "local"\noptimizer = "x"\n[[setting.sweep]]\n'
     'method = "rdq"\nsettings = [{"training.rounds" = -1}]\n', 'training.rounds'),
    ('[[setting]]\nname = "a"\ncorpus = "l"\noptimizer = "x"\n[[setting.sweep]]\nmethod = "mean"\n'
     '[[setting]]\nname = "a"\ncorpus = "l"\noptimizer = "x"\n[[setting.sweep]]\nmethod = "mean"\n',
     'two settings'),
])
def test_bad_settings_are_rejected(tmp_path, settings, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    reproduce.load(_write(tmp_path, tmp_path, settings))


def test_bits_at_interpolates_in_log_log():
  rows = [dict(d=0.2, bits_per_parameter=1.0), dict(d=0.05, bits_per_parameter=4.0),
          dict(d=0.8, bits_per_parameter=0.25)]
  assert reproduce.bits_at(rows, 'd', 0.1) == pytest.approx(2.0)
  assert reproduce.bits_at(rows, 'd', 0.2) == pytest.approx(1.0)
  assert math.isnan(reproduce.bits_at(rows, 'd', 0.01))


@pytest.mark.slow
def test_tiny_sweep_writes_report_and_skips_finished_runs(tmp_path, small_corpus, capfd,
                                                          fake_runs):
  # One real run: the sweep's first, the one that saves updates (the frontier is
  # measured on them); the others are made from it by `fake_runs` (conftest.py).
  path = _write(tmp_path, small_corpus, TINY_SETTINGS)
  docs = tmp_path / 'docs' / 'reproduction'
  assert cli.main(['reproduce', str(path), '--no-progress', '--docs-dir', str(docs)]) == 0
  out = capfd.readouterr().out
  assert out.count(': running') == 4 and 'elapsed' in out
  runs = reproduce.load(path).runs
  # Each run got its own config, the updates-saving run first and real.
  assert [real for _, real in fake_runs.calls] == [True, False, False, False]
  assert [c for c, _ in fake_runs.calls] == [r.config for r in reproduce.run_order(runs)]
  assert fake_runs.calls[0][0].aggregator.save_updates_rounds == [1, 2]
  for run in runs:
    copied = docs / 'runs' / run.setting / run.label
    for name in ('summary.json', 'metrics.csv', 'config.json', 'wall_seconds.json'):
      assert (copied / name).is_file(), copied / name
    assert json.loads((copied / 'summary.json').read_text())['rounds'] == 2
  frontier = reproduce.read_frontier(docs / 'frontier' / 'a_fedavg.csv')
  assert [(r['round'], r['client'], r['step']) for r in frontier] == [
      (round_num, 0, step) for round_num in (1, 2) for step in (1.0, 4.0, 16.0)]
  for row in frontier:
    assert row['bits_per_parameter'] > 0 and row['tensor_relative_distortion'] > 0
  report = (tmp_path / 'docs' / 'reproduction.md').read_text()
  assert 'Runs finished: 4 of 4' in report and 'Missing' not in report
  for name in ('runs.csv', 'claim1.csv', 'claim2.csv', 'one_bit.csv', 'bits_to_match.csv',
               'frontier_curves.png', 'a_fedavg_accuracy_vs_bits.png'):
    assert (docs / name).is_file(), name
  assert '**Claim 1 (frontier consistent):' in report

  # A rerun skips every finished run.
  assert cli.main(['reproduce', str(path), '--no-progress', '--docs-dir', str(docs)]) == 0
  out = capfd.readouterr().out
  assert out.count('finished earlier, skipped') == 4 and ': running' not in out
  assert (tmp_path / 'docs' / 'reproduction.md').read_text() == report

  # The report from the copies alone, with a run missing.
  (docs / 'runs' / 'b_fedadam' / 'rdq_step_size=0.002' / 'summary.json').unlink()
  assert cli.main(['reproduce', str(path), '--report-only', '--docs-dir', str(docs)]) == 0
  report = (tmp_path / 'docs' / 'reproduction.md').read_text()
  assert 'Runs finished: 3 of 4' in report
  assert '- run `b_fedadam/rdq_step_size=0.002`' in report

  # `--only` runs the named settings alone (the missing b_fedadam run stays
  # missing) and names a setting that does not exist.
  assert cli.main(['reproduce', str(path), '--no-progress', '--docs-dir', str(docs),
                   '--only', 'a_fedavg']) == 0
  out = capfd.readouterr().out
  assert out.count('finished earlier, skipped') == 2 and ': running' not in out
  assert '[1/2] a_fedavg/' in out and 'b_fedadam' not in out
  assert 'Runs finished: 3 of 4' in (tmp_path / 'docs' / 'reproduction.md').read_text()
  assert cli.main(['reproduce', str(path), '--no-progress', '--docs-dir', str(docs),
                   '--only', 'c_fedavg']) == 2
  assert "no setting named 'c_fedavg'" in capfd.readouterr().err
  assert len(fake_runs.calls) == 4  # No run after the first sweep.


SYNTHETIC_SETTINGS = '''
[[setting]]
name = "main"
corpus = "local"
optimizer = "fedadam"
save_updates = {rounds = [1, 2], clients = 2}
[[setting.sweep]]
method = "mean"
settings = [{}, {"training.seed" = 1}]
[[setting.sweep]]
method = "rdq"
settings = [{step_size = 0.1}, {step_size = 0.3}, {step_size = 1.0}, {step_size = 3.0}]
[[setting.sweep]]
method = "top_k"
settings = [{options = {fraction = 0.01}}, {options = {fraction = 0.1}}]

[[setting]]
name = "other"
corpus = "sotu"
optimizer = "fedavg"
save_updates = {rounds = [1, 2], clients = 2}
[[setting.sweep]]
method = "rdq"
settings = [{step_size = 0.3}]
'''

# label -> (bits, eval loss, accuracy w/o OOV/EOS, mean relative distortion)
SYNTHETIC = {
    'mean': (32.0, 5.0, 0.060, 0.0),
    'mean_training.seed=1': (32.0, 5.1, 0.056, 0.0),
    'rdq_step_size=0.1': (3.0, 5.05, 0.058, 0.01),
    'rdq_step_size=0.3': (1.2, 5.1, 0.057, 0.05),
    'rdq_step_size=1.0': (0.5, 5.4, 0.050, 0.2),
    'rdq_step_size=3.0': (0.2, 6.0, 0.030, 0.6),
    'top_k_fraction=0.01': (0.6, 5.7, 0.040, 0.5),
    'top_k_fraction=0.1': (4.0, 5.3, 0.050, 0.1),
}


def _fake_results(docs, runs):
  for run in runs:
    if run.setting != 'main':
      continue  # 'other' stays missing.
    bits, loss, accuracy, distortion = SYNTHETIC[run.label]
    directory = docs / 'runs' / run.setting / run.label
    directory.mkdir(parents=True)
    (directory / 'config.json').write_text(json.dumps(config_lib.to_dict(run.config)))
    (directory / 'wall_seconds.json').write_text(json.dumps({'seconds': 60.0}))
    (directory / 'summary.json').write_text(json.dumps(dict(
        name=run.label, method=run.config.aggregator.method, rounds=2, eval_loss=loss,
        eval_accuracy=accuracy + 0.1, eval_accuracy_without_oov_or_eos=accuracy,
        mean_bits_per_parameter=bits, total_uplink_bytes=1e6, mean_distortion=1e-9,
        mean_relative_distortion=distortion, median_round_seconds=1.0, num_parameters=1000)))
  # Frontier rows of 4 updates per setting: bits = scale * d ** -0.5 (two steps per update).
  for setting, corpus, optimizer, scale in (('main', 'local', 'fedadam', 1.0),
                                            ('other', 'sotu', 'fedavg', 1.5)):
    rows = []
    for round_num in (1, 2):
      for client in (0, 1):
        factor = scale * (1 + 0.1 * client + 0.05 * round_num)
        for d in (0.001, 0.5):
          rows.append(dict(setting=setting, corpus=corpus, optimizer=optimizer,
                           round=round_num, client=client, client_id=f'c{client}',
                           parameters=1000, step=d, step_size=d,
                           bits_per_parameter=factor * d ** -0.5, relative_distortion=d,
                           tensor_relative_distortion=2 * d))
    (docs / 'frontier').mkdir(parents=True, exist_ok=True)
    with (docs / 'frontier' / f'{setting}.csv').open('w', newline='') as f:
      writer = csv.DictWriter(f, reproduce.FRONTIER_FIELDS)
      writer.writeheader()
      writer.writerows(rows)


def _csv(path):
  with path.open() as f:
    return list(csv.DictReader(f))


def test_report_numbers_match_the_claims_functions(tmp_path):
  runs = reproduce.load(_write(tmp_path, tmp_path, SYNTHETIC_SETTINGS)).runs
  docs = tmp_path / 'reproduction'
  _fake_results(docs, runs)
  path = reproduce.report(runs, docs)
  text = path.read_text()
  assert path == tmp_path / 'reproduction.md'
  assert 'Runs finished: 8 of 9' in text and '- run `other/rdq_step_size=0.3`' in text
  assert reproduce.reporting.NO_ANALYSIS_NOTE in text  # No [analysis]: no paired verdicts.
  assert 'Sweep wall time so far: 8.0 min' in text

  compressed = [label for label in SYNTHETIC if not label.startswith('mean')]
  x = [SYNTHETIC[k][3] for k in compressed]
  y = [SYNTHETIC[k][1] for k in compressed]
  (claim2,) = _csv(docs / 'claim2.csv')
  assert float(claim2['all_spearman']) == pytest.approx(claims.spearman(x, y))
  low, high = claims.bootstrap_spearman(x, y)
  assert float(claim2['all_low']) == pytest.approx(low)
  assert float(claim2['all_high']) == pytest.approx(high)
  assert float(claim2['all_p']) == pytest.approx(claims.permutation_p_spearman(x, y))
  assert float(claim2['all_p']) == pytest.approx(1 / 720)  # 6 runs, ranks in the same order.
  assert 'Claim 2 (distortion predicts performance): supported' in text
  ours = [k for k in compressed if k.startswith('rdq')]
  assert float(claim2['ours_spearman']) == pytest.approx(
      claims.spearman([SYNTHETIC[k][3] for k in ours], [SYNTHETIC[k][1] for k in ours]))

  curve = [(SYNTHETIC[k][0], SYNTHETIC[k][1]) for k in ours]
  matches = {r['baseline']: r for r in _csv(docs / 'bits_to_match.csv')}
  for label in ('top_k_fraction=0.01', 'top_k_fraction=0.1'):
    bits, status = claims.bits_to_match(curve, SYNTHETIC[label][1])
    assert float(matches[label]['ours_bits']) == pytest.approx(bits)
    assert matches[label]['status'] == status
    assert matches[label]['outcome'] == 'ours better'
    assert float(matches[label]['seed_spread']) == pytest.approx(0.1)
  assert 'Ours beats the baselines at equal bits: supported' in text

  (one_bit,) = _csv(docs / 'one_bit.csv')
  assert one_bit['ours'] == 'rdq_step_size=0.3'
  mean_accuracy = (0.060 + 0.056) / 2
  assert float(one_bit['acc_wo_gap']) == pytest.approx((mean_accuracy - 0.057) / mean_accuracy)
  assert float(one_bit['acc_wo_spread']) == pytest.approx(0.004 / mean_accuracy)
  assert 'About 1 bit/parameter costs no accuracy: supported' in text

  claim1 = {(r['normalization'], float(r['target'])): r for r in _csv(docs / 'claim1.csv')}
  for key, scale in (('relative_distortion', 1.0), ('tensor_relative_distortion', 2 ** 0.5)):
    bits = [s * scale * (1 + 0.1 * c + 0.05 * r) * 0.1 ** -0.5
            for s in (1.0, 1.5) for r in (1, 2) for c in (0, 1)]
    row = claim1[(key, 0.1)]
    assert int(row['updates']) == 8
    assert float(row['cv']) == pytest.approx(claims.coefficient_of_variation(bits))
    # Shares are of log2 bits, the corpus entering first (its one-way share).
    shares = claims.variance_shares([math.log2(b) for b in bits], {'corpus': [0] * 4 + [1] * 4})
    assert float(row['share_corpus']) == pytest.approx(shares['corpus'])
    # The two corpora differ by a factor only: the same CV within each.
    assert float(row['cv_within_corpus']) == pytest.approx(
        claims.coefficient_of_variation(bits[:4]))
  assert 'Most consistent normalization' in text
  assert (docs / 'frontier_curves.png').is_file()
  assert (docs / 'main_accuracy_vs_bits.png').is_file()


def test_outcome_against_a_baseline_uses_the_seed_spread():
  ours = [(0.25, 6.0), (0.5, 5.5), (1.0, 5.0)]
  # On ours' curve (5.5 at 0.5 bits): a tie within a spread of 0.1 ...
  assert reproduce._outcome(ours, 5.5, 0.5, 0.1) == 'within seed spread'
  # ... and with no spread (one seed), ours reaches it with no more bits.
  assert reproduce._outcome(ours, 5.5, 0.5, 0.0) == 'ours better'
  assert reproduce._outcome(ours, 5.8, 0.5, 0.1) == 'ours better'
  assert reproduce._outcome(ours, 5.2, 0.5, 0.1) == 'baseline better'
  assert reproduce._outcome(ours, 4.0, 3.0, 0.1) == 'baseline better'  # Ours never gets there.
  assert reproduce._outcome(ours, 6.5, 0.1, 0.1) == 'not comparable'  # Fewer bits than ours.


@pytest.mark.slow
def test_summary_goes_between_the_readme_markers(tmp_path, capsys):
  config = _write(tmp_path, tmp_path, SYNTHETIC_SETTINGS)
  runs = reproduce.load(config).runs
  docs = tmp_path / 'reproduction'
  _fake_results(docs, runs)
  reproduce.report(runs, docs)
  summary = (docs / 'summary.md').read_text()
  assert 'Runs finished: 8 of 9 (8.0 min' in summary
  # Every finished run is a row; a baseline's row carries its outcome from the report.
  matches = {r['baseline']: r for r in _csv(docs / 'bits_to_match.csv')}
  for label in SYNTHETIC:
    assert f'| main | {label} |' in summary
  row = next(line for line in summary.splitlines() if '| top_k_fraction=0.01 |' in line)
  assert matches['top_k_fraction=0.01']['outcome'] in row
  assert 'Claim 2 (distortion predicts performance): supported' in summary

  readme = tmp_path / 'README.md'
  readme.write_text(f'# Title\n\nbefore\n{reproduce.README_BEGIN}\nold numbers\n'
                    f'{reproduce.README_END}\nafter\n')
  for _ in range(2):  # Rewriting replaces; it never adds a second copy.
    assert cli.main(['reproduce', str(config), '--report-only', '--docs-dir', str(docs),
                     '--readme', str(readme)]) == 0
  text = readme.read_text()
  # The summary's links, written from docs/, are rebased to the README's folder.
  rebased = reproduce.markdown.rebase_links(summary, docs, tmp_path)
  assert '](reproduction.md)' in rebased and '](../reproduction.md)' in summary
  assert 'old numbers' not in text and text.count(rebased.strip()) == 1
  assert text.startswith('# Title\n\nbefore\n') and text.endswith(f'{reproduce.README_END}\nafter\n')

  (tmp_path / 'NO_MARKERS.md').write_text('# Title\n')
  with pytest.raises(config_lib.ConfigError, match='no reproduction summary markers'):
    reproduce.update_readme(tmp_path / 'NO_MARKERS.md', docs / 'summary.md')
  assert cli.main(['reproduce', str(config), '--report-only', '--docs-dir', str(docs),
                   '--readme', str(tmp_path / 'NO_MARKERS.md')]) == 2
  assert 'no reproduction summary markers' in capsys.readouterr().err


def test_readme_summary_is_the_saved_report():
  # The results page's sweep numbers are the report's summary, regenerated
  # with `--report-only --readme docs/results.md` whenever the report is.
  root = pathlib.Path(__file__).resolve().parents[1]
  readme = (root / 'docs/results.md').read_text()
  begin, end = reproduce.readme_summary(readme)
  assert readme[begin:].startswith(reproduce.README_BEGIN)
  block = readme[begin + len(reproduce.README_BEGIN):end]
  docs = root / 'docs/reproduction'
  assert block.strip() == reproduce.markdown.rebase_links(
      (docs / 'summary.md').read_text(), docs, root / 'docs').strip()
