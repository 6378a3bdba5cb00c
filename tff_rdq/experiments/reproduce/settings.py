"""A reproduce config's `[[setting]]` tables and the runs they give (`load`)."""

import dataclasses
import pathlib

from tff_rdq.experiments import compare
from tff_rdq.experiments import config as config_lib

SETTING_KEYS = ('name', 'corpus', 'optimizer', 'set', 'save_updates', 'sweep')
SAVE_UPDATES_KEYS = ('rounds', 'clients', 'run', 'steps')


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


def load(path, overrides=()) -> tuple[config_lib.ExperimentConfig, list[Run]]:
  """The base config and every run of every setting; `ConfigError` if bad.

  Each `[aggregator]` key of the base (file, bases or `--set`) must be read by
  at least one run, and each of a setting's `set` by one of the setting's runs
  (`config.check_keys_read`).
  """
  path = pathlib.Path(path)
  raw = config_lib.read_toml(path)
  settings = raw.pop('setting', None)
  if not isinstance(settings, list) or not settings:
    raise config_lib.ConfigError(f'{path}: needs at least one [[setting]] table.')
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
    setting_runs = [Run(name, setting['corpus'], setting['optimizer'], label, run_config)
                    for label, run_config in
                    compare.expand_sweeps(setting_base, setting['sweep'], where)]
    if setting.get('save_updates'):
      _mark_saver(setting_runs, setting['save_updates'], where)
    config_lib.check_keys_read(
        [r.config.aggregator for r in setting_runs],
        [k.removeprefix('aggregator.') for k in setting.get('set', {})
         if k.startswith('aggregator.')], where)
    runs += setting_runs
  config_lib.check_keys_read([r.config.aggregator for r in runs], raw.get('aggregator', {}),
                             f'{path} [aggregator]')
  return base, runs
