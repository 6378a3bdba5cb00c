"""Claim 1 analysed: what an update's bits at a fixed distortion depend on.

Claim 1 says that ours' rate-distortion frontier is consistent: at a fixed
relative distortion an update costs about the same bits per parameter,
whatever its corpus, server optimizer, round or client. From the frontier rows
of the saved updates (`results.FRONTIER_FIELDS`: one row per update and grid
step) this module computes, for each distortion normalization (a frontier
column such as `relative_distortion`) and target distortion:

- `update_table`: per update, `log2_bits`, log2 of its bits per parameter at
  the target (`value_at`: linear in (log distortion, log value) between the
  two grid points around the target, NaN outside the grid), the log2 fraction
  of nonzero quantized integers at the same operating point, and the update's
  own figures (examples, tokens, fraction of embedding rows touched).
- `shares_table`: how the variance of `log2_bits` splits between corpus,
  optimizer, round and the real client (`sequential_shares`).
- `regression_table`: least squares of `log2_bits` on a corpus indicator and
  what the data predicts (`MODELS`): is the corpus gap still beyond the
  tolerance once sparsity and client size are in?
- `fixed_step_table`: the claim's practical reading, "a fixed step is
  near-optimal": per setting, the total distortion of one global grid step
  against per-update Lagrangian steps at equal mean bits.

`analyse` runs them all; `describe` says what they show in plain words,
`markdown_tables` and `CSV_FIELDS` lay them out for the report
(`reporting._claim1_section`).

A column the sweep did not measure (the first sweep's frontier CSVs have no
`zero_fraction`, `examples`, `tokens`, `embedding_rows_touched` or
`squared_norm`; `read_frontier` gives NaN) makes the analyses that need it
say `not measured` instead of a number.

numpy and scipy only; no TensorFlow.
"""

import math

import numpy as np
from scipy import stats

DEFAULT_TOLERANCE = 0.25  # `[analysis] claim1_tolerance` when the config has none.
MEAN_BITS_LEVELS = (0.25, 0.5, 1.0, 2.0)  # Mean bits/parameter of `fixed_step_table`.
FACTORS = ('corpus', 'optimizer', 'round', 'client')  # `sequential_shares`' order.
NOT_MEASURED = 'not measured for this sweep'
DISTORTIONS = ('squared error', 'relative distortion')  # `fixed_step_table`'s.

# Regression models: name -> predictors besides the corpus indicator(s).
# `log2_nonzero_fraction`: log2 of the nonzero share of the quantized integers
# at the operating point (with a sparse update the coder spends its bits on
# the nonzeros, so bits ~ nonzero fraction: a coefficient near 1);
# `log2_rows_touched`: log2 of the fraction of embedding rows the update
# changes (the client's distinct tokens); `log2_client_size`: log2 of the
# client's tokens when the sweep recorded them, else of its examples.
MODELS = {
    'corpus': (),
    'corpus + client size': ('log2_client_size',),
    'corpus + nonzero fraction + client size': ('log2_nonzero_fraction', 'log2_client_size'),
    'corpus + embedding rows touched + client size': ('log2_rows_touched',
                                                      'log2_client_size'),
}
PREDICTORS = ('log2_nonzero_fraction', 'log2_rows_touched', 'log2_client_size')


def value_at(rows, key: str, target: float, value: str = 'bits_per_parameter') -> float:
  """`value` of one update's curve at distortion `target` (column `key`).

  Linear in (log distortion, log value) between the two grid points around
  `target`; NaN outside the grid's range (no extrapolation) or where a value
  is missing, zero or negative.
  """
  points = sorted((r[key], r[value]) for r in rows if r[key] > 0 and r[value] > 0)
  for (d0, v0), (d1, v1) in zip(points, points[1:]):
    if d0 <= target <= d1:
      if d1 == d0:
        return v0
      t = (math.log(target) - math.log(d0)) / (math.log(d1) - math.log(d0))
      return math.exp(math.log(v0) + t * (math.log(v1) - math.log(v0)))
  return math.nan


def bits_at(rows, key: str, target: float) -> float:
  """Bits per parameter of one update's curve at distortion `target` (`value_at`)."""
  return value_at(rows, key, target, 'bits_per_parameter')


def _finite(value) -> float:
  """`value` as a float; NaN for a missing or blank one (a column not measured)."""
  if value is None or value == '':
    return math.nan
  return float(value)


def group_updates(frontier_rows) -> dict:
  """`(setting, round, client) -> rows` of each saved update, in that order."""
  updates = {}
  for row in frontier_rows:
    updates.setdefault((row['setting'], row['round'], row['client']), []).append(row)
  return dict(sorted(updates.items()))


def _update_figures(setting, round_num, client, rows, positions) -> dict:
  """The figures of one update that do not depend on the operating point."""
  first = rows[0]
  tokens = _finite(first.get('tokens'))
  examples = _finite(first.get('examples'))
  # Without a real client id the saved-update index is all there is; it is a
  # different client in each round, so say so in the id.
  client_id = first.get('client_id') or f'index {client} of round {round_num}'
  return dict(setting=setting, corpus=first['corpus'], optimizer=first['optimizer'],
              round=round_num, position=positions[(setting, round_num)],
              client=client, client_id=f'{first["corpus"]}/{client_id}',
              examples=examples, tokens=tokens,
              rows_touched=_finite(first.get('embedding_rows_touched')))


def update_table(frontier_rows, normalizations, targets) -> list[dict]:
  """One row per (update, normalization, target); see the module doc.

  `position` is the round's position among the setting's saved rounds (0 the
  earliest); `client_id` is prefixed by the corpus (the corpora have disjoint
  clients); `log2_client_size` is log2 of tokens where every update has them,
  else of examples (`client_size` says which).
  """
  updates = group_updates(frontier_rows)
  positions = {}
  for setting in {k[0] for k in updates}:
    rounds = sorted({k[1] for k in updates if k[0] == setting})
    positions.update({(setting, r): i for i, r in enumerate(rounds)})
  figures = [_update_figures(*k, rows, positions) for k, rows in updates.items()]
  size = ('tokens' if figures and all(f['tokens'] > 0 for f in figures) else 'examples')
  table = []
  for key in normalizations:
    for target in targets:
      for rows, update in zip(updates.values(), figures):
        with_nonzero = [dict(r, nonzero_fraction=1 - _finite(r.get('zero_fraction')))
                        for r in rows]
        bits = bits_at(rows, key, target)
        table.append(dict(
            update, normalization=key, target=target, bits=bits,
            log2_bits=math.log2(bits) if bits > 0 else math.nan,
            log2_nonzero_fraction=_log2(value_at(with_nonzero, key, target,
                                                 'nonzero_fraction')),
            log2_rows_touched=_log2(update['rows_touched']),
            client_size=size, log2_client_size=_log2(update[size])))
  return table


def _log2(value: float) -> float:
  return math.log2(value) if value > 0 else math.nan


def _indicators(labels) -> np.ndarray:
  """One 0/1 column per distinct label."""
  labels = np.asarray(labels)
  return np.stack([labels == label for label in np.unique(labels)], axis=1).astype(float)


def sequential_shares(values, factors: dict) -> dict:
  """Sequential (type I) shares of the variance of `values`, in `factors`' order.

  Factors enter a least-squares fit one after the other, each as indicators
  of its labels; a factor's share is the part of the total sum of squares
  that its entry adds to what the factors before it explain, and `residual`
  is what none explains. The shares and `residual` add up to 1 (NaN when
  all values are equal). The first share is that factor's one-way eta
  squared (`claims.variance_shares`); a later one is net of the earlier
  factors, so a factor nested in earlier ones (a client within its corpus
  and round) counts only the variation within them.
  """
  y = np.asarray(values, np.float64)
  total = float(np.sum((y - y.mean()) ** 2))
  if total == 0:
    return dict.fromkeys([*factors, 'residual'], math.nan)
  columns = [np.ones((len(y), 1))]
  shares, explained = {}, 0.0
  for name, labels in factors.items():
    columns.append(_indicators(labels))
    design = np.hstack(columns)
    fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    now = total - float(np.sum((y - fitted) ** 2))
    shares[name], explained = max(now - explained, 0.0) / total, max(now, explained)
  shares['residual'] = max(1 - explained / total, 0.0)
  return shares


def shares_table(table) -> list[dict]:
  """Per (normalization, target): `sequential_shares` of `log2_bits` (`FACTORS`).

  Order: corpus, optimizer, round (position among the saved rounds), client
  (the real client id). `share_client` is the variation between real clients
  within the same corpus and round, net of the optimizer: in the first sweep
  each client's update was saved twice (once per optimizer, same sampling
  seed), so `share_residual` is then what differs between the two updates of
  one client beyond the optimizer's mean effect; where every client appears
  once, `share_client` takes all that variation and `share_residual` is 0.
  """
  results = []
  for (key, target), rows in _by_operating_point(table).items():
    reached = [u for u in rows if not math.isnan(u['log2_bits'])]
    ids = [u['client_id'] for u in reached]
    result = dict(normalization=key, target=target, updates=len(reached),
                  outside_grid=len(rows) - len(reached), clients=len(set(ids)),
                  repeated_clients=sum(ids.count(i) > 1 for i in set(ids)))
    factors = {name: [u['client_id' if name == 'client' else
                        'position' if name == 'round' else name] for u in reached]
               for name in FACTORS}
    shares = (sequential_shares([u['log2_bits'] for u in reached], factors)
              if len(reached) >= 2 else dict.fromkeys([*FACTORS, 'residual'], math.nan))
    results.append(dict(result, **{f'share_{k}': v for k, v in shares.items()}))
  return results


def _by_operating_point(table) -> dict:
  groups = {}
  for row in table:
    groups.setdefault((row['normalization'], row['target']), []).append(row)
  return groups


def least_squares(y, predictors: dict, level: float = 0.95) -> dict:
  """Ordinary least squares of `y` on an intercept and `predictors`.

  Returns `dict(n, r2, coefficients)`, `coefficients` `name -> (estimate,
  low, high)` with the `level` t interval (residual degrees of freedom
  `n - p`), the intercept under `'intercept'`. The interval assumes
  independent residuals. NaNs (and `note`) when there are no residual
  degrees of freedom or the predictors are collinear.
  """
  y = np.asarray(y, np.float64)
  design = np.column_stack([np.ones(len(y)), *[np.asarray(v, np.float64)
                                               for v in predictors.values()]])
  names = ['intercept', *predictors]
  n, p = design.shape
  note = ('too few updates' if n <= p else
          'collinear predictors' if np.linalg.matrix_rank(design) < p else '')
  if note:
    return dict(n=n, r2=math.nan, note=note,
                coefficients={k: (math.nan,) * 3 for k in names})
  beta = np.linalg.lstsq(design, y, rcond=None)[0]
  residual = y - design @ beta
  rss, tss = float(residual @ residual), float(np.sum((y - y.mean()) ** 2))
  covariance = rss / (n - p) * np.linalg.inv(design.T @ design)
  half = stats.t.ppf((1 + level) / 2, n - p) * np.sqrt(np.diag(covariance))
  return dict(n=n, r2=1 - rss / tss if tss > 0 else math.nan, note='',
              coefficients={k: (float(b), float(b - h), float(b + h))
                            for k, b, h in zip(names, beta, half)})


def consistency(low: float, high: float, tolerance: float) -> str:
  """The corpus effect's 95 % interval (log2 bits) against `log2(1 + tolerance)`.

  `within tolerance` if the interval lies inside (-margin, margin), `outside
  tolerance` if it lies entirely beyond one end, else `inconclusive`.
  """
  margin = math.log2(1 + tolerance)
  if math.isnan(low) or math.isnan(high):
    return 'n/a'
  if -margin < low and high < margin:
    return 'within tolerance'
  if low > margin or high < -margin:
    return 'outside tolerance'
  return 'inconclusive'


def _regression(rows, model, predictors, tolerance) -> dict:
  """One `MODELS` fit on the updates of one operating point."""
  used = [u for u in rows if not math.isnan(u['log2_bits'])]
  missing = [k for k in predictors if any(math.isnan(u[k]) for u in used)]
  result = dict(model=model, updates=len(used), client_size=used[0]['client_size']
                if used else '', tolerance=tolerance)
  corpora = sorted({u['corpus'] for u in used})
  if missing or len(corpora) < 2:
    return dict(result, note=(NOT_MEASURED + f' ({", ".join(missing)})' if missing
                              else 'fewer than 2 corpora'), consistent='n/a')
  # One indicator per corpus but the first (alphabetically): its gap to the
  # first corpus, in log2 bits.
  columns = {f'corpus {c} - {corpora[0]}': [float(u['corpus'] == c) for u in used]
             for c in corpora[1:]}
  columns.update({k: [u[k] for u in used] for k in predictors})
  fit = least_squares([u['log2_bits'] for u in used], columns)
  gap = max(list(columns)[:len(corpora) - 1], key=lambda k: abs(fit['coefficients'][k][0]))
  effect, low, high = fit['coefficients'][gap]
  result.update(r2=fit['r2'], note=fit['note'], corpus_contrast=gap, corpus_effect=effect,
                corpus_low=low, corpus_high=high,
                consistent=consistency(low, high, tolerance))
  for k in predictors:
    result[k], result[f'{k}_low'], result[f'{k}_high'] = fit['coefficients'][k]
  return result


def regression_table(table, tolerance: float = DEFAULT_TOLERANCE) -> list[dict]:
  """Per (normalization, target) and `MODELS` entry: the fit of `log2_bits`.

  Each row: `r2`; `corpus_effect` (log2 bits of the corpus with the largest
  gap minus the first corpus, with the other predictors held fixed) and its
  95 % interval `corpus_low`, `corpus_high`; `consistent`, `consistency` of
  that interval with `tolerance` (the `[analysis]` table's
  `claim1_tolerance`); each predictor's coefficient and interval (log2 bits
  per doubling). `note` says why a fit is missing (a column not measured for
  this sweep, too few updates, collinear predictors). The updates are not
  independent (one client's update is saved under both optimizers, the
  updates of a round share the model), so the intervals are optimistic.
  """
  results = []
  for (key, target), rows in _by_operating_point(table).items():
    for model, predictors in MODELS.items():
      results.append(dict(normalization=key, target=target,
                          **_regression(rows, model, predictors, tolerance)))
  return results


def _setting_curves(rows, subdivisions: int):
  """Per-update curves of one setting on a fine grid of global steps.

  The grid: the steps every update was measured at, with `subdivisions`
  geometric points per interval; an update's log bits and log distortion are
  linear in log step between its measured steps (as a step between two grid
  points would give). Returns `(steps, bits, relative, absolute, weights)`:
  `bits`, `relative` (`relative_distortion`) and `absolute` (that times the
  update's `squared_norm`, NaN if not measured) are `(updates, steps)`
  arrays, `weights` each update's share of the setting's parameters.
  """
  updates = list(group_updates(rows).values())
  usable = [{r['step']: r for r in u if r['bits_per_parameter'] > 0 and
             r['relative_distortion'] > 0} for u in updates]
  common = sorted(set.intersection(*(set(u) for u in usable)))
  if len(common) < 2:
    return None
  log_common = np.log(common)
  log_steps = np.concatenate([
      np.linspace(a, b, subdivisions, endpoint=False)
      for a, b in zip(log_common, log_common[1:])] + [log_common[-1:]])

  def curve(update, column):
    return np.exp(np.interp(log_steps, log_common,
                            np.log([update[s][column] for s in common])))

  bits = np.array([curve(u, 'bits_per_parameter') for u in usable])
  relative = np.array([curve(u, 'relative_distortion') for u in usable])
  norms = np.array([_finite(u[common[0]].get('squared_norm')) for u in usable])
  parameters = np.array([float(u[common[0]]['parameters']) for u in usable])
  return (np.exp(log_steps), bits, relative, relative * norms[:, None],
          parameters / parameters.sum())


def _lower_hull(bits, errors) -> list[tuple[float, float]]:
  """Vertices of the lower convex hull of `(bits, error)` points, from the
  fewest bits to the least error (the points a Lagrangian choice can pick)."""
  hull = []
  for point in sorted(zip(bits.tolist(), errors.tolist())):
    while len(hull) >= 2 and ((hull[-1][0] - hull[-2][0]) * (point[1] - hull[-2][1]) -
                              (hull[-1][1] - hull[-2][1]) * (point[0] - hull[-2][0])) <= 0:
      hull.pop()
    hull.append(point)
  least = min(range(len(hull)), key=lambda i: hull[i][1])
  return hull[:least + 1]


def lagrangian_curve(bits, errors) -> tuple[np.ndarray, np.ndarray]:
  """Total error against total bits of per-update Lagrangian choices.

  For a multiplier `lam`, each update (a row of `bits`, `errors`: its
  choices, bits already weighted) picks the choice minimizing `bits + lam *
  error`; sweeping `lam` from 0 up traces, for the sums, the lower convex
  hull of every combination of choices. It is built exactly: each update's
  hull segments, merged in order of their slope (the `lam` at which the
  update moves to its next choice). Returns the hull's vertices `(total
  bits, total error)`, bits increasing; between vertices the curve is linear
  (two neighbouring `lam` solutions mixed).
  """
  hulls = [_lower_hull(b, e) for b, e in zip(bits, errors)]
  segments = sorted(((e1 - e0) / (b1 - b0), u, i, b1 - b0, e1 - e0)
                    for u, hull in enumerate(hulls)
                    for i, ((b0, e0), (b1, e1)) in enumerate(zip(hull, hull[1:])))
  start_bits = sum(h[0][0] for h in hulls)
  start_error = sum(h[0][1] for h in hulls)
  total_bits = np.concatenate([[start_bits], start_bits + np.cumsum([s[3] for s in segments])])
  total_error = np.concatenate([[start_error],
                                start_error + np.cumsum([s[4] for s in segments])])
  return total_bits, total_error


def _at(curve_bits, curve_error, level: float) -> float:
  """Linear interpolation of a (bits, error) curve at `level`; NaN outside it."""
  order = np.argsort(curve_bits, kind='stable')
  x, y = np.asarray(curve_bits)[order], np.asarray(curve_error)[order]
  if not x[0] <= level <= x[-1]:
    return math.nan
  return float(np.interp(level, x, y))


def fixed_vs_lagrangian(bits, errors, weights, levels) -> list[dict]:
  """One global step against per-update Lagrangian steps at mean bits `levels`.

  Args:
    bits: `(updates, steps)` bits per parameter at each global step.
    errors: `(updates, steps)` distortion at each global step.
    weights: Each update's share of the parameters (mean bits weights).
    levels: Mean bits per parameter to compare at.

  Returns:
    Per level: `fixed`, the summed error of one global step with that mean
    bits (linear between neighbouring steps); `lagrangian`, that of the
    per-update Lagrangian choices (`lagrangian_curve`); `ratio` = fixed /
    lagrangian, at least 1 since the Lagrangian curve is the lower convex
    hull of every choice (NaN where a level is outside either curve).
  """
  weighted = bits * np.asarray(weights)[:, None]
  fixed_bits, fixed_error = weighted.sum(axis=0), errors.sum(axis=0)
  hull_bits, hull_error = lagrangian_curve(weighted, errors)
  results = []
  for level in levels:
    fixed = _at(fixed_bits, fixed_error, level)
    lagrangian = _at(hull_bits, hull_error, level)
    reachable = not (math.isnan(fixed) or math.isnan(lagrangian))
    results.append(dict(mean_bits=level, fixed=fixed, lagrangian=lagrangian,
                        ratio=fixed / lagrangian if reachable and lagrangian > 0
                        else math.nan))
  return results


def fixed_step_table(frontier_rows, levels=MEAN_BITS_LEVELS, subdivisions: int = 16):
  """Per setting, distortion and level: `fixed_vs_lagrangian` of its saved updates.

  The global step is the frontier's grid step (a multiple of each tensor's
  RMS with `normalization='rms'`, the same for every update), refined by
  `subdivisions` interpolated steps per grid interval (`_setting_curves`)
  so that neither side is limited by the grid's coarseness. `distortion`
  is `squared error` (the total absolute squared error, relative distortion
  x the update's `squared_norm`), or `relative distortion` (the sum of the
  updates' relative distortions, every update weighted as if its norm were
  1; the only one possible where `squared_norm` was not measured, whose
  `squared error` rows say so in `note`).
  """
  results = []
  for setting in sorted({r['setting'] for r in frontier_rows}):
    curves = _setting_curves([r for r in frontier_rows if r['setting'] == setting],
                             subdivisions)
    if curves is None:
      continue
    _, bits, relative, absolute, weights = curves
    for distortion, errors in zip(DISTORTIONS, (absolute, relative)):
      measured = bool(np.all(np.isfinite(errors)))
      compared = (fixed_vs_lagrangian(bits, errors, weights, levels) if measured else
                  [dict(mean_bits=level, fixed=math.nan, lagrangian=math.nan, ratio=math.nan)
                   for level in levels])
      for row in compared:
        results.append(dict(setting=setting, distortion=distortion, updates=len(bits),
                            note='' if measured else NOT_MEASURED + ' (squared_norm)', **row))
  return results


def analyse(frontier_rows, normalizations, targets, tolerance=None,
            levels=MEAN_BITS_LEVELS) -> dict:
  """Every table of this module from the frontier rows.

  Args:
    frontier_rows: `read_frontier` rows of the saved updates (any settings).
    normalizations: Distortion columns to analyse (`results.NORMALIZATIONS`).
    targets: Target distortions.
    tolerance: `[analysis] claim1_tolerance` (relative bits); None:
      `DEFAULT_TOLERANCE`.
    levels: Mean bits per parameter of `fixed_step_table`.

  Returns:
    `dict(tolerance, updates, shares, regressions, fixed_step)`, the tables
    of `update_table`, `shares_table`, `regression_table` and
    `fixed_step_table`.
  """
  tolerance = DEFAULT_TOLERANCE if tolerance is None else float(tolerance)
  table = update_table(frontier_rows, normalizations, targets)
  return dict(tolerance=tolerance, updates=table, shares=shares_table(table),
              regressions=regression_table(table, tolerance),
              fixed_step=fixed_step_table(frontier_rows, levels))


def _percent_range(values) -> str:
  values = [v for v in values if not math.isnan(v)]
  if not values:
    return 'n/a'
  low, high = 100 * min(values), 100 * max(values)
  return f'{low:.0f} %' if round(low) == round(high) else f'{low:.0f}-{high:.0f} %'


def _range(values, spec='.3g') -> str:
  values = [v for v in values if not math.isnan(v)]
  if not values:
    return 'n/a'
  low, high = f'{min(values):{spec}}', f'{max(values):{spec}}'
  return low if low == high else f'{low} to {high}'


def _shares_sentence(shares) -> str:
  first = shares[0]
  parts = [f'the {name} {_percent_range([s[f"share_{name}"] for s in shares])}'
           for name in ('corpus', 'optimizer', 'round')]
  return (f'Of the variance of log2 bits per parameter at a fixed distortion ({first["updates"]}'
          f' updates of {first["clients"]} real clients, {first["repeated_clients"]} of them '
          f'saved more than once), taken in that order {", ".join(parts)}, and the real client '
          f'within its corpus and round '
          f'{_percent_range([s["share_client"] for s in shares])}; '
          f'{_percent_range([s["share_residual"] for s in shares])} is left over '
          '(ranges over the normalizations and targets). ')


def _regression_sentences(regressions, tolerance) -> str:
  margin = math.log2(1 + tolerance)
  out = []
  for model in MODELS:
    fits = [r for r in regressions if r['model'] == model]
    done = [r for r in fits if not math.isnan(r.get('corpus_effect', math.nan))]
    if not done:
      out.append(f'*{model}*: {fits[0]["note"] if fits else "no fit"}. ')
      continue
    within = sum(r['consistent'] == 'within tolerance' for r in done)
    outside = sum(r['consistent'] == 'outside tolerance' for r in done)
    out.append(
        f'*{model}*: R^2 {_range([r["r2"] for r in done], ".2f")}, corpus gap '
        f'{_range([r["corpus_effect"] for r in done])} log2 bits (a factor '
        f'{_range([2 ** r["corpus_effect"] for r in done])}, '
        f'{done[0]["corpus_contrast"]}); its 95 % interval lies within the tolerance '
        f'(+-{margin:.3g} log2 bits, {tolerance:.3g} relative) at {within} of {len(done)} '
        f'operating points and beyond it at {outside}'
        + ''.join(f'; {k[5:].replace("_", " ")}: {_range([r[k] for r in done])} log2 bits '
                  'per doubling' for k in MODELS[model]) + '. ')
  return ''.join(out)


def _fixed_step_sentence(fixed_step) -> str:
  out = []
  for distortion in DISTORTIONS:
    rows = [r for r in fixed_step if r['distortion'] == distortion]
    ratios = [r['ratio'] for r in rows if not math.isnan(r['ratio'])]
    if not rows:
      continue
    if not ratios:
      out.append(f'With the {distortion} summed over the updates: '
                 f'{rows[0]["note"] or "no level reached"}. ')
      continue
    levels = sorted({r['mean_bits'] for r in rows if not math.isnan(r['ratio'])})
    worst = max((r for r in rows if not math.isnan(r['ratio'])), key=lambda r: r['ratio'])
    out.append(
        f'With the {distortion} summed over the updates, one global step has '
        f'{_range(ratios, ".3f")} times the distortion of per-update Lagrangian steps at '
        f'equal mean bits (over {len({r["setting"] for r in rows})} settings and the mean '
        f'bits per parameter {", ".join(f"{v:g}" for v in levels)} where reached; the most '
        f'at {worst["mean_bits"]:g} bits in {worst["setting"]}). ')
  return ''.join(out)


def describe(analysis) -> str:
  """A plain-language paragraph of `analyse`'s numbers (markdown)."""
  tolerance = analysis['tolerance']
  out = []
  if analysis['shares']:
    out.append(_shares_sentence(analysis['shares']))
  if analysis['regressions']:
    out.append('What predicts log2 bits at a fixed distortion (least squares, corpus as an '
               'indicator): ' + _regression_sentences(analysis['regressions'], tolerance))
    full = [r for r in analysis['regressions'] if r['model'] != 'corpus'
            and r['consistent'] in ('within tolerance', 'outside tolerance', 'inconclusive')]
    if full:
      agree = sum(r['consistent'] == 'within tolerance' for r in full)
      out.append(f'So, given client size and sparsity, the frontier is consistent across corpora '
                 f'at {agree} of {len(full)} (model, operating point) fits. ')
    else:
      out.append('Whether it is consistent given client size and sparsity cannot be said '
                 'from this sweep. ')
  if analysis['fixed_step']:
    out.append('Is a fixed step near-optimal? ' + _fixed_step_sentence(analysis['fixed_step']))
  return ''.join(out).strip() + '\n'


# CSV fields of `analyse`'s tables (`DOCS/claim1_KEY.csv`).
CSV_FIELDS = {
    'shares': ('normalization', 'target', 'updates', 'outside_grid', 'clients',
               'repeated_clients', *[f'share_{k}' for k in (*FACTORS, 'residual')]),
    'regressions': ('normalization', 'target', 'model', 'updates', 'r2', 'corpus_contrast',
                    'corpus_effect', 'corpus_low', 'corpus_high', 'tolerance', 'consistent',
                    *[f'{k}{s}' for k in PREDICTORS for s in ('', '_low', '_high')],
                    'client_size', 'note'),
    'fixed_step': ('setting', 'distortion', 'updates', 'mean_bits', 'fixed', 'lagrangian',
                   'ratio', 'note'),
    'updates': ('normalization', 'target', 'setting', 'corpus', 'optimizer', 'round',
                'position', 'client', 'client_id', 'examples', 'tokens', 'rows_touched',
                'bits', 'log2_bits', 'log2_nonzero_fraction', 'log2_rows_touched',
                'client_size', 'log2_client_size'),
}


def _interval(row, key) -> str:
  """`estimate [low, high]` of a fitted coefficient; `n/a` if there is none."""
  value = row.get(key, math.nan)
  if math.isnan(value):
    return 'n/a'
  return f'{value:.3g} [{row[key + "_low"]:.3g}, {row[key + "_high"]:.3g}]'


def markdown_tables(analysis, names=None) -> list[tuple[str, tuple, list]]:
  """`(title, header, rows)` of the regression and fixed-step tables.

  `names` maps a normalization to its name in the report (default: itself).
  Rows of what this sweep did not measure are left out (`describe` names
  them; the CSVs keep them, as they keep the shares, which the report shows
  in Claim 1's main table).
  """
  names = names or {}
  measured = {key: [r for r in analysis[key] if not r['note'].startswith(NOT_MEASURED)]
              for key in ('regressions', 'fixed_step')}
  regressions = [(names.get(r['normalization'], r['normalization']), r['target'], r['model'],
                  r['updates'], r.get('r2', math.nan), _corpus_interval(r), r['consistent'],
                  *[_interval(r, k) for k in PREDICTORS], r['note'])
                 for r in measured['regressions']]
  fixed = [(f['setting'], f['distortion'], f['updates'], f['mean_bits'], f['fixed'],
            f['lagrangian'], f['ratio'], f['note']) for f in measured['fixed_step']]
  return [
      ('Least squares of log2 bits per parameter at the target distortion: R^2, the corpus '
       'gap (log2 bits) and each predictor\'s coefficient (log2 bits per doubling), with '
       f'95 % intervals; tolerance {analysis["tolerance"]:g} (relative bits)',
       ('normalization', 'target', 'model', 'updates', 'R^2', 'corpus gap',
        'against tolerance', 'nonzero fraction', 'embedding rows touched', 'client size',
        'note'), regressions),
      ('One global step against per-update Lagrangian steps at equal mean bits per '
       'parameter: total distortion of each, and their ratio (fixed / Lagrangian)',
       ('setting', 'distortion', 'updates', 'mean bits/param', 'fixed step', 'Lagrangian',
        'ratio', 'note'), fixed),
  ]


def _corpus_interval(row) -> str:
  """The corpus gap's `estimate [low, high] (contrast)`; `n/a` if not fitted."""
  value = row.get('corpus_effect', math.nan)
  if math.isnan(value):
    return 'n/a'
  return (f'{value:.3g} [{row["corpus_low"]:.3g}, {row["corpus_high"]:.3g}] '
          f'({row["corpus_contrast"]})')
