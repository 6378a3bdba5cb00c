"""Tables of a frontier sweep's rows (`tff_rdq.experiments.frontier`).

`gap_table`: bits/parameter above each bound of `rd_bounds` at matched
normalized distortion; `spread_table`: the spread of one combination's bits
across updates and rounds; `report`: both, as the markdown of `gap.md`.
`curves`, `tensor_stats` and `interpolate` are the per-update curves the
tables and `tff_rdq.experiments.plots.plot_frontier` share.
"""

import math

import numpy as np

from tff_rdq.experiments import rd_bounds

TARGETS = (0.3, 0.1, 0.03, 0.01)


def curves(rows):
  """`{(rounding, codec): {(round, client): (log D/var ascending, bits)}}`."""
  grouped = {}
  for r in rows:
    key = (r['rounding'], r['codec'])
    grouped.setdefault(key, {}).setdefault((r['round'], r['client']), []).append(
        (float(r['normalized_distortion']), float(r['bits_per_parameter'])))
  result = {}
  for key, per_update in grouped.items():
    result[key] = {}
    for update, points in per_update.items():
      points = sorted(p for p in points if p[0] > 0 and math.isfinite(p[0]))
      result[key][update] = (np.log([p[0] for p in points]), np.array([p[1] for p in points]))
  return result


def tensor_stats(rows):
  """`{(round, client): (variance, tensor_sizes, tensor_variances)}`."""
  return {(r['round'], r['client']): (float(r['variance']), r['tensor_sizes'],
                                      r['tensor_variances']) for r in rows}


def interpolate(log_d, bits, target):
  """Bits at normalized distortion `target` (linear in log D); NaN outside."""
  x = math.log(target)
  if len(log_d) == 0 or x < log_d[0] or x > log_d[-1]:
    return float('nan')
  if len(log_d) == 1:
    return float(bits[0])
  # Distortion may be non-monotone at the ends (ties); np.interp needs ascending x.
  order = np.argsort(log_d, kind='stable')
  return float(np.interp(x, log_d[order], bits[order]))


def gap_table(rows, targets=TARGETS) -> list[dict]:
  """Bits/parameter above each bound at matched normalized distortion.

  Per (rounding, codec) and target `D/var`: each update's bits interpolated
  linearly in log-distortion at the target (updates whose sweep does not reach
  the target are left out; `updates` counts the others), then the mean, min
  and max over updates of the bits, and the mean bits minus each bound (the
  per-tensor Gaussian bound is computed per update at `D = target * variance`
  and averaged over the same updates).
  """
  stats = tensor_stats(rows)
  table = []
  for (rounding, codec), per_update in curves(rows).items():
    for target in targets:
      bits, tensor_bounds = [], []
      for update, (log_d, b) in per_update.items():
        value = interpolate(log_d, b, target)
        if math.isfinite(value):
          variance, sizes, variances = stats[update]
          bits.append(value)
          tensor_bounds.append(rd_bounds.gaussian_tensor_bound(sizes, variances, target * variance))
      bits = np.array(bits)
      if bits.size:
        mean, low, high = float(bits.mean()), float(bits.min()), float(bits.max())
        tensor_bound = float(np.mean(tensor_bounds))
        above_tensor = float(np.mean(bits - np.array(tensor_bounds)))
      else:
        mean = low = high = tensor_bound = above_tensor = float('nan')
      table.append(dict(
          rounding=rounding, codec=codec, normalized_distortion=target,
          updates=int(bits.size), bits_per_parameter=mean, bits_min=low, bits_max=high,
          gaussian_bound=rd_bounds.gaussian_bound(target),
          laplacian_bound=rd_bounds.laplacian_bound(target),
          gaussian_tensor_bound=tensor_bound,
          above_gaussian=mean - rd_bounds.gaussian_bound(target),
          above_laplacian=mean - rd_bounds.laplacian_bound(target),
          above_gaussian_tensor=above_tensor))
  return table


def spread_table(rows, targets=TARGETS, combination=None) -> list[dict]:
  """Spread across updates of one combination's bits at each target `D/var`.

  Per target: over updates, the mean, std, min, max and relative range
  `(max - min) / mean` of bits/parameter, and the mean per round.
  """
  by_combination = curves(rows)
  if not by_combination:
    return []
  combination = combination or next(iter(by_combination))
  per_update = by_combination[combination]
  table = []
  for target in targets:
    values = {u: interpolate(ld, b, target) for u, (ld, b) in per_update.items()}
    values = {u: v for u, v in values.items() if math.isfinite(v)}
    if not values:
      continue
    array = np.array(list(values.values()))
    rounds = sorted({u[0] for u in values})
    per_round = {r: float(np.mean([v for u, v in values.items() if u[0] == r])) for r in rounds}
    table.append(dict(
        rounding=combination[0], codec=combination[1], normalized_distortion=target,
        updates=len(values), mean=float(array.mean()), std=float(array.std()),
        min=float(array.min()), max=float(array.max()),
        relative_range=float((array.max() - array.min()) / array.mean())
        if array.mean() > 0 else float('nan'),
        per_round=per_round))
  return table


def _f(value, digits=3):
  return 'n/a' if not math.isfinite(value) else f'{value:.{digits}f}'


def format_gap_table(table) -> str:
  """Markdown of `gap_table`'s rows."""
  lines = ['| rounding | codec | D/var | updates | bits/param (mean) | min - max '
           '| Gaussian R(D) | Laplacian SLB | per-tensor Gaussian R(D) (mean) '
           '| above Gaussian | above Laplacian | above per-tensor Gaussian |',
           '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in table:
    lines.append(
        f"| {r['rounding']} | {r['codec']} | {r['normalized_distortion']:g} | {r['updates']} "
        f"| {_f(r['bits_per_parameter'])} | {_f(r['bits_min'])} - {_f(r['bits_max'])} "
        f"| {_f(r['gaussian_bound'])} | {_f(r['laplacian_bound'])} "
        f"| {_f(r['gaussian_tensor_bound'])} | {_f(r['above_gaussian'])} "
        f"| {_f(r['above_laplacian'])} | {_f(r['above_gaussian_tensor'])} |")
  return '\n'.join(lines)


def format_spread_table(table) -> str:
  """Markdown of `spread_table`'s rows."""
  if not table:
    return '(no updates)'
  lines = ['| D/var | updates | mean | std | min | max | (max-min)/mean | mean per round |',
           '|---:|---:|---:|---:|---:|---:|---:|---|']
  for r in table:
    rounds = ', '.join(f'r{k}: {_f(v)}' for k, v in r['per_round'].items())
    lines.append(
        f"| {r['normalized_distortion']:g} | {r['updates']} | {_f(r['mean'])} | {_f(r['std'])} "
        f"| {_f(r['min'])} | {_f(r['max'])} | {_f(r['relative_range'], 2)} | {rounds} |")
  return '\n'.join(lines)


def report(rows) -> str:
  """The markdown of `gap.md`: the gap table and the spread table."""
  spread = spread_table(rows)
  combination = f'{spread[0]["rounding"]} + {spread[0]["codec"]}' if spread else ''
  normalization = rows[0]['normalization'] if rows else ''
  return '\n'.join([
      '# Bits/parameter above the lower bounds at matched normalized distortion',
      '',
      f'Normalization `{normalization}`; bits include the per-tensor step (and seed) '
      'headers, not the 32-bit client weight. Bits interpolated linearly in '
      'log(D/var) per update, then averaged over updates. Bounds: Gaussian R(D) and '
      'Laplacian Shannon lower bound of a memoryless source of the update\'s variance, '
      'and R(D) of independent Gaussian tensors with the update\'s per-tensor variances '
      '(reverse water-filling). They bound those model sources, not the update: a '
      'negative gap means the update is easier to code than the model source.',
      '',
      format_gap_table(gap_table(rows)),
      '',
      f'## Spread across updates ({combination})',
      '',
      format_spread_table(spread),
      ''])
