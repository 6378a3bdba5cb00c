"""Statistics behind the reproduction report's verdicts (numpy only).

Pure functions over small tables of finished runs and saved updates:

- `spearman(x, y)`: Spearman's rank correlation (average ranks for ties).
- `bootstrap_spearman(x, y, ...)`: a seeded percentile bootstrap interval of it
  (pairs resampled with replacement).
- `permutation_p_spearman(x, y, ...)`: the one-sided permutation p-value of a
  positive correlation (exact for up to 8 pairs); with few runs the bootstrap
  interval degenerates (3 runs in order always give [1, 1]), the p-value does
  not (3 runs in order: 1/6).
- `coefficient_of_variation(values)`: sample standard deviation / mean.
- `variance_shares(values, factors)`: for each factor, the share of the total
  sum of squares explained by its group means (one-way eta squared, each
  factor on its own, so shares of correlated factors can add up to more than
  one).
- `bits_to_match(points, target_loss)`: the bits per parameter at which a
  method's (bits, eval loss) curve first reaches `target_loss`, linearly
  interpolated between neighbouring runs ordered by bits.

(The Pareto front of a (bits, value) table is `compare.pareto_front`.)
"""

import itertools
import math

import numpy as np


def ranks(values) -> np.ndarray:
  """1-based ranks of `values`; tied values get the mean of their ranks."""
  values = np.asarray(values, dtype=np.float64)
  order = np.argsort(values, kind='mergesort')
  result = np.empty(len(values), np.float64)
  sorted_values = values[order]
  start = 0
  while start < len(values):
    end = start
    while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
      end += 1
    result[order[start:end + 1]] = (start + end) / 2 + 1
    start = end + 1
  return result


def spearman(x, y) -> float:
  """Spearman's rank correlation of paired samples; NaN with < 3 pairs or a constant side."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f'x and y must be vectors of equal length, got {x.shape} and {y.shape}.')
  if len(x) < 3:
    return math.nan
  rx, ry = ranks(x), ranks(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  denominator = math.sqrt(float(np.sum(rx * rx) * np.sum(ry * ry)))
  if denominator == 0:
    return math.nan
  return float(np.sum(rx * ry) / denominator)


def bootstrap_spearman(x, y, *, samples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval of `spearman(x, y)` at `level`.

  Resamples the pairs with replacement `samples` times (seeded); resamples
  whose correlation is undefined (a constant side) are left out. NaNs when
  fewer than 3 pairs.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if len(x) < 3:
    return math.nan, math.nan
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(samples):
    index = rng.integers(0, len(x), len(x))
    value = spearman(x[index], y[index])
    if not math.isnan(value):
      values.append(value)
  if not values:
    return math.nan, math.nan
  tail = (1 - level) / 2 * 100
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


EXACT_PERMUTATION_PAIRS = 8  # 8! = 40,320 orders.


def permutation_p_spearman(x, y, *, samples: int = 20000, seed: int = 0) -> float:
  """One-sided p-value of `spearman(x, y)` under independence (a positive correlation).

  The share of orders of `y` (all `n!` of them when `n <= 8`, else `samples`
  seeded random ones, counted as `(hits + 1) / (samples + 1)`) whose
  correlation with `x` is at least the observed one (up to rounding). NaN when
  the correlation is undefined.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if math.isnan(spearman(x, y)):
    return math.nan
  # Reordering y keeps both rank norms, so the correlation's order is that of
  # the centred ranks' dot product.
  rx, ry = ranks(x), ranks(y)
  rx, ry = rx - rx.mean(), ry - ry.mean()
  threshold = float(ry @ rx) - 1e-9
  if len(x) <= EXACT_PERMUTATION_PAIRS:
    orders = np.array(list(itertools.permutations(range(len(x)))))
    return float(np.mean(ry[orders] @ rx >= threshold))
  rng = np.random.default_rng(seed)
  orders = np.argsort(rng.random((samples, len(x))), axis=1)
  return float((np.sum(ry[orders] @ rx >= threshold) + 1) / (samples + 1))


def coefficient_of_variation(values) -> float:
  """Sample standard deviation (ddof=1) over the mean; NaN for < 2 values."""
  values = np.asarray(values, np.float64)
  if len(values) < 2 or values.mean() == 0:
    return math.nan
  return float(values.std(ddof=1) / values.mean())


def variance_shares(values, factors: dict) -> dict:
  """One-way eta squared of each factor: between-group / total sum of squares.

  Args:
    values: The measurements (e.g. bits per parameter of each update).
    factors: `name -> labels`, one label per value.

  Returns:
    `name -> share` in [0, 1] (NaN when all values are equal).
  """
  values = np.asarray(values, np.float64)
  total = float(np.sum((values - values.mean()) ** 2))
  shares = {}
  for name, labels in factors.items():
    labels = np.asarray(labels)
    if labels.shape != values.shape:
      raise ValueError(f'factor {name!r} has {labels.shape} labels for {values.shape} values.')
    between = 0.0
    for label in np.unique(labels):
      group = values[labels == label]
      between += len(group) * (group.mean() - values.mean()) ** 2
    shares[name] = between / total if total > 0 else math.nan
  return shares


def bits_to_match(points, target_loss: float):
  """Bits per parameter at which a (bits, loss) curve first reaches `target_loss`.

  Args:
    points: `(bits, loss)` pairs of one method's runs.
    target_loss: The loss to reach (lower is better).

  Returns:
    `(bits, status)`: `status` is `'interpolated'` (linear between the two
    runs, ordered by bits, where the curve first crosses the target),
    `'at_or_below_fewest_bits'` (already the run with the fewest bits reaches
    it; `bits` is that run's) or `'not_reached'` (`bits` is NaN).
  """
  points = sorted((float(b), float(l)) for b, l in points)
  if not points:
    return math.nan, 'not_reached'
  if points[0][1] <= target_loss:
    return points[0][0], 'at_or_below_fewest_bits'
  for (b0, l0), (b1, l1) in zip(points, points[1:]):
    if l1 <= target_loss:
      fraction = (l0 - target_loss) / (l0 - l1)
      return b0 + fraction * (b1 - b0), 'interpolated'
  return math.nan, 'not_reached'
