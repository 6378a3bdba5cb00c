"""The claims' numbers from the finished runs and frontiers, and the verdicts on them."""

import math

import numpy as np

from tff_rdq.experiments import claims
from tff_rdq.experiments.reproduce import claim1 as claim1_lib
# `bits_at` is the package's (one implementation, in `claim1`).
from tff_rdq.experiments.reproduce.claim1 import bits_at  # pylint: disable=unused-import
from tff_rdq.experiments.reproduce.results import NORMALIZATIONS, _normalization_name

# Claim 1: relative distortions at which bits per parameter are compared.
TARGET_DISTORTIONS = (0.1, 0.01)
# Verdict thresholds (stated in the report).
CV_SUPPORTED, CV_PARTLY = 0.1, 0.25
CLAIM2_P = 0.05  # Claim 2 needs a permutation p-value below this (and the interval above 0).
ONE_BIT_RANGE = (0.5, 2.0)


def _outcome(ours, loss, bits, spread) -> str:
  """Ours against one baseline run (`loss` at `bits`), with `spread` as the noise.

  `ours better`: ours reaches `loss - spread` with at most `bits`; `baseline
  better`: ours does not reach `loss + spread` with at most `bits` (and has a
  run with so few bits); otherwise `within seed spread` (or `not comparable`
  when ours has no run with so few bits). With `spread = 0` (fewer than 2
  uncompressed seeds) this is `bits_to_match`'s plain comparison.
  """
  won_bits, won = claims.bits_to_match(ours, loss - spread)
  if won != 'not_reached' and won_bits <= bits:
    return 'ours better'
  if not ours or min(b for b, _ in ours) > bits:
    return 'not comparable'
  lost_bits, lost = claims.bits_to_match(ours, loss + spread)
  if lost == 'not_reached' or lost_bits > bits:
    return 'baseline better'
  return 'within seed spread'


def _claim2(setting, finished) -> dict | None:
  compressed = [(r, s) for r, s in finished if r.compressed]
  if len(compressed) < 3:
    return None
  result = dict(setting=setting, runs=len(compressed))
  for prefix, group in (('all', compressed), ('ours', [(r, s) for r, s in compressed
                                                       if r.config.aggregator.method == 'rdq'])):
    x = [s['mean_relative_distortion'] for _, s in group]
    y = [s['eval_loss'] for _, s in group]
    result[f'{prefix}_n'] = len(group)
    result[f'{prefix}_spearman'] = claims.spearman(x, y) if len(group) >= 3 else math.nan
    low, high = claims.bootstrap_spearman(x, y) if len(group) >= 3 else (math.nan, math.nan)
    result[f'{prefix}_low'], result[f'{prefix}_high'] = low, high
    result[f'{prefix}_p'] = claims.permutation_p_spearman(x, y) if len(group) >= 3 else math.nan
  return result


def _claim1(frontier_rows) -> list[dict]:
  """Per (normalization, target): CV of bits across updates and variance shares.

  `cv`, `mean_bits` and `cv_within_corpus` are of bits per parameter at the
  target; the `share_*` are `claim1.shares_table`'s, of log2 bits, with the
  real client id (sequential: corpus, optimizer, round, client, residual).
  """
  table = claim1_lib.update_table(frontier_rows, NORMALIZATIONS, TARGET_DISTORTIONS)
  shares = {(s['normalization'], s['target']): s for s in claim1_lib.shares_table(table)}
  results = []
  for key in NORMALIZATIONS:
    for target in TARGET_DISTORTIONS:
      rows = [u for u in table if u['normalization'] == key and u['target'] == target]
      reached = [u for u in rows if not math.isnan(u['bits'])]
      values = [u['bits'] for u in reached]
      # Within one corpus: is the frontier the same across the other factors?
      by_corpus = {c: [u['bits'] for u in reached if u['corpus'] == c]
                   for c in sorted({u['corpus'] for u in reached})}
      within = [claims.coefficient_of_variation(v) for v in by_corpus.values() if len(v) >= 2]
      share = shares.get((key, target), {})
      results.append(dict(normalization=key, target=target, updates=len(values),
                          outside_grid=len(rows) - len(values),
                          mean_bits=float(np.mean(values)) if values else math.nan,
                          cv=claims.coefficient_of_variation(values),
                          cv_within_corpus=max(within) if within else math.nan,
                          mean_bits_by_corpus='; '.join(
                              f'{c} {np.mean(v):.3g}' for c, v in by_corpus.items()),
                          **{f'share_{k}': share.get(f'share_{k}', math.nan)
                             for k in (*claim1_lib.FACTORS, 'residual')}))
  return results


def _best_normalization(claim1):
  """`(normalization, targets, mean CV)` of the lowest mean CV over the targets
  where every normalization has a CV; None if there are none."""
  cv = {(c['normalization'], c['target']): c['cv'] for c in claim1}
  targets = [t for t in TARGET_DISTORTIONS
             if all(not math.isnan(cv.get((k, t), math.nan)) for k in NORMALIZATIONS)]
  if not targets:
    return None
  means = {k: float(np.mean([cv[(k, t)] for t in targets])) for k in NORMALIZATIONS}
  best = min(means, key=means.get)
  return best, targets, means[best]


def _one_bit(setting, finished) -> dict | None:
  """Uncompressed (>= 2 seeds) against ours nearest 1 bit/parameter, or None."""
  mean = [s for r, s in finished if not r.compressed]
  ours = [(r, s) for r, s in finished if r.rdq_uniform and
          ONE_BIT_RANGE[0] <= s['mean_bits_per_parameter'] <= ONE_BIT_RANGE[1]]
  if len(mean) < 2 or not ours:
    return None
  run, summary = min(ours, key=lambda p: abs(math.log(p[1]['mean_bits_per_parameter'])))
  result = dict(setting=setting, seeds=len(mean), ours=run.label,
                ours_bits=summary['mean_bits_per_parameter'])
  for key, short in (('eval_accuracy_without_oov_or_eos', 'acc_wo'),
                     ('eval_accuracy', 'acc')):
    values = [s[key] for s in mean]
    average = float(np.mean(values))
    result[f'{short}_mean'] = average
    result[f'{short}_ours'] = summary[key]
    result[f'{short}_gap'] = (average - summary[key]) / average if average else math.nan
    result[f'{short}_spread'] = (max(values) - min(values)) / average if average else math.nan
  return result


def _verdict(name, verdict, reason) -> str:
  return f'- **{name}: {verdict}.** {reason}\n'


def _verdicts(claim1, claim2, one_bit, matches, incomplete) -> str:
  note = ' (on the runs finished so far)' if incomplete else ''
  lines = []
  best = _best_normalization(claim1)
  if not best:
    lines.append(_verdict('Claim 1 (frontier consistent)', 'not enough runs yet',
                          'No frontier of 2 or more saved updates at a common target.'))
  else:
    key, targets, _ = best
    worst = max(c['cv'] for c in claim1
                if c['normalization'] == key and c['target'] in targets)
    verdict = ('supported' if worst <= CV_SUPPORTED else
               'partly' if worst <= CV_PARTLY else 'not supported')
    lines.append(_verdict(
        'Claim 1 (frontier consistent)', verdict + note,
        f'With the {_normalization_name(key)} normalization the largest CV of bits/'
        f'parameter at the target distortions {", ".join(str(t) for t in targets)} is '
        f'{worst:.3f} (supported at <= {CV_SUPPORTED}, '
        f'partly at <= {CV_PARTLY}); within one corpus at most '
        f'{max(c["cv_within_corpus"] for c in claim1 if c["normalization"] == key and c["target"] in targets):.3f}.'))
  if not claim2:
    lines.append(_verdict('Claim 2 (distortion predicts performance)', 'not enough runs yet',
                          'No setting has 3 finished compressed runs.'))
  else:
    positive = [c['all_low'] > 0 and c['all_p'] < CLAIM2_P for c in claim2]
    leaning = [c['all_spearman'] > 0 for c in claim2]
    verdict = ('supported' if all(positive) else
               'partly' if any(positive) or all(leaning) else 'not supported')
    lines.append(_verdict(
        'Claim 2 (distortion predicts performance)', verdict + note,
        f'Over all compressed runs, the Spearman interval lies above 0 with permutation p < '
        f'{CLAIM2_P} in {sum(positive)} of {len(claim2)} settings, and the correlation is '
        f'positive in {sum(leaning)} (supported: every setting so; partly: some, or every '
        'correlation positive).'))
  if not one_bit:
    lines.append(_verdict('About 1 bit/parameter costs no accuracy', 'not enough runs yet',
                          'No setting has 2 uncompressed seeds and an rdq run near 1 bit.'))
  else:
    within = [c['acc_wo_gap'] <= c['acc_wo_spread'] for c in one_bit]
    near = [c['acc_wo_gap'] <= 2 * c['acc_wo_spread'] for c in one_bit]
    verdict = 'supported' if all(within) else 'partly' if all(near) else 'not supported'
    lines.append(_verdict(
        'About 1 bit/parameter costs no accuracy', verdict + note,
        f'The relative gap in accuracy without OOV/EOS is within the seed spread in '
        f'{sum(within)} of {len(one_bit)} settings and within twice it in {sum(near)} '
        '(supported: within the spread everywhere; partly: within twice it).'))
  if not matches:
    lines.append(_verdict('Ours beats the baselines at equal bits', 'not enough runs yet',
                          'No finished baseline runs beside ours.'))
  else:
    outcomes = [m['outcome'] for m in matches if m['outcome'] != 'not comparable']
    wins, losses = outcomes.count('ours better'), outcomes.count('baseline better')
    n = len(outcomes)
    verdict = ('not enough runs yet' if not n else
               'supported' if wins == n else
               'not supported' if losses * 2 >= n else
               'partly' if wins * 2 >= n else 'not separated from seed noise')
    lines.append(_verdict(
        'Ours beats the baselines at equal bits', verdict + (note if n else ''),
        f'Of {n} baseline runs ours can be compared with (eval loss against bits, with the '
        f'uncompressed seeds\' spread as noise), ours is better in {wins}, the baseline in '
        f'{losses}, and {n - wins - losses} are within the seed spread (supported: ours better '
        'in all; not supported: the baseline better in at least half; partly: ours better in '
        'at least half).'))
  return ''.join(lines)
