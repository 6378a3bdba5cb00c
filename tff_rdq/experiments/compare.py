"""Comparison of compression methods at matched data, seeds and sampled clients.

A compare config is an experiment config (see `tff_rdq.experiments.config`) plus an
array of `[[sweep]]` tables, each naming a method and the list of settings to
run it at; every setting is merged into `[aggregator]`, except dotted keys,
which override that section of the experiment (e.g. `"training.seed" = 1`).
A setting's `[aggregator]` keys must be read by its method, and each key of the
base's `[aggregator]` by at least one run (`config.check_keys_read`):

  [[sweep]]
  method = "rdq"
  settings = [{step_size = 0.1}, {step_size = 0.3}]

  [[sweep]]
  method = "qsgd"
  settings = [{options = {levels = 2}}, {options = {levels = 8}}]

  [[sweep]]
  method = "mean"
  settings = [{}, {"training.seed" = 1}]

`compare(path)` runs every (method, setting) as its own experiment under
`output.root_dir/NAME/LABEL` (so each is resumable, and a rerun skips the
finished ones), all with the same data, model, seed and client sampling, then
writes `comparison.csv`, `comparison.md` and two plots: final accuracy against
mean bits per parameter, and mean distortion against mean bits per parameter,
each with the Pareto front (no other run has both fewer bits and a better
value) marked.
"""

import csv
import json
import pathlib

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from tff_rdq.experiments import config as config_lib  # pylint: disable=wrong-import-position
from tff_rdq.experiments import stackoverflow  # pylint: disable=wrong-import-position

TABLE_COLUMNS = ('label', 'method', 'setting', 'eval_loss', 'eval_accuracy',
                 'eval_accuracy_without_oov_or_eos', 'mean_bits_per_parameter',
                 'total_uplink_bytes', 'mean_distortion', 'median_round_seconds',
                 'train_seconds')


def _label(method: str, setting: dict) -> str:
  flat = dict(setting)
  flat.update(flat.pop('options', {}))
  parts = [method] + [f'{k}={v}' for k, v in sorted(flat.items())]
  return '_'.join(parts).replace('/', '-').replace(' ', '')


def load(path, overrides=()) -> tuple[config_lib.ExperimentConfig, list]:
  """The base config and the list of `(label, config)` runs; `ConfigError` if bad."""
  path = pathlib.Path(path)
  raw = config_lib.read_toml(path)
  sweeps = raw.pop('sweep', None)
  raw.setdefault('name', path.stem)
  raw = config_lib.apply_overrides(raw, overrides)
  base = config_lib.from_dict(raw)
  runs = expand_sweeps(base, sweeps, where=str(path))
  config_lib.check_keys_read([c.aggregator for _, c in runs], raw.get('aggregator', {}),
                             f'{path} [aggregator]')
  return base, runs


def apply_dotted(raw: dict, overrides: dict, where: str) -> dict:
  """`raw` (a config as `config_lib.to_dict` gives it) with `section.key = value`
  overrides applied; `ConfigError` naming a key without a section."""
  raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
  for key, value in overrides.items():
    section, dot, field = key.partition('.')
    if not dot or not field or '.' in field:
      raise config_lib.ConfigError(f'{where}: {key!r} is not a section.key override.')
    if not isinstance(raw.get(section), dict):
      raise config_lib.ConfigError(
          f'{where}: {key!r}: unknown section [{section}]; sections are '
          f'{sorted(k for k, v in raw.items() if isinstance(v, dict))}.')
    raw[section][field] = value
  return raw


def expand_sweeps(base: config_lib.ExperimentConfig, sweeps, where: str) -> list:
  """The `(label, config)` runs of `[[sweep]]` tables (module doc) on `base`.

  Each run is named by its label and lives under `base.output.root_dir/base.name`.
  """
  if not isinstance(sweeps, list) or not sweeps:
    raise config_lib.ConfigError(f'{where}: needs at least one [[sweep]] table.')
  runs = []
  for i, sweep in enumerate(sweeps):
    unknown = set(sweep) - {'method', 'settings'}
    if unknown or 'method' not in sweep:
      raise config_lib.ConfigError(
          f'sweep[{i}]: needs `method` and `settings`; unknown keys {sorted(unknown)}.')
    settings = sweep.get('settings', [{}])
    if not isinstance(settings, list) or not all(isinstance(s, dict) for s in settings):
      raise config_lib.ConfigError(f'sweep[{i}].settings: must be a list of tables.')
    for setting in settings:
      raw = config_lib.to_dict(base)
      aggregator = {k: v for k, v in setting.items() if '.' not in k}
      raw['aggregator'].update(method=sweep['method'], **aggregator)
      raw = apply_dotted(raw, {k: v for k, v in setting.items() if '.' in k},
                         f'sweep[{i}]')
      label = _label(sweep['method'], setting)
      raw['name'] = label
      raw['output']['root_dir'] = str(pathlib.Path(base.output.root_dir) / base.name)
      run_config = config_lib.from_dict(raw)
      set_keys = [k.removeprefix('aggregator.') for k in setting
                  if '.' not in k or k.startswith('aggregator.')]
      config_lib.check_keys_read([run_config.aggregator], set_keys,
                                 f'{where}: sweep[{i}] ({label})')
      runs.append((label, run_config))
  labels = [label for label, _ in runs]
  if len(set(labels)) != len(labels):
    raise config_lib.ConfigError(f'{where}: two sweep settings give the same run {labels}.')
  return runs


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[bool]:
  """Whether each (bits, value) point is on the Pareto front."""
  flags = []
  for i, (bits, value) in enumerate(points):
    dominated = False
    for j, (other_bits, other_value) in enumerate(points):
      if i == j:
        continue
      better = other_value >= value if higher_is_better else other_value <= value
      strictly = (other_bits < bits or
                  (other_value > value if higher_is_better else other_value < value))
      if other_bits <= bits and better and strictly:
        dominated = True
        break
    flags.append(not dominated)
  return flags


def compare(path, overrides=(), progress=True) -> pathlib.Path:
  """Runs every sweep setting and writes the comparison; returns its directory."""
  base, runs = load(path, overrides)
  out_dir = pathlib.Path(base.output.root_dir) / base.name
  rows = []
  for i, (label, run_config) in enumerate(runs):
    print(f'[{i + 1}/{len(runs)}] {label}', flush=True)
    summary = stackoverflow.run(run_config, progress=progress)
    setting = {k: v for k, v in config_lib.to_dict(run_config)['aggregator'].items()}
    rows.append(dict(label=label, method=run_config.aggregator.method,
                     setting=json.dumps(setting, sort_keys=True),
                     **{k: summary[k] for k in TABLE_COLUMNS[3:]}))
  write_outputs(rows, out_dir)
  return out_dir


def write_outputs(rows: list[dict], out_dir: pathlib.Path) -> None:
  out_dir.mkdir(parents=True, exist_ok=True)
  with (out_dir / 'comparison.csv').open('w', newline='') as f:
    writer = csv.DictWriter(f, TABLE_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
  header = ('| run | eval loss | accuracy | acc. w/o OOV, EOS | bits/param | uplink MB '
            '| distortion | round s | training min |\n'
            '|---|---|---|---|---|---|---|---|---|\n')
  body = ''.join(
      f"| {r['label']} | {r['eval_loss']:.3f} | {r['eval_accuracy']:.4f}"
      f" | {r['eval_accuracy_without_oov_or_eos']:.4f}"
      f" | {r['mean_bits_per_parameter']:.3f} | {r['total_uplink_bytes'] / 1e6:.2f}"
      f" | {r['mean_distortion']:.3g} | {r['median_round_seconds']:.2f}"
      f" | {r['train_seconds'] / 60:.1f} |\n" for r in rows)
  (out_dir / 'comparison.md').write_text(header + body)
  _plot(rows, out_dir / 'accuracy_vs_bits.png', 'eval_accuracy', 'final test accuracy',
        higher_is_better=True, log_y=False)
  _plot([r for r in rows if r['mean_distortion'] > 0], out_dir / 'distortion_vs_bits.png',
        'mean_distortion', 'mean distortion (MSE per element)', higher_is_better=False,
        log_y=True)


def _plot(rows, path, key, label, higher_is_better, log_y):
  fig, ax = plt.subplots(figsize=(8, 5))
  plot_on(ax, rows, key, label, higher_is_better, log_y)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_on(ax, rows, key, label, higher_is_better, log_y):
  """One line per method of `key` against mean bits per parameter, Pareto front marked."""
  methods = sorted({r['method'] for r in rows})
  for method in methods:
    points = sorted((r['mean_bits_per_parameter'], r[key]) for r in rows if r['method'] == method)
    ax.plot([p[0] for p in points], [p[1] for p in points], 'o-', label=method, markersize=4)
  points = [(r['mean_bits_per_parameter'], r[key]) for r in rows]
  front = sorted(p for p, on in zip(points, pareto_front(points, higher_is_better)) if on)
  if front:
    ax.plot([p[0] for p in front], [p[1] for p in front], 'k--', linewidth=1,
            label='Pareto front')
    ax.scatter([p[0] for p in front], [p[1] for p in front], s=80, facecolors='none',
               edgecolors='k')
  ax.set_xscale('log')
  if log_y:
    ax.set_yscale('log')
  ax.set_xlabel('mean bits per parameter (log)')
  ax.set_ylabel(label)
  ax.legend(fontsize=8)
