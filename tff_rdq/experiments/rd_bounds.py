"""Rate-distortion bounds of memoryless model sources (bits per sample).

All three take the distortion as a per-element MSE and are floored at 0:

- `gaussian_bound(D / variance)`: `max(0, 0.5 log2(variance / D))`, the
  rate-distortion function of a memoryless Gaussian source.
- `laplacian_bound(D / variance)`: the Shannon lower bound of a memoryless
  Laplacian source, `max(0, h - 0.5 log2(2 pi e D))` with `h = log2(2 e b)`,
  `variance = 2 b**2`, i.e. `max(0, 0.5 log2(variance / D) - 0.1044)`.
- `gaussian_tensor_bound(sizes, variances, D)`: the rate-distortion function
  (reverse water-filling) of independent memoryless Gaussian tensors with the
  given sizes and variances, at the per-element distortion `D` over all of
  them.

They bound those *model* sources, not a real client update: an update with
tensors of very different scales, rows of exact zeros, tails heavier than
Laplacian and clustered zeros can have a much lower rate-distortion function.
For i.i.d. Gaussian (Laplacian) data no scalar quantizer and codec can go
below the Gaussian (Laplacian) curve. Reference point: at high rate, uniform
quantization with ideal entropy coding is `0.5 log2(pi e / 6) = 0.254` bits
above the Shannon lower bound.
"""

import math

import numpy as np

# 0.5 log2(e / pi): the Laplacian SLB minus the Gaussian R(D) at equal variance.
_LAPLACE_OFFSET = 0.5 * math.log2(math.e / math.pi)


def gaussian_bound(normalized_distortion: float) -> float:
  """R(D) in bits/sample of a Gaussian source at `D / variance`."""
  return max(0.0, 0.5 * math.log2(1.0 / normalized_distortion))


def laplacian_bound(normalized_distortion: float) -> float:
  """Shannon lower bound (bits/sample) of a Laplacian source at `D / variance`.

  `h(X) - 0.5 log2(2 pi e D)` with `h = log2(2 e b)`, `variance = 2 b**2`,
  floored at 0.
  """
  return max(0.0, 0.5 * math.log2(1.0 / normalized_distortion) + _LAPLACE_OFFSET)


def gaussian_tensor_bound(sizes, variances, distortion: float) -> float:
  """R(D) in bits/element of independent Gaussian tensors (reverse water-filling).

  Tensor `i` has `sizes[i]` i.i.d. N(0, `variances[i]`) elements; `distortion`
  is the per-element MSE over all elements. The water level `theta` solves
  `sum n_i min(theta, v_i) = N D`; the rate is
  `sum n_i max(0, 0.5 log2(v_i / theta)) / N`.
  """
  n = np.asarray(sizes, np.float64)
  v = np.asarray(variances, np.float64)
  total = n.sum()
  if total == 0 or distortion >= float(np.dot(n, v)) / total:
    return 0.0
  if distortion <= 0:
    return float('inf')
  low, high = 0.0, float(v.max())
  for _ in range(200):  # Bisection on theta: the allocated distortion rises with it.
    theta = 0.5 * (low + high)
    if float(np.dot(n, np.minimum(theta, v))) < total * distortion:
      low = theta
    else:
      high = theta
  theta = 0.5 * (low + high)
  active = v > theta
  return float(np.dot(n[active], 0.5 * np.log2(v[active] / theta)) / total)
