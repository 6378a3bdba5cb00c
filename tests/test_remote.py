"""Tests of running rounds split across TFF workers (`tff_rdq.experiments.runtime`'s remote part).

Two workers are started with `runtime.serve_worker` in subprocesses on free
local ports for the whole module, and stopped (and checked gone) at its end.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq.experiments import runtime
from tff_rdq.aggregators import QuantizeEncodeFactory

_SERVE = 'import sys; from tff_rdq.experiments import runtime; sys.exit(runtime.serve_worker(int(sys.argv[1])))'
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NUM_CLIENTS = 4
_ROUNDS = 3
_FEATURES, _CLASSES = 8, 3


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class _Worker:
  """`serve_worker(port)` in a subprocess, and the PID of its worker_binary."""

  def __init__(self, log_path):
    self.port = _free_port()
    self.address = f'127.0.0.1:{self.port}'
    self._log = open(log_path, 'wb')  # pylint: disable=consider-using-with
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    self.wrapper = subprocess.Popen([sys.executable, '-c', _SERVE, str(self.port)], cwd=_REPO,
                                    env=env, stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not runtime._listening(self.port):  # pylint: disable=protected-access
      assert self.wrapper.poll() is None, open(log_path).read()
      assert time.monotonic() < deadline, 'worker did not start'
      time.sleep(0.1)
    children = subprocess.run(['pgrep', '-P', str(self.wrapper.pid)], capture_output=True,
                              text=True, check=False).stdout.split()
    assert len(children) == 1, children
    self.binary_pid = int(children[0])

  def stop(self) -> None:
    if self.wrapper.poll() is None:
      self.wrapper.send_signal(signal.SIGTERM)
      try:
        self.wrapper.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.wrapper.kill()
        self.wrapper.wait()
    self._log.close()


def _cpu_ticks(pid: int) -> int:
  """User + system CPU time of process `pid`, in clock ticks (`/proc/PID/stat`)."""
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return int(fields[11]) + int(fields[12])


def _running_worker_binaries() -> set[int]:
  out = subprocess.run(['pgrep', '-f', 'worker_binary'], capture_output=True, text=True,
                       check=False).stdout
  return {int(pid) for pid in out.split()}


@pytest.fixture(scope='module')
def start_worker(tmp_path_factory):
  """Starts workers on demand; at the end stops them and checks none is left."""
  started = []

  def start():
    worker = _Worker(tmp_path_factory.mktemp('worker') / 'log.txt')
    started.append(worker)
    return worker

  yield start
  for worker in started:
    worker.stop()
  ours = {w.binary_pid for w in started}
  deadline = time.monotonic() + 10
  while ours & _running_worker_binaries() and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not ours & _running_worker_binaries()
  for worker in started:
    # Stopped by the signal the test sent, which `serve_worker` reports as 0.
    assert worker.wrapper.returncode in (0, 1), worker.wrapper.returncode


@pytest.fixture(scope='module')
def two_workers(start_worker):
  return [start_worker(), start_worker()]


def _model_fn():
  keras_model = tf.keras.Sequential([
      tf.keras.layers.InputLayer(input_shape=(_FEATURES,)),
      tf.keras.layers.Dense(16, activation='relu'),
      tf.keras.layers.Dense(_CLASSES),
  ])
  return tff.learning.models.from_keras_model(
      keras_model,
      input_spec=(tf.TensorSpec([None, _FEATURES], tf.float32),
                  tf.TensorSpec([None], tf.int32)),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])


def _client_data():
  rng = np.random.default_rng(0)
  datasets = []
  for i in range(_NUM_CLIENTS):
    n = 12 + 5 * i  # Different weights per client.
    x = rng.normal(size=(n, _FEATURES)).astype(np.float32)
    y = rng.integers(0, _CLASSES, size=n).astype(np.int32)
    datasets.append(tf.data.Dataset.from_tensor_slices((x, y)).batch(8))
  return datasets


def _run_rounds(process, state, datasets):
  weights, measurements, train = [], [], []
  for _ in range(_ROUNDS):
    output = process.next(state, datasets)
    state = output.state
    weights.append([np.asarray(w) for w in process.get_model_weights(state).trainable])
    measurements.append(dict(output.metrics['aggregator']))
    train.append(dict(output.metrics['client_work']['train']))
  return weights, measurements, train


@pytest.mark.slow
def test_rounds_split_across_two_workers_match_local(two_workers):
  process = tff.learning.algorithms.build_weighted_fed_avg(
      _model_fn,
      client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.1),
      server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0),
      model_aggregator=QuantizeEncodeFactory(0.01))
  datasets = _client_data()
  # One initial state for both runs: `initialize` draws fresh random weights.
  state = process.initialize()
  local = _run_rounds(process, state, datasets)  # The session's local context.

  ticks = [_cpu_ticks(w.binary_pid) for w in two_workers]
  with runtime.remote_execution_context([w.address for w in two_workers]):
    runtime.check_splittable(process)
    process.initialize()  # Runs there too.
    remote = _run_rounds(process, state, datasets)
  # Both workers did work (each ran its half of the clients).
  assert all(_cpu_ticks(w.binary_pid) - t > 5 for w, t in zip(two_workers, ticks))

  for round_num in range(_ROUNDS):
    for a, b in zip(local[0][round_num], remote[0][round_num]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    m_local, m_remote = local[1][round_num], remote[1][round_num]
    assert m_local.keys() == m_remote.keys()
    assert m_local['clients'] == m_remote['clients'] == _NUM_CLIENTS
    for key in ('uplink_bits', 'side_info_bits', 'clients', 'dropped_clients'):
      assert m_local[key] == m_remote[key], (round_num, key)
    for key in m_local:
      assert m_remote[key] == pytest.approx(m_local[key], rel=1e-5, abs=1e-9), (round_num, key)
    for key in local[2][round_num]:
      assert remote[2][round_num][key] == pytest.approx(local[2][round_num][key], rel=1e-5)
  # The local context is current again.
  assert process.get_model_weights(state) is not None


@tff.tensorflow.computation(np.float32, np.float32)
def _add(a, b):
  return a + b


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _sum(values):
  return tff.federated_sum(values)


@tff.federated_computation(tff.FederatedType(np.float32, tff.CLIENTS))
def _sum_of_values_plus_their_sum(values):
  total = tff.federated_broadcast(tff.federated_sum(values))
  return tff.federated_sum(tff.federated_map(_add, tff.federated_zip((values, total))))


def test_dependent_aggregations_are_not_splittable(two_workers):
  values = [1.0, 2.0, 3.0, 4.0]
  assert _sum_of_values_plus_their_sum(values) == pytest.approx(50.0)  # Locally: fine.
  with runtime.remote_execution_context([w.address for w in two_workers]):
    assert _sum(values) == pytest.approx(10.0)
    with pytest.raises(runtime.NotSplittableError, match='one logical aggregation'):
      runtime.check_splittable(_sum_of_values_plus_their_sum)
    with pytest.raises(runtime.NotSplittableError, match='without --workers'):
      _sum_of_values_plus_their_sum(values)


def test_worker_that_dies_gives_worker_error(two_workers, start_worker):
  doomed = start_worker()
  with runtime.remote_execution_context([two_workers[0].address, doomed.address]):
    assert _sum([1.0, 2.0, 3.0, 4.0]) == pytest.approx(10.0)
    os.kill(doomed.binary_pid, signal.SIGKILL)
    doomed.wrapper.wait(timeout=30)
    with pytest.raises(runtime.WorkerError, match=f'{doomed.address} stopped answering'):
      _sum([1.0, 2.0, 3.0, 4.0])
  # `serve_worker` reports the worker's death (exit status 1 from the error).
  assert doomed.wrapper.returncode == 1


def test_unreachable_worker_gives_clear_error():
  port = _free_port()
  message = (f'TFF worker at 127.0.0.1:{port} is not reachable; '
             f'start it with `tff-rdq worker --port {port}`')
  with pytest.raises(runtime.WorkerError, match=message):
    with runtime.remote_execution_context([f'127.0.0.1:{port}'], connect_timeout_s=1.0):
      pass


@pytest.mark.parametrize('address', [
    'localhost', '127.0.0.1', ':8001', 'host:', 'host:port', 'host:0', 'host:65536',
    '::1:8001', 'a b:8001', ''])
def test_bad_address_gives_value_error(address):
  with pytest.raises(ValueError, match='bad TFF worker address') as raised:
    with runtime.remote_execution_context([address]):
      pass
  assert isinstance(raised.value, runtime.WorkerError)  # The CLI reports it in one line.


def test_good_addresses_parse():
  assert runtime.parse_address('127.0.0.1:8001') == ('127.0.0.1', 8001)
  assert runtime.parse_address('worker-3.local:65535') == ('worker-3.local', 65535)
  assert runtime.parse_address('[::1]:8001') == ('[::1]', 8001)
  with pytest.raises(ValueError, match='listed twice'):
    with runtime.remote_execution_context(['127.0.0.1:8001', '127.0.0.1:8001']):
      pass


def test_cli_reports_worker_errors_in_one_line(two_workers, capsys):
  from tff_rdq.experiments import cli  # pylint: disable=g-import-not-at-top
  assert cli.main(['worker', '--port', str(two_workers[0].port)]) == 2
  assert cli.main(['run', os.path.join(_REPO, 'configs', 'tiny.toml'),
                   '--workers', f'{two_workers[0].address},nohost']) == 2
  errors = capsys.readouterr().err.strip().split('\n')
  assert len(errors) == 2, errors
  assert 'already in use' in errors[0] and "'nohost'" in errors[1]


def test_serve_worker_refuses_busy_port_and_bad_port(two_workers):
  with pytest.raises(runtime.WorkerError, match='already in use'):
    runtime.serve_worker(two_workers[0].port)
  with pytest.raises(ValueError, match='1..65535'):
    runtime.serve_worker(0)
  assert os.path.basename(runtime.worker_binary_path()) == 'worker_binary'
