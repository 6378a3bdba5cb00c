"""Shared pytest fixtures: one TFF execution context per session, no worker left behind."""

import gc
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np
import pytest
import tensorflow_federated as tff

from tff_rdq import tff_internals
from tff_rdq.experiments import runtime
from tff_rdq.experiments.data import sqlite_format

WORDS = 'the a model layer tensor update client server round bits step size code'.split()


@pytest.fixture(scope='session', autouse=True)
def tff_context():
  """A local C++ execution context, stopped (with its worker) after the session."""
  runtime._refuse_new_local_workers(False)  # pylint: disable=protected-access
  tff.backends.native.set_sync_local_cpp_execution_context()
  yield
  runtime.stop_tff_workers()
  gc.collect()


@pytest.fixture(autouse=True)
def local_context_available():
  """Reinstalls a local context where a runner (e.g. `tff_rdq.experiments.stackoverflow.run`)
  left the can't-run-anything context that `stop_tff_workers` installs."""
  if isinstance(tff.framework.get_context_stack().current,
                tff_internals.RuntimeErrorContext):
    # `runtime.stop_late_workers` (an interrupted CLI run) refuses new workers.
    runtime._refuse_new_local_workers(False)  # pylint: disable=protected-access
    tff.backends.native.set_sync_local_cpp_execution_context()
  yield


@pytest.fixture(scope='session')
def small_corpus(tmp_path_factory):
  """A generated `stackoverflow.sqlite`: 12 clients of sentences from a tiny grammar."""
  directory = tmp_path_factory.mktemp('corpus')
  rng = np.random.default_rng(0)
  records = []
  for c in range(12):
    for split, count in (('train', 12), ('heldout', 2), ('test', 3)):
      for _ in range(count):
        start = int(rng.integers(len(WORDS) - 6))
        tokens = ' '.join(WORDS[start:start + int(rng.integers(3, 7))])
        records.append(dict(
            split_name=split, client_id=f'client_{c:02d}', creation_date='2002-08-22',
            score=0, tags='t', title='title', tokens=tokens, type='question'))
  sqlite_format.write_stackoverflow_sqlite(directory / 'stackoverflow.sqlite', records)
  return directory


@pytest.fixture
def update_path(tmp_path):
  """A small saved update (`.npz` as `aggregator.save_updates_*` writes): a
  64 by 48 matrix with about 30 % nonzero rows and a vector of 300."""
  rng = np.random.default_rng(3)
  matrix = rng.laplace(size=(64, 48)) * (rng.random((64, 1)) < 0.3)
  path = tmp_path / 'update.npz'
  np.savez(path, tensor_00=matrix.astype(np.float32),
           tensor_01=rng.laplace(size=300).astype(np.float32))
  return path
