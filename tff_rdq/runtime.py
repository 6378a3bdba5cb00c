"""Owning the TFF execution context: start it, and stop its worker process.

Every TFF computation runs in a separate C++ process (`worker_binary`) that is
not stopped when Python exits (its cleanup runs too late, at interpreter
shutdown). `stop_tff_workers` replaces the current context with one that can
run nothing and collects garbage, which stops the old context's worker there
and then.
"""

import contextlib
import gc

import tensorflow_federated as tff
from tensorflow_federated.python.core.impl.context_stack import runtime_error_context


def stop_tff_workers() -> None:
  """Stops the worker of the current execution context (see module doc)."""
  tff.framework.set_default_context(runtime_error_context.RuntimeErrorContext())
  gc.collect()


@contextlib.contextmanager
def local_execution_context():
  """A local C++ execution context for the `with` body; its worker stops after."""
  tff.backends.native.set_sync_local_cpp_execution_context()
  try:
    yield
  finally:
    stop_tff_workers()


@contextlib.contextmanager
def remote_execution_context(addresses):
  """An execution context over TFF workers at `host:port` addresses."""
  raise NotImplementedError('remote workers are not implemented yet')
  yield  # pylint: disable=unreachable
