"""Pre-registered verdicts on eval loss: paired seeds, a t interval, a stated error rate.

The rules are fixed before any run, in the sweep config's `[analysis]` table
(`AnalysisSettings.from_table`), and printed next to every verdict
(`rules_text`, `Verdict.rule`):

- Primary metric (`primary_metric`): per run, the mean eval loss over its last
  `last_evals` evaluations. A run with a non-finite eval loss (it diverged)
  has the metric NaN.
- Pairing (`paired_difference`): seed `s` of arm A and seed `s` of arm B used
  the same client-sampling seed, so the comparison is over the per-seed
  differences `A[s] - B[s]` of the seeds both arms have (at least
  `min_seeds`); seeds only one arm has are left out (and listed). The
  statistic is the mean of those differences, never a minimum or a best-of.
- Interval: the `1 - alpha` t interval of that mean over seeds
  (`mean +- t(1 - alpha/2, n - 1) * sd / sqrt(n)`, `sd` with ddof=1), and for
  the equivalence test (TOST: two one-sided t tests at level `alpha`) the
  `1 - 2 alpha` interval (`mean +- t(1 - alpha, n - 1) * sd / sqrt(n)`).
- Verdict (`verdict`), lower loss being better, in this order:
  `better` if the `1 - alpha` interval lies entirely below 0 (`high < 0`);
  `worse` if entirely above 0 (`low > 0`); `equivalent` if the
  `1 - 2 alpha` interval lies strictly inside
  `(-equivalence_margin, +equivalence_margin)`; else `inconclusive`. A
  comparison where a common seed's metric is NaN in either arm is
  `inconclusive` (the rule text names the diverged runs). Inequalities are
  strict: an interval end exactly at 0 or at the margin is a p-value exactly
  at `alpha`, which does not reject.

Precedence: `better` and `equivalent` (or `worse` and `equivalent`) both hold
when the whole `1 - alpha` interval lies between 0 and a margin, i.e. the
difference is established but smaller than the margin. The label is then
`better` (`worse`), and the rule text adds that the difference lies within
the equivalence margin. Why: the directional labels are then exactly the
two-sided paired t test's rejections, whatever the margin, so their error
rate under the null is `alpha` as stated (`null_false_positive_rate` measures
it); the margin only grades the comparisons that found no direction, and the
printed interval already shows how large a `better` is. (A combined label is
not used.)

Under the null (two arms that are the same config under different labels) a
comparison is called `better` or `worse` with probability `alpha` when the
per-seed differences are normal; `null_false_positive_rate` simulates this,
`relabelled_null_rate` measures it on real replicate runs of one config.

numpy and scipy only; no TensorFlow.
"""

import dataclasses
import functools
import itertools
import math
from typing import Any, Hashable, Mapping

import numpy as np
from scipy import stats

from tff_rdq import validation

BETTER = 'better'
WORSE = 'worse'
EQUIVALENT = 'equivalent'
INCONCLUSIVE = 'inconclusive'
LABELS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE)


# ---------------------------------------------------------------------------
# Settings.


def _check(key: str, check, value, **kwargs):
  """`check('analysis.KEY', value)` with a `TypeError` raised as a `ValueError`."""
  try:
    return check(f'analysis.{key}', value, **kwargs)
  except TypeError as e:
    raise ValueError(str(e)) from None


@dataclasses.dataclass(frozen=True)
class AnalysisSettings:
  """The pre-registered rules of the sweep config's `[analysis]` table.

  Attributes:
    last_evals: Evaluations averaged into a run's primary metric (int >= 1).
    min_seeds: Fewest seeds both arms of a comparison must share (int >= 3).
    equivalence_margin: TOST margin, in eval-loss units (> 0).
    claim1_tolerance: Claim 1's tolerance (> 0); carried for the report, not
      used here.
    alpha: Error rate of each verdict (0 < alpha < 0.5): the directional
      verdicts use the `1 - alpha` interval, equivalence the `1 - 2 alpha`
      one.

  Invalid values raise `ValueError` naming the key (`analysis.KEY`).
  """
  last_evals: int
  min_seeds: int
  equivalence_margin: float
  claim1_tolerance: float
  alpha: float = 0.05

  def __post_init__(self):
    checked = dict(
        last_evals=_check('last_evals', validation.check_int, self.last_evals, low=1),
        min_seeds=_check('min_seeds', validation.check_int, self.min_seeds, low=3),
        equivalence_margin=_check('equivalence_margin', validation.check_positive,
                                  self.equivalence_margin),
        claim1_tolerance=_check('claim1_tolerance', validation.check_positive,
                                self.claim1_tolerance),
        alpha=_check('alpha', validation.check_number, self.alpha, low=0, high=0.5,
                     low_open=True, high_open=True))
    for name, value in checked.items():
      object.__setattr__(self, name, value)

  @classmethod
  def from_table(cls, table: Mapping[str, Any]) -> 'AnalysisSettings':
    """Settings from a parsed `[analysis]` TOML table.

    Every key but `alpha` (default 0.05) is required. Raises `ValueError`
    (one line, naming `analysis.KEY`) for a missing, unknown, mistyped or
    out-of-range key.
    """
    if not isinstance(table, Mapping):
      raise ValueError(f'[analysis] must be a table of keys, got {table!r}.')
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in table:
      if key not in fields:
        raise ValueError(f'unknown key analysis.{key}; keys of [analysis] are {sorted(fields)}.')
    for name, field in fields.items():
      if name not in table and field.default is dataclasses.MISSING:
        raise ValueError(f'analysis.{name} is required (pre-registered before any run).')
    return cls(**table)


# ---------------------------------------------------------------------------
# The primary metric.


def _eval_row(row) -> tuple[float, Any]:
  if isinstance(row, Mapping):
    return row['round'], row.get('eval_loss')
  round_num, loss = row
  return round_num, loss


def primary_metric(eval_losses_by_round, last_evals: int) -> float:
  """A run's primary metric: the mean eval loss over its last `last_evals` evaluations.

  Args:
    eval_losses_by_round: The run's rows, as `(round, eval_loss)` pairs or as
      mappings with `'round'` and `'eval_loss'` (rows of `metrics.csv` as
      `csv.DictReader` reads them, strings included), in any order. A row
      whose eval loss is `None` or `''` is a round without evaluation and is
      skipped.
    last_evals: How many evaluations, the latest by round, to average.

  Returns:
    The mean of the `last_evals` eval losses with the highest rounds, or NaN
    when any evaluation of the run (not only the last ones) is non-finite
    (NaN or infinite): the run diverged, and `verdict` calls every comparison
    with it `inconclusive`, naming the run.

  Raises:
    ValueError: `last_evals` < 1, two rows with the same round, or fewer than
      `last_evals` evaluations.
  """
  last_evals = _check('last_evals', validation.check_int, last_evals, low=1)
  evals = {}
  for row in eval_losses_by_round:
    round_num, loss = _eval_row(row)
    if loss is None or loss == '':
      continue
    round_num = int(round_num)
    if round_num in evals:
      raise ValueError(f'round {round_num} has two eval losses.')
    evals[round_num] = float(loss)
  if len(evals) < last_evals:
    raise ValueError(f'the run has {len(evals)} evaluations, fewer than last_evals={last_evals}.')
  values = np.array([evals[r] for r in sorted(evals)], np.float64)
  if not np.all(np.isfinite(values)):
    return math.nan
  return float(np.mean(values[-last_evals:]))


# ---------------------------------------------------------------------------
# The paired comparison.


@dataclasses.dataclass(frozen=True)
class PairedDifference:
  """Arm A minus arm B over the seeds both have.

  Attributes:
    seeds: The common seeds, sorted (when sortable).
    differences: `a[s] - b[s]` per seed of `seeds`.
    mean: Their mean (NaN when a metric is NaN).
    sd: Their sample standard deviation (ddof=1).
    n: Number of pairs (`len(seeds)`).
    alpha: The settings' alpha.
    low, high: The `1 - alpha` t interval of `mean` (df = n - 1).
    tost_low, tost_high: The `1 - 2 alpha` t interval (the TOST's).
    unpaired: Seeds only one arm has, left out, as `('a', seed)` / `('b', seed)`.
    diverged: Common seeds whose metric is not finite, as `('a', seed)` /
      `('b', seed)`; any makes the verdict `inconclusive`.
  """
  seeds: tuple
  differences: tuple[float, ...]
  mean: float
  sd: float
  n: int
  alpha: float
  low: float
  high: float
  tost_low: float
  tost_high: float
  unpaired: tuple = ()
  diverged: tuple = ()


@functools.lru_cache(maxsize=None)
def _t_quantile(level: float, df: int) -> float:
  """`stats.t.ppf(level, df)`, cached (the simulations ask for the same few)."""
  return float(stats.t.ppf(level, df))


def _sorted(seeds):
  try:
    return sorted(seeds)
  except TypeError:
    return list(seeds)


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
                      settings: AnalysisSettings) -> PairedDifference:
  """The mean of the paired differences `a[s] - b[s]` and its t intervals.

  Args:
    a, b: `seed -> primary metric` of arm A and arm B (seed = client-sampling
      seed, so equal seeds saw the same clients).
    settings: The analysis settings (`min_seeds`, `alpha`).

  Returns:
    A `PairedDifference` over the seeds both arms have; seeds only one arm has
    are ignored (listed in `unpaired`). With all differences equal the
    intervals have zero width. When a common seed's metric is not finite in
    either arm, the statistics are NaN and `diverged` names those runs.

  Raises:
    ValueError: fewer than `settings.min_seeds` common seeds.
  """
  common = _sorted([s for s in a if s in b])
  if len(common) < settings.min_seeds:
    raise ValueError(
        f'{len(common)} seeds common to both arms, fewer than min_seeds={settings.min_seeds} '
        f'(arm A seeds {_sorted(a)}, arm B seeds {_sorted(b)}).')
  unpaired = tuple([('a', s) for s in _sorted(a) if s not in b]
                   + [('b', s) for s in _sorted(b) if s not in a])
  values_a = np.array([float(a[s]) for s in common], np.float64)
  values_b = np.array([float(b[s]) for s in common], np.float64)
  diverged = tuple([('a', s) for s, v in zip(common, values_a) if not math.isfinite(v)]
                   + [('b', s) for s, v in zip(common, values_b) if not math.isfinite(v)])
  n = len(common)
  differences = values_a - values_b
  if diverged:
    nan = math.nan
    return PairedDifference(tuple(common), tuple(differences.tolist()), nan, nan, n,
                            settings.alpha, nan, nan, nan, nan, unpaired, diverged)
  mean = float(np.mean(differences))
  sd = float(np.std(differences, ddof=1))
  se = sd / math.sqrt(n)
  half = _t_quantile(1 - settings.alpha / 2, n - 1) * se
  tost_half = _t_quantile(1 - settings.alpha, n - 1) * se
  return PairedDifference(tuple(common), tuple(differences.tolist()), mean, sd, n,
                          settings.alpha, mean - half, mean + half, mean - tost_half,
                          mean + tost_half, unpaired, ())


# ---------------------------------------------------------------------------
# The verdict.


@dataclasses.dataclass(frozen=True)
class Verdict:
  """A comparison's label and the rule that produced it.

  Attributes:
    label: One of `LABELS`.
    mean, low, high: The paired mean difference A - B and its `1 - alpha` interval.
    tost_low, tost_high: Its `1 - 2 alpha` interval (equivalence).
    n: Number of seed pairs.
    rule: One sentence: the label, the rule that gave it and the numbers, to
      print next to the verdict.
  """
  label: str
  mean: float
  low: float
  high: float
  tost_low: float
  tost_high: float
  n: int
  rule: str


def _percent(level: float) -> str:
  return f'{100 * level:.4g}%'


def _g(value: float) -> str:
  return f'{value:.4g}'


def verdict(diff: PairedDifference, settings: AnalysisSettings) -> Verdict:
  """Applies the pre-registered rule (module docstring) to `diff`.

  In order: `inconclusive` if a run diverged (a NaN metric); `better` if
  `diff.high < 0`; `worse` if `diff.low > 0`; `equivalent` if
  `-margin < diff.tost_low` and `diff.tost_high < margin`; else
  `inconclusive`. `better`/`worse` take precedence over `equivalent` (module
  docstring, *Precedence*); their rule text then notes that the difference is
  also within the margin.

  Raises:
    ValueError: `diff` was computed at another alpha than `settings.alpha`.
  """
  if diff.alpha != settings.alpha:
    raise ValueError(f'diff was computed at alpha={diff.alpha}, the settings say '
                     f'alpha={settings.alpha}.')
  margin = settings.equivalence_margin
  level, tost_level = _percent(1 - settings.alpha), _percent(1 - 2 * settings.alpha)
  interval = (f'the {level} t interval of the paired mean difference A - B over {diff.n} '
              f'seeds, {_g(diff.mean)} [{_g(diff.low)}, {_g(diff.high)}],')
  tost = f'the {tost_level} interval [{_g(diff.tost_low)}, {_g(diff.tost_high)}]'
  within = -margin < diff.tost_low and diff.tost_high < margin
  def result(label, rule):
    return Verdict(label, diff.mean, diff.low, diff.high, diff.tost_low, diff.tost_high,
                   diff.n, f'{label}: {rule}')

  if diff.diverged:
    runs = ', '.join(f'arm {arm.upper()} seed {seed}' for arm, seed in diff.diverged)
    return result(INCONCLUSIVE, f'a run diverged (non-finite eval loss: {runs}), so the '
                  f'primary metric is undefined for the pair; no comparison is made.')
  note = (f' ({tost} also lies within +-{_g(margin)}: the difference is smaller than the '
          f'equivalence margin; the direction takes precedence)' if within else '')
  if diff.high < 0:
    return result(BETTER, f'{interval} lies entirely below 0{note}.')
  if diff.low > 0:
    return result(WORSE, f'{interval} lies entirely above 0{note}.')
  if within:
    return result(EQUIVALENT, f'{interval} includes 0, and {tost} lies within '
                  f'+-{_g(margin)}, the equivalence margin (TOST at alpha={_g(settings.alpha)}).')
  return result(INCONCLUSIVE, f'{interval} includes 0, and {tost} does not lie within '
                f'+-{_g(margin)}, the equivalence margin.')


def compare(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
            settings: AnalysisSettings) -> Verdict:
  """`verdict(paired_difference(a, b, settings), settings)`."""
  return verdict(paired_difference(a, b, settings), settings)


def rules_text(settings: AnalysisSettings) -> str:
  """The pre-registered rules as one markdown paragraph, for the report."""
  a = settings.alpha
  return (
      f'**Pre-registered rules** (the sweep config\'s `[analysis]` table, fixed before any '
      f'run). *Primary metric*: a run\'s mean eval loss over its last {settings.last_evals} '
      f'evaluations (a run with a non-finite eval loss diverged; its comparisons are '
      f'inconclusive). *Seeds*: at least {settings.min_seeds} per arm, paired across arms by '
      f'client-sampling seed; a comparison uses the seeds both arms share. *Statistic*: the '
      f'mean over seeds of the paired differences A - B in the primary metric (never a '
      f'minimum or best-of), with its {_percent(1 - a)} t interval (df = pairs - 1). '
      f'*Verdict* (lower loss is better): **better** if the interval lies entirely below 0, '
      f'**worse** if entirely above 0; otherwise **equivalent** if the {_percent(1 - 2 * a)} '
      f'interval (TOST, two one-sided t tests at alpha = {_g(a)}) lies within '
      f'+-{_g(settings.equivalence_margin)} eval loss; otherwise **inconclusive**. When a '
      f'difference is both established and within the margin, the direction is reported. '
      f'Between two arms that differ only in their labels, a comparison is called better or '
      f'worse with probability {_g(a)}. *Claim 1 tolerance*: {_g(settings.claim1_tolerance)}.')


# ---------------------------------------------------------------------------
# The rule under the null.


@dataclasses.dataclass(frozen=True)
class NullRate:
  """How often the rule called arms of one config `better` or `worse`.

  Attributes:
    rate: `(better + worse) / comparisons`.
    comparisons: Comparisons made.
    counts: `label -> count` over `LABELS`.
  """
  rate: float
  comparisons: int
  counts: dict


def _null_rate(counts: dict) -> NullRate:
  comparisons = sum(counts.values())
  false = counts[BETTER] + counts[WORSE]
  return NullRate(false / comparisons if comparisons else math.nan, comparisons, counts)


def null_false_positive_rate(draws: int, n_seeds: int, n_arms: int, sd_run: float,
                             sd_seed_offset: float, settings: AnalysisSettings,
                             rng: np.random.Generator) -> NullRate:
  """The rule's rate of `better`/`worse` calls between arms that are the same config.

  Each draw simulates `n_arms` arms of `n_seeds` seeds (0, 1, ...): run `(arm,
  seed)` has the primary metric `1 + offset[seed] + noise[arm, seed]`, with the
  seed's offset (its client sampling, shared by every arm) drawn from
  `N(0, sd_seed_offset^2)` and each run's noise from `N(0, sd_run^2)`. Arm 0
  is compared with each other arm through `paired_difference` and `verdict`,
  so a draw makes `n_arms - 1` comparisons (correlated: they share arm 0).

  Returns:
    A `NullRate` over `draws * (n_arms - 1)` comparisons; its `rate` should
    be close to `settings.alpha`.

  Raises:
    ValueError: `n_seeds < settings.min_seeds`, `n_arms < 2`, `draws < 1` or
      a negative standard deviation.
  """
  draws = validation.check_int('draws', draws, low=1)
  n_arms = validation.check_int('n_arms', n_arms, low=2)
  n_seeds = validation.check_int('n_seeds', n_seeds, low=settings.min_seeds)
  sd_run = validation.check_number('sd_run', sd_run, low=0)
  sd_seed_offset = validation.check_number('sd_seed_offset', sd_seed_offset, low=0)
  counts = dict.fromkeys(LABELS, 0)
  for _ in range(draws):
    offsets = rng.normal(0.0, sd_seed_offset, n_seeds)
    values = 1.0 + offsets + rng.normal(0.0, sd_run, (n_arms, n_seeds))
    arms = [dict(enumerate(row.tolist())) for row in values]
    for other in arms[1:]:
      counts[compare(arms[0], other, settings).label] += 1
  return _null_rate(counts)


def relabelled_null_rate(values_by_seed_runs, settings: AnalysisSettings, *,
                         relabellings: int = 0,
                         rng: np.random.Generator | None = None,
                         seeds=None) -> NullRate:
  """The rule's rate of `better`/`worse` calls on real replicate runs of ONE config.

  Args:
    values_by_seed_runs: A runs x seeds matrix of primary metrics: column `j`
      holds the replicate runs of the one config with client-sampling seed
      `seeds[j]` (so any two rows are a valid pairing), row `i` is arm `i` of
      a relabelling. NaN entries (diverged runs) make their comparisons
      `inconclusive`.
    settings: The analysis settings.
    relabellings: Further relabellings: each shuffles every column's
      replicates independently (with `rng`) before forming the arms.
    rng: Required when `relabellings > 0`.
    seeds: The seed labels of the columns (default 0, 1, ...).

  Returns:
    A `NullRate` over every pair of rows (`i < j`, A = row `i`) of the
    matrix as given and of each relabelling: `(1 + relabellings) * runs *
    (runs - 1) / 2` comparisons (not independent: they share runs).

  Raises:
    ValueError: not a matrix of at least 2 runs and `settings.min_seeds`
      seeds, or `relabellings > 0` without `rng`.
  """
  values = np.asarray(values_by_seed_runs, np.float64)
  if values.ndim != 2 or values.shape[0] < 2 or values.shape[1] < settings.min_seeds:
    raise ValueError(f'values_by_seed_runs must be a runs x seeds matrix with >= 2 runs and '
                     f'>= min_seeds={settings.min_seeds} seeds, got shape {values.shape}.')
  relabellings = validation.check_int('relabellings', relabellings, low=0)
  if relabellings and rng is None:
    raise ValueError('relabellings > 0 needs rng.')
  seeds = list(range(values.shape[1])) if seeds is None else list(seeds)
  if len(seeds) != values.shape[1]:
    raise ValueError(f'{len(seeds)} seeds for {values.shape[1]} columns.')
  counts = dict.fromkeys(LABELS, 0)
  matrices = [values] + [rng.permuted(values, axis=0) for _ in range(relabellings)]
  for matrix in matrices:
    arms = [dict(zip(seeds, row.tolist())) for row in matrix]
    for i, j in itertools.combinations(range(len(arms)), 2):
      counts[compare(arms[i], arms[j], settings).label] += 1
  return _null_rate(counts)
