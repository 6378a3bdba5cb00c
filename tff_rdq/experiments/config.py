"""Experiment configuration: TOML files validated into dataclasses.

A config file has the sections `[data]`, `[model]`, `[training]`,
`[aggregator]` and `[output]` (plus a top-level `name`); every key is optional
and defaults to the field default below. Unknown sections or keys, values of
the wrong type and values out of range raise `ConfigError`, whose message
names the offending key. `--set section.key=value` overrides are parsed as
TOML values (`--set training.rounds=5`, `--set aggregator.method="mean"`).

A top-level `base = "other.toml"` (a path relative to the config's own folder)
makes the config that file with this one's keys on top: tables merge key by
key, recursively, and any other value (an array of tables too) replaces the
base's. A base may name a base of its own; `name` is never inherited (it
defaults to the file's stem). `read_toml` does the merging.

An `[aggregator]` key that the chosen method (and, for `rdq`, its step control)
does not read is an error if the config, a base of it or a `--set` sets it
(`aggregator_keys_read`); keys left out keep their defaults, read or not.
"""

import dataclasses
import pathlib
import tomllib
import typing
from typing import Any

from tff_rdq import codecs
from tff_rdq.experiments import data as data_lib
from tff_rdq import validation
from tff_rdq.aggregators import compressed
from tff_rdq.aggregators import quantize_encode
from tff_rdq.aggregators import step_control
from tff_rdq.quantizers import uniform


class ConfigError(ValueError):
  """A config file or override is invalid; the message names the key."""


@dataclasses.dataclass
class DataConfig:
  # `local`: the built-in SpamAssassin corpus in Stack Overflow's format,
  # prepared on first use. `stackoverflow`: TFF's own Stack Overflow loader.
  source: str = 'local'
  cache_dir: str = 'data/stackoverflow_local'
  vocab_size: int = 10000
  sequence_length: int = 20
  batch_size: int = 20
  client_epochs: int = 1
  max_elements_per_client: int = 1000
  shuffle_buffer_size: int = 100
  eval_max_elements: int = 20000
  eval_batch_size: int = 256


@dataclasses.dataclass
class ModelConfig:
  embedding_size: int = 96
  lstm_size: int = 670


@dataclasses.dataclass
class TrainingConfig:
  rounds: int = 1500
  clients_per_round: int = 50
  client_optimizer: str = 'sgd'
  client_learning_rate: float = 0.1
  server_optimizer: str = 'sgd'
  server_learning_rate: float = 1.0
  server_momentum: float = 0.0
  seed: int = 0
  eval_every: int = 100
  # Evaluations before this round are skipped (0: from the start); the last
  # round is always evaluated. E.g. eval_every = 5, eval_from = 65 of 80
  # rounds: 65, 70, 75 and 80, all that a mean of the last 4 needs.
  eval_from: int = 0
  checkpoint_every: int = 1

  def evaluates(self, round_num: int) -> bool:
    """Whether round `round_num` (1-based) ends with an evaluation."""
    return round_num == self.rounds or (
        round_num % self.eval_every == 0 and round_num >= self.eval_from)


@dataclasses.dataclass
class AggregatorConfig:
  # `rdq` (ours) or `mean` (TFF's uncompressed MeanFactory); baselines by name.
  method: str = 'rdq'
  step_size: float = 0.01
  rounding: str = 'uniform'
  normalization: str = 'none'
  codec: str = 'elias_gamma'
  # `bytes`: real payloads. `count` (elias_gamma only): exact closed-form bit
  # counts and no encoding or decoding, a simulation shortcut with no wire
  # format; every reported figure is the same (tff_rdq.aggregators.quantize_encode).
  transport: str = 'bytes'
  # Each client's message carries a 32-bit checksum that the server verifies
  # (counted in the bits). false: no checksum, only for a transport that
  # already guarantees integrity (tff_rdq.aggregators.compressed).
  integrity: bool = True
  # What an invalid client message (checksum or decoding failed) does: `drop`
  # leaves that client out of the round and counts it in `corrupt_clients`
  # (the runner warns); `raise` stops the run (tff_rdq.aggregators.compressed).
  on_corrupt: str = 'drop'
  # rdq: other lossless codecs whose bits on the same integers each client
  # reports as `bits_per_parameter_<codec>` (a diagnostic; not sent), e.g.
  # ["run_length_rans"] (tff_rdq.aggregators.quantize_encode).
  compare_codecs: list = dataclasses.field(default_factory=list)
  # How rdq chooses its step each round: `fixed` (step_size), or one of
  # `schedule`, `lagrangian`, `global_vote`, `bit_budget` built from
  # `step_control_options` (see tff_rdq.aggregators.step_control), e.g.
  # step_control = "bit_budget", step_control_options = {target_bits = 1.0, initial = 0.3}.
  step_control: str = 'fixed'
  step_control_options: dict = dataclasses.field(default_factory=dict)
  # Keyword arguments of a baseline method's factory, e.g. {levels = 4} for
  # qsgd or {fraction = 0.01} for top_k (see `tff-rdq methods`).
  options: dict = dataclasses.field(default_factory=dict)
  save_updates_rounds: list = dataclasses.field(default_factory=list)
  save_updates_clients: int = 0


@dataclasses.dataclass
class OutputConfig:
  root_dir: str = 'runs'


@dataclasses.dataclass
class ExperimentConfig:
  name: str = 'experiment'
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
  aggregator: AggregatorConfig = dataclasses.field(default_factory=AggregatorConfig)
  output: OutputConfig = dataclasses.field(default_factory=OutputConfig)

  @property
  def run_dir(self) -> pathlib.Path:
    return pathlib.Path(self.output.root_dir) / self.name


# The `[aggregator]` keys each method reads, as data: every method reads
# `ALWAYS_READ`; `rdq` reads its keys and those of its step control; `mean`
# reads nothing more; any other method is a baseline
# (`tff_rdq.experiments.methods`) and reads `BASELINE_READS`.
ALWAYS_READ = ('method', 'save_updates_rounds', 'save_updates_clients')
METHOD_READS = {
    'rdq': ('rounding', 'normalization', 'codec', 'transport', 'integrity', 'on_corrupt',
            'compare_codecs', 'step_control'),
    'mean': (),
}
BASELINE_READS = ('integrity', 'on_corrupt', 'options')
STEP_CONTROL_READS = {name: ('step_size',) if name == 'fixed' else ('step_control_options',)
                      for name in step_control.CONTROLS}


def aggregator_keys_read(aggregator: AggregatorConfig) -> tuple[str, ...]:
  """The `[aggregator]` keys that `aggregator`'s method and step control read."""
  keys = ALWAYS_READ + METHOD_READS.get(aggregator.method, BASELINE_READS)
  if aggregator.method == 'rdq':
    keys += STEP_CONTROL_READS.get(aggregator.step_control, ())
  return keys


def _reader(aggregator: AggregatorConfig) -> str:
  if aggregator.method == 'rdq':
    return f"method 'rdq' with step_control {aggregator.step_control!r}"
  return f'method {aggregator.method!r}'


def check_keys_read(aggregators, keys, where: str = '') -> None:
  """`ConfigError` naming the first of `keys` (set `[aggregator]` keys) that none of
  `aggregators` (the configs they apply to) reads."""
  # A method that does not exist is left to the factory, whose error names it.
  from tff_rdq.experiments import methods  # pylint: disable=g-import-not-at-top
  aggregators = [a for a in aggregators if a.method in methods.method_names()]
  if not aggregators:
    return
  for key in keys:
    if not any(key in aggregator_keys_read(a) for a in aggregators):
      readers = ', '.join(sorted({_reader(a) for a in aggregators}))
      prefix = f'{where}: ' if where else ''
      raise ConfigError(
          f'{prefix}aggregator.{key} is set but not used by {readers}; remove it.')


_SECTIONS = {f.name: f.type for f in dataclasses.fields(ExperimentConfig) if f.name != 'name'}
_CHOICES = {
    'data.source': data_lib.SOURCES,
    'training.client_optimizer': ('sgd',),
    'training.server_optimizer': ('sgd', 'adam'),
    # Read from the modules that define them.
    'aggregator.rounding': uniform.ROUNDINGS,
    'aggregator.normalization': uniform.NORMALIZATIONS,
    'aggregator.codec': codecs.CODEC_NAMES,
    'aggregator.transport': quantize_encode.TRANSPORTS,
    'aggregator.on_corrupt': compressed.ON_CORRUPT,
    'aggregator.step_control': tuple(step_control.CONTROLS),
}
_POSITIVE = {
    'data.vocab_size', 'data.sequence_length', 'data.batch_size', 'data.client_epochs',
    'data.max_elements_per_client', 'data.shuffle_buffer_size', 'data.eval_max_elements',
    'data.eval_batch_size', 'model.embedding_size', 'model.lstm_size', 'training.rounds',
    'training.clients_per_round', 'training.client_learning_rate',
    'training.server_learning_rate', 'training.eval_every', 'training.checkpoint_every',
    'aggregator.step_size',
}


def _check_value(key: str, value: Any, expected: type) -> Any:
  if expected is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  origin = typing.get_origin(expected) or expected
  if isinstance(value, bool) != (origin is bool) or not isinstance(value, origin):
    raise ConfigError(
        f'{key}: expected {origin.__name__}, got {type(value).__name__} {value!r}.')
  try:
    if key in _CHOICES:
      validation.check_choice(key, value, _CHOICES[key])
    if key in _POSITIVE:
      validation.check_positive(key, value)
  except (TypeError, ValueError) as e:
    raise ConfigError(str(e).replace(f'{key} must', f'{key}: must', 1)) from None
  return value


def from_dict(raw: dict) -> ExperimentConfig:
  """Validates a parsed TOML document into an `ExperimentConfig`."""
  config = ExperimentConfig()
  for section, values in raw.items():
    if section == 'name':
      config.name = _check_value('name', values, str)
      if not values or '/' in values or values.startswith('.'):
        raise ConfigError(f'name: must be a plain directory name, got {values!r}.')
      continue
    if section not in _SECTIONS:
      raise ConfigError(
          f'unknown section [{section}]; sections are {sorted(_SECTIONS)} and `name`.')
    if not isinstance(values, dict):
      raise ConfigError(f'[{section}] must be a table of keys, got {values!r}.')
    target = getattr(config, section)
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
      if key not in fields:
        raise ConfigError(
            f'unknown key {section}.{key}; keys of [{section}] are {sorted(fields)}.')
      setattr(target, key, _check_value(f'{section}.{key}', value, fields[key].type))
  return config


def _parse_override(override: str) -> tuple[str, str, Any]:
  path, _, text = override.partition('=')
  path = path.strip()
  if path == 'name':
    section, key = 'name', ''
  elif not _ or '.' not in path:
    raise ConfigError(f'--set {override!r}: expected section.key=value or name=value.')
  else:
    section, key = path.split('.', 1)
  try:
    value = tomllib.loads(f'v = {text}')['v']
  except tomllib.TOMLDecodeError:
    value = text  # A bare string, e.g. --set aggregator.method=mean.
  return section, key, value


def merge(base: dict, override: dict) -> dict:
  """`base` with `override`'s keys on top, tables (dicts) merged recursively."""
  merged = dict(base)
  for key, value in override.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      value = merge(merged[key], value)
    merged[key] = value
  return merged


def read_toml(path, _chain=()) -> dict:
  """The TOML document at `path` merged over its `base` chain (module doc).

  `ConfigError` if a file is missing or invalid, or the bases form a cycle.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    if _chain:
      raise ConfigError(f'{_chain[-1]}: base config {path} does not exist.')
    raise ConfigError(f'config file {path} does not exist.')
  if path.resolve() in [p.resolve() for p in _chain]:
    cycle = ' -> '.join(p.name for p in (*_chain, path))
    raise ConfigError(f'{path}: base configs form a cycle: {cycle}.')
  try:
    raw = tomllib.loads(path.read_text())
  except tomllib.TOMLDecodeError as e:
    raise ConfigError(f'{path} is not valid TOML: {e}.') from None
  base = raw.pop('base', None)
  if base is None:
    return raw
  if not isinstance(base, str) or not base:
    raise ConfigError(f'{path}: base must be a file name, got {base!r}.')
  inherited = read_toml(path.parent / base, (*_chain, path))
  inherited.pop('name', None)
  return merge(inherited, raw)


def load(path, overrides=()) -> ExperimentConfig:
  """Reads (with its bases), overrides and validates a TOML config file."""
  path = pathlib.Path(path)
  raw = read_toml(path)
  raw.setdefault('name', path.stem)
  return from_raw(raw, overrides)


def apply_overrides(raw: dict, overrides=()) -> dict:
  """A copy of a parsed TOML document with `--set` overrides applied."""
  raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
  for override in overrides:
    section, key, value = _parse_override(override)
    if section == 'name':
      raw['name'] = value
    else:
      raw.setdefault(section, {})[key] = value
  return raw


def from_raw(raw: dict, overrides=()) -> ExperimentConfig:
  """Applies `--set` overrides to a parsed TOML document, then validates it,
  unused `[aggregator]` keys included (module doc)."""
  raw = apply_overrides(raw, overrides)
  config = from_dict(raw)
  check_keys_read([config.aggregator], raw.get('aggregator', {}))
  return config


def to_dict(config: ExperimentConfig) -> dict:
  return dataclasses.asdict(config)
