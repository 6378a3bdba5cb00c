"""PNG plots (matplotlib, no display needed): a run's `metrics.csv` rows
(`plot_run`) and a frontier sweep's rows (`plot_frontier`)."""

import math
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from tff_rdq.experiments import frontier_report  # pylint: disable=g-import-not-at-top
from tff_rdq.experiments import rd_bounds  # pylint: disable=g-import-not-at-top


def _series(rows, x_key, y_key):
  points = [(float(r[x_key]), float(r[y_key])) for r in rows if r.get(y_key) not in ('', None)]
  return [p[0] for p in points], [p[1] for p in points]


def plot_run(rows, run_dir: pathlib.Path, title: str) -> list[pathlib.Path]:
  """Writes accuracy, loss and bits/parameter against round, and accuracy against
  cumulative uplink bytes; returns the paths.

  The train loss is TFF's (padding tokens counted); the test loss masks padding.
  """
  paths = []
  fig, (ax_acc, ax_loss, ax_bits) = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
  ax_acc.plot(*_series(rows, 'round', 'train_accuracy'), label='train (clients)', alpha=0.6)
  ax_acc.plot(*_series(rows, 'round', 'eval_accuracy'), 'o-', label='test')
  ax_acc.plot(*_series(rows, 'round', 'eval_accuracy_without_oov_or_eos'), 's-',
              label='test, without OOV and EOS')
  ax_acc.set_ylabel('accuracy')
  ax_acc.legend()
  ax_loss.plot(*_series(rows, 'round', 'train_loss'), label='train (padding counted)', alpha=0.6)
  ax_loss.plot(*_series(rows, 'round', 'eval_loss'), 'o-', label='test (padding masked)')
  ax_loss.set_ylabel('loss')
  ax_loss.legend()
  ax_bits.plot(*_series(rows, 'round', 'bits_per_parameter'))
  ax_bits.set_ylabel('bits per parameter')
  ax_bits.set_xlabel('round')
  fig.suptitle(title)
  fig.tight_layout()
  paths.append(run_dir / 'accuracy_loss_bits_vs_round.png')
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(7, 4))
  ax.plot(*_series(rows, 'cumulative_uplink_bytes', 'eval_accuracy'), 'o-')
  ax.set_xlabel('cumulative uplink bytes')
  ax.set_ylabel('test accuracy')
  ax.set_title(title)
  fig.tight_layout()
  paths.append(run_dir / 'accuracy_vs_uplink_bytes.png')
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)
  return paths


def _frontier_bounds(ax, log_range):
  d = np.geomspace(math.exp(log_range[0]), math.exp(log_range[1]), 200)
  ax.plot(d, [rd_bounds.gaussian_bound(x) for x in d], 'k-', lw=1.5, label='Gaussian R(D)')
  ax.plot(d, [rd_bounds.laplacian_bound(x) for x in d], 'k--', lw=1.5, label='Laplacian SLB')


def plot_frontier(rows, directory: pathlib.Path) -> list[pathlib.Path]:
  """`frontier_per_update.png` and `frontier_methods.png` of a frontier sweep's
  rows (see `tff_rdq.experiments.frontier`) in `directory`; returns the paths."""
  curves = frontier_report.curves(rows)
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
  stats = frontier_report.tensor_stats(rows)
  fig, ax = plt.subplots(figsize=(7, 4.8))
  labelled = set()
  for (round_num, client), (log_d, bits) in sorted(per_update.items()):
    label = f'round {round_num}' if round_num not in labelled else None
    labelled.add(round_num)
    ax.plot(np.exp(log_d), bits, '-', lw=0.8, alpha=0.8, color=colour[round_num], label=label,
            marker='.', markersize=3)
    variance, sizes, variances = stats[(round_num, client)]
    grid = np.geomspace(math.exp(own_range[0]), math.exp(own_range[1]), 60)
    bound = [rd_bounds.gaussian_tensor_bound(sizes, variances, d * variance) for d in grid]
    ax.plot(grid, bound, ':',
            lw=0.8, alpha=0.8, color=colour[round_num],
            label='per-tensor Gaussian R(D) (dotted)' if len(labelled) == 1 and
            label is not None else None)
  _frontier_bounds(ax, own_range)
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
    mean = [np.mean([frontier_report.interpolate(ld, b, math.exp(x)) for ld, b in per.values()])
            for x in grid]
    ax.plot(np.exp(grid), mean, '-', lw=1.2, label=f'{rounding} + {codec}')
  _frontier_bounds(ax, log_range)
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
