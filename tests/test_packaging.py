"""The plugin apart from the experiment: `tff_rdq.aggregators`, `codecs`,
`quantizers` and `baselines` import, and build a factory, where the
experiment's extra is not installed.

tqdm and tensorboard cannot be absent in any environment with the plugin:
tensorflow-federated imports tqdm and tensorflow requires tensorboard. So
the subprocess blocks matplotlib and `tff_rdq.experiments`, and a static
check says that no plugin module imports tqdm, matplotlib or the experiment.
"""

import pathlib
import subprocess
import sys
import tomllib

import pytest

_ROOT = pathlib.Path(__file__).resolve().parents[1]

# A fresh interpreter in which the experiments extra and the experiment
# package cannot be imported (as in `pip install tff-rdq` without extras).
_WITHOUT_EXTRA = r'''
import importlib.abc, sys
BLOCKED = ('matplotlib', 'tff_rdq.experiments')

class Blocker(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if any(name == b or name.startswith(b + '.') for b in BLOCKED):
      raise ModuleNotFoundError(f'No module named {name!r} (blocked)', name=name)
    return None

sys.meta_path.insert(0, Blocker())
import collections
import numpy as np
import tensorflow_federated as tff
from tff_rdq import aggregators, baselines, codecs, quantizers, tff_internals
value_type = tff.types.to_type(collections.OrderedDict(w=tff.TensorType(np.float32, [8])))
process = aggregators.QuantizeEncodeFactory(0.1).create(value_type, tff.TensorType(np.float32))
baselines.TopKFactory(0.5).create(value_type, tff.TensorType(np.float32))
loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'
                or m.startswith('tff_rdq.experiments'))
print('loaded:', loaded)
'''


@pytest.mark.slow
@pytest.mark.subprocess
def test_plugin_imports_and_builds_without_the_experiments_extra():
  result = subprocess.run([sys.executable, '-c', _WITHOUT_EXTRA], cwd=_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={'TF_CPP_MIN_LOG_LEVEL': '2', 'PATH': '/usr/bin:/bin'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == 'loaded: []'


def test_core_dependencies_leave_out_the_experiments_extra():
  project = tomllib.loads((_ROOT / 'pyproject.toml').read_text())['project']
  core = ' '.join(project['dependencies'])
  for name in ('matplotlib', 'tqdm', 'tensorboard'):
    assert name not in core
    assert any(d.startswith(name) for d in project['optional-dependencies']['experiments'])
  for name in ('tensorflow', 'tensorflow-federated', 'tensorflow-compression', 'numpy'):
    assert any(d.startswith(name + '>') or d.startswith(name + '=') for d in
               project['dependencies']), name


def test_plugin_modules_import_nothing_of_the_experiment():
  plugin = [p for d in ('aggregators', 'codecs', 'quantizers', 'baselines')
            for p in (_ROOT / 'tff_rdq' / d).rglob('*.py')]
  plugin += [_ROOT / 'tff_rdq' / n for n in ('__init__.py', 'validation.py', 'tff_internals.py')]
  assert len(plugin) > 30
  for path in plugin:
    for line in path.read_text().splitlines():
      words = line.split()
      if words[:1] in (['import'], ['from']) and len(words) > 1:
        module = words[1]
        assert module.split('.')[0] not in ('tqdm', 'matplotlib'), (path, line)
        assert not module.startswith('tff_rdq.experiments'), (path, line)
