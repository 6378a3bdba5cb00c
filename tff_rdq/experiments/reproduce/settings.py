"""A reproduce config's `[[setting]]` tables and the runs they give (`load`).

Besides the experiment's sections and the `[[setting]]` tables, a reproduce
config may have two top-level entries (`SWEEP_KEYS`):

- `docs_dir = "docs/reproduction_paired"`: where the sweep copies its finished
  runs and writes its report (`DIR.md` beside `DIR`); default
  `DEFAULT_DOCS_DIR`, the first sweep's.
- `[analysis]`: the pre-registered rules of the verdicts
  (`verdicts.AnalysisSettings.from_table`), fixed before any run. Without it
  the report gives no paired verdicts.

A setting's `seeds = [0, 1, 2]` makes each of its sweep entries (an *arm*:
one method at one knob) one run per client-sampling seed (`training.seed`,
which also seeds the model's initialization and the clients' shuffling), the
seeds of an arm consecutive, labelled `ARM_seed=S` (`SEED_SUFFIX`); the same
seed in two arms is the same clients every round, which is what pairs them.
"""

import dataclasses
import pathlib
from typing import NamedTuple

from tff_rdq.experiments import compare
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import verdicts

SETTING_KEYS = ('name', 'corpus', 'optimizer', 'set', 'save_updates', 'seeds', 'sweep')
SAVE_UPDATES_KEYS = ('rounds', 'clients', 'run', 'steps')
SWEEP_KEYS = ('docs_dir', 'analysis')
DEFAULT_DOCS_DIR = 'docs/reproduction'
# A run's label is its arm's label, this and its seed (with a setting's `seeds`).
SEED_SUFFIX = '_seed='


@dataclasses.dataclass
class Run:
  """One run of a setting.

  Attributes:
    arm: The label without the seed suffix: the runs of one arm differ only in
      `training.seed` (the label itself when the setting has no `seeds`).
  """
  setting: str
  corpus: str
  optimizer: str
  label: str
  config: config_lib.ExperimentConfig
  saves_updates: bool = False
  frontier_steps: tuple = ()  # Empty: frontier.DEFAULT_STEPS.
  arm: str = ''

  def __post_init__(self):
    self.arm = self.arm or self.label

  @property
  def seed(self) -> int:
    """The client-sampling seed, which pairs runs of different arms."""
    return self.config.training.seed

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
  seeds = setting.get('seeds', [])
  if not isinstance(seeds, list) or not all(
      isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in seeds) or len(
          set(seeds)) != len(seeds):
    raise config_lib.ConfigError(
        f'setting {name}: seeds must be a list of distinct non-negative integers, got '
        f'{seeds!r}.')
  return name


def _seeded(arms: list, seeds: list[int], base_seed: int, where: str) -> list[tuple]:
  """`(arm, label, config)` of every run: each arm once per seed, seeds consecutive.

  Without `seeds`, each arm is one run labelled as the arm. An arm that sets
  `training.seed` itself in a setting with `seeds` is an error: its seeds
  would not be the ones listed.
  """
  if not seeds:
    return [(label, label, config) for label, config in arms]
  runs = []
  for arm, config in arms:
    if config.training.seed != base_seed:
      raise config_lib.ConfigError(
          f'{where}: run {arm} sets training.seed, and the setting lists seeds; set the '
          'seeds in one place.')
    for seed in seeds:
      raw = config_lib.to_dict(config)
      raw['training']['seed'] = seed
      raw['name'] = f'{arm}{SEED_SUFFIX}{seed}'
      runs.append((arm, raw['name'], config_lib.from_dict(raw)))
  return runs


def _check_evaluations(runs: list[Run], analysis: verdicts.AnalysisSettings, path) -> None:
  """`ConfigError` if a run evaluates fewer times than its primary metric averages."""
  for run in runs:
    training = run.config.training
    evaluations = sum(map(training.evaluates, range(1, training.rounds + 1)))
    if evaluations < analysis.last_evals:
      raise config_lib.ConfigError(
          f'{path}: run {run.setting}/{run.label} evaluates {evaluations} times (training.'
          f'rounds, eval_every, eval_from), fewer than analysis.last_evals={analysis.last_evals}.')


def _mark_saver(setting_runs: list[Run], save: dict, where: str) -> None:
  """Makes the run that `save` (a setting's `save_updates`) names save updates."""
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


class Sweep(NamedTuple):
  """A loaded reproduce config.

  Attributes:
    base: The experiment config the settings start from.
    runs: Every run of every setting, in config order.
    analysis: The `[analysis]` table's rules, or None when the config has none.
    docs_dir: Where the sweep copies its runs and writes its report.
  """
  base: config_lib.ExperimentConfig
  runs: list[Run]
  analysis: verdicts.AnalysisSettings | None
  docs_dir: str


def _pop_sweep_keys(raw: dict, path) -> tuple:
  """`(analysis, docs_dir)` popped from a parsed reproduce config (module doc)."""
  docs_dir = raw.pop('docs_dir', DEFAULT_DOCS_DIR)
  if not isinstance(docs_dir, str) or not docs_dir.strip('/'):
    raise config_lib.ConfigError(f'{path}: docs_dir must be a directory path, got {docs_dir!r}.')
  table = raw.pop('analysis', None)
  if table is None:
    return None, docs_dir
  try:
    return verdicts.AnalysisSettings.from_table(table), docs_dir
  except ValueError as e:
    raise config_lib.ConfigError(f'{path}: {e}') from None


def load(path, overrides=()) -> Sweep:
  """The base config, every run of every setting, the rules and the docs dir.

  Raises `ConfigError` (one line) for a bad config. Each `[aggregator]` key of
  the base (file, bases or `--set`) must be read by at least one run, and each
  of a setting's `set` by one of the setting's runs (`config.check_keys_read`);
  with `[analysis]`, every run must evaluate at least `last_evals` times.
  """
  path = pathlib.Path(path)
  raw = config_lib.read_toml(path)
  settings = raw.pop('setting', None)
  if not isinstance(settings, list) or not settings:
    raise config_lib.ConfigError(f'{path}: needs at least one [[setting]] table.')
  analysis, docs_dir = _pop_sweep_keys(raw, path)
  raw.setdefault('name', path.stem)
  raw = config_lib.apply_overrides(raw, overrides)
  base = config_lib.from_dict(raw)
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
    arms = compare.expand_sweeps(setting_base, setting['sweep'], where)
    setting_runs = [
        Run(name, setting['corpus'], setting['optimizer'], label, run_config, arm=arm)
        for arm, label, run_config in _seeded(arms, setting.get('seeds', []),
                                              setting_base.training.seed, where)]
    if setting.get('save_updates'):
      _mark_saver(setting_runs, setting['save_updates'], where)
    config_lib.check_keys_read(
        [r.config.aggregator for r in setting_runs],
        [k.removeprefix('aggregator.') for k in setting.get('set', {})
         if k.startswith('aggregator.')], where)
    runs += setting_runs
  config_lib.check_keys_read([r.config.aggregator for r in runs], raw.get('aggregator', {}),
                             f'{path} [aggregator]')
  if analysis is not None:
    _check_evaluations(runs, analysis, path)
  return Sweep(base, runs, analysis, docs_dir)
