"""Tests of `tff_rdq.experiments.rd_bounds`."""

import math

import pytest

from tff_rdq.experiments import rd_bounds


def test_gaussian_and_laplacian_bounds():
  assert rd_bounds.gaussian_bound(0.25) == pytest.approx(1.0)
  assert rd_bounds.gaussian_bound(2.0) == 0.0
  # Laplacian SLB: h - 0.5 log2(2 pi e D), h = log2(2 e b), variance = 2 b**2 = 1.
  d = 0.01
  b = math.sqrt(0.5)
  slb = math.log2(2 * math.e * b) - 0.5 * math.log2(2 * math.pi * math.e * d)
  assert rd_bounds.laplacian_bound(d) == pytest.approx(slb)
  assert rd_bounds.laplacian_bound(d) < rd_bounds.gaussian_bound(d)
  assert rd_bounds.laplacian_bound(0.9) == 0.0


def test_gaussian_tensor_bound_is_reverse_water_filling():
  # One tensor: the Gaussian R(D).
  assert rd_bounds.gaussian_tensor_bound([10], [4.0], 0.04) == pytest.approx(
      rd_bounds.gaussian_bound(0.01))
  # Two equal-size tensors, variances 1 and 100. D = 0.5: both active at theta 0.5.
  assert rd_bounds.gaussian_tensor_bound([5, 5], [1.0, 100.0], 0.5) == pytest.approx(
      0.25 * math.log2(1 / 0.5) + 0.25 * math.log2(100 / 0.5))
  # D = 2: the small tensor gets zero bits (distortion 1), theta = 3.
  assert rd_bounds.gaussian_tensor_bound([5, 5], [1.0, 100.0], 2.0) == pytest.approx(
      0.25 * math.log2(100 / 3))
  assert rd_bounds.gaussian_tensor_bound([5, 5], [1.0, 100.0], 50.5) == 0.0
  assert rd_bounds.gaussian_tensor_bound([5, 5], [1.0, 100.0], 0.0) == float('inf')
  assert rd_bounds.gaussian_tensor_bound([], [], 1.0) == 0.0
