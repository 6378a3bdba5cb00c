"""Operational rate-distortion frontier of saved client updates.

For every client update saved by a run (`tff_rdq.experiments.updates`, files
`RUN_DIR/updates/*.npz` + `index.json`), `sweep` runs the aggregator's own
compressor, `tff_rdq.aggregators.quantize_encode.QuantizeEncodeCompressor`,
with a fixed step (eagerly), for a geometric sweep of steps: its `encode`
gives the payload and the squared error, its `quantize` (what `encode` codes)
the integers. Each row (one update, rounding, codec and step) records:

- `step_size`: the `step_size` of the aggregator (`QuantizeEncodeFactory(
  step_size, normalization=...)`) that produced the row (see Steps).
- `bits_per_parameter`: `8 * bytes / N`, `bytes` the total length of the
  compressor's per-tensor payloads (its step and seed headers, `header_bytes`,
  and the codec's bytes): the aggregator's `rate` diagnostic of the sum form,
  without the weighted form's 32-bit client weight. `N` is the update's
  number of parameters.
- `distortion`: the per-element MSE over all tensors (the compressor's
  `squared_error` diagnostic / N).
- `variance`: the per-element variance of the update (all tensors pooled, about
  their pooled mean), and `normalized_distortion = distortion / variance`.
- `gaussian_bound`, `laplacian_bound`: `tff_rdq.experiments.rd_bounds` at
  `normalized_distortion` (a memoryless Gaussian source's R(D), a Laplacian
  source's Shannon lower bound, of the update's pooled variance).
- `gaussian_tensor_bound`: R(D) of independent Gaussian tensors with the
  update's per-tensor sizes and variances (`tensor_sizes`,
  `tensor_variances`, each tensor about its own mean; reverse water-filling),
  at the same per-element distortion.
- `entropy_bits_per_parameter`: the zeroth-order empirical entropy of each
  tensor's integers summed over tensors, divided by `N` (what an ideal
  per-tensor adaptive entropy coder would spend, without headers), and
  `zero_fraction` of the integers.

Points below a bound are possible, and common: the bounds are those of model
sources, not of the update (see `rd_bounds`).

Steps. `steps` are multiples of a statistic of the update, so that one grid
fits every update. With `normalization='rms'` (`'mean_abs'`, `'max_abs'`) the
aggregator itself scales its step per tensor by that statistic, and
`step_size = step`. With `normalization='none'` the aggregator uses one
absolute step for all tensors; the sweep runs it with
`step_size = float32(step * the RMS of the whole update)`. Either way the
compressor quantizes exactly as the aggregator does with that `step_size`.
The default, `DEFAULT_STEPS`, is 12 steps from 0.1 to 32 (geometric, ratio
1.69); with RMS normalization, on full-size Stack Overflow updates, that spans
about 0.02 to 3.6 bits/parameter and D/var from below 0.001 to about 0.3
(heavy tails make D/var grow slowly with the step).

Work is limited by default (`full_grid=False`): every rounding is swept with
the first codec (`elias_gamma`), and every other codec (`rans`,
`run_length_rans`) only with the first rounding (`uniform`), i.e. 5
combinations by default; `full_grid=True` runs
every combination. The cost is about one eager encode of the whole update
(0.2-1 s per 4M values) per (update, combination, step).

`write` writes `RUN_DIR/frontier/frontier.csv`, the plots of
`tff_rdq.experiments.plots.plot_frontier` (`frontier_per_update.png`: one
curve per (round, client) for the first combination with the bounds;
`frontier_methods.png`: one curve per combination, averaged over updates) and
`gap.md` (`tff_rdq.experiments.frontier_report.report`). `main` runs `sweep`
and `write` and prints `gap.md`; `read` loads the CSV back as rows.
"""

import csv
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from tff_rdq import codecs as codecs_lib
from tff_rdq.aggregators import quantize_encode
from tff_rdq.experiments import frontier_report
from tff_rdq.experiments import plots
from tff_rdq.experiments import rd_bounds
from tff_rdq.experiments import updates as updates_lib
from tff_rdq.quantizers import uniform

DEFAULT_STEPS = tuple(float(s) for s in np.geomspace(0.1, 32.0, 12))

FIELDS = ('round', 'client', 'client_id', 'examples', 'parameters', 'rounding', 'codec',
          'normalization', 'step', 'step_size', 'bytes', 'header_bytes', 'bits_per_parameter',
          'entropy_bits_per_parameter', 'zero_fraction', 'distortion', 'variance',
          'normalized_distortion', 'gaussian_bound', 'laplacian_bound',
          'gaussian_tensor_bound', 'tensor_sizes', 'tensor_variances')
_INT_FIELDS = ('round', 'client', 'parameters', 'bytes', 'header_bytes')
_FLOAT_FIELDS = ('step', 'step_size', 'bits_per_parameter', 'entropy_bits_per_parameter',
                 'zero_fraction', 'distortion', 'variance', 'normalized_distortion',
                 'gaussian_bound', 'laplacian_bound', 'gaussian_tensor_bound')


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


def step_size(flat, step: float, normalization: str) -> float:
  """The aggregator's `step_size` for grid point `step` (module doc, Steps)."""
  if normalization != 'none':
    return float(step)
  total = sum(float(np.sum(np.square(v, dtype=np.float64))) for v in flat)
  rms = float(np.sqrt(total / max(sum(v.size for v in flat), 1)))
  return float(np.float32(step * (rms if rms > 0 else 1.0)))


def compress_update(flat, step, rounding, codec, normalization='rms'):
  """Runs the aggregator's compressor on one update (list of float32 vectors).

  Returns `(compressor, step_size, streams, diagnostics, quantized)`: the
  compressor's `encode` output and its `quantize` output (per tensor `(step,
  seed, integers)`, what `encode` coded) at grid point `step`.
  """
  size = step_size(flat, step, normalization)
  compressor = quantize_encode.QuantizeEncodeCompressor(
      size, rounding=rounding, normalization=normalization, codec=codec)
  tensors = [tf.constant(v) for v in flat]
  params = compressor.client_params(compressor.initial_state())
  streams, diagnostics = compressor.encode(tensors, params)
  _, quantized = compressor.quantize(tensors, params['step'], params['nonce'])
  return compressor, size, streams, diagnostics, quantized


def quantize_update(flat, step, rounding, codec, normalization='rms'):
  """`compress_update`'s figures for one frontier row.

  Returns `dict(step_size, bytes, header_bytes, squared_error, entropy_bits,
  zeros)`; `bytes` includes the headers.
  """
  compressor, size, streams, diagnostics, quantized = compress_update(
      flat, step, rounding, codec, normalization)
  integers = [q.numpy() for _, _, q in quantized]
  return dict(
      step_size=size,
      bytes=sum(len(s.numpy()) for s in streams),
      header_bytes=compressor.header_size * len(flat),
      squared_error=float(diagnostics['squared_error']),
      entropy_bits=sum(_entropy_bits(q) for q in integers),
      zeros=sum(int(np.count_nonzero(q == 0)) for q in integers))


def _load(run_dir):
  run_dir = pathlib.Path(run_dir)
  index = run_dir / 'updates' / 'index.json'
  if not index.exists():
    raise FileNotFoundError(
        f'{run_dir} has no saved client updates ({index} does not exist). Save some by '
        'running the experiment with e.g. --set aggregator.save_updates_rounds=[1,5] '
        '--set aggregator.save_updates_clients=3 (see tff_rdq/experiments/updates.py).')
  loaded = updates_lib.load_updates(run_dir)
  if not loaded:
    raise FileNotFoundError(f'{index} lists no updates; save some with '
                            '--set aggregator.save_updates_rounds=[1,5] '
                            '--set aggregator.save_updates_clients=3.')
  return loaded


def sweep(run_dir, steps=None, roundings=uniform.ROUNDINGS,
          codecs=('elias_gamma', 'rans', 'run_length_rans'), normalization='rms',
          full_grid=False,
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
        finite = normalized > 0
        rows.append(dict(
            round=int(entry['round']), client=int(entry['client']),
            client_id=entry.get('client_id', ''), examples=entry.get('examples', ''),
            parameters=n, rounding=rounding, codec=codec, normalization=normalization,
            step=step, step_size=result['step_size'], bytes=result['bytes'],
            header_bytes=result['header_bytes'],
            bits_per_parameter=8 * result['bytes'] / n,
            entropy_bits_per_parameter=result['entropy_bits'] / n,
            zero_fraction=result['zeros'] / n, distortion=distortion, variance=variance,
            normalized_distortion=normalized,
            gaussian_bound=rd_bounds.gaussian_bound(normalized) if finite else float('inf'),
            laplacian_bound=rd_bounds.laplacian_bound(normalized) if finite else float('inf'),
            gaussian_tensor_bound=rd_bounds.gaussian_tensor_bound(
                sizes, tensor_variances, distortion),
            tensor_sizes=sizes, tensor_variances=tensor_variances))
      if verbose:
        print(f'frontier: update {number}/{len(loaded)} (round {entry["round"]}, client '
              f'{entry["client"]}, {n} parameters): {rounding}+{codec} done '
              f'[{time.perf_counter() - start:.0f} s]', flush=True)
  return rows


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
  paths += plots.plot_frontier(rows, directory)
  gap_path = directory / 'gap.md'
  gap_path.write_text(frontier_report.report(rows))
  paths.append(gap_path)
  return paths


def read(run_dir) -> list[dict]:
  """The rows of `RUN_DIR/frontier/frontier.csv` (as `sweep` returns them)."""
  rows = []
  with open(pathlib.Path(run_dir) / 'frontier' / 'frontier.csv', newline='') as f:
    for row in csv.DictReader(f):
      for key in _INT_FIELDS:
        row[key] = int(row[key])
      if row['examples'].isdigit():
        row['examples'] = int(row['examples'])
      for key in _FLOAT_FIELDS:
        row[key] = float(row[key])
      row['tensor_sizes'] = tuple(int(v) for v in row['tensor_sizes'].split())
      row['tensor_variances'] = tuple(float(v) for v in row['tensor_variances'].split())
      rows.append(row)
  return rows


def main(run_dir, **sweep_args) -> int:
  """Sweeps the saved updates of `run_dir`, writes the outputs, prints the tables."""
  rows = sweep(run_dir, **sweep_args)
  paths = write(run_dir, rows)
  print(frontier_report.report(rows))
  for path in paths:
    print(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1]))
