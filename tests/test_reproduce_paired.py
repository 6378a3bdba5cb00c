"""Tests of the paired sweep: seeds and `[analysis]` in the config, the paired
analysis on synthetic runs (`reproduce.paired`), and one paired report."""

import csv
import json
import math
import pathlib

import pytest

from tff_rdq.experiments import claims
from tff_rdq.experiments import cli
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import verdicts
from tff_rdq.experiments import reproduce
from tff_rdq.experiments.reproduce import paired

REPO = pathlib.Path(__file__).resolve().parents[1]
SETTINGS = verdicts.AnalysisSettings(last_evals=2, min_seeds=3, equivalence_margin=0.05,
                                     claim1_tolerance=0.25)

ANALYSIS = '''
[analysis]
last_evals = 2
min_seeds = 3
alpha = 0.05
equivalence_margin = 0.05
claim1_tolerance = 0.25
'''

# Ours also measures what run_length_rans would send (the baselines do not read the key).
PAIRED_SETTINGS = '''
[[setting]]
name = "main"
corpus = "local"
optimizer = "fedadam"
seeds = [0, 1, 2]
set = {"aggregator.compare_codecs" = ["run_length_rans"]}
save_updates = {rounds = [1, 2], clients = 1, steps = [1.0, 4.0]}
[[setting.sweep]]
method = "mean"
[[setting.sweep]]
method = "rdq"
settings = [{step_size = 0.002}, {step_size = 0.02}]
[[setting.sweep]]
method = "top_k"
settings = [{options = {fraction = 0.1}}]

[[setting]]
name = "single"
corpus = "local"
optimizer = "fedavg"
[[setting.sweep]]
method = "mean"
'''


def _write(tmp_path, corpus, settings, analysis=ANALYSIS, docs_dir=True):
  """A tiny paired config: `configs/tiny.toml` for 2 rounds, evaluated after each.

  `docs_dir`: True for `tmp_path/docs/paired`, None for none, else the TOML value.
  """
  text = (REPO / 'configs' / 'tiny.toml').read_text().replace('name = "tiny"',
                                                             'name = "paired"')
  text = text.replace('[data]', f'[data]\nsource = "stackoverflow"\ncache_dir = "{corpus}"')
  text = text.replace('rounds = 3', 'rounds = 2').replace('eval_every = 2', 'eval_every = 1')
  if docs_dir is True:
    docs_dir = f'"{tmp_path / "docs" / "paired"}"'
  top = f'docs_dir = {docs_dir}\n' if docs_dir is not None else ''
  text = top + text + analysis + f'\n[output]\nroot_dir = "{tmp_path / "runs"}"\n' + settings
  path = tmp_path / 'paired.toml'
  path.write_text(text)
  return path


# ---------------------------------------------------------------------------
# The config.


def test_seeds_expand_each_arm_and_pair_the_runs(tmp_path):
  loaded = reproduce.load(_write(tmp_path, tmp_path, PAIRED_SETTINGS))
  assert loaded.analysis == SETTINGS
  assert loaded.docs_dir == str(tmp_path / 'docs' / 'paired')
  main = [r for r in loaded.runs if r.setting == 'main']
  arms = ['mean', 'rdq_step_size=0.002', 'rdq_step_size=0.02', 'top_k_fraction=0.1']
  # Each arm once per seed, seeds consecutive, labelled ARM_seed=S.
  assert [(r.arm, r.seed) for r in main] == [(arm, s) for arm in arms for s in (0, 1, 2)]
  assert [r.label for r in main] == [f'{r.arm}_seed={r.seed}' for r in main]
  assert all(r.config.training.seed == r.seed for r in main)
  assert len({r.config.run_dir for r in loaded.runs}) == len(loaded.runs)
  # The updates-saving run defaults to ours' first run: its first arm, seed 0.
  assert [r.label for r in main if r.saves_updates] == [arms[1] + '_seed=0']
  # A setting without seeds: one run per arm, labelled as the arm, the base's seed.
  (single,) = [r for r in loaded.runs if r.setting == 'single']
  assert (single.label, single.arm, single.seed) == ('mean', 'mean', 0)


def test_run_order_keeps_arms_whole(tmp_path):
  runs = reproduce.load(_write(tmp_path, tmp_path, PAIRED_SETTINGS)).runs
  order = [(r.setting, r.arm, r.seed) for r in reproduce.run_order(runs)]
  rdq = 'rdq_step_size=0.002'
  # Round-robin over settings, the saver first; then mean's seeds, then whole arms.
  assert order[:5] == [('main', rdq, 0), ('main', 'mean', 0), ('single', 'mean', 0),
                       ('main', 'mean', 1), ('main', 'mean', 2)]
  main = [(arm, seed) for setting, arm, seed in order if setting == 'main']
  assert main[4:6] == [(rdq, 1), (rdq, 2)]
  assert sorted(order) == sorted((r.setting, r.arm, r.seed) for r in runs)


def test_config_without_analysis_loads_with_the_default_docs_dir(tmp_path):
  loaded = reproduce.load(_write(tmp_path, tmp_path, PAIRED_SETTINGS, analysis='',
                                docs_dir=None))
  assert loaded.analysis is None and loaded.docs_dir == 'docs/reproduction'


@pytest.mark.parametrize('analysis, message', [
    (ANALYSIS.replace('min_seeds = 3', 'min_seeds = 2'), 'analysis.min_seeds'),
    (ANALYSIS.replace('alpha = 0.05\n', ''), None),  # alpha has a default
    (ANALYSIS.replace('last_evals = 2\n', ''), 'analysis.last_evals is required'),
    (ANALYSIS + 'best_of = 8\n', 'unknown key analysis.best_of'),
    (ANALYSIS.replace('last_evals = 2', 'last_evals = 3'),
     r'evaluates 2 times .* fewer than analysis.last_evals=3'),
], ids=['min_seeds', 'alpha_default', 'missing', 'unknown', 'too_few_evaluations'])
def test_bad_analysis_is_one_line(tmp_path, analysis, message):
  path = _write(tmp_path, tmp_path, PAIRED_SETTINGS, analysis=analysis)
  if message is None:
    assert reproduce.load(path).analysis.alpha == 0.05
    return
  with pytest.raises(config_lib.ConfigError, match=message) as info:
    reproduce.load(path)
  assert '\n' not in str(info.value)


def test_bad_docs_dir_is_one_line(tmp_path):
  with pytest.raises(config_lib.ConfigError, match='docs_dir must be a directory path') as info:
    reproduce.load(_write(tmp_path, tmp_path, PAIRED_SETTINGS, docs_dir='3'))
  assert '\n' not in str(info.value)


@pytest.mark.parametrize('change, message', [
    (('seeds = [0, 1, 2]', 'seeds = [0, 0, 1]'), 'seeds must be a list of distinct'),
    (('seeds = [0, 1, 2]', 'seeds = [0, -1]'), 'seeds must be'),
    (('seeds = [0, 1, 2]', 'seeds = 3'), 'seeds must be'),
    (('settings = [{options = {fraction = 0.1}}]',
      'settings = [{options = {fraction = 0.1}, "training.seed" = 4}]'), 'sets training.seed'),
])
def test_bad_seeds_are_rejected(tmp_path, change, message):
  path = _write(tmp_path, tmp_path, PAIRED_SETTINGS.replace(*change))
  with pytest.raises(config_lib.ConfigError, match=message) as info:
    reproduce.load(path)
  assert '\n' not in str(info.value)


def test_repository_paired_config():
  loaded = reproduce.load(REPO / 'configs' / 'reproduce_paired_local.toml')
  assert loaded.analysis is not None and loaded.docs_dir != 'docs/reproduction'
  old = reproduce.load(REPO / 'configs' / 'reproduce_local.toml')
  # Its runs live apart from the first sweep's.
  assert not {r.config.run_dir for r in loaded.runs} & {r.config.run_dir for r in old.runs}
  seeds = {}
  for run in loaded.runs:
    seeds.setdefault((run.setting, run.arm), []).append(run.seed)
    # The primary metric's evaluations, and no other.
    training = run.config.training
    assert [r for r in range(1, training.rounds + 1) if training.evaluates(r)] == [
        65, 70, 75, 80]
  for setting in ('local_fedadam', 'sotu_fedadam'):
    arms = {arm: s for (name, arm), s in seeds.items() if name == setting}
    assert all(s == [0, 1, 2] for s in arms.values()), setting  # Every verdict arm.
    assert list(arms)[0] == 'mean'
  assert sum(r.saves_updates for r in loaded.runs) == 4


@pytest.mark.parametrize('eval_from, rounds, expected', [
    (0, 12, [5, 10, 12]),  # Every eval_every rounds, and the last.
    (65, 80, [65, 70, 75, 80]),
    (7, 12, [10, 12]),
])
def test_evaluation_rounds(eval_from, rounds, expected):
  training = config_lib.TrainingConfig(rounds=rounds, eval_every=5, eval_from=eval_from)
  assert [r for r in range(1, rounds + 1) if training.evaluates(r)] == expected


def test_a_copied_run_is_finished_whatever_keys_were_added_since(tmp_path):
  (run,) = [r for r in reproduce.load(_write(tmp_path, tmp_path, PAIRED_SETTINGS)).runs
            if r.setting == 'single']
  copied = tmp_path / 'docs' / 'runs' / run.setting / run.label
  copied.mkdir(parents=True)
  (copied / 'summary.json').write_text(json.dumps({'rounds': 2}))
  saved = config_lib.to_dict(run.config)
  # Saved before `training.eval_from` and `aggregator.compare_codecs` existed.
  del saved['training']['eval_from'], saved['aggregator']['compare_codecs']
  (copied / 'config.json').write_text(json.dumps(saved))
  assert reproduce.finished_summary(tmp_path / 'docs', run) == {'rounds': 2}
  saved['training']['seed'] = 7  # Another run.
  (copied / 'config.json').write_text(json.dumps(saved))
  assert reproduce.finished_summary(tmp_path / 'docs', run) is None
  saved['training']['removed_key'] = 1
  (copied / 'config.json').write_text(json.dumps(saved))
  assert reproduce.finished_summary(tmp_path / 'docs', run) is None


# ---------------------------------------------------------------------------
# The paired analysis, on synthetic runs.


def _run(arm, seed, metric, bits, ours=False, uncompressed=False, kind=None, **kwargs):
  return paired.RunResult(arm, seed, kind or arm.split('_')[0], ours, uncompressed, metric,
                          bits, **kwargs)


# Per seed, the uncompressed metric (the seed's client-sampling offset).
OFFSETS = {0: 5.0, 1: 5.06, 2: 4.97}


def _ours(step_costs: dict, bits: dict, seeds=(0, 1, 2)):
  """Runs of ours: arm `rdq_s` costs `step_costs[s][seed]` over uncompressed at `bits[s]`."""
  return [_run(f'rdq_{s}', seed, OFFSETS[seed] + cost[seed], bits[s] * (1 + 0.01 * seed),
               ours=True, aggregate_distortion=1 / bits[s], client_distortion=2 / bits[s])
          for s, cost in step_costs.items() for seed in seeds]


def _mean():
  return [_run('mean', s, m, 32.0, uncompressed=True, aggregate_distortion=0.0,
               client_distortion=0.0) for s, m in OFFSETS.items()]


def test_arms_group_runs_by_seed():
  arms = paired.group_arms(_mean()[::-1] + _ours({1: {0: 0, 1: 0, 2: 0}}, {1: 1.0}))
  assert [a.name for a in arms] == ['mean', 'rdq_1']
  assert arms[0].seeds == (0, 1, 2) and arms[0].metrics == OFFSETS
  assert arms[1].mean('bits') == pytest.approx(1.01)
  assert paired.reference(arms) is arms[0]


def test_interpolation_is_linear_in_log2_bits_and_never_extrapolates():
  points = [(0.5, 6.0, 'a'), (2.0, 5.0, 'b'), (8.0, 4.0, 'c')]
  assert paired.interpolate(points, 1.0) == (pytest.approx(5.5), ('a', 'b'))
  assert paired.interpolate(points, 4.0) == (pytest.approx(4.5), ('b', 'c'))
  assert paired.interpolate(points, 2.0) == (5.0, ('b', 'b'))
  assert paired.interpolate(points, 0.4) is None and paired.interpolate(points, 9) is None


def test_ours_against_a_baseline_at_its_bits():
  costs = {0.1: {0: 0.0, 1: 0.01, 2: -0.01}, 1: {0: 0.2, 1: 0.22, 2: 0.18}}
  runs = _mean() + _ours(costs, {0.1: 2.0, 1: 0.5})
  # The baseline at 1 bit/parameter: half way between ours' arms in log2 bits.
  baseline = {0: 0.30, 1: 0.25, 2: 0.35}
  runs += [_run('qsgd_2', s, OFFSETS[s] + c, 1.0) for s, c in baseline.items()]
  # A baseline below ours' bits for two seeds, and one with too few seeds.
  runs += [_run('top_k_low', s, OFFSETS[s], b) for s, b in ((0, 0.1), (1, 0.1), (2, 0.6))]
  runs += [_run('drive', s, OFFSETS[s], 1.0) for s in (0, 1)]
  arms = paired.group_arms(runs)
  results = {e.baseline: e for e in paired.at_equal_bits(arms, SETTINGS)}
  assert list(results) == ['qsgd_2', 'top_k_low', 'drive']
  # Interpolated by hand, per seed: ours' two runs of the seed, their own bits.
  expected = {}
  for seed in (0, 1, 2):
    b0, b1 = 0.5 * (1 + 0.01 * seed), 2.0 * (1 + 0.01 * seed)
    m0, m1 = OFFSETS[seed] + costs[1][seed], OFFSETS[seed] + costs[0.1][seed]
    t = (math.log2(1.0) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
    expected[seed] = m0 + t * (m1 - m0)
  reference = verdicts.compare(expected, {s: OFFSETS[s] + c for s, c in baseline.items()},
                               SETTINGS)
  qsgd = results['qsgd_2']
  assert qsgd.verdict == reference and qsgd.verdict.label == verdicts.BETTER
  assert qsgd.brackets == (('rdq_1', 'rdq_0.1'),) and qsgd.outside == ()
  assert qsgd.bits == 1.0
  low = results['top_k_low']
  assert low.outside == (0, 1) and low.verdict.label == verdicts.INCONCLUSIVE
  assert 'no extrapolation' in low.verdict.rule and 'seeds [0, 1]' in low.verdict.rule
  assert results['drive'].verdict.label == verdicts.INCONCLUSIVE
  assert 'fewer than min_seeds=3' in results['drive'].verdict.rule


def _arms_with_costs(costs_by_step, bits_by_step):
  """Mean and ours, ours' arm `s` costing `costs_by_step[s]` (+- a little per seed)."""
  jitter = {0: -0.002, 1: 0.0, 2: 0.002}
  costs = {s: {seed: c + jitter[seed] for seed in OFFSETS} for s, c in costs_by_step.items()}
  arms = paired.group_arms(_mean() + _ours(costs, bits_by_step))
  return arms, paired.against_uncompressed(arms, SETTINGS)


BITS = {0.3: 1.0, 1: 0.5, 3: 0.2, 10: 0.05}


def test_breaking_bitrate_located():
  arms, against = _arms_with_costs({0.3: 0.0, 1: 0.01, 3: 0.3, 10: 1.0}, BITS)
  assert [against[f'rdq_{s}'].label for s in BITS] == [
      verdicts.EQUIVALENT, verdicts.WORSE, verdicts.WORSE, verdicts.WORSE]
  assert paired.breaking_bitrate(arms, against, SETTINGS).status == paired.LOCATED
  arms, against = _arms_with_costs({0.3: 0.0, 1: 0.0, 3: 0.3, 10: 1.0}, BITS)
  result = paired.breaking_bitrate(arms, against, SETTINGS)
  assert result.status == paired.LOCATED
  assert result.above == ('rdq_1', pytest.approx(0.505)) and result.below[0] == 'rdq_3'
  assert 'between 0.202 bits/parameter (rdq_3, worse' in result.text
  assert [name for name, _, _ in result.arms] == ['rdq_0.3', 'rdq_1', 'rdq_3', 'rdq_10']


def test_breaking_bitrate_not_located_or_non_monotone():
  arms, against = _arms_with_costs({0.3: 0.0, 1: 0.0, 3: 0.001, 10: -0.001}, BITS)
  result = paired.breaking_bitrate(arms, against, SETTINGS)
  assert result.status == paired.NOT_LOCATED and result.above is None
  assert 'no arm of ours is worse' in result.text
  arms, against = _arms_with_costs({0.3: 0.5, 1: 0.5, 3: 0.5, 10: 0.5}, BITS)
  result = paired.breaking_bitrate(arms, against, SETTINGS)
  assert result.status == paired.NOT_LOCATED and 'every arm of ours is worse' in result.text
  arms, against = _arms_with_costs({0.3: 0.0, 1: 0.5, 3: 0.0, 10: 0.5}, BITS)
  result = paired.breaking_bitrate(arms, against, SETTINGS)
  assert result.status == paired.NON_MONOTONE
  assert all(name in result.text for name in ('rdq_0.3', 'rdq_1', 'rdq_3', 'rdq_10'))
  # Arms without min_seeds seeds do not count.
  arms = paired.group_arms(_mean() + _ours({1: {0: 0.5, 1: 0.5}}, {1: 0.5}, seeds=(0, 1)))
  result = paired.breaking_bitrate(arms, paired.against_uncompressed(arms, SETTINGS), SETTINGS)
  assert result.status == paired.NOT_LOCATED and result.arms == ()


def test_one_bit_is_the_tost_of_ours_nearest_one_bit():
  bits = {0.1: 3.0, 0.3: 1.3, 1: 0.5}
  arms, against = _arms_with_costs({0.1: 0.0, 0.3: 0.01, 1: 0.3}, bits)
  result = paired.one_bit(arms, against)
  # log2(1.3) is nearer 0 than log2(0.5) = -1.
  assert result.arm == 'rdq_0.3' and result.bits == pytest.approx(1.313)
  assert result.verdict.label == verdicts.WORSE  # +0.01 +- 0.002: established, tiny.
  assert result.outcome == 'not supported' and 'within' in result.verdict.rule
  arms, against = _arms_with_costs({0.1: 0.0, 0.3: 0.0, 1: 0.3}, bits)
  result = paired.one_bit(arms, against)
  assert result.verdict.label == verdicts.EQUIVALENT and result.outcome == 'supported'
  assert -SETTINGS.equivalence_margin < result.verdict.tost_low
  assert result.verdict.tost_high < SETTINGS.equivalence_margin
  arms, against = _arms_with_costs({0.1: 0.0}, {0.1: 0.25})
  assert paired.one_bit(arms, against).outcome == 'not tested'  # Outside 0.5-2 bits.


def test_claim2_on_arms_uses_the_paired_differences():
  costs = {0.1: 0.0, 0.3: 0.02, 1: 0.1, 3: 0.4}
  arms, against = _arms_with_costs(costs, {0.1: 2.0, 0.3: 1.0, 1: 0.5, 3: 0.2})
  result = paired.claim2(arms, against)
  x = [1 / b for b in (2.0, 1.0, 0.5, 0.2)]
  y = [against[f'rdq_{s}'].mean for s in costs]
  assert result['aggregate_arms'] == 4 and result['client_arms'] == 4
  assert result['aggregate_spearman'] == pytest.approx(claims.spearman(x, y)) == 1.0
  assert result['aggregate_p'] == pytest.approx(claims.permutation_p_spearman(x, y))
  assert (result['client_low'], result['client_high']) == pytest.approx(
      claims.bootstrap_spearman([2 * v for v in x], y))
  arms, against = _arms_with_costs({0.1: 0.0, 0.3: 0.0}, {0.1: 2.0, 0.3: 1.0})
  assert paired.claim2(arms, against) is None


# ---------------------------------------------------------------------------
# The paired report, through the sweep (one real run; the others made from it).


def _csv(path):
  with path.open() as f:
    return list(csv.DictReader(f))


@pytest.mark.slow
def test_paired_sweep_writes_verdicts_plots_and_summary(tmp_path, small_corpus, capfd,
                                                        fake_runs):
  path = _write(tmp_path, small_corpus, PAIRED_SETTINGS)
  docs = tmp_path / 'docs' / 'paired'
  assert cli.main(['reproduce', str(path), '--no-progress']) == 0  # The config's docs_dir.
  loaded = reproduce.load(path)
  assert [real for _, real in fake_runs.calls] == [True] + [False] * (len(loaded.runs) - 1)
  assert f'report in {tmp_path / "docs" / "paired.md"}' in capfd.readouterr().out
  report = (tmp_path / 'docs' / 'paired.md').read_text()
  assert 'Runs finished: 13 of 13' in report
  assert verdicts.rules_text(loaded.analysis) in report
  assert 'without error feedback' in report
  assert reproduce.reporting.NO_ANALYSIS_NOTE not in report
  for name in ('runs.csv', 'arms.csv', 'equal_bits.csv', 'breaking_bitrate.csv', 'one_bit.csv',
               'claim2.csv', 'main_difference_vs_bits.png', 'main_loss_vs_distortion.png',
               'summary.md'):
    assert (docs / name).is_file(), name
  arms = {r['arm']: r for r in _csv(docs / 'arms.csv') if r['setting'] == 'main'}
  assert list(arms)[0] == 'mean'
  assert set(arms) == {r.arm for r in loaded.runs if r.setting == 'main'}
  assert arms['mean']['label'] == ''  # The reference.
  for arm, row in arms.items():
    if arm == 'mean':
      continue
    assert row['seeds'] == '0 1 2' and row['label'] in verdicts.LABELS
    # The verdict is the rule's on the runs' primary metrics, paired by seed.
    metrics = {}
    for name in (arm, 'mean'):
      metrics[name] = {}
      for seed in (0, 1, 2):
        rows = _csv(docs / 'runs' / 'main' / f'{name}_seed={seed}' / 'metrics.csv')
        metrics[name][seed] = verdicts.primary_metric(rows, 2)
    expected = verdicts.compare(metrics[arm], metrics['mean'], loaded.analysis)
    assert row['label'] == expected.label
    assert float(row['difference']) == pytest.approx(expected.mean)
    assert f'- `{arm}`: {expected.rule}' in report
  ours = [a for a in arms if a.startswith('rdq')]
  assert all(float(arms[a]['rlr_bits']) > 0 for a in ours)  # compare_codecs measured them.
  assert math.isnan(float(arms['top_k_fraction=0.1']['rlr_bits']))
  (equal,) = _csv(docs / 'equal_bits.csv')
  assert equal['baseline'] == 'top_k_fraction=0.1' and equal['label'] in verdicts.LABELS
  assert '**Breaking bitrate** of ours:' in report
  assert '**Ours at about 1 bit/parameter costs no accuracy**' in report
  assert '## single\n' in report  # One arm of one seed: no verdicts, but no failure.

  # The summary, into a results page: its links relative to that page.
  summary = (docs / 'summary.md').read_text()
  assert '](../paired.md)' in summary and '| main | mean |' not in summary
  page = tmp_path / 'docs' / 'results.md'
  page.write_text(f'# Results\n{reproduce.README_BEGIN}\n{reproduce.README_END}\n')
  assert cli.main(['reproduce', str(path), '--report-only', '--readme', str(page)]) == 0
  assert '](paired.md)' in page.read_text()
  assert len(fake_runs.calls) == len(loaded.runs)  # The report ran nothing.
