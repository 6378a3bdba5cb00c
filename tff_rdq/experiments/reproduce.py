"""The reproduction sweep (issue 9) and its claims report.

A reproduce config is an experiment config (the base: `[data]`, `[model]`,
`[training]`, `[aggregator]`, `[output]`, `name`) plus `[[setting]]` tables:

  [[setting]]
  name = "local_fedadam"       # a plain directory name
  corpus = "local"             # labels for the report (Claim 1's factors);
  optimizer = "fedadam"        # `set` selects the data and the optimizer
  set = {"training.server_optimizer" = "adam"}   # dotted overrides of the base
  save_updates = {rounds = [2, 30, 60], clients = 3}  # optional, see below
  [[setting.sweep]]            # as in `tff_rdq.experiments.compare`
  method = "mean"
  settings = [{}, {"training.seed" = 1}]

`save_updates` is applied to one run of the setting: the one labelled
`save_updates.run`, by default the first `rdq` run. Its frontier is measured at
the grid steps `save_updates.steps` (default `frontier.DEFAULT_STEPS`).

`sweep(path)` runs every run of every setting (`run`, resumable; round-robin over
the settings, `run_order`; `only=` names the settings to run) under
`output.root_dir/NAME/SETTING/LABEL`, skipping those already finished: a run is
finished when `DOCS/runs/SETTING/LABEL/` holds its `summary.json` of the last
round and a `config.json` equal to the run's config. After each finished run
it copies `summary.json`, `metrics.csv`, `config.json` and `wall_seconds.json`
(the wall time spent in the run, summed over resumes) there, and after the run
that saved updates, the frontier of those updates (`measure_frontier`) to
`DOCS/frontier/SETTING.csv` (`DOCS` defaults to `docs/reproduction`); so a
sweep interrupted at any point loses nothing once `DOCS` is committed.

`report(...)` (also `tff-rdq reproduce CONFIG --report-only`) writes
`DOCS.md` (`docs/reproduction.md`), CSVs and PNGs in `DOCS` from those copies
alone; runs not finished yet are listed as missing. It also writes
`DOCS/summary.md`, the short form (every finished run, the baselines' outcomes,
Claims 1 and 2 in brief and the verdicts), which `update_readme` (`--readme
README.md`) puts between the README's `README_BEGIN` and `README_END` markers,
so that the README's numbers are the report's, never typed in.
"""

import csv
import dataclasses
import json
import math
import pathlib
import time

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

# pylint: disable=wrong-import-position
from tff_rdq.experiments import claims
from tff_rdq.experiments import compare
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import frontier
from tff_rdq.experiments import stackoverflow
from tff_rdq.experiments import updates as updates_lib
from tff_rdq.quantizers import uniform
# pylint: enable=wrong-import-position

DEFAULT_DOCS_DIR = 'docs/reproduction'
# The README lines between these markers are `DOCS/summary.md` (`update_readme`).
README_BEGIN = ('<!-- reproduction summary: written by `tff-rdq reproduce CONFIG --report-only '
                '--readme README.md` from docs/reproduction/summary.md; do not edit -->')
README_END = '<!-- end of reproduction summary -->'
SETTING_KEYS = ('name', 'corpus', 'optimizer', 'set', 'save_updates', 'sweep')
SAVE_UPDATES_KEYS = ('rounds', 'clients', 'run', 'steps')
# Claim 1: relative distortions at which bits per parameter are compared.
TARGET_DISTORTIONS = (0.1, 0.01)
# Distortion normalizations: frontier CSV column -> description.
NORMALIZATIONS = {
    'relative_distortion': 'whole update (squared error / squared norm)',
    'tensor_relative_distortion': 'per tensor (mean over tensors of squared error / squared norm)',
}


def _normalization_name(key: str) -> str:
  """The short name of a normalization: its description up to the parenthesis."""
  return NORMALIZATIONS[key].split(' (')[0]


FRONTIER_FIELDS = ('setting', 'corpus', 'optimizer', 'round', 'client', 'client_id',
                   'parameters', 'step', 'step_size', 'bits_per_parameter',
                   *NORMALIZATIONS)
# Verdict thresholds (stated in the report).
CV_SUPPORTED, CV_PARTLY = 0.1, 0.25
CLAIM2_P = 0.05  # Claim 2 needs a permutation p-value below this (and the interval above 0).
ONE_BIT_RANGE = (0.5, 2.0)


@dataclasses.dataclass
class Run:
  setting: str
  corpus: str
  optimizer: str
  label: str
  config: config_lib.ExperimentConfig
  saves_updates: bool = False
  frontier_steps: tuple = ()  # Empty: frontier.DEFAULT_STEPS.

  @property
  def rdq_uniform(self) -> bool:
    a = self.config.aggregator
    return a.method == 'rdq' and a.rounding == 'uniform' and a.step_control == 'fixed'

  @property
  def compressed(self) -> bool:
    return self.config.aggregator.method != 'mean'

  @property
  def kind(self) -> str:
    """The curve a run belongs to in plots: the method, with rdq's rounding."""
    a = self.config.aggregator
    if a.method == 'rdq' and not self.rdq_uniform:
      return f'rdq ({a.rounding}, {a.step_control})'
    return a.method


def _check_setting(i: int, setting) -> str:
  if not isinstance(setting, dict):
    raise config_lib.ConfigError(f'setting[{i}]: must be a table.')
  unknown = sorted(set(setting) - set(SETTING_KEYS))
  if unknown:
    raise config_lib.ConfigError(
        f'setting[{i}]: unknown keys {unknown}; keys are {list(SETTING_KEYS)}.')
  missing = [k for k in ('name', 'corpus', 'optimizer', 'sweep') if k not in setting]
  if missing:
    raise config_lib.ConfigError(f'setting[{i}]: missing keys {missing}.')
  name = setting['name']
  if not isinstance(name, str) or not name or '/' in name or name.startswith('.'):
    raise config_lib.ConfigError(f'setting[{i}].name: must be a plain directory name, '
                                 f'got {name!r}.')
  for key in ('corpus', 'optimizer'):
    if not isinstance(setting[key], str) or not setting[key]:
      raise config_lib.ConfigError(f'setting {name}: {key} must be a non-empty string.')
  if not isinstance(setting.get('set', {}), dict):
    raise config_lib.ConfigError(f'setting {name}: set must be a table of dotted keys.')
  save = setting.get('save_updates', {})
  unknown = sorted(set(save) - set(SAVE_UPDATES_KEYS)) if isinstance(save, dict) else None
  if unknown is None or unknown or (save and not {'rounds', 'clients'} <= set(save)):
    raise config_lib.ConfigError(
        f'setting {name}: save_updates must be a table with rounds and clients (and '
        f'optionally run, steps); unknown keys {unknown or []}.')
  steps = save.get('steps', []) if isinstance(save, dict) else []
  if not isinstance(steps, list) or not all(
      isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in steps):
    raise config_lib.ConfigError(
        f'setting {name}: save_updates.steps must be a list of positive numbers.')
  return name


def load(path, overrides=()) -> tuple[config_lib.ExperimentConfig, list[Run]]:
  """The base config and every run of every setting; `ConfigError` if bad."""
  path = pathlib.Path(path)
  raw = compare.read_toml(path)
  settings = raw.pop('setting', None)
  if not isinstance(settings, list) or not settings:
    raise config_lib.ConfigError(f'{path}: needs at least one [[setting]] table.')
  raw.setdefault('name', path.stem)
  base = config_lib.from_raw(raw, overrides)
  runs, names = [], set()
  for i, setting in enumerate(settings):
    name = _check_setting(i, setting)
    if name in names:
      raise config_lib.ConfigError(f'{path}: two settings are named {name!r}.')
    names.add(name)
    where = f'setting {name}'
    setting_raw = compare.apply_dotted(config_lib.to_dict(base), setting.get('set', {}), where)
    setting_raw['name'] = name
    setting_raw['output']['root_dir'] = str(pathlib.Path(base.output.root_dir) / base.name)
    setting_base = config_lib.from_dict(setting_raw)
    setting_runs = [Run(name, setting['corpus'], setting['optimizer'], label, run_config)
                    for label, run_config in
                    compare.expand_sweeps(setting_base, setting['sweep'], where)]
    save = setting.get('save_updates')
    if save:
      labels = [r.label for r in setting_runs]
      chosen = save.get('run') or next(
          (r.label for r in setting_runs if r.config.aggregator.method == 'rdq'), None)
      if chosen not in labels:
        raise config_lib.ConfigError(
            f'{where}: save_updates.run {chosen!r} is not one of its runs {labels}.')
      run = setting_runs[labels.index(chosen)]
      run_raw = config_lib.to_dict(run.config)
      run_raw['aggregator'].update(save_updates_rounds=save['rounds'],
                                   save_updates_clients=save['clients'])
      run.config = config_lib.from_dict(run_raw)
      run.saves_updates = True
      run.frontier_steps = tuple(float(x) for x in save.get('steps', ()))
    runs += setting_runs
  return base, runs


# ---------------------------------------------------------------------------
# The sweep.


def _run_docs(docs_dir: pathlib.Path, run: Run) -> pathlib.Path:
  return docs_dir / 'runs' / run.setting / run.label


def _frontier_path(docs_dir: pathlib.Path, setting: str) -> pathlib.Path:
  return docs_dir / 'frontier' / f'{setting}.csv'


def _frontier_seconds_path(docs_dir: pathlib.Path, setting: str) -> pathlib.Path:
  return docs_dir / 'frontier' / f'{setting}_seconds.json'


def _read_json(path: pathlib.Path):
  return json.loads(path.read_text()) if path.is_file() else None


def finished_summary(docs_dir, run: Run):
  """The run's copied summary if it is finished with the run's config, else None."""
  directory = _run_docs(pathlib.Path(docs_dir), run)
  summary = _read_json(directory / 'summary.json')
  saved_config = _read_json(directory / 'config.json')
  if (summary is None or saved_config != config_lib.to_dict(run.config) or
      summary.get('rounds') != run.config.training.rounds):
    return None
  return summary


def _add_wall_seconds(path: pathlib.Path, seconds: float) -> float:
  total = (_read_json(path) or {}).get('seconds', 0.0) + seconds
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({'seconds': total}))
  return total


def _copy_run(run: Run, docs_dir: pathlib.Path) -> None:
  target = _run_docs(docs_dir, run)
  target.mkdir(parents=True, exist_ok=True)
  for name in ('metrics.csv', 'wall_seconds.json', 'config.json', 'summary.json'):
    source = run.config.run_dir / name
    if source.is_file():
      # The summary last: its presence marks the copy complete.
      tmp = target / (name + '.tmp')
      tmp.write_bytes(source.read_bytes())
      tmp.replace(target / name)


def run_order(runs: list[Run]) -> list[Run]:
  """The order `sweep` runs them in: the settings' first runs, then their second, ...

  Round-robin over the settings, each setting's updates-saving run first and
  then its other runs in config order, so that a sweep stopped early has
  covered every setting as far as it got: the first runs already give every
  setting's frontier (Claim 1 needs nothing else), the next ones (with `mean`
  listed first) the uncompressed references.
  """
  position, seen = [], {}
  for run in runs:
    if run.saves_updates:
      position.append(-1)
      continue
    position.append(seen.get(run.setting, 0))
    seen[run.setting] = position[-1] + 1
  return [run for _, _, run in sorted(
      zip(position, range(len(runs)), runs), key=lambda item: item[:2])]


def sweep(path, overrides=(), progress=True, docs_dir=DEFAULT_DOCS_DIR,
          only=()) -> pathlib.Path:
  """Runs the sweep (skipping finished runs), then writes the report; returns its path.

  `only`: names of settings to run (all if empty); the report covers them all.
  """
  docs_dir = pathlib.Path(docs_dir)
  _, runs = load(path, overrides)
  names = list(dict.fromkeys(run.setting for run in runs))
  unknown = [name for name in only if name not in names]
  if unknown:
    raise config_lib.ConfigError(
        f'{path}: no setting named {unknown[0]!r}; the settings are {names}.')
  selected = [run for run in run_order(runs) if not only or run.setting in only]
  start = time.perf_counter()
  for i, run in enumerate(selected):
    prefix = f'[{i + 1}/{len(selected)}] {run.setting}/{run.label}'
    frontier_csv = _frontier_path(docs_dir, run.setting)
    needs_frontier = run.saves_updates and not frontier_csv.is_file()
    updates_index = run.config.run_dir / 'updates' / 'index.json'
    if finished_summary(docs_dir, run) is not None and (
        not needs_frontier or updates_index.is_file()):
      print(f'{prefix}: finished earlier, skipped', flush=True)
    else:
      print(f'{prefix}: running', flush=True)
      run_start = time.perf_counter()
      try:
        summary = stackoverflow.run(run.config, progress=progress)
      finally:
        seconds = _add_wall_seconds(run.config.run_dir / 'wall_seconds.json',
                                    time.perf_counter() - run_start)
      _copy_run(run, docs_dir)
      print(f'{prefix}: finished, {seconds:.0f} s in the run; eval loss '
            f'{summary["eval_loss"]:.4f}, accuracy w/o OOV/EOS '
            f'{summary["eval_accuracy_without_oov_or_eos"]:.4f}, '
            f'{summary["mean_bits_per_parameter"]:.3f} bits/parameter', flush=True)
    if needs_frontier and updates_index.is_file():
      write_frontier(run, docs_dir)
      print(f'{prefix}: frontier of its saved updates in {frontier_csv}', flush=True)
    elif needs_frontier:
      print(f'{prefix}: saved no updates (are save_updates.rounds within training.rounds?)',
            flush=True)
    print(f'  elapsed {time.perf_counter() - start:.0f} s', flush=True)
  return report(runs, docs_dir)


# ---------------------------------------------------------------------------
# The frontier of saved updates, with per-tensor errors.


def measure(flat, step: float, rounding='uniform', codec='elias_gamma',
            normalization='rms') -> dict:
  """Compresses one update (float32 vectors) as the aggregator does, at grid `step`.

  Returns `dict(step_size, bytes, squared_errors, squared_norms)`, the errors
  and norms per tensor (float64), `bytes` the streams' length with headers.
  """
  _, size, streams, _, quantized = frontier.compress_update(
      flat, step, rounding, codec, normalization)
  errors = []
  for values, (tensor_step, tensor_seed, integers) in zip(flat, quantized):
    reconstruction = uniform.dequantize(integers, tensor_step, rounding, tensor_seed).numpy()
    errors.append(float(np.sum(np.square(reconstruction.astype(np.float64) - values))))
  norms = [float(np.sum(np.square(v.astype(np.float64)))) for v in flat]
  return dict(step_size=size, bytes=sum(len(s.numpy()) for s in streams),
              squared_errors=errors, squared_norms=norms)


def measure_frontier(run: Run) -> list[dict]:
  """`FRONTIER_FIELDS` rows of every update `run` saved, over its frontier steps."""
  a = run.config.aggregator
  rows = []
  for entry, tensors in updates_lib.load_updates(run.config.run_dir):
    flat = [np.asarray(t, np.float32).reshape(-1) for t in tensors]
    n = sum(v.size for v in flat)
    for step in run.frontier_steps or frontier.DEFAULT_STEPS:
      m = measure(flat, step, a.rounding, a.codec, a.normalization)
      per_tensor = [e / s for e, s in zip(m['squared_errors'], m['squared_norms']) if s > 0]
      rows.append(dict(
          setting=run.setting, corpus=run.corpus, optimizer=run.optimizer,
          round=int(entry['round']), client=int(entry['client']),
          client_id=entry.get('client_id', ''), parameters=n, step=step,
          step_size=m['step_size'], bits_per_parameter=8 * m['bytes'] / n,
          relative_distortion=sum(m['squared_errors']) / sum(m['squared_norms']),
          tensor_relative_distortion=float(np.mean(per_tensor))))
  return rows


def write_frontier(run: Run, docs_dir) -> pathlib.Path:
  start = time.perf_counter()
  rows = measure_frontier(run)
  path = _frontier_path(pathlib.Path(docs_dir), run.setting)
  path.parent.mkdir(parents=True, exist_ok=True)
  _write_csv(path, FRONTIER_FIELDS, rows)
  _add_wall_seconds(_frontier_seconds_path(pathlib.Path(docs_dir), run.setting),
                    time.perf_counter() - start)
  return path


def _write_csv(path, fields, rows) -> None:
  tmp = path.with_suffix('.tmp')
  with tmp.open('w', newline='') as f:
    writer = csv.DictWriter(f, fields, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  tmp.replace(path)


def read_frontier(path) -> list[dict]:
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    for key in ('round', 'client', 'parameters'):
      row[key] = int(row[key])
    for key in ('step', 'step_size', 'bits_per_parameter', *NORMALIZATIONS):
      row[key] = float(row[key])
  return rows


def bits_at(rows, key: str, target: float) -> float:
  """Bits per parameter of one update's curve at distortion `target`.

  Linear in (log distortion, log bits) between the two grid points around
  `target`; NaN outside the grid's range (no extrapolation).
  """
  points = sorted((r[key], r['bits_per_parameter']) for r in rows
                  if r[key] > 0 and r['bits_per_parameter'] > 0)
  for (d0, b0), (d1, b1) in zip(points, points[1:]):
    if d0 <= target <= d1:
      if d1 == d0:
        return b0
      t = (math.log(target) - math.log(d0)) / (math.log(d1) - math.log(d0))
      return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
  return math.nan


# ---------------------------------------------------------------------------
# The report.


def _fmt(value, digits=4) -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'n/a'
  return f'{value:.{digits}g}' if isinstance(value, float) else str(value)


def _table(header, rows) -> str:
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(_fmt(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def _outcome(ours, loss, bits, spread) -> str:
  """Ours against one baseline run (`loss` at `bits`), with `spread` as the noise.

  `ours better`: ours reaches `loss - spread` with at most `bits`; `baseline
  better`: ours does not reach `loss + spread` with at most `bits` (and has a
  run with so few bits); otherwise `within seed spread` (or `not comparable`
  when ours has no run with so few bits). With `spread = 0` (fewer than 2
  uncompressed seeds) this is `bits_to_match`'s plain comparison.
  """
  won_bits, won = claims.bits_to_match(ours, loss - spread)
  if won != 'not_reached' and won_bits <= bits:
    return 'ours better'
  if not ours or min(b for b, _ in ours) > bits:
    return 'not comparable'
  lost_bits, lost = claims.bits_to_match(ours, loss + spread)
  if lost == 'not_reached' or lost_bits > bits:
    return 'baseline better'
  return 'within seed spread'


def _accuracy_section(setting, finished, docs_dir) -> tuple[str, list[dict], list[dict]]:
  """Table, plot and bits-to-match of one setting; returns markdown and CSV rows."""
  rows = [dict(s, setting=setting, label=r.label, method=r.kind) for r, s in finished]
  points = {key: [(r['mean_bits_per_parameter'], r[key]) for r in rows]
            for key in ('eval_loss', 'eval_accuracy', 'eval_accuracy_without_oov_or_eos')}
  for key, higher in (('eval_loss', False), ('eval_accuracy', True),
                      ('eval_accuracy_without_oov_or_eos', True)):
    for row, on in zip(rows, compare.pareto_front(points[key], higher)):
      row[f'front_{key}'] = on
  ours = [(s['mean_bits_per_parameter'], s['eval_loss']) for r, s in finished if r.rdq_uniform]
  seeds = [s['eval_loss'] for r, s in finished if not r.compressed]
  spread = max(seeds) - min(seeds) if len(seeds) >= 2 else 0.0
  matches = []
  for r, s in finished:
    if r.config.aggregator.method in ('rdq', 'mean'):
      continue
    bits, status = claims.bits_to_match(ours, s['eval_loss'])
    baseline_bits = s['mean_bits_per_parameter']
    matches.append(dict(setting=setting, baseline=r.label, baseline_bits=baseline_bits,
                        eval_loss=s['eval_loss'], ours_bits=bits, status=status,
                        ours_fewer_bits=status != 'not_reached' and bits <= baseline_bits,
                        seed_spread=spread,
                        outcome=_outcome(ours, s['eval_loss'], baseline_bits, spread)))
  fig, axes = plt.subplots(1, 3, figsize=(18, 5))
  for ax, (key, label, higher) in zip(axes, (
      ('eval_accuracy', 'final test accuracy', True),
      ('eval_accuracy_without_oov_or_eos', 'final test accuracy w/o OOV, EOS', True),
      ('eval_loss', 'final test loss', False))):
    compare.plot_on(ax, rows, key, label, higher_is_better=higher, log_y=False)
  fig.suptitle(setting)
  fig.tight_layout()
  png = f'{setting}_accuracy_vs_bits.png'
  fig.savefig(docs_dir / png, dpi=90)
  plt.close(fig)
  def cell(row, key):
    return f'{row[key]:.4f}' + (' *' if row[f'front_{key}'] else '')

  text = _table(
      ('run', 'bits/param', 'eval loss', 'accuracy', 'acc. w/o OOV, EOS', 'rel. distortion'),
      [(r['label'], r['mean_bits_per_parameter'], cell(r, 'eval_loss'),
        cell(r, 'eval_accuracy'), cell(r, 'eval_accuracy_without_oov_or_eos'),
        r['mean_relative_distortion'])
       for r in sorted(rows, key=lambda r: r['mean_bits_per_parameter'])])
  text += (f'\n`*`: on the Pareto front of that column against bits.\n\n'
           f'![{setting}]({docs_dir.name}/{png})\n')
  if matches:
    text += '\nBits ours (rdq, uniform rounding) needs to reach each baseline\'s eval loss:\n\n'
    text += _table(('baseline', 'its bits/param', 'its eval loss', 'ours bits/param', 'status',
                    'seed spread', 'outcome'),
                   [(m['baseline'], m['baseline_bits'], m['eval_loss'],
                     m['ours_bits'], m['status'].replace('_', ' '), m['seed_spread'],
                     m['outcome']) for m in matches])
    text += ('\n*Seed spread*: max - min eval loss of the uncompressed seeds (0 with one '
             'seed); *outcome*: ours better if it reaches the baseline\'s eval loss minus the '
             'spread with no more bits, the baseline better if ours cannot reach its eval loss '
             'plus the spread with no more bits, else within the seed spread.\n')
  return text, rows, matches


def _claim2(setting, finished) -> dict | None:
  compressed = [(r, s) for r, s in finished if r.compressed]
  if len(compressed) < 3:
    return None
  result = dict(setting=setting, runs=len(compressed))
  for prefix, group in (('all', compressed), ('ours', [(r, s) for r, s in compressed
                                                       if r.config.aggregator.method == 'rdq'])):
    x = [s['mean_relative_distortion'] for _, s in group]
    y = [s['eval_loss'] for _, s in group]
    result[f'{prefix}_n'] = len(group)
    result[f'{prefix}_spearman'] = claims.spearman(x, y) if len(group) >= 3 else math.nan
    low, high = claims.bootstrap_spearman(x, y) if len(group) >= 3 else (math.nan, math.nan)
    result[f'{prefix}_low'], result[f'{prefix}_high'] = low, high
    result[f'{prefix}_p'] = claims.permutation_p_spearman(x, y) if len(group) >= 3 else math.nan
  return result


def _claim1(frontier_rows) -> list[dict]:
  """Per (normalization, target): CV of bits across updates and variance shares."""
  updates = {}
  for row in frontier_rows:
    updates.setdefault((row['setting'], row['round'], row['client']), []).append(row)
  # Round as its position among the setting's saved rounds (early, middle, late).
  positions = {}
  for setting in {k[0] for k in updates}:
    rounds = sorted({k[1] for k in updates if k[0] == setting})
    positions.update({(setting, r): i for i, r in enumerate(rounds)})
  results = []
  for key in NORMALIZATIONS:
    for target in TARGET_DISTORTIONS:
      values, factors = [], {'corpus': [], 'optimizer': [], 'round': [], 'client': []}
      for (setting, round_num, client), rows in sorted(updates.items()):
        bits = bits_at(rows, key, target)
        if math.isnan(bits):
          continue
        values.append(bits)
        factors['corpus'].append(rows[0]['corpus'])
        factors['optimizer'].append(rows[0]['optimizer'])
        factors['round'].append(positions[(setting, round_num)])
        factors['client'].append(client)
      shares = (claims.variance_shares(values, factors) if len(values) >= 2
                else dict.fromkeys(factors, math.nan))
      # Within one corpus: is the frontier the same across the other factors?
      by_corpus = {c: [v for v, label in zip(values, factors['corpus']) if label == c]
                   for c in sorted(set(factors['corpus']))}
      within = [claims.coefficient_of_variation(v) for v in by_corpus.values() if len(v) >= 2]
      results.append(dict(normalization=key, target=target, updates=len(values),
                          outside_grid=len(updates) - len(values),
                          mean_bits=float(np.mean(values)) if values else math.nan,
                          cv=claims.coefficient_of_variation(values),
                          cv_within_corpus=max(within) if within else math.nan,
                          mean_bits_by_corpus='; '.join(
                              f'{c} {np.mean(v):.3g}' for c, v in by_corpus.items()),
                          **{f'share_{k}': v for k, v in shares.items()}))
  return results


def _best_normalization(claim1):
  """`(normalization, targets, mean CV)` of the lowest mean CV over the targets
  where every normalization has a CV; None if there are none."""
  cv = {(c['normalization'], c['target']): c['cv'] for c in claim1}
  targets = [t for t in TARGET_DISTORTIONS
             if all(not math.isnan(cv.get((k, t), math.nan)) for k in NORMALIZATIONS)]
  if not targets:
    return None
  means = {k: float(np.mean([cv[(k, t)] for t in targets])) for k in NORMALIZATIONS}
  best = min(means, key=means.get)
  return best, targets, means[best]


def _plot_frontier(frontier_rows, path) -> None:
  pairs = sorted({(r['corpus'], r['optimizer']) for r in frontier_rows})
  colours = {p: plt.cm.tab10(i % 10) for i, p in enumerate(pairs)}
  fig, axes = plt.subplots(1, len(NORMALIZATIONS), figsize=(7 * len(NORMALIZATIONS), 5))
  for ax, key in zip(axes, NORMALIZATIONS):
    curves = {}
    for r in frontier_rows:
      curves.setdefault((r['setting'], r['round'], r['client']), []).append(r)
    labelled = set()
    for rows in curves.values():
      pair = (rows[0]['corpus'], rows[0]['optimizer'])
      points = sorted((r[key], r['bits_per_parameter']) for r in rows)
      ax.plot([p[0] for p in points], [p[1] for p in points], '-', color=colours[pair],
              alpha=0.6, label=None if pair in labelled else '/'.join(pair))
      labelled.add(pair)
    for target in TARGET_DISTORTIONS:
      ax.axvline(target, color='grey', linestyle=':', linewidth=1)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel(f'relative distortion, {_normalization_name(key)}')
    ax.set_ylabel('bits per parameter')
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def _one_bit(setting, finished) -> dict | None:
  """Uncompressed (>= 2 seeds) against ours nearest 1 bit/parameter, or None."""
  mean = [s for r, s in finished if not r.compressed]
  ours = [(r, s) for r, s in finished if r.rdq_uniform and
          ONE_BIT_RANGE[0] <= s['mean_bits_per_parameter'] <= ONE_BIT_RANGE[1]]
  if len(mean) < 2 or not ours:
    return None
  run, summary = min(ours, key=lambda p: abs(math.log(p[1]['mean_bits_per_parameter'])))
  result = dict(setting=setting, seeds=len(mean), ours=run.label,
                ours_bits=summary['mean_bits_per_parameter'])
  for key, short in (('eval_accuracy_without_oov_or_eos', 'acc_wo'),
                     ('eval_accuracy', 'acc')):
    values = [s[key] for s in mean]
    average = float(np.mean(values))
    result[f'{short}_mean'] = average
    result[f'{short}_ours'] = summary[key]
    result[f'{short}_gap'] = (average - summary[key]) / average if average else math.nan
    result[f'{short}_spread'] = (max(values) - min(values)) / average if average else math.nan
  return result


def _verdict(name, verdict, reason) -> str:
  return f'- **{name}: {verdict}.** {reason}\n'


def report(runs: list[Run], docs_dir=DEFAULT_DOCS_DIR) -> pathlib.Path:
  """Writes `DOCS.md` and `DOCS/*.csv, *.png` from the copied results; returns the md path."""
  docs_dir = pathlib.Path(docs_dir)
  docs_dir.mkdir(parents=True, exist_ok=True)
  settings = list(dict.fromkeys(r.setting for r in runs))
  finished = {s: [] for s in settings}
  missing = []
  wall = 0.0
  for run in runs:
    summary = finished_summary(docs_dir, run)
    if summary is None:
      missing.append(run)
      continue
    finished[run.setting].append((run, summary))
    wall += (_read_json(_run_docs(docs_dir, run) / 'wall_seconds.json') or {}).get('seconds', 0.0)
  frontier_rows, frontier_missing = [], []
  for run in (r for r in runs if r.saves_updates):
    path = _frontier_path(docs_dir, run.setting)
    if path.is_file():
      frontier_rows += read_frontier(path)
      seconds_path = _frontier_seconds_path(docs_dir, run.setting)
      wall += (_read_json(seconds_path) or {}).get('seconds', 0.0)
    else:
      frontier_missing.append(run)

  finished_line = f'Runs finished: {len(runs) - len(missing)} of {len(runs)}'
  out = ['# Reproduction: the paper\'s claims on these runs\n\n',
         'Generated by `tff-rdq reproduce CONFIG` (or `--report-only`) from the summaries in '
         f'`{docs_dir.name}/runs/` and the frontiers of saved updates in '
         f'`{docs_dir.name}/frontier/` (beside this file); '
         'every number below is computed from them.\n\n',
         f'{finished_line}. Sweep wall time so far: '
         f'{wall / 60:.1f} min (the runs\' measured wall times, summed over sessions, plus the '
         'frontier measurements; runs that shared the machine each count their own time, '
         'so it can exceed the elapsed time).\n\n']
  if missing or frontier_missing:
    out.append('Missing (not run yet, unfinished, or run with a different config):\n\n')
    out += [f'- run `{r.setting}/{r.label}`\n' for r in missing]
    out += [f'- frontier of the saved updates of `{r.setting}/{r.label}`\n'
            for r in frontier_missing]
    out.append('\n')

  out.append('## Accuracy against bits\n\n')
  all_rows, all_matches = [], []
  for setting in settings:
    out.append(f'### {setting}\n\n')
    if not finished[setting]:
      out.append('No finished runs yet.\n\n')
      continue
    text, rows, matches = _accuracy_section(setting, finished[setting], docs_dir)
    out += [text, '\n']
    all_rows += rows
    all_matches += matches
  run_fields = ['setting', 'label', 'method', 'rounds', 'mean_bits_per_parameter', 'eval_loss',
                'eval_accuracy', 'eval_accuracy_without_oov_or_eos', 'mean_relative_distortion',
                'mean_distortion', 'total_uplink_bytes', 'median_round_seconds',
                'front_eval_loss', 'front_eval_accuracy', 'front_eval_accuracy_without_oov_or_eos']
  _write_csv(docs_dir / 'runs.csv', run_fields, all_rows)
  _write_csv(docs_dir / 'bits_to_match.csv', ('setting', 'baseline', 'baseline_bits', 'eval_loss',
                                               'ours_bits', 'status', 'ours_fewer_bits',
                                               'seed_spread', 'outcome'),
             all_matches)

  out.append('## Claim 2: distortion predicts model performance\n\n'
             'Spearman rank correlation between a run\'s mean relative distortion and its final '
             'eval loss, over the compressed runs of each setting with at least 3 (bootstrap 95 % '
             'interval, 2000 resamples of runs; p: one-sided permutation p-value of a positive '
             'correlation, exact up to 8 runs).\n\n')
  claim2 = [c for c in (_claim2(s, finished[s]) for s in settings) if c]
  if claim2:
    out.append(_table(('setting', 'runs', 'Spearman (all)', '95 % interval', 'p',
                       'ours: runs', 'Spearman (ours)', '95 % interval', 'p (ours)'),
                      [(c['setting'], c['all_n'], c['all_spearman'],
                        f"[{_fmt(c['all_low'], 3)}, {_fmt(c['all_high'], 3)}]",
                        _fmt(c['all_p'], 3), c['ours_n'], c['ours_spearman'],
                        f"[{_fmt(c['ours_low'], 3)}, {_fmt(c['ours_high'], 3)}]",
                        _fmt(c['ours_p'], 3))
                       for c in claim2]) + '\n')
  else:
    out.append('No setting has 3 finished compressed runs yet.\n\n')
  _write_csv(docs_dir / 'claim2.csv', ('setting', 'runs', 'all_n', 'all_spearman', 'all_low',
                                       'all_high', 'all_p', 'ours_n', 'ours_spearman',
                                       'ours_low', 'ours_high', 'ours_p'), claim2)

  out.append('## Claim 1: the rate-distortion frontier is consistent\n\n')
  claim1 = _claim1(frontier_rows) if frontier_rows else []
  if claim1:
    _plot_frontier(frontier_rows, docs_dir / 'frontier_curves.png')
    n_updates = len({(r['setting'], r['round'], r['client']) for r in frontier_rows})
    pairs = sorted({(r['corpus'], r['optimizer']) for r in frontier_rows})
    out.append(
        f'{n_updates} saved updates of {len(pairs)} (corpus, optimizer) pairs '
        f'({", ".join("/".join(p) for p in pairs)}), compressed by ours (the aggregator\'s '
        'own compressor) over the frontier\'s step grid. Bits per parameter at each target '
        'relative distortion are interpolated in log-log per update (updates whose grid does '
        'not reach the target are left out). CV: coefficient of variation of those bits across '
        'updates; shares: the part of their variance explained by each factor on its own '
        '(one-way eta squared; round = early/middle/late position); the largest CV within '
        'a corpus: across the other factors, the corpus held fixed.\n\n'
        f'![frontier curves]({docs_dir.name}/frontier_curves.png)\n\n')
    out.append(_table(('normalization', 'target', 'updates', 'outside grid', 'mean bits', 'CV',
                       'corpus', 'optimizer', 'round', 'client', 'mean bits by corpus',
                       'largest CV within a corpus'),
                      [(_normalization_name(c['normalization']), c['target'],
                        c['updates'], c['outside_grid'], c['mean_bits'], c['cv'],
                        c['share_corpus'], c['share_optimizer'], c['share_round'],
                        c['share_client'], c['mean_bits_by_corpus'], c['cv_within_corpus'])
                       for c in claim1]) + '\n')
    best = _best_normalization(claim1)
    if best:
      out.append(f'Most consistent normalization (lowest mean CV over the targets that every '
                 f'normalization reaches, {", ".join(str(t) for t in best[1])}): '
                 f'**{NORMALIZATIONS[best[0]]}** (mean CV {best[2]:.3f}).\n\n')
    else:
      out.append('No target distortion is reached by the updates under every normalization.\n\n')
  else:
    out.append('No frontier of saved updates yet.\n\n')
  _write_csv(docs_dir / 'claim1.csv', ('normalization', 'target', 'updates', 'outside_grid',
                                       'mean_bits', 'cv', 'share_corpus', 'share_optimizer',
                                       'share_round', 'share_client', 'mean_bits_by_corpus',
                                       'cv_within_corpus'), claim1)

  out.append('## Uncompressed against ours at about 1 bit per parameter\n\n'
             'Relative gap = (mean of the uncompressed runs - ours) / that mean; seed spread = '
             '(max - min) / mean over the uncompressed runs\' seeds. Ours: the rdq run (uniform '
             f'rounding) nearest 1 bit/parameter within {ONE_BIT_RANGE[0]}-{ONE_BIT_RANGE[1]}.\n\n')
  one_bit = [c for c in (_one_bit(s, finished[s]) for s in settings) if c]
  if one_bit:
    out.append(_table(('setting', 'seeds', 'ours', 'bits/param', 'acc. w/o OOV, EOS: mean',
                       'ours', 'gap', 'spread', 'accuracy: gap', 'spread'),
                      [(c['setting'], c['seeds'], c['ours'], c['ours_bits'], c['acc_wo_mean'],
                        c['acc_wo_ours'], c['acc_wo_gap'], c['acc_wo_spread'], c['acc_gap'],
                        c['acc_spread']) for c in one_bit]) + '\n')
  else:
    out.append('No setting has 2 finished uncompressed seeds and an rdq run near 1 bit yet.\n\n')
  _write_csv(docs_dir / 'one_bit.csv', ('setting', 'seeds', 'ours', 'ours_bits', 'acc_wo_mean',
                                        'acc_wo_ours', 'acc_wo_gap', 'acc_wo_spread', 'acc_mean',
                                        'acc_ours', 'acc_gap', 'acc_spread'), one_bit)

  out.append('## Verdicts\n\n')
  verdicts = _verdicts(claim1, claim2, one_bit, all_matches, missing or frontier_missing)
  out.append(verdicts)
  path = docs_dir.with_suffix('.md')
  path.write_text(''.join(out))
  status = f'{finished_line} ({wall / 60:.1f} min of summed run wall time). '
  (docs_dir / 'summary.md').write_text(
      _summary(status, settings, all_rows, all_matches, claim2, claim1, verdicts,
               path, docs_dir))
  return path


def _summary(status, settings, rows, matches, claim2, claim1, verdicts, report_path,
             docs_dir) -> str:
  """The report's short form (`DOCS/summary.md`) for the README."""
  outcome = {(m['setting'], m['baseline']): m for m in matches}
  order = {s: i for i, s in enumerate(settings)}

  def against_ours(row):
    m = outcome.get((row['setting'], row['label']))
    if m is None:
      return ''
    needs = ('not reached' if m['status'] == 'not_reached' else
             f"{_fmt(m['ours_bits'], 3)} bits ({m['status'].replace('_', ' ')})")
    return f"{m['outcome']}; ours needs {needs}"

  out = [status, f'Full report: [`{report_path}`]({report_path}) (tables, plots and CSVs '
         f'in `{docs_dir}/`).\n\n',
         'Every finished run, after its last round (eval loss and accuracy on the fixed '
         'evaluation examples; *against ours*: for a baseline, the outcome with the '
         'uncompressed seeds\' eval-loss spread as noise, and the bits ours needs to reach '
         'its eval loss):\n\n']
  out.append(_table(
      ('setting', 'run', 'bits/param', 'eval loss', 'acc. w/o OOV, EOS', 'rel. distortion',
       'against ours'),
      [(r['setting'], r['label'], _fmt(r['mean_bits_per_parameter'], 3),
        _fmt(r['eval_loss'], 4), f"{100 * r['eval_accuracy_without_oov_or_eos']:.2f} %",
        _fmt(r['mean_relative_distortion'], 3), against_ours(r))
       for r in sorted(rows, key=lambda r: (order[r['setting']],
                                           r['mean_bits_per_parameter']))]))
  if claim2:
    out.append('\nClaim 2, Spearman correlation of mean relative distortion with eval loss '
               '(permutation p, one-sided):\n\n')
    out.append(_table(('setting', 'compressed runs', 'Spearman', 'p', 'ours: runs',
                       'Spearman', 'p'),
                      [(c['setting'], c['all_n'], _fmt(c['all_spearman'], 3),
                        _fmt(c['all_p'], 3), c['ours_n'], _fmt(c['ours_spearman'], 3),
                        _fmt(c['ours_p'], 3)) for c in claim2]))
  if claim1:
    out.append('\nClaim 1, bits per parameter of the saved updates at a target relative '
               'distortion: coefficient of variation across all updates, the share of its '
               'variance the corpus explains, and the largest CV within one corpus:\n\n')
    out.append(_table(('normalization', 'target', 'updates', 'CV', 'corpus share',
                       'largest CV within a corpus'),
                      [(_normalization_name(c['normalization']), c['target'],
                        c['updates'], _fmt(c['cv'], 3), _fmt(c['share_corpus'], 3),
                        _fmt(c['cv_within_corpus'], 3)) for c in claim1]))
  out += ['\nVerdicts:\n\n', verdicts]
  return ''.join(out)


def update_readme(readme_path, summary_path) -> None:
  """Replaces the README's lines between `README_BEGIN` and `README_END` by the summary."""
  readme_path, summary_path = pathlib.Path(readme_path), pathlib.Path(summary_path)
  text = readme_path.read_text()
  begin, end = text.find(README_BEGIN), text.find(README_END)
  if begin < 0 or end < begin:
    raise config_lib.ConfigError(
        f'{readme_path}: no reproduction summary markers; put the line {README_BEGIN!r} '
        f'and, after it, the line {README_END!r} where the summary goes.')
  readme_path.write_text(text[:begin + len(README_BEGIN)] + '\n\n'
                         + summary_path.read_text().rstrip('\n') + '\n\n' + text[end:])


def _verdicts(claim1, claim2, one_bit, matches, incomplete) -> str:
  note = ' (on the runs finished so far)' if incomplete else ''
  lines = []
  best = _best_normalization(claim1)
  if not best:
    lines.append(_verdict('Claim 1 (frontier consistent)', 'not enough runs yet',
                          'No frontier of 2 or more saved updates at a common target.'))
  else:
    key, targets, _ = best
    worst = max(c['cv'] for c in claim1
                if c['normalization'] == key and c['target'] in targets)
    verdict = ('supported' if worst <= CV_SUPPORTED else
               'partly' if worst <= CV_PARTLY else 'not supported')
    lines.append(_verdict(
        'Claim 1 (frontier consistent)', verdict + note,
        f'With the {_normalization_name(key)} normalization the largest CV of bits/'
        f'parameter at the target distortions {", ".join(str(t) for t in targets)} is '
        f'{worst:.3f} (supported at <= {CV_SUPPORTED}, '
        f'partly at <= {CV_PARTLY}); within one corpus at most '
        f'{max(c["cv_within_corpus"] for c in claim1 if c["normalization"] == key and c["target"] in targets):.3f}.'))
  if not claim2:
    lines.append(_verdict('Claim 2 (distortion predicts performance)', 'not enough runs yet',
                          'No setting has 3 finished compressed runs.'))
  else:
    positive = [c['all_low'] > 0 and c['all_p'] < CLAIM2_P for c in claim2]
    leaning = [c['all_spearman'] > 0 for c in claim2]
    verdict = ('supported' if all(positive) else
               'partly' if any(positive) or all(leaning) else 'not supported')
    lines.append(_verdict(
        'Claim 2 (distortion predicts performance)', verdict + note,
        f'Over all compressed runs, the Spearman interval lies above 0 with permutation p < '
        f'{CLAIM2_P} in {sum(positive)} of {len(claim2)} settings, and the correlation is '
        f'positive in {sum(leaning)} (supported: every setting so; partly: some, or every '
        'correlation positive).'))
  if not one_bit:
    lines.append(_verdict('About 1 bit/parameter costs no accuracy', 'not enough runs yet',
                          'No setting has 2 uncompressed seeds and an rdq run near 1 bit.'))
  else:
    within = [c['acc_wo_gap'] <= c['acc_wo_spread'] for c in one_bit]
    near = [c['acc_wo_gap'] <= 2 * c['acc_wo_spread'] for c in one_bit]
    verdict = 'supported' if all(within) else 'partly' if all(near) else 'not supported'
    lines.append(_verdict(
        'About 1 bit/parameter costs no accuracy', verdict + note,
        f'The relative gap in accuracy without OOV/EOS is within the seed spread in '
        f'{sum(within)} of {len(one_bit)} settings and within twice it in {sum(near)} '
        '(supported: within the spread everywhere; partly: within twice it).'))
  if not matches:
    lines.append(_verdict('Ours beats the baselines at equal bits', 'not enough runs yet',
                          'No finished baseline runs beside ours.'))
  else:
    outcomes = [m['outcome'] for m in matches if m['outcome'] != 'not comparable']
    wins, losses = outcomes.count('ours better'), outcomes.count('baseline better')
    n = len(outcomes)
    verdict = ('not enough runs yet' if not n else
               'supported' if wins == n else
               'not supported' if losses * 2 >= n else
               'partly' if wins * 2 >= n else 'not separated from seed noise')
    lines.append(_verdict(
        'Ours beats the baselines at equal bits', verdict + (note if n else ''),
        f'Of {n} baseline runs ours can be compared with (eval loss against bits, with the '
        f'uncompressed seeds\' spread as noise), ours is better in {wins}, the baseline in '
        f'{losses}, and {n - wins - losses} are within the seed spread (supported: ours better '
        'in all; not supported: the baseline better in at least half; partly: ours better in '
        'at least half).'))
  return ''.join(lines)
