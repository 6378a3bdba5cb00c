"""Tests of `tff_rdq.experiments.runtime`'s local worker handling (remote: `test_remote.py`)."""

import numpy as np
import pytest
import tensorflow_federated as tff
# pylint: disable-next=g-direct-tensorflow-import

from tff_rdq import tff_internals
from tff_rdq.experiments import runtime


@tff.tensorflow.computation(np.int32)
def _add_one(x):
  return x + 1


@pytest.mark.slow
def test_no_worker_starts_after_stop_late_workers():
  with runtime.local_execution_context():
    assert _add_one(1) == 2
  runtime.stop_late_workers(quiet_s=0.2)
  assert runtime._child_workers() == []  # pylint: disable=protected-access
  # What a computation still in flight on TFF's thread does when its worker is
  # gone: its executor factory starts a fresh worker. It cannot now.
  factory = tff_internals.executor_factory.local_cpp_executor_factory()
  with pytest.raises(runtime.WorkerError, match='TFF workers were stopped'):
    factory.create_executor({})
  assert runtime._child_workers() == []  # pylint: disable=protected-access
  # A new local context starts workers again.
  with runtime.local_execution_context():
    assert _add_one(2) == 3
  assert runtime._child_workers() == []  # pylint: disable=protected-access
