"""Operational rate-distortion frontier of saved client updates.

For every client update saved by a run (`experiments.updates`, files
`RUN_DIR/updates/*.npz` + `index.json`), `sweep` quantizes the update exactly
as `tff_rdq.aggregators.quantize_encode.QuantizeEncodeCompressor.encode` does
with a fixed step, for a geometric sweep of steps, and codes the integers with
the real codecs (eagerly). Each row (one update, rounding, codec and step)
records:

- `bits_per_parameter`: `8 * sum over tensors (header + codec bytes) / N`,
  where the header is the 4-byte float32 effective step, plus the 4-byte dither
  seed for dithered rounding, and the codec bytes are the length of
  `codec.encode_to_bytes(integers)` of the tensor flattened row-major: the same
  bytes as the aggregator's per-tensor payload (its `rate` diagnostic of the
  sum form; the weighted form's 32-bit client weight is NOT counted). `N` is
  the update's number of parameters.
- `distortion`: the per-element MSE over all tensors, `sum (dequantize(q) -
  x)**2 / N` from the actual reconstructions (float32 values, float64 sum).
- `variance`: the per-element variance of the update (all tensors pooled, about
  their pooled mean), and `normalized_distortion = distortion / variance`.
- `gaussian_bound`: `max(0, 0.5 log2(variance / distortion))`, the
  rate-distortion function of a memoryless Gaussian source of that variance.
- `laplacian_bound`: the Shannon lower bound of a memoryless Laplacian source
  of that variance, `max(0, h - 0.5 log2(2 pi e D))` with `h = log2(2 e b)`,
  `b = sqrt(variance / 2)`, i.e. `max(0, 0.5 log2(variance / D) - 0.1044)`.
- `gaussian_tensor_bound`: the rate-distortion function (reverse water-filling)
  of independent memoryless Gaussian tensors with the update's per-tensor
  sizes and variances (`tensor_sizes`, `tensor_variances`, each tensor about
  its own mean), at the same per-element distortion. It accounts for the very
  different scales of the tensors, which the pooled-variance bounds ignore.

The first two bounds depend only on `normalized_distortion`, so they are one
curve for all updates; the third is one curve per update. All three are
bounds for *model* sources (memoryless, with the update's variances), not for
the update itself: a real update (tensors of very different scales, rows of
exact zeros, tails heavier than Laplacian, clustered zeros that run-length
coding exploits) can have a much lower rate-distortion function, so points
below a bound are possible, and common, for real updates. For i.i.d. Gaussian
(Laplacian) data no scalar quantizer and codec can go below the Gaussian
(Laplacian) curve. Reference point: at high rate, uniform quantization with
ideal entropy coding is `0.5 log2(pi e / 6) = 0.254` bits above the Shannon
lower bound.

Also per row: `entropy_bits_per_parameter`, the zeroth-order empirical entropy
of each tensor's integers summed over tensors, divided by `N` (what an ideal
per-tensor adaptive entropy coder would spend, without headers), and
`zero_fraction` of the integers.

Steps. `steps` are multiples of a statistic: with `normalization='rms'`
(`'mean_abs'`, `'max_abs'`) the effective step of a tensor is `step * its RMS
(mean |x|, max |x|)`, computed by `tff_rdq.quantizers.uniform.normalized_step`
as in the aggregator; with `normalization='none'` (one absolute step for all
tensors in the aggregator) it is `step * the RMS of the whole update`, so one
step grid fits every update. The default, `DEFAULT_STEPS`, is 12 steps from
0.1 to 32 (geometric, ratio 1.69); with RMS normalization, on full-size Stack
Overflow updates, that spans about 0.02 to 3.6 bits/parameter and D/var from
below 0.001 to about 0.3 (heavy tails make D/var grow slowly with the step).

Seeds: as the aggregator derives them: the client seed is
`quantize_encode.client_seed` (the bit pattern of the update's float32 L1
norm) and tensor `i` uses `[seed, i]`, for stochastic and dithered rounding.

Work is limited by default (`full_grid=False`): every rounding is swept with
the first codec (`elias_gamma`), and every other codec only with the first
rounding (`uniform`), i.e. 4 combinations by default; `full_grid=True` runs
every combination. The cost is about one eager encode of the whole update
(0.2-1 s per 4M values) per (update, combination, step).

`write` writes `RUN_DIR/frontier/frontier.csv`, `frontier_per_update.png`
(one thin curve per (round, client) for the first combination, coloured by
round, with the two pooled-variance bounds and, dotted, each update's
per-tensor Gaussian bound), `frontier_methods.png` (one curve per combination,
bits averaged over updates at common normalized distortions, with the two
pooled-variance bounds) and `gap.md` (`gap_table`: bits/parameter above each
bound at matched normalized distortion; `spread_table`: the spread of the
first combination's bits across updates and rounds). `main` runs `sweep` and
`write` and prints `gap.md`; `read` loads the CSV back as rows.
"""

import csv
import math
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from experiments import updates as updates_lib
from tff_rdq import codecs as codecs_lib
from tff_rdq.aggregators import quantize_encode
from tff_rdq.quantizers import uniform

DEFAULT_STEPS = tuple(float(s) for s in np.geomspace(0.1, 32.0, 12))
TARGETS = (0.3, 0.1, 0.03, 0.01)
_STEP_BYTES = 4
_SEED_BYTES = 4
# 0.5 log2(e / pi): the Laplacian SLB minus the Gaussian R(D) at equal variance.
_LAPLACE_OFFSET = 0.5 * math.log2(math.e / math.pi)

FIELDS = ('round', 'client', 'client_id', 'examples', 'parameters', 'rounding', 'codec',
          'normalization', 'step', 'bytes', 'header_bytes', 'bits_per_parameter',
          'entropy_bits_per_parameter', 'zero_fraction', 'distortion', 'variance',
          'normalized_distortion', 'gaussian_bound', 'laplacian_bound',
          'gaussian_tensor_bound', 'tensor_sizes', 'tensor_variances')


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


def combinations(roundings, codecs, full_grid=False) -> list[tuple[str, str]]:
  """(rounding, codec) pairs: all roundings with `codecs[0]`, all codecs with
  `roundings[0]` (or every pair if `full_grid`)."""
  if full_grid:
    return [(r, c) for r in roundings for c in codecs]
  pairs = [(r, codecs[0]) for r in roundings]
  pairs += [(roundings[0], c) for c in codecs[1:]]
  return pairs


def _entropy_bits(integers: np.ndarray) -> float:
  """`n * H` of the empirical distribution of `integers` (bits)."""
  if integers.size == 0:
    return 0.0
  _, counts = np.unique(integers, return_counts=True)
  p = counts / integers.size
  return float(-(counts * np.log2(p)).sum())


def _tensor_steps(flat, step, normalization):
  """Effective step per tensor (see module doc)."""
  if normalization == 'none':
    total = sum(float(np.sum(np.square(v, dtype=np.float64))) for v in flat)
    count = sum(v.size for v in flat)
    rms = math.sqrt(total / max(count, 1))
    scale = rms if rms > 0 else 1.0
    return [tf.constant(step * scale, tf.float32) for _ in flat]
  return [uniform.normalized_step(tf.constant(v), step, normalization) for v in flat]


def quantize_update(flat, step, rounding, codec, normalization='rms'):
  """Quantizes and codes one update (list of float32 vectors) like the aggregator.

  Returns `dict(bytes, header_bytes, squared_error, entropy_bits, zeros)`;
  `bytes` includes the headers.
  """
  codec = codecs_lib.get_codec(codec)
  tensors = [tf.constant(v) for v in flat]
  seed = quantize_encode.client_seed(tensors)
  header = _STEP_BYTES + (_SEED_BYTES if rounding == 'dithered' else 0)
  total_bytes = header_bytes = 0
  squared_error = entropy = 0.0
  zeros = 0
  for i, (values, tensor_step) in enumerate(zip(tensors, _tensor_steps(flat, step, normalization))):
    tensor_seed = tf.stack([seed, tf.constant(i, tf.int32)])
    integers = uniform.quantize(values, tensor_step, rounding, tensor_seed)
    reconstruction = uniform.dequantize(integers, tensor_step, rounding, tensor_seed)
    error = reconstruction.numpy().astype(np.float64) - flat[i].astype(np.float64)
    squared_error += float(np.sum(np.square(error)))
    coded = codec.encode_to_bytes(integers)
    total_bytes += header + int(tf.size(coded))
    header_bytes += header
    q = integers.numpy()
    entropy += _entropy_bits(q)
    zeros += int(np.count_nonzero(q == 0))
  return dict(bytes=total_bytes, header_bytes=header_bytes, squared_error=squared_error,
              entropy_bits=entropy, zeros=zeros)


def _load(run_dir):
  run_dir = pathlib.Path(run_dir)
  index = run_dir / 'updates' / 'index.json'
  if not index.exists():
    raise FileNotFoundError(
        f'{run_dir} has no saved client updates ({index} does not exist). Save some by '
        'running the experiment with e.g. --set aggregator.save_updates_rounds=[1,5] '
        '--set aggregator.save_updates_clients=3 (see experiments/updates.py).')
  loaded = updates_lib.load_updates(run_dir)
  if not loaded:
    raise FileNotFoundError(f'{index} lists no updates; save some with '
                            '--set aggregator.save_updates_rounds=[1,5] '
                            '--set aggregator.save_updates_clients=3.')
  return loaded


def sweep(run_dir, steps=None, roundings=uniform.ROUNDINGS,
          codecs=('elias_gamma', 'rans'), normalization='rms', full_grid=False,
          verbose=True) -> list[dict]:
  """Rows of the frontier (see module doc) for every saved update of `run_dir`."""
  steps = DEFAULT_STEPS if steps is None else tuple(float(s) for s in steps)
  if not steps or any(not s > 0 for s in steps):
    raise ValueError(f'steps must be positive, got {steps!r}.')
  for rounding in roundings:
    uniform.check_rounding(rounding)
  uniform.check_normalization(normalization)
  for codec in codecs:
    codecs_lib.get_codec(codec)
  loaded = _load(run_dir)
  pairs = combinations(tuple(roundings), tuple(codecs), full_grid)
  rows = []
  start = time.perf_counter()
  for number, (entry, tensors) in enumerate(loaded, 1):
    flat = [np.asarray(t, np.float32).reshape(-1) for t in tensors]
    pooled = np.concatenate(flat).astype(np.float64)
    n = pooled.size
    variance = float(np.var(pooled))
    sizes = tuple(int(v.size) for v in flat)
    tensor_variances = tuple(float(np.var(v.astype(np.float64))) if v.size else 0.0
                             for v in flat)
    for rounding, codec in pairs:
      for step in steps:
        result = quantize_update(flat, step, rounding, codec, normalization)
        distortion = result['squared_error'] / n
        normalized = distortion / variance if variance > 0 else float('nan')
        rows.append(dict(
            round=int(entry['round']), client=int(entry['client']),
            client_id=entry.get('client_id', ''), examples=entry.get('examples', ''),
            parameters=n, rounding=rounding, codec=codec, normalization=normalization,
            step=step, bytes=result['bytes'], header_bytes=result['header_bytes'],
            bits_per_parameter=8 * result['bytes'] / n,
            entropy_bits_per_parameter=result['entropy_bits'] / n,
            zero_fraction=result['zeros'] / n, distortion=distortion, variance=variance,
            normalized_distortion=normalized,
            gaussian_bound=gaussian_bound(normalized) if normalized > 0 else float('inf'),
            laplacian_bound=laplacian_bound(normalized) if normalized > 0 else float('inf'),
            gaussian_tensor_bound=gaussian_tensor_bound(sizes, tensor_variances, distortion),
            tensor_sizes=sizes, tensor_variances=tensor_variances))
      if verbose:
        print(f'frontier: update {number}/{len(loaded)} (round {entry["round"]}, client '
              f'{entry["client"]}, {n} parameters): {rounding}+{codec} done '
              f'[{time.perf_counter() - start:.0f} s]', flush=True)
  return rows


def _curves(rows):
  """`{(rounding, codec): {(round, client): (log D/var ascending, bits)}}`."""
  grouped = {}
  for r in rows:
    key = (r['rounding'], r['codec'])
    grouped.setdefault(key, {}).setdefault((r['round'], r['client']), []).append(
        (float(r['normalized_distortion']), float(r['bits_per_parameter'])))
  curves = {}
  for key, per_update in grouped.items():
    curves[key] = {}
    for update, points in per_update.items():
      points = sorted(p for p in points if p[0] > 0 and math.isfinite(p[0]))
      curves[key][update] = (np.log([p[0] for p in points]), np.array([p[1] for p in points]))
  return curves


def _tensor_stats(rows):
  """`{(round, client): (variance, tensor_sizes, tensor_variances)}`."""
  return {(r['round'], r['client']): (float(r['variance']), r['tensor_sizes'],
                                      r['tensor_variances']) for r in rows}


def _interpolate(log_d, bits, target):
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
  stats = _tensor_stats(rows)
  table = []
  for (rounding, codec), per_update in _curves(rows).items():
    for target in targets:
      bits, tensor_bounds = [], []
      for update, (log_d, b) in per_update.items():
        value = _interpolate(log_d, b, target)
        if math.isfinite(value):
          variance, sizes, variances = stats[update]
          bits.append(value)
          tensor_bounds.append(gaussian_tensor_bound(sizes, variances, target * variance))
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
          gaussian_bound=gaussian_bound(target), laplacian_bound=laplacian_bound(target),
          gaussian_tensor_bound=tensor_bound,
          above_gaussian=mean - gaussian_bound(target),
          above_laplacian=mean - laplacian_bound(target),
          above_gaussian_tensor=above_tensor))
  return table


def spread_table(rows, targets=TARGETS, combination=None) -> list[dict]:
  """Spread across updates of one combination's bits at each target `D/var`.

  Per target: over updates, the mean, std, min, max and relative range
  `(max - min) / mean` of bits/parameter, and the mean per round.
  """
  curves = _curves(rows)
  if not curves:
    return []
  combination = combination or next(iter(curves))
  per_update = curves[combination]
  table = []
  for target in targets:
    values = {u: _interpolate(ld, b, target) for u, (ld, b) in per_update.items()}
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


def _bound_curves(ax, log_range):
  d = np.geomspace(math.exp(log_range[0]), math.exp(log_range[1]), 200)
  ax.plot(d, [gaussian_bound(x) for x in d], 'k-', lw=1.5, label='Gaussian R(D)')
  ax.plot(d, [laplacian_bound(x) for x in d], 'k--', lw=1.5, label='Laplacian SLB')


def _plots(rows, directory: pathlib.Path) -> list[pathlib.Path]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  curves = _curves(rows)
  if not curves:
    return []
  all_log = np.concatenate([ld for c in curves.values() for ld, _ in c.values()])
  # D/var above 2 is worse than sending nothing (dithered rounding gets there
  # at large steps: its error is step**2 / 12 even where every integer is 0).
  log_range = (float(all_log.min()), min(float(all_log.max()), math.log(2.0)))
  paths = []

  combination = next(iter(curves))
  per_update = curves[combination]
  own_log = np.concatenate([ld for ld, _ in per_update.values()])
  own_range = (float(own_log.min()), min(float(own_log.max()), math.log(2.0)))
  rounds = sorted({u[0] for u in per_update})
  cmap = plt.get_cmap('viridis')
  colour = {r: cmap(i / max(len(rounds) - 1, 1)) for i, r in enumerate(rounds)}
  stats = _tensor_stats(rows)
  fig, ax = plt.subplots(figsize=(7, 4.8))
  labelled = set()
  for (round_num, client), (log_d, bits) in sorted(per_update.items()):
    label = f'round {round_num}' if round_num not in labelled else None
    labelled.add(round_num)
    ax.plot(np.exp(log_d), bits, '-', lw=0.8, alpha=0.8, color=colour[round_num], label=label,
            marker='.', markersize=3)
    variance, sizes, variances = stats[(round_num, client)]
    grid = np.geomspace(math.exp(own_range[0]), math.exp(own_range[1]), 60)
    ax.plot(grid, [gaussian_tensor_bound(sizes, variances, d * variance) for d in grid], ':',
            lw=0.8, alpha=0.8, color=colour[round_num],
            label='per-tensor Gaussian R(D) (dotted)' if len(labelled) == 1 and
            label is not None else None)
  _bound_curves(ax, own_range)
  ax.set_xscale('log')
  ax.set_xlim(right=math.exp(own_range[1]) * 1.1)
  ax.set_xlabel('normalized distortion D / variance')
  ax.set_ylabel('bits per parameter')
  ax.set_title(f'{combination[0]} + {combination[1]}: one curve per (round, client)')
  ax.legend(fontsize=8)
  ax.grid(True, which='both', alpha=0.3)
  fig.tight_layout()
  paths.append(directory / 'frontier_per_update.png')
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(7, 4.8))
  for (rounding, codec), per in curves.items():
    low = max(float(ld.min()) for ld, _ in per.values())
    high = min(min(float(ld.max()) for ld, _ in per.values()), log_range[1])
    if not low < high:
      continue
    grid = np.linspace(low, high, 40)
    mean = [np.mean([_interpolate(ld, b, math.exp(x)) for ld, b in per.values()]) for x in grid]
    ax.plot(np.exp(grid), mean, '-', lw=1.2, label=f'{rounding} + {codec}')
  _bound_curves(ax, log_range)
  ax.set_xscale('log')
  ax.set_xlim(right=math.exp(log_range[1]) * 1.1)
  ax.set_xlabel('normalized distortion D / variance')
  ax.set_ylabel('bits per parameter (mean over updates)')
  ax.set_title('rounding and codec, averaged over updates')
  ax.legend(fontsize=8)
  ax.grid(True, which='both', alpha=0.3)
  fig.tight_layout()
  paths.append(directory / 'frontier_methods.png')
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)
  return paths


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


def write(run_dir, rows) -> list[pathlib.Path]:
  """Writes `RUN_DIR/frontier/`: frontier.csv, the PNGs and gap.md; returns paths."""
  directory = pathlib.Path(run_dir) / 'frontier'
  directory.mkdir(parents=True, exist_ok=True)
  csv_path = directory / 'frontier.csv'
  with open(csv_path, 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=FIELDS)
    writer.writeheader()
    for row in rows:
      row = {k: row[k] for k in FIELDS}
      row['tensor_sizes'] = ' '.join(str(v) for v in row['tensor_sizes'])
      row['tensor_variances'] = ' '.join(repr(v) for v in row['tensor_variances'])
      writer.writerow(row)
  paths = [csv_path]
  paths += _plots(rows, directory)
  gap_path = directory / 'gap.md'
  gap_path.write_text(report(rows))
  paths.append(gap_path)
  return paths


def read(run_dir) -> list[dict]:
  """The rows of `RUN_DIR/frontier/frontier.csv` (as `sweep` returns them)."""
  rows = []
  with open(pathlib.Path(run_dir) / 'frontier' / 'frontier.csv', newline='') as f:
    for row in csv.DictReader(f):
      for key in ('round', 'client', 'parameters', 'bytes', 'header_bytes'):
        row[key] = int(row[key])
      if row['examples'].isdigit():
        row['examples'] = int(row['examples'])
      for key in ('step', 'bits_per_parameter', 'entropy_bits_per_parameter', 'zero_fraction',
                  'distortion', 'variance', 'normalized_distortion', 'gaussian_bound',
                  'laplacian_bound', 'gaussian_tensor_bound'):
        row[key] = float(row[key])
      row['tensor_sizes'] = tuple(int(v) for v in row['tensor_sizes'].split())
      row['tensor_variances'] = tuple(float(v) for v in row['tensor_variances'].split())
      rows.append(row)
  return rows


def main(run_dir, **sweep_args) -> int:
  """Sweeps the saved updates of `run_dir`, writes the outputs, prints the tables."""
  rows = sweep(run_dir, **sweep_args)
  paths = write(run_dir, rows)
  print(report(rows))
  for path in paths:
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1]))
