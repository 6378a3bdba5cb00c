"""PNG plots of a run's `metrics.csv` rows (matplotlib, no display needed)."""

import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def _series(rows, x_key, y_key):
  points = [(float(r[x_key]), float(r[y_key])) for r in rows if r.get(y_key) not in ('', None)]
  return [p[0] for p in points], [p[1] for p in points]


def plot_run(rows, run_dir: pathlib.Path, title: str) -> list[pathlib.Path]:
  """Writes accuracy and bits/parameter against round, and accuracy against
  cumulative uplink bytes; returns the paths."""
  paths = []
  fig, (ax_acc, ax_bits) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
  ax_acc.plot(*_series(rows, 'round', 'train_accuracy'), label='train (clients)', alpha=0.6)
  ax_acc.plot(*_series(rows, 'round', 'eval_accuracy'), 'o-', label='test')
  ax_acc.set_ylabel('accuracy')
  ax_acc.legend()
  ax_bits.plot(*_series(rows, 'round', 'bits_per_parameter'))
  ax_bits.set_ylabel('bits per parameter')
  ax_bits.set_xlabel('round')
  fig.suptitle(title)
  fig.tight_layout()
  paths.append(run_dir / 'accuracy_bits_vs_round.png')
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


def plot_comparison(runs: dict, path: pathlib.Path, x_key: str, y_key: str,
                    x_label: str, y_label: str) -> pathlib.Path:
  """One curve per named run of `rows`: y against x."""
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for name, rows in runs.items():
    ax.plot(*_series(rows, x_key, y_key), 'o-', label=name, markersize=3)
  ax.set_xlabel(x_label)
  ax.set_ylabel(y_label)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
