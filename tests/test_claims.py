"""Tests of `tff_rdq.experiments.claims` against hand-computed values."""

import itertools
import math

import numpy as np
import pytest

from tff_rdq.experiments import claims


def test_ranks_average_ties():
  np.testing.assert_array_equal(claims.ranks([10, 20, 20, 5]), [2, 3.5, 3.5, 1])


def test_spearman_matches_pearson_of_ranks():
  x = [0.1, 0.4, 0.2, 0.9, 0.5, 0.5]
  y = [3.0, 1.0, 2.0, 0.5, 0.7, 0.9]
  # Ranks by hand: x -> [1, 3, 2, 6, 4.5, 4.5]; y -> [6, 4, 5, 1, 2, 3].
  rx = np.array([1, 3, 2, 6, 4.5, 4.5])
  ry = np.array([6, 4, 5, 1, 2, 3])
  expected = np.corrcoef(rx, ry)[0, 1]
  assert claims.spearman(x, y) == pytest.approx(expected)
  assert claims.spearman(x, y) < -0.8


def test_spearman_perfect_and_undefined():
  assert claims.spearman([1, 2, 3, 4], [10, 20, 30, 400]) == pytest.approx(1.0)
  assert claims.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
  assert math.isnan(claims.spearman([1, 2], [2, 1]))
  assert math.isnan(claims.spearman([1, 2, 3], [5, 5, 5]))
  with pytest.raises(ValueError, match='equal length'):
    claims.spearman([1, 2, 3], [1, 2])


def test_bootstrap_interval_contains_estimate_and_is_seeded():
  rng = np.random.default_rng(1)
  x = rng.normal(size=30)
  y = x + 0.5 * rng.normal(size=30)
  low, high = claims.bootstrap_spearman(x, y, samples=500, seed=3)
  estimate = claims.spearman(x, y)
  assert -1 <= low < estimate < high <= 1
  assert (low, high) == claims.bootstrap_spearman(x, y, samples=500, seed=3)
  # Reference: the same resampling in plain numpy.
  rng = np.random.default_rng(3)
  values = []
  for _ in range(500):
    i = rng.integers(0, 30, 30)
    values.append(np.corrcoef(claims.ranks(x[i]), claims.ranks(y[i]))[0, 1])
  np.testing.assert_allclose([low, high], np.percentile(values, [2.5, 97.5]))


def test_coefficient_of_variation():
  values = [1.0, 2.0, 3.0, 6.0]
  assert claims.coefficient_of_variation(values) == pytest.approx(
      np.std(values, ddof=1) / 3.0)
  assert math.isnan(claims.coefficient_of_variation([2.0]))


def test_variance_shares_by_hand():
  values = [1.0, 1.0, 3.0, 3.0]
  shares = claims.variance_shares(values, {
      'corpus': ['a', 'a', 'b', 'b'], 'client': ['x', 'y', 'x', 'y']})
  # Corpus explains everything (group means 1 and 3); client nothing.
  assert shares['corpus'] == pytest.approx(1.0)
  assert shares['client'] == pytest.approx(0.0)
  values = [1.0, 2.0, 4.0, 7.0]
  shares = claims.variance_shares(values, {'f': ['a', 'a', 'b', 'b']})
  total = np.sum((np.array(values) - 3.5) ** 2)  # 21
  between = 2 * (1.5 - 3.5) ** 2 + 2 * (5.5 - 3.5) ** 2  # 16
  assert shares['f'] == pytest.approx(between / total)
  with pytest.raises(ValueError, match='labels'):
    claims.variance_shares(values, {'f': ['a']})


def test_bits_to_match():
  points = [(2.0, 4.0), (0.5, 5.0), (1.0, 4.6)]
  bits, status = claims.bits_to_match(points, 4.3)
  assert status == 'interpolated'
  # Between (1.0, 4.6) and (2.0, 4.0): 4.3 is half way.
  assert bits == pytest.approx(1.5)
  assert claims.bits_to_match(points, 5.5) == (0.5, 'at_or_below_fewest_bits')
  bits, status = claims.bits_to_match(points, 3.0)
  assert status == 'not_reached' and math.isnan(bits)


def test_permutation_p_spearman_exact_and_sampled():
  # Runs in order: only the identity order of n reaches rho = 1.
  assert claims.permutation_p_spearman([1, 2, 3], [4, 5, 9]) == pytest.approx(1 / 6)
  assert claims.permutation_p_spearman([1, 2, 3, 4], [1, 3, 5, 7]) == pytest.approx(1 / 24)
  # Reversed: every order is at least as large.
  assert claims.permutation_p_spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(1.0)
  assert math.isnan(claims.permutation_p_spearman([1, 2, 3], [5, 5, 5]))
  # Exact enumeration against a direct count, with ties.
  x, y = [0.1, 0.4, 0.2, 0.9, 0.5], [1.0, 2.0, 2.0, 5.0, 3.0]
  observed = claims.spearman(x, y)
  orders = list(itertools.permutations(y))
  expected = sum(claims.spearman(x, list(o)) >= observed - 1e-12 for o in orders) / len(orders)
  assert claims.permutation_p_spearman(x, y) == pytest.approx(expected)
  # Sampled (n = 9 > 8): close to the exact value of 1/9! for a perfect order.
  rng = np.random.default_rng(1)
  x = rng.normal(size=12)
  y = x + rng.normal(scale=1.0, size=12)
  sampled = claims.permutation_p_spearman(x, y, samples=20000, seed=2)
  assert claims.permutation_p_spearman(x, y, samples=20000, seed=2) == sampled
  assert 0 < sampled < 0.05
  assert claims.permutation_p_spearman(list(range(9)), list(range(9))) == pytest.approx(
      1 / 20001)
