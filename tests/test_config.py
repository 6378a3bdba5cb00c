"""Tests of config files: `base` merging, unused `[aggregator]` keys, the repository's configs."""

import dataclasses
import pathlib

import pytest

from tff_rdq.experiments import cli
from tff_rdq.experiments import compare
from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import reproduce

REPO = pathlib.Path(__file__).resolve().parents[1]


def _write(directory, name, text):
  path = pathlib.Path(directory) / name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  return path


# ---------------------------------------------------------------------------
# `base`.


def test_base_keys_are_overridden_key_by_key(tmp_path):
  _write(tmp_path, 'base.toml', 'name = "base"\n[training]\nrounds = 7\nseed = 3\n'
         '[aggregator]\nmethod = "qsgd"\noptions = {levels = 2, bucket_size = 512}\n')
  child = _write(tmp_path, 'child.toml', 'base = "base.toml"\n[training]\nrounds = 9\n'
                 '[aggregator]\noptions = {levels = 8}\n')
  config = config_lib.load(child)
  assert config.training.rounds == 9 and config.training.seed == 3
  # A table inside a table merges key by key too.
  assert config.aggregator.method == 'qsgd'
  assert config.aggregator.options == {'levels': 8, 'bucket_size': 512}
  # The name is the child's (its stem), never the base's.
  assert config.name == 'child'
  # `--set` applies on top of the merged config.
  assert config_lib.load(child, ['training.seed=4']).training.seed == 4


def test_base_of_a_base_relative_to_each_config(tmp_path):
  _write(tmp_path, 'shared/root.toml', '[model]\nlstm_size = 32\nembedding_size = 8\n'
         '[training]\nrounds = 5\n')
  _write(tmp_path, 'shared/middle.toml', 'base = "root.toml"\n[model]\nlstm_size = 64\n')
  leaf = _write(tmp_path, 'runs/leaf.toml', 'base = "../shared/middle.toml"\nname = "leaf"\n'
                '[training]\nrounds = 6\n')
  config = config_lib.load(leaf)
  assert (config.model.embedding_size, config.model.lstm_size) == (8, 64)
  assert config.training.rounds == 6 and config.name == 'leaf'
  raw = config_lib.read_toml(leaf)
  assert 'base' not in raw and raw['model'] == {'lstm_size': 64, 'embedding_size': 8}


def test_base_cycle_is_an_error(tmp_path):
  _write(tmp_path, 'a.toml', 'base = "b.toml"\n')
  _write(tmp_path, 'b.toml', 'base = "c.toml"\n')
  _write(tmp_path, 'c.toml', 'base = "a.toml"\n')
  with pytest.raises(config_lib.ConfigError, match='cycle: a.toml -> b.toml -> c.toml -> a.toml'):
    config_lib.load(tmp_path / 'a.toml')
  _write(tmp_path, 'self.toml', 'base = "self.toml"\n')
  with pytest.raises(config_lib.ConfigError, match='cycle'):
    config_lib.load(tmp_path / 'self.toml')


def test_missing_or_bad_base_is_an_error(tmp_path):
  child = _write(tmp_path, 'child.toml', 'base = "absent.toml"\n')
  with pytest.raises(config_lib.ConfigError,
                     match=r'child.toml: base config .*absent.toml does not exist'):
    config_lib.load(child)
  _write(tmp_path, 'broken.toml', '[training\n')
  with pytest.raises(config_lib.ConfigError, match='broken.toml is not valid TOML'):
    config_lib.load(_write(tmp_path, 'child2.toml', 'base = "broken.toml"\n'))
  with pytest.raises(config_lib.ConfigError, match='base must be a file name'):
    config_lib.load(_write(tmp_path, 'child3.toml', 'base = 3\n'))


def test_sweep_configs_get_the_merged_view(tmp_path):
  _write(tmp_path, 'base.toml', '[training]\nrounds = 4\n[aggregator]\nnormalization = "rms"\n')
  path = _write(tmp_path, 'sweep.toml', 'base = "base.toml"\n[[sweep]]\nmethod = "rdq"\n'
                'settings = [{step_size = 0.1}]\n[[sweep]]\nmethod = "mean"\n')
  base, runs = compare.load(path)
  assert base.name == 'sweep' and base.training.rounds == 4
  assert [(label, c.aggregator.normalization, c.training.rounds) for label, c in runs] == [
      ('rdq_step_size=0.1', 'rms', 4), ('mean', 'rms', 4)]
  path = _write(tmp_path, 'rep.toml', 'base = "base.toml"\n[[setting]]\nname = "s"\n'
                'corpus = "local"\noptimizer = "fedavg"\n[[setting.sweep]]\nmethod = "rdq"\n')
  runs = reproduce.load(path).runs
  assert [(r.label, r.config.training.rounds) for r in runs] == [('rdq', 4)]


# ---------------------------------------------------------------------------
# Unused `[aggregator]` keys.


def test_table_covers_every_aggregator_key():
  classified = set(config_lib.ALWAYS_READ) | set(config_lib.BASELINE_READS)
  for keys in (*config_lib.METHOD_READS.values(), *config_lib.STEP_CONTROL_READS.values()):
    classified |= set(keys)
  assert classified == {f.name for f in dataclasses.fields(config_lib.AggregatorConfig)}


@pytest.mark.parametrize('aggregator, message', [
    ({'method': 'qsgd', 'step_size': 0.3},
     "aggregator.step_size is set but not used by method 'qsgd'"),
    ({'method': 'top_k', 'codec': 'rans', 'options': {'fraction': 0.1}},
     "aggregator.codec is set but not used by method 'top_k'"),
    ({'method': 'mean', 'normalization': 'rms'},
     "aggregator.normalization is set but not used by method 'mean'"),
    ({'method': 'mean', 'integrity': False}, "aggregator.integrity .* method 'mean'"),
    ({'method': 'rdq', 'options': {'levels': 2}}, "aggregator.options .* method 'rdq'"),
    ({'step_control': 'bit_budget', 'step_control_options': {'target_bits': 1.0},
      'step_size': 0.3},
     "aggregator.step_size is set but not used by method 'rdq' with step_control 'bit_budget'"),
    ({'step_control_options': {'target_bits': 1.0}},
     "aggregator.step_control_options .* with step_control 'fixed'"),
    ({'method': 'qsgd', 'step_control': 'schedule'}, "aggregator.step_control .* 'qsgd'"),
])
def test_unused_key_is_an_error(aggregator, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.from_raw({'aggregator': aggregator})


def test_keys_read_or_left_at_default_are_fine():
  config = config_lib.from_raw({'aggregator': {'method': 'qsgd', 'options': {'levels': 4},
                                               'integrity': False,
                                               'save_updates_rounds': [1]}})
  assert config.aggregator.step_size == 0.01  # The default, not read by qsgd: fine.
  config_lib.from_raw({'aggregator': {'step_control': 'bit_budget',
                                      'step_control_options': {'target_bits': 1.0}}})
  config_lib.from_raw({'aggregator': {'method': 'mean', 'save_updates_clients': 2}})
  # An unknown method is left to the factory, whose error names it.
  config_lib.from_raw({'aggregator': {'method': 'gzip', 'step_size': 0.1}})


def test_override_that_leaves_a_key_unused_is_an_error():
  tiny = REPO / 'configs' / 'tiny.toml'  # Sets aggregator.step_size.
  with pytest.raises(config_lib.ConfigError, match="step_size .* method 'mean'"):
    config_lib.load(tiny, ['aggregator.method="mean"'])
  with pytest.raises(config_lib.ConfigError, match="step_size .* step_control 'schedule'"):
    config_lib.load(tiny, ['aggregator.step_control="schedule"'])


def test_unused_key_is_a_one_line_cli_error(tmp_path, capsys):
  path = _write(tmp_path, 'bad.toml', '[aggregator]\nmethod = "drive"\nstep_size = 0.3\n')
  assert cli.main(['run', str(path), '--no-progress']) == 2
  err = capsys.readouterr().err.strip()
  assert "aggregator.step_size is set but not used by method 'drive'" in err and '\n' not in err


def test_sweep_keys_must_be_read_by_their_runs(tmp_path):
  header = '[aggregator]\nnormalization = "rms"\n'
  # A setting's own key must be read by its method.
  path = _write(tmp_path, 'a.toml', header + '[[sweep]]\nmethod = "top_k"\n'
                'settings = [{step_size = 0.1}]\n')
  with pytest.raises(config_lib.ConfigError,
                     match=r"sweep\[0\] \(top_k_step_size=0.1\): aggregator.step_size .* 'top_k'"):
    compare.load(path)
  # A base key needs one run that reads it: rdq reads normalization, mean does not.
  compare.load(_write(tmp_path, 'b.toml', header + '[[sweep]]\nmethod = "rdq"\n'
                      '[[sweep]]\nmethod = "mean"\n'))
  with pytest.raises(config_lib.ConfigError, match=r"\[aggregator\]: aggregator.normalization"):
    compare.load(_write(tmp_path, 'c.toml', header + '[[sweep]]\nmethod = "mean"\n'))
  with pytest.raises(config_lib.ConfigError, match="aggregator.codec .* method 'mean'"):
    compare.load(_write(tmp_path, 'd.toml', '[[sweep]]\nmethod = "mean"\n'),
                 ['aggregator.codec="rans"'])
  settings = ('[[setting]]\nname = "s"\ncorpus = "local"\noptimizer = "fedavg"\n'
              '[[setting.sweep]]\nmethod = "mean"\n')
  with pytest.raises(config_lib.ConfigError, match="normalization .* method 'mean'"):
    reproduce.load(_write(tmp_path, 'e.toml', header + settings))
  with pytest.raises(config_lib.ConfigError, match="setting s: aggregator.codec"):
    reproduce.load(_write(tmp_path, 'f.toml', settings.replace(
        'optimizer = "fedavg"\n', 'optimizer = "fedavg"\nset = {"aggregator.codec" = "rans"}\n')))


# ---------------------------------------------------------------------------
# The repository's configs.


@pytest.mark.parametrize('path', sorted((REPO / 'configs').glob('*.toml')), ids=lambda p: p.name)
def test_repository_config_loads(path):
  raw = config_lib.read_toml(path)
  if 'setting' in raw:
    runs = reproduce.load(path).runs
    assert runs
  elif 'sweep' in raw:
    _, runs = compare.load(path)
    assert runs
  else:
    assert config_lib.load(path).name == path.stem
  # The header says what the config is for and how long it runs; no history.
  header = path.read_text().split('\nname = ')[0].split('\nbase = ')[0]
  assert header.startswith('# ')
  assert any(unit in header for unit in ('second', 'minute', 'hour', 'days')), header
  for word in ('issue', 'session', 'tuning', 'commit'):
    assert word not in header.lower(), (path.name, word)
