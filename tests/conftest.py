"""Shared pytest fixtures: one TFF execution context per session, no worker left behind."""

import gc
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest
import tensorflow_federated as tff

from tff_rdq import runtime


@pytest.fixture(scope='session', autouse=True)
def tff_context():
  """A local C++ execution context, stopped (with its worker) after the session."""
  tff.backends.native.set_sync_local_cpp_execution_context()
  yield
  runtime.stop_tff_workers()
  gc.collect()
