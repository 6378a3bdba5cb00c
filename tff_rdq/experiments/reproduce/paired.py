"""The paired analysis of a sweep with seeds: verdicts on arms, never on single runs.

An *arm* is one method at one knob: the runs of a setting that differ only in
their client-sampling seed (`settings.Run.arm`). Each finished run is read
as a `RunResult` (its primary metric, `verdicts.primary_metric`, and its
summary's means); per setting:

- `against_uncompressed`: every compressed arm against the uncompressed
  arm (`mean`), paired by seed, by the pre-registered rule
  (`verdicts.compare` with A = the arm, B = uncompressed: `better` is a lower
  eval loss than uncompressed).
- `at_equal_bits`: ours (rdq with uniform rounding at a fixed step) against
  each baseline arm at the baseline's bits. For each seed, ours' metric at
  the bits of the baseline's run of that seed is interpolated linearly in
  log2(bits/parameter) between the two runs of ours with that seed whose bits
  bracket it, and paired with the baseline's run (A = ours, B = the
  baseline: `better` means ours is better). No extrapolation: a seed at
  which the baseline's bits lie outside ours' range is left out, and named;
  with fewer than `min_seeds` seeds left the comparison is `inconclusive`.
  Never a minimum or a best-of over runs.
- `breaking_bitrate`: where ours starts to cost accuracy: between the arm of
  ours with the fewest bits that is not `worse` than uncompressed and the
  next arm down in bits, which is.
- `one_bit`: ours nearest 1 bit/parameter (in log scale) against
  uncompressed; "costs no accuracy" is its equivalence test (TOST) at the
  pre-registered margin.
- `claim2`: across compressed arms, Spearman's correlation of the arm's
  paired eval-loss difference to uncompressed with its mean aggregate
  relative distortion (the error of the aggregated update) and with its mean
  per-client relative distortion.

numpy only (and `verdicts`, `claims`); the inputs are plain records, so
every rule here is testable on synthetic numbers.
"""

import dataclasses
import math

import numpy as np

from tff_rdq.experiments import claims
from tff_rdq.experiments import verdicts
from tff_rdq.experiments.reproduce.analysis import ONE_BIT_RANGE

# `breaking_bitrate` statuses.
LOCATED = 'located'
NOT_LOCATED = 'not located'
NON_MONOTONE = 'non-monotone'


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What the paired analysis reads of one finished run.

  Attributes:
    arm: The run's arm (its label without the seed).
    seed: Its client-sampling seed.
    kind: The curve it belongs to in plots (`settings.Run.kind`).
    ours: Whether it is ours at a fixed step with uniform rounding.
    uncompressed: Whether it is TFF's uncompressed mean.
    metric: Its primary metric (NaN: it diverged).
    bits: Its mean bits per parameter, as sent.
    rlr_bits: Its mean bits per parameter had `run_length_rans` coded the same
      integers (NaN when not measured).
    aggregate_distortion: Its mean aggregate relative distortion.
    client_distortion: Its mean per-client relative distortion.
    accuracy: Its final accuracy without OOV and end-of-sentence tokens (shown,
      not tested).
  """
  arm: str
  seed: int
  kind: str
  ours: bool
  uncompressed: bool
  metric: float
  bits: float
  rlr_bits: float = math.nan
  aggregate_distortion: float = math.nan
  client_distortion: float = math.nan
  accuracy: float = math.nan


@dataclasses.dataclass(frozen=True)
class Arm:
  """The finished runs of one arm, in seed order."""
  name: str
  kind: str
  ours: bool
  uncompressed: bool
  runs: tuple

  @property
  def seeds(self) -> tuple:
    return tuple(r.seed for r in self.runs)

  @property
  def metrics(self) -> dict:
    """`seed -> primary metric`, what `verdicts.compare` pairs."""
    return {r.seed: r.metric for r in self.runs}

  def mean(self, field: str) -> float:
    """The mean over the arm's runs of a `RunResult` field (NaN if any is)."""
    return float(np.mean([getattr(r, field) for r in self.runs]))


def group_arms(results) -> list[Arm]:
  """The arms of one setting's `RunResult`s, in the order they first appear."""
  by_arm = {}
  for result in results:
    by_arm.setdefault(result.arm, []).append(result)
  arms = []
  for name, runs in by_arm.items():
    first = runs[0]
    arms.append(Arm(name, first.kind, first.ours, first.uncompressed,
                    tuple(sorted(runs, key=lambda r: r.seed))))
  return arms


def _compare(a: dict, b: dict, settings: verdicts.AnalysisSettings) -> verdicts.Verdict:
  """`verdicts.compare(a, b)`, or `inconclusive` when too few seeds are common yet."""
  try:
    return verdicts.compare(a, b, settings)
  except ValueError as e:
    common = sum(1 for s in a if s in b)
    nan = math.nan
    return verdicts.Verdict(verdicts.INCONCLUSIVE, nan, nan, nan, nan, nan, common,
                            f'{verdicts.INCONCLUSIVE}: no comparison yet: {e}')


def tested(verdict: verdicts.Verdict, settings: verdicts.AnalysisSettings) -> bool:
  """Whether the rule was applied (enough common seeds), whatever its label."""
  return verdict.n >= settings.min_seeds


def reference(arms: list[Arm]) -> Arm | None:
  """The uncompressed arm, or None unless there is exactly one."""
  uncompressed = [a for a in arms if a.uncompressed]
  return uncompressed[0] if len(uncompressed) == 1 else None


def against_uncompressed(arms: list[Arm],
                         settings: verdicts.AnalysisSettings) -> dict[str, verdicts.Verdict]:
  """`arm name -> Verdict` of every compressed arm minus the uncompressed one.

  Empty when the setting has no single uncompressed arm.
  """
  mean = reference(arms)
  if mean is None:
    return {}
  return {a.name: _compare(a.metrics, mean.metrics, settings)
          for a in arms if not a.uncompressed}


def interpolate(points, bits: float):
  """Ours' metric at `bits`, from one seed's `(bits, metric, arm)` points of ours.

  Linear in log2(bits) between the two neighbouring points whose bits bracket
  `bits` (a point's own metric at its bits). Returns
  `(metric, (lower arm, upper arm))`, or None when `bits` lies outside the
  points' range (no extrapolation).
  """
  points = sorted((p for p in points if p[0] > 0), key=lambda p: p[0])
  for b, metric, arm in points:
    if b == bits:
      return metric, (arm, arm)
  for (b0, m0, a0), (b1, m1, a1) in zip(points, points[1:]):
    if b0 < bits < b1:
      t = (math.log2(bits) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
      return m0 + t * (m1 - m0), (a0, a1)
  return None


@dataclasses.dataclass(frozen=True)
class EqualBits:
  """Ours against one baseline arm at the baseline's bits.

  Attributes:
    baseline: The baseline arm's name.
    kind: Its method.
    bits: Its mean bits per parameter.
    verdict: Ours minus the baseline (`better`: ours has the lower loss).
    brackets: The pairs of ours' arms interpolated between, over the seeds.
    outside: Seeds of the baseline whose bits lie outside ours' range.
  """
  baseline: str
  kind: str
  bits: float
  verdict: verdicts.Verdict
  brackets: tuple
  outside: tuple


def at_equal_bits(arms: list[Arm], settings: verdicts.AnalysisSettings) -> list[EqualBits]:
  """Ours against every baseline arm at equal bits (module doc), in arm order."""
  ours = [a for a in arms if a.ours]
  results = []
  for baseline in (a for a in arms if not a.ours and not a.uncompressed):
    interpolated, brackets, outside = {}, [], []
    for run in baseline.runs:
      points = [(r.bits, r.metric, a.name) for a in ours for r in a.runs if r.seed == run.seed]
      hit = interpolate(points, run.bits)
      if hit is None:
        outside.append(run.seed)
        continue
      interpolated[run.seed] = hit[0]
      if hit[1] not in brackets:
        brackets.append(hit[1])
    verdict = _compare(interpolated, baseline.metrics, settings)
    if outside:
      note = (f' (seeds {outside}: the baseline\'s bits lie outside the bits of ours\' runs of '
              'that seed; left out, no extrapolation)')
      verdict = dataclasses.replace(verdict, rule=verdict.rule.rstrip('.') + note + '.')
    results.append(EqualBits(baseline.name, baseline.kind, baseline.mean('bits'), verdict,
                             tuple(brackets), tuple(outside)))
  return results


@dataclasses.dataclass(frozen=True)
class BreakingBitrate:
  """Where ours starts to cost accuracy against uncompressed.

  Attributes:
    status: `LOCATED`, `NOT_LOCATED` or `NON_MONOTONE`.
    above: `(arm, bits)` of the arm of ours with the fewest bits that is not
      `worse` (when located).
    below: `(arm, bits)` of the next arm down in bits, which is `worse`.
    arms: `(arm, bits, label)` of every tested arm of ours, most bits first.
    text: One sentence saying what was found.
  """
  status: str
  above: tuple | None
  below: tuple | None
  arms: tuple
  text: str


def breaking_bitrate(arms: list[Arm], against: dict[str, verdicts.Verdict],
                     settings: verdicts.AnalysisSettings) -> BreakingBitrate:
  """The breaking bitrate of ours (module doc) from its verdicts against uncompressed.

  Only arms with a verdict over at least `min_seeds` seeds count; ordered by
  mean bits, most first.
  """
  ranked = tuple(sorted(((a.name, a.mean('bits'), against[a.name].label) for a in arms
                         if a.ours and a.name in against
                         and tested(against[a.name], settings)),
                        key=lambda item: -item[1]))
  worse = [label == verdicts.WORSE for _, _, label in ranked]
  listing = '; '.join(f'{name} ({bits:.3g} bits/parameter): {label}'
                      for name, bits, label in ranked)
  if not ranked:
    return BreakingBitrate(NOT_LOCATED, None, None, ranked,
                           f'not located: no arm of ours has {settings.min_seeds} seeds yet.')
  if not any(worse):
    return BreakingBitrate(
        NOT_LOCATED, None, None, ranked,
        f'not located: no arm of ours is worse than uncompressed, down to '
        f'{ranked[-1][1]:.3g} bits/parameter ({ranked[-1][0]}).')
  first = worse.index(True)
  if not all(worse[first:]):
    return BreakingBitrate(
        NON_MONOTONE, None, None, ranked,
        f'non-monotone: an arm of ours is worse than uncompressed with more bits than one that '
        f'is not ({listing}).')
  if first == 0:
    return BreakingBitrate(
        NOT_LOCATED, None, ranked[0][:2], ranked,
        f'not located: every arm of ours is worse than uncompressed, up to '
        f'{ranked[0][1]:.3g} bits/parameter ({ranked[0][0]}).')
  above, below = ranked[first - 1][:2], ranked[first][:2]
  return BreakingBitrate(
      LOCATED, above, below, ranked,
      f'between {below[1]:.3g} bits/parameter ({below[0]}, worse than uncompressed) and '
      f'{above[1]:.3g} ({above[0]}, {ranked[first - 1][2]}).')


@dataclasses.dataclass(frozen=True)
class OneBit:
  """Ours nearest 1 bit/parameter against uncompressed.

  Attributes:
    arm: That arm of ours.
    bits: Its mean bits per parameter.
    verdict: Its verdict against uncompressed.
    outcome: `supported` (equivalent, or better), `not supported` (worse),
      `inconclusive`, or `not tested` (no arm of ours within `ONE_BIT_RANGE`).
  """
  arm: str
  bits: float
  verdict: verdicts.Verdict
  outcome: str


def one_bit(arms: list[Arm], against: dict[str, verdicts.Verdict]) -> OneBit | None:
  """"Ours at about 1 bit costs no accuracy", tested (module doc); None without ours."""
  ours = [a for a in arms if a.ours and a.name in against and a.mean('bits') > 0]
  if not ours:
    return None
  arm = min(ours, key=lambda a: abs(math.log2(a.mean('bits'))))
  bits, verdict = arm.mean('bits'), against[arm.name]
  if not ONE_BIT_RANGE[0] <= bits <= ONE_BIT_RANGE[1]:
    outcome = 'not tested'
  elif verdict.label in (verdicts.EQUIVALENT, verdicts.BETTER):
    outcome = 'supported'
  elif verdict.label == verdicts.WORSE:
    outcome = 'not supported'
  else:
    outcome = verdicts.INCONCLUSIVE
  return OneBit(arm.name, bits, verdict, outcome)


def claim2(arms: list[Arm], against: dict[str, verdicts.Verdict]) -> dict | None:
  """Claim 2 on arms: does distortion rank the compressed arms' cost in eval loss?

  Over the compressed arms with a paired difference to uncompressed (the
  verdict's mean) and a finite distortion: for `x` in `aggregate` (mean
  aggregate relative distortion) and `client` (mean per-client relative
  distortion), the keys `{x}_arms`, `{x}_spearman`, `{x}_low`, `{x}_high`
  (bootstrap 95 % interval) and `{x}_p` (one-sided permutation p-value of a
  positive correlation). None when neither has 3 arms.
  """
  result = {}
  for key, field in (('aggregate', 'aggregate_distortion'), ('client', 'client_distortion')):
    points = [(a.mean(field), against[a.name].mean) for a in arms
              if a.name in against and math.isfinite(against[a.name].mean)
              and math.isfinite(a.mean(field))]
    x, difference = [p[0] for p in points], [p[1] for p in points]
    result[f'{key}_arms'] = len(points)
    result[f'{key}_spearman'] = claims.spearman(x, difference)
    result[f'{key}_low'], result[f'{key}_high'] = claims.bootstrap_spearman(x, difference)
    result[f'{key}_p'] = (claims.permutation_p_spearman(x, difference) if len(points) >= 3
                          else math.nan)
  return result if max(result['aggregate_arms'], result['client_arms']) >= 3 else None
