"""Tests of `tff_rdq.experiments.verdicts`: scipy as the oracle, and the rule under the null."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from tff_rdq.experiments import verdicts

SETTINGS = verdicts.AnalysisSettings(last_evals=3, min_seeds=3, equivalence_margin=0.05,
                                     claim1_tolerance=0.1)
TABLE = dict(last_evals=3, min_seeds=3, alpha=0.05, equivalence_margin=0.05,
             claim1_tolerance=0.1)


def _tolerance(alpha, draws):
  """Three binomial standard errors of a rate `alpha` over `draws` draws."""
  return 3 * math.sqrt(alpha * (1 - alpha) / draws)


def _with(**changes):
  return verdicts.AnalysisSettings.from_table(dict(TABLE, **changes))


# ---------------------------------------------------------------------------
# Settings.


def test_settings_from_table_and_defaults():
  settings = verdicts.AnalysisSettings.from_table(
      dict(last_evals=5, min_seeds=4, equivalence_margin=1, claim1_tolerance=0.2))
  assert settings == verdicts.AnalysisSettings(5, 4, 1.0, 0.2, 0.05)
  assert isinstance(settings.equivalence_margin, float)
  with pytest.raises(AttributeError):
    settings.alpha = 0.1  # frozen


@pytest.mark.parametrize('changes, key', [
    (dict(last_evals=0), 'analysis.last_evals'),
    (dict(last_evals=2.0), 'analysis.last_evals'),
    (dict(last_evals=True), 'analysis.last_evals'),
    (dict(min_seeds=2), 'analysis.min_seeds'),
    (dict(alpha=0.5), 'analysis.alpha'),
    (dict(alpha=0), 'analysis.alpha'),
    (dict(alpha='0.05'), 'analysis.alpha'),
    (dict(equivalence_margin=0), 'analysis.equivalence_margin'),
    (dict(equivalence_margin=math.inf), 'analysis.equivalence_margin'),
    (dict(claim1_tolerance=-1), 'analysis.claim1_tolerance'),
    (dict(best_of=8), 'analysis.best_of'),
])
def test_settings_errors_name_the_key(changes, key):
  with pytest.raises(ValueError, match=key) as info:
    _with(**changes)
  assert '\n' not in str(info.value)


def test_settings_missing_key_and_direct_construction():
  table = dict(TABLE)
  del table['equivalence_margin']
  with pytest.raises(ValueError, match=r'^analysis\.equivalence_margin is required'):
    verdicts.AnalysisSettings.from_table(table)
  with pytest.raises(ValueError, match='analysis.min_seeds'):
    verdicts.AnalysisSettings(last_evals=1, min_seeds=1, equivalence_margin=1,
                              claim1_tolerance=1)
  with pytest.raises(ValueError, match=r'\[analysis\] must be a table'):
    verdicts.AnalysisSettings.from_table([1, 2])


def test_rules_text_states_the_numbers():
  text = verdicts.rules_text(_with(alpha=0.1, last_evals=7, min_seeds=4))
  for part in ('last 7 evaluations', 'at least 4 per arm', '90% t interval',
               '80% interval', '+-0.05', 'never a minimum or best-of', 'Claim 1 tolerance*: 0.1',
               'probability 0.1'):
    assert part in text, part
  assert '\n' not in text


# ---------------------------------------------------------------------------
# The primary metric.


def test_primary_metric_mean_of_last_evals_in_round_order():
  rows = [(30, 2.0), (10, 9.0), (20, 4.0), (40, 3.0), (5, None), (41, '')]
  assert verdicts.primary_metric(rows, 3) == pytest.approx((4.0 + 2.0 + 3.0) / 3)
  assert verdicts.primary_metric(rows, 1) == 3.0


def test_primary_metric_reads_metrics_csv_rows():
  rows = [dict(round='1', eval_loss=''), dict(round='2', eval_loss='5.5'),
          dict(round='3', eval_loss=''), dict(round='4', eval_loss='4.5')]
  assert verdicts.primary_metric(rows, 2) == pytest.approx(5.0)


def test_primary_metric_nan_when_diverged_and_errors():
  assert math.isnan(verdicts.primary_metric([(1, math.nan), (2, 3.0), (3, 3.0)], 2))
  assert math.isnan(verdicts.primary_metric([(1, 3.0), (2, 'inf')], 1))
  with pytest.raises(ValueError, match='fewer than last_evals=3'):
    verdicts.primary_metric([(1, 3.0), (2, 3.0), (3, None)], 3)
  with pytest.raises(ValueError, match='round 2 has two'):
    verdicts.primary_metric([(2, 3.0), (2, 3.1)], 1)
  with pytest.raises(ValueError, match='last_evals'):
    verdicts.primary_metric([(2, 3.0)], 0)


# ---------------------------------------------------------------------------
# The paired difference against scipy.


def test_paired_difference_matches_ttest_rel():
  a = {0: 4.10, 1: 4.32, 2: 3.95, 3: 4.20, 4: 4.05}
  b = {0: 4.15, 1: 4.30, 2: 4.05, 3: 4.31, 4: 4.08}
  x, y = list(a.values()), list(b.values())
  for alpha in (0.05, 0.1):
    diff = verdicts.paired_difference(a, b, _with(alpha=alpha))
    test = stats.ttest_rel(x, y)
    low, high = test.confidence_interval(1 - alpha)
    tost_low, tost_high = test.confidence_interval(1 - 2 * alpha)
    assert diff.n == 5 and diff.seeds == (0, 1, 2, 3, 4)
    np.testing.assert_allclose(diff.differences, np.subtract(x, y))
    assert diff.mean == pytest.approx(np.mean(x) - np.mean(y))
    assert (diff.low, diff.high) == pytest.approx((low, high), rel=1e-12)
    assert (diff.tost_low, diff.tost_high) == pytest.approx((tost_low, tost_high), rel=1e-12)
  # By hand: differences -0.05, 0.02, -0.10, -0.11, -0.03; mean -0.054.
  assert diff.mean == pytest.approx(-0.054)
  assert diff.sd == pytest.approx(math.sqrt(0.01132 / 4))


def test_labels_agree_with_scipy_tests():
  """Random data: each label is what scipy's one- and two-sided t tests say (with precedence)."""
  rng = np.random.default_rng(7)
  seen = set()
  for _ in range(300):
    n = int(rng.integers(3, 9))
    alpha = float(rng.choice([0.01, 0.05, 0.1, 0.2]))
    settings = _with(alpha=alpha, equivalence_margin=float(rng.uniform(0.01, 0.3)))
    d = rng.normal(rng.normal(0, 0.1), rng.uniform(0.01, 0.2), n)
    a = dict(enumerate(1 + d))
    b = dict.fromkeys(range(n), 1.0)
    got = verdicts.compare(a, b, settings).label
    m = settings.equivalence_margin
    two_sided = stats.ttest_1samp(d, 0).pvalue < alpha
    tost = (stats.ttest_1samp(d, -m, alternative='greater').pvalue < alpha
            and stats.ttest_1samp(d, m, alternative='less').pvalue < alpha)
    expected = ((verdicts.BETTER if np.mean(d) < 0 else verdicts.WORSE) if two_sided else
                verdicts.EQUIVALENT if tost else verdicts.INCONCLUSIVE)
    assert got == expected
    seen.add(got)
  assert seen == set(verdicts.LABELS)


# ---------------------------------------------------------------------------
# Labels, precedence, boundaries.


def _compare(differences, settings=SETTINGS):
  a = {s: 3.0 + d for s, d in enumerate(differences)}
  b = dict.fromkeys(range(len(differences)), 3.0)
  return verdicts.compare(a, b, settings)


def test_each_label_reachable():
  wide = _with(equivalence_margin=1.0)
  better = _compare([-0.3, -0.32, -0.31, -0.29], SETTINGS)
  worse = _compare([0.3, 0.32, 0.31, 0.29], SETTINGS)
  equivalent = _compare([0.01, -0.01, 0.005, -0.004], SETTINGS)
  inconclusive = _compare([0.3, -0.2, 0.1, -0.25], SETTINGS)
  assert [v.label for v in (better, worse, equivalent, inconclusive)] == list(verdicts.LABELS)
  assert better.high < 0 and worse.low > 0
  assert equivalent.low < 0 < equivalent.high and equivalent.tost_high < 0.05
  assert _compare([0.3, -0.2, 0.1, -0.25], wide).label == verdicts.EQUIVALENT
  for v in (better, worse, equivalent, inconclusive):
    assert v.rule.startswith(v.label + ': ') and v.n == 4
  assert 'entirely below 0' in better.rule and 'within' not in better.rule
  assert 'does not lie within +-0.05' in inconclusive.rule
  with pytest.raises(ValueError, match='alpha=0.05, the settings say alpha=0.1'):
    verdicts.verdict(verdicts.paired_difference({0: 1, 1: 2, 2: 3}, {0: 1, 1: 1, 2: 1},
                                                SETTINGS), _with(alpha=0.1))


def test_precedence_direction_over_equivalence():
  # 95% interval inside (-margin, 0): both 'better' and 'equivalent' hold.
  v = _compare([-0.02, -0.021, -0.019, -0.0205], SETTINGS)
  assert -0.05 < v.tost_low and v.tost_high < 0 and v.high < 0
  assert v.label == verdicts.BETTER
  assert 'smaller than the equivalence margin' in v.rule
  w = _compare([0.02, 0.021, 0.019, 0.0205], SETTINGS)
  assert w.label == verdicts.WORSE and 'smaller than the equivalence margin' in w.rule


def test_zero_spread():
  assert _compare([0.0, 0.0, 0.0]).label == verdicts.EQUIVALENT
  assert _compare([-0.001] * 3).label == verdicts.BETTER


def test_tost_boundaries_are_strict():
  differences = [0.01, -0.015, 0.02, 0.004]
  reference = _compare(differences, _with(equivalence_margin=1.0))
  assert reference.low < 0 < reference.high
  # The upper end is the binding one here; the margin exactly there does not reject.
  assert reference.tost_high > -reference.tost_low
  at = _with(equivalence_margin=reference.tost_high)
  just_above = _with(equivalence_margin=float(np.nextafter(reference.tost_high, math.inf)))
  assert _compare(differences, at).label == verdicts.INCONCLUSIVE
  assert _compare(differences, just_above).label == verdicts.EQUIVALENT
  # Mirrored: the lower end binds.
  mirrored = [-d for d in differences]
  low = _compare(mirrored, _with(equivalence_margin=1.0)).tost_low
  assert _compare(mirrored, _with(equivalence_margin=-low)).label == verdicts.INCONCLUSIVE
  assert _compare(mirrored, _with(
      equivalence_margin=float(np.nextafter(-low, math.inf)))).label == verdicts.EQUIVALENT


# ---------------------------------------------------------------------------
# Seeds.


def test_fewer_than_min_seeds_raises():
  with pytest.raises(ValueError, match='2 seeds common to both arms, fewer than min_seeds=3'):
    verdicts.paired_difference({0: 1, 1: 2, 2: 3}, {1: 2, 2: 3, 5: 1}, SETTINGS)
  with pytest.raises(ValueError, match='min_seeds=4'):
    verdicts.paired_difference({0: 1, 1: 2, 2: 3}, {0: 1, 1: 2, 2: 3}, _with(min_seeds=4))


def test_unpaired_seeds_ignored():
  a = {0: 3.1, 1: 3.3, 2: 3.0, 3: 3.2, 4: 9.0}
  b = {9: -5.0, 3: 3.25, 2: 3.02, 1: 3.28, 0: 3.15}
  diff = verdicts.paired_difference(a, b, SETTINGS)
  same = verdicts.paired_difference({s: a[s] for s in range(4)}, {s: b[s] for s in range(4)},
                                    SETTINGS)
  assert diff.seeds == (0, 1, 2, 3) and diff.unpaired == (('a', 4), ('b', 9))
  assert dataclasses.replace(diff, unpaired=()) == same


def test_diverged_run_makes_comparison_inconclusive():
  a = {0: 3.0, 1: math.nan, 2: 3.1}
  b = {0: 3.5, 1: 3.6, 2: 3.4}
  diff = verdicts.paired_difference(a, b, SETTINGS)
  assert diff.diverged == (('a', 1),) and math.isnan(diff.mean) and math.isnan(diff.high)
  v = verdicts.verdict(diff, SETTINGS)
  assert v.label == verdicts.INCONCLUSIVE
  assert 'diverged' in v.rule and 'arm A seed 1' in v.rule
  # A NaN only in an unpaired seed does not matter.
  assert verdicts.compare({0: 3.0, 2: 3.1, 3: 3.05, 7: math.nan}, {0: 3.5, 2: 3.4, 3: 3.45},
                          SETTINGS).label == verdicts.BETTER


# ---------------------------------------------------------------------------
# The null: the same config under different labels.

DRAWS = 2000
N_SEEDS = 3
N_ARMS = 6  # arm 0 against 5 others: 5 comparisons (pairs) per draw
SD_RUN = 0.02
SD_SEED_OFFSET = 0.05


def test_null_false_positive_rate_within_alpha():
  tolerance = _tolerance(SETTINGS.alpha, DRAWS)
  rates = {}
  for sd_offset in (SD_SEED_OFFSET, 0.0, 1.0):
    result = verdicts.null_false_positive_rate(
        DRAWS, N_SEEDS, N_ARMS, SD_RUN, sd_offset, SETTINGS, np.random.default_rng(0))
    assert result.comparisons == DRAWS * (N_ARMS - 1)
    assert sum(result.counts.values()) == result.comparisons
    print(f'\nnull, {N_SEEDS} seeds, {N_ARMS - 1} pairs/draw, {DRAWS} draws, sd_run={SD_RUN}, '
          f'sd_seed_offset={sd_offset}: better-or-worse rate {result.rate:.4f} '
          f'(alpha {SETTINGS.alpha}, bound {SETTINGS.alpha + tolerance:.4f}); {result.counts}')
    assert 0 < result.rate <= SETTINGS.alpha + tolerance
    assert result.rate >= SETTINGS.alpha - tolerance  # not vacuously conservative either
    rates[sd_offset] = result.rate
  # Pairing cancels the seed offsets: the same run noise gives the same calls (up to
  # rounding at an interval's end), however large the offsets.
  assert max(rates.values()) - min(rates.values()) <= 2 / (DRAWS * (N_ARMS - 1))


def test_null_false_positive_rate_other_alpha():
  settings = _with(alpha=0.1)
  result = verdicts.null_false_positive_rate(
      DRAWS, 4, 3, SD_RUN, SD_SEED_OFFSET, settings, np.random.default_rng(1))
  tolerance = _tolerance(0.1, DRAWS)
  print(f'\nnull, 4 seeds, 2 pairs/draw, alpha 0.1: rate {result.rate:.4f} '
        f'(bound {0.1 + tolerance:.4f})')
  assert 0.1 - tolerance <= result.rate <= 0.1 + tolerance


def test_null_rate_rejects_too_few_seeds():
  with pytest.raises(ValueError, match='n_seeds'):
    verdicts.null_false_positive_rate(10, 2, 3, 0.1, 0.1, SETTINGS, np.random.default_rng(0))


def _old_best_of_outcome(ours, baseline, uncompressed_seeds):
  """The old report's `_outcome` at equal bits: the best of `ours` against one baseline
  run, with the range of 2 uncompressed seeds as the noise."""
  spread = max(uncompressed_seeds) - min(uncompressed_seeds)
  best = min(ours)
  if best <= baseline - spread:
    return 'ours better'
  if best > baseline + spread:
    return 'baseline better'
  return 'within seed spread'


def test_best_of_rule_fails_the_null_test():
  """The same null, judged by the old best-of-8 rule: far above alpha."""
  rng = np.random.default_rng(0)
  tolerance = _tolerance(SETTINGS.alpha, DRAWS)
  calls = []
  for _ in range(DRAWS):
    # Every run is the same config on its own seed: offset + run noise, nothing paired.
    runs = 1.0 + rng.normal(0, SD_SEED_OFFSET, 11) + rng.normal(0, SD_RUN, 11)
    calls.append(_old_best_of_outcome(runs[:8], runs[8], runs[9:]))
  rate = np.mean([c != 'within seed spread' for c in calls])
  ours = np.mean([c == 'ours better' for c in calls])
  print(f'\nnull, old best-of-8 rule: decided rate {rate:.4f} ("ours better" {ours:.4f}); '
        f'bound {SETTINGS.alpha + tolerance:.4f}')
  assert rate > SETTINGS.alpha + tolerance
  assert ours > SETTINGS.alpha + tolerance  # biased toward "ours better"


def test_wrong_interval_fails_the_null_test():
  """The paired mean with a normal (z) interval instead of t(df=2): above alpha."""
  rng = np.random.default_rng(0)
  tolerance = _tolerance(SETTINGS.alpha, DRAWS)
  z = stats.norm.ppf(1 - SETTINGS.alpha / 2)
  decided = 0
  for _ in range(DRAWS):
    offsets = rng.normal(0, SD_SEED_OFFSET, N_SEEDS)
    a = dict(enumerate(1 + offsets + rng.normal(0, SD_RUN, N_SEEDS)))
    b = dict(enumerate(1 + offsets + rng.normal(0, SD_RUN, N_SEEDS)))
    diff = verdicts.paired_difference(a, b, SETTINGS)
    half = z * diff.sd / math.sqrt(diff.n)
    decided += diff.mean + half < 0 or diff.mean - half > 0
  rate = decided / DRAWS
  print(f'\nnull, z interval instead of t: rate {rate:.4f}; bound '
        f'{SETTINGS.alpha + tolerance:.4f}')
  assert rate > SETTINGS.alpha + tolerance


def test_rule_has_power_against_a_real_difference():
  rng = np.random.default_rng(2)
  better = 0
  for _ in range(200):
    offsets = rng.normal(0, SD_SEED_OFFSET, 5)
    a = dict(enumerate(1 - 0.05 + offsets + rng.normal(0, SD_RUN, 5)))
    b = dict(enumerate(1 + offsets + rng.normal(0, SD_RUN, 5)))
    better += verdicts.compare(a, b, SETTINGS).label == verdicts.BETTER
  assert better / 200 > 0.8


@pytest.mark.slow
def test_relabelled_null_rate():
  rng = np.random.default_rng(3)
  runs, n_seeds = 8, 5
  offsets = rng.normal(0, SD_SEED_OFFSET, n_seeds)
  matrix = 1 + offsets + rng.normal(0, SD_RUN, (runs, n_seeds))
  result = verdicts.relabelled_null_rate(matrix, SETTINGS, relabellings=200,
                                         rng=np.random.default_rng(4), seeds=range(10, 15))
  assert result.comparisons == 201 * runs * (runs - 1) // 2
  print(f'\nrelabelled null, {runs} replicate runs x {n_seeds} seeds, 201 labellings: rate '
        f'{result.rate:.4f}; {result.counts}')
  assert result.rate <= 0.15  # one small matrix: a loose check, comparisons share runs
  # Identical replicates: never a direction.
  same = verdicts.relabelled_null_rate(np.tile(offsets, (3, 1)), SETTINGS)
  assert same.rate == 0 and same.counts[verdicts.EQUIVALENT] == 3
  # Not a null (one run much better): found.
  shifted = matrix.copy()
  shifted[0] -= 1.0
  assert verdicts.relabelled_null_rate(shifted, SETTINGS).counts[verdicts.BETTER] == runs - 1
  with pytest.raises(ValueError, match='runs x seeds'):
    verdicts.relabelled_null_rate(matrix[:, :2], SETTINGS)
  with pytest.raises(ValueError, match='needs rng'):
    verdicts.relabelled_null_rate(matrix, SETTINGS, relabellings=1)
