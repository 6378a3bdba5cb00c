"""Owning the TFF execution context: local, or split across remote TFF workers.

Every TFF computation runs in a C++ process, TFF's `worker_binary`, which is
also TFF's gRPC worker service (`worker_binary --port=P`).

Local: `local_execution_context()` starts one worker as a child process. That
worker is not stopped when Python exits (its cleanup runs too late, at
interpreter shutdown); `stop_tff_workers` replaces the current context with one
that can run nothing and collects garbage, which stops the old context's
worker there and then.

Remote: `serve_worker(port)` (the `tff-rdq worker --port P` command) runs one
worker in the foreground. `remote_execution_context(['host:port', ...])`
installs a `tff.framework.MergeableCompExecutionContext` over one
`tff.framework.RemoteExecutor` per worker: each invocation's `CLIENTS`-placed
arguments are split into one contiguous slice per worker, each worker runs its
slice up to the round's aggregation (`up_to_merge`), the partial aggregates are
combined with the aggregation's own `merge`, and the rest of the round
(`after_merge`) runs once on the server side. This is exact (up to the order of
floating-point sums) for computations with one logical aggregation per round
(parallel aggregations are fine; an aggregate that depends on an earlier
aggregate in the same invocation is not): `check_splittable` and every
invocation raise `NotSplittableError` otherwise. Computations without
per-client arguments (`initialize`, `get_model_weights`) have nothing to split
and run whole on the first worker.

Failures of remote workers raise `WorkerError`: a worker that cannot be
reached, stops answering mid-run or cannot start; subclasses
`NotSplittableError` (above) and `AddressError` (a malformed address, also a
`ValueError`). Each message is one line saying what to do. TFF's own
contexts retry an unavailable worker forever; here the run stops instead, and
rerunning the same command resumes it from its last checkpoint.

TensorFlow and TFF are imported inside the functions that need them: the
`tff-rdq worker` command only starts a binary, and importing them costs ~9 s.
"""

import contextlib
import ctypes
import errno
import gc
import importlib.util
import os
import signal
import socket
import subprocess
import time
import types
import weakref

import grpc

# As TFF's own local C++ executor factory: messages up to 2 GB.
_GRPC_MAX_MESSAGE_LENGTH_BYTES = 2 * 1000 * 1000 * 1000
_GRPC_CHANNEL_OPTIONS = [
    ('grpc.max_message_length', _GRPC_MAX_MESSAGE_LENGTH_BYTES),
    ('grpc.max_receive_message_length', _GRPC_MAX_MESSAGE_LENGTH_BYTES),
    ('grpc.max_send_message_length', _GRPC_MAX_MESSAGE_LENGTH_BYTES),
]
# How long `remote_execution_context` waits for every worker to accept a connection.
CONNECT_TIMEOUT_S = 5.0
# gRPC status codes that mean the worker process is gone or cannot be reached.
# Other codes (e.g. INVALID_ARGUMENT from a failing computation) are errors of
# the computation and pass through unchanged, as in the local context.
_WORKER_GONE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})
# `serve_worker`: how long the worker may take to start listening, and to exit
# after a forwarded signal before it is killed.
_WORKER_START_TIMEOUT_S = 120.0
_WORKER_STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1  # From <linux/prctl.h>.
# Called to check that a worker answers (see `_wait_until_reachable`).
_PROBE_METHOD = '/grpc.health.v1.Health/Check'


class WorkerError(RuntimeError):
  """A remote TFF worker cannot be used; the message (one line) says what to do."""


class NotSplittableError(WorkerError):
  """A computation cannot be split across TFF workers (see module doc)."""


class AddressError(WorkerError, ValueError):
  """A malformed, repeated or missing `host:port` worker address."""


# How long a local worker gets to exit after SIGINT before it is killed.
_WORKER_EXIT_TIMEOUT_S = 5.0


def _child_workers() -> list[int]:
  """PIDs of this process's child `worker_binary` processes (Linux /proc)."""
  pids = []
  me = os.getpid()
  for entry in os.listdir('/proc'):
    if not entry.isdigit():
      continue
    try:
      with open(f'/proc/{entry}/stat') as f:
        stat = f.read()
      with open(f'/proc/{entry}/cmdline', 'rb') as f:
        command = f.read()
    except OSError:
      continue
    # Field 4 (after the parenthesized name) is the parent PID.
    parent = int(stat.rsplit(')', 1)[1].split()[1])
    if parent == me and b'worker_binary' in command:
      pids.append(int(entry))
  return pids


def _exited(pid: int) -> bool:
  """True once `pid` has exited (a zombie awaiting its `wait`) or is gone."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X')
  except OSError:
    return True


def stop_tff_workers() -> None:
  """Stops the worker of the current execution context (see module doc).

  TFF's own cleanup sends the worker SIGINT and waits without a limit; a worker
  that has served a long run can ignore SIGINT, which would hang the caller.
  So the local child workers first get SIGINT, then SIGKILL after
  `_WORKER_EXIT_TIMEOUT_S`; TFF's cleanup then only reaps them.
  """
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  from tff_rdq import tff_internals  # pylint: disable=g-import-not-at-top
  workers = _child_workers()
  for pid in workers:
    os.kill(pid, signal.SIGINT)
  deadline = time.monotonic() + _WORKER_EXIT_TIMEOUT_S
  while workers and time.monotonic() < deadline:
    workers = [pid for pid in workers if not _exited(pid)]
    time.sleep(0.05)
  for pid in workers:
    os.kill(pid, signal.SIGKILL)
  tff.framework.set_default_context(tff_internals.RuntimeErrorContext())
  gc.collect()


class _RefusedPopen:
  """What TFF's local executor factory gets for `subprocess.Popen` after `stop_late_workers`."""

  # TFF's factory annotates with `subprocess.Popen[bytes]`.
  __class_getitem__ = classmethod(types.GenericAlias)

  def __init__(self, *args, **kwargs):
    del args, kwargs
    raise WorkerError('TFF workers were stopped (the run was interrupted); '
                      'enter a new local execution context to start one.')


def _refuse_new_local_workers(refuse: bool) -> None:
  """Makes TFF's local executor factory unable (or able again) to start a worker.

  TFF starts its local worker lazily, through the `subprocess` module global of
  `executor_factory`, whenever a call finds the old one gone: a computation still
  in flight after an interrupt retries and starts a fresh worker, possibly
  after this process's last check (it then outlives the process).
  """
  from tff_rdq import tff_internals  # pylint: disable=g-import-not-at-top
  tff_internals.executor_factory.subprocess = (types.SimpleNamespace(Popen=_RefusedPopen) if refuse
                                 else subprocess)


def stop_late_workers(quiet_s: float = 2.0, timeout_s: float = 15.0) -> None:
  """Stops the child workers, and every one started until none has for `quiet_s`.

  After an interrupt, a computation still in flight on TFF's own thread retries
  on a fresh worker once the old one is stopped (as when a sweep is stopped
  with SIGTERM). So TFF's local executor factory is first made unable to start
  one (until the next `local_execution_context`); the wait (at most
  `timeout_s`) covers a start already past that point.
  """
  _refuse_new_local_workers(True)
  deadline = time.monotonic() + timeout_s
  quiet_since = time.monotonic()
  while time.monotonic() < deadline:
    if _child_workers():
      stop_tff_workers()
      quiet_since = time.monotonic()
    elif time.monotonic() - quiet_since >= quiet_s:
      return
    time.sleep(0.1)


@contextlib.contextmanager
def local_execution_context():
  """A local C++ execution context for the `with` body; its worker stops after."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  # Replacing a context whose worker is running would make TFF wait for that
  # worker without a limit; stop it first.
  stop_tff_workers()
  _refuse_new_local_workers(False)
  try:
    # Inside the `try`: a signal while TFF starts its worker still stops it.
    tff.backends.native.set_sync_local_cpp_execution_context()
    yield
  finally:
    stop_tff_workers()


_NATIVE_COMPILE = None  # TFF's own `desugar_and_transform_to_native`, once replaced.


def set_static_grappler(enabled: bool) -> None:
  """Whether local C++ contexts installed from now on run TFF's static Grappler pass.

  TFF's native compiler (`compiler.desugar_and_transform_to_native`, looked up
  when a local C++ context is installed) runs Grappler over every computation
  it compiles. The pass only optimizes (the same values come out); it makes
  training graphs faster, but on the codecs' large graphs it costs most of a
  first round (`benchmarks/first_round.py`: run-length rANS 58 s with it, 4 s
  without). The experiment keeps it (the default); the test suite turns it off
  for its in-process unit tests, whose computations run a few rounds each.
  Contexts installed before the call keep the compiler they were made with.
  """
  global _NATIVE_COMPILE
  from tff_rdq import tff_internals  # pylint: disable=g-import-not-at-top
  compiler = tff_internals.compiler
  if _NATIVE_COMPILE is None:
    _NATIVE_COMPILE = compiler.desugar_and_transform_to_native

  def compile_without_grappler(comp):
    desugared, _ = tff_internals.tensorflow_tree_transformations.replace_intrinsics_with_bodies(
        comp.to_building_block())
    return compiler.transform_to_native_form(
        tff_internals.ConcreteComputation(
            computation_proto=desugared.proto, context_stack=tff_internals.context_stack),
        grappler_config=None)

  compiler.desugar_and_transform_to_native = (
      _NATIVE_COMPILE if enabled else compile_without_grappler)


# ----------------------------------------------------------------------------
# Workers: `tff-rdq worker --port P`.


def worker_binary_path() -> str:
  """The path of the `worker_binary` shipped in the tensorflow-federated package.

  Found without importing TFF, at the place TFF's own local executor factory
  looks (`tensorflow_federated/data/worker_binary`).

  Raises:
    WorkerError: If the package or the binary is missing.
  """
  spec = importlib.util.find_spec('tensorflow_federated')
  if spec is None or not spec.submodule_search_locations:
    raise WorkerError('tensorflow-federated is not installed in this environment.')
  path = os.path.join(list(spec.submodule_search_locations)[0], 'data', 'worker_binary')
  if not (os.path.isfile(path) and os.access(path, os.X_OK)):
    raise WorkerError(f'no executable TFF worker binary at {path}; reinstall '
                      'tensorflow-federated==0.87.0.')
  return path


def _check_port(port: int) -> None:
  if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
    raise ValueError(f'a TFF worker port must be an integer in 1..65535; got {port!r}.')


def _check_port_free(port: int) -> None:
  """Raises `WorkerError` if something already listens on `port`.

  Needed because gRPC servers bind with SO_REUSEPORT: a second worker on a
  busy port starts without complaint, and the kernel then spreads
  connections across the two workers.
  """
  for family, host in ((socket.AF_INET6, '::'), (socket.AF_INET, '0.0.0.0')):
    try:
      sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
      continue  # No IPv6 here.
    with sock:
      # Without SO_REUSEADDR, connections in TIME_WAIT would look like a listener.
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      try:
        sock.bind((host, port))
      except OSError as e:
        if e.errno == errno.EADDRINUSE:
          raise WorkerError(f'port {port} is already in use (another TFF worker?); '
                            'stop that process or choose another --port.') from None
        if family == socket.AF_INET6:
          continue  # E.g. IPv6 disabled: the IPv4 check decides.
        raise
    return


def _listening(port: int) -> bool:
  try:
    with socket.create_connection(('127.0.0.1', port), timeout=0.5):
      return True
  except OSError:
    return False


def _libc():
  try:
    return ctypes.CDLL(None, use_errno=True)
  except OSError:
    return None


def _child_setup(libc, parent_pid: int):
  """What the worker's child process runs between fork and exec."""

  def child_setup():
    # A signal that the shell told us to ignore (`cmd &` ignores SIGINT) would
    # stay ignored in the worker.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if libc is not None and hasattr(libc, 'prctl'):
      libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
      if os.getppid() != parent_pid:  # The parent died before prctl.
        os._exit(1)  # pylint: disable=protected-access

  return child_setup


def _await_listening(process, port: int, received: list) -> None:
  """Waits until the worker listens on `port`, exits, or a signal arrives."""
  deadline = time.monotonic() + _WORKER_START_TIMEOUT_S
  while not received and process.poll() is None and not _listening(port):
    if time.monotonic() > deadline:
      raise WorkerError(f'the TFF worker on port {port} did not start listening within '
                        f'{_WORKER_START_TIMEOUT_S:.0f} s.')
    time.sleep(0.1)
  if not received and process.poll() is None:
    print(f'tff-rdq: TFF worker serving on port {port} (pid {process.pid}); '
          'Ctrl-C stops it.', flush=True)


def _await_exit(process, received: list) -> int:
  """The worker's exit status; kills it `_WORKER_STOP_GRACE_S` after a signal."""
  while True:
    try:
      return process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
      if received and time.monotonic() - received[0][1] > _WORKER_STOP_GRACE_S:
        process.kill()


def _stop_worker(process) -> None:
  if process is not None and process.poll() is None:
    process.terminate()
    try:
      process.wait(timeout=_WORKER_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()


def serve_worker(port: int, *, max_concurrent_computation_calls: int = -1) -> int:
  """Runs TFF's worker on `port` (all interfaces) until SIGINT or SIGTERM.

  The worker is a child process (`worker_binary_path()`). SIGINT and SIGTERM
  received here are forwarded to it; if it has not exited
  `_WORKER_STOP_GRACE_S` seconds later (or a second signal arrives) it is
  killed. Either way this function waits for it before returning, so no worker
  outlives the call. On Linux the worker is also told to stop if this process
  dies without cleaning up (SIGKILL).

  The service is plain-text gRPC and runs whatever computation it is sent:
  expose the port only to machines you trust.

  Args:
    port: The TCP port to serve on.
    max_concurrent_computation_calls: The worker's limit on parallel calls of
      one computation (nonpositive: no limit), e.g. to bound memory.

  Returns:
    0 once the worker has been stopped by a signal.

  Raises:
    ValueError: If `port` is not a valid port number.
    WorkerError: If the port is in use, or the worker fails to start or exits
      on its own.
  """
  _check_port(port)
  binary = worker_binary_path()
  _check_port_free(port)
  child_setup = _child_setup(_libc(), os.getpid())
  process = None
  received = []

  def forward(signum, frame):
    del frame
    received.append((signum, time.monotonic()))
    if process is not None and process.poll() is None:
      if len(received) > 1:
        process.kill()
      else:
        process.send_signal(signum)

  # Installed before the worker starts, so that no signal is lost in between.
  previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    env = dict(os.environ)
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    process = subprocess.Popen(
        [binary, f'--port={port}',
         f'--max_concurrent_computation_calls={max_concurrent_computation_calls}'],
        env=env, preexec_fn=child_setup)  # pylint: disable=subprocess-popen-preexec-fn
    if received:
      process.send_signal(received[0][0])
    _await_listening(process, port, received)
    returncode = _await_exit(process, received)
  finally:
    _stop_worker(process)
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  if received:
    print(f'tff-rdq: TFF worker on port {port} stopped.', flush=True)
    return 0
  raise WorkerError(f'the TFF worker on port {port} exited on its own with status '
                    f'{returncode}; see its output above.')


# ----------------------------------------------------------------------------
# Remote execution: `tff-rdq run ... --workers host:port,...`.


def parse_address(address: str) -> tuple[str, int]:
  """`(host, port)` of a `host:port` string (`[v6addr]:port` for IPv6).

  Raises:
    AddressError: (a `ValueError`) Naming `address`, if it is not of that form.
  """
  text = address.strip() if isinstance(address, str) else ''
  host, sep, port = text.rpartition(':')
  if host.startswith('[') and host.endswith(']'):
    bare_host = host[1:-1]
  else:
    bare_host = host
  if (not sep or not bare_host or (':' in host and bare_host == host)
      or any(c.isspace() or c in '/[]' for c in bare_host)
      or not port.isdigit() or not 0 < int(port) < 65536):
    raise AddressError(f'bad TFF worker address {address!r}: expected host:port with a port '
                       'in 1..65535, e.g. 127.0.0.1:8001 or [::1]:8001.')
  return host, int(port)


class _UnwatchedChannel:
  """A `grpc.Channel` whose connectivity subscriptions are dropped.

  `RemoteExecutorGrpcStub` subscribes to connectivity changes only to answer
  `is_ready`, which only TFF's local worker manager reads. A subscription
  keeps a gRPC polling thread alive that can fail with "Channel closed!" when
  the channel is closed (gRPC 1.74).
  """

  def __init__(self, channel: grpc.Channel):
    self._channel = channel

  def subscribe(self, callback, try_to_connect=False):
    del callback, try_to_connect

  def __getattr__(self, name):
    return getattr(self._channel, name)


def _make_worker_stub_class():
  """`RemoteExecutorGrpcStub` that turns a vanished worker into `WorkerError`."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  class WorkerStub(tff.framework.RemoteExecutorGrpcStub):
    """A stub for the worker at `address`.

    TFF reports UNAVAILABLE as a retryable error and its execution contexts
    retry it forever (waiting for the worker to come back); raising a
    non-retryable `WorkerError` instead stops the run with a message naming
    the worker.
    """

    def __init__(self, channel: grpc.Channel, address: str, port: int):
      super().__init__(_UnwatchedChannel(channel))
      self.address = address
      self._port = port

    def _call(self, rpc, request):
      try:
        return rpc(request)
      except grpc.RpcError as e:
        code = e.code() if isinstance(e, grpc.Call) else None
        if code not in _WORKER_GONE_CODES:
          raise
        details = ' '.join(str(e.details()).split())[:200]
        raise WorkerError(
            f'TFF worker at {self.address} stopped answering ({code.name}: {details}); '
            f'restart it (`tff-rdq worker --port {self._port}`) and rerun the same command '
            'to resume from the last checkpoint.') from None

    def get_executor(self, request):
      return self._call(super().get_executor, request)

    def create_value(self, request):
      return self._call(super().create_value, request)

    def create_struct(self, request):
      return self._call(super().create_struct, request)

    def create_call(self, request):
      return self._call(super().create_call, request)

    def create_selection(self, request):
      return self._call(super().create_selection, request)

    def compute(self, request):
      return self._call(super().compute, request)

    def dispose(self, request):
      # Called from garbage-collection finalizers, where an exception could
      # only be printed. The values of a vanished worker are gone with it.
      try:
        return super().dispose(request)
      except grpc.RpcError:
        return None

  return WorkerStub


class _RemoteWorker:
  """One worker: its channel, and an async TFF context over a `RemoteExecutor`."""

  def __init__(self, address: str, host: str, port: int):
    self.address = address
    self.port = port
    self.channel = grpc.insecure_channel(f'{host}:{port}', _GRPC_CHANNEL_OPTIONS)
    self._executors = weakref.WeakSet()
    self.context = None

  def build_context(self, stub_class):
    import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
    stub = stub_class(self.channel, self.address, self.port)

    def stack_fn(cardinalities):
      # As TFF's local C++ factory: a computation whose arguments place nothing
      # at CLIENTS (e.g. `initialize`) runs over zero clients.
      if cardinalities.get(tff.CLIENTS) is None:
        cardinalities[tff.CLIENTS] = 0
      executor = tff.framework.RemoteExecutor(stub)
      executor.set_cardinalities(cardinalities)
      self._executors.add(executor)
      return executor

    # The pieces of a split computation are compiled as the local C++ context
    # compiles whole computations.
    self.context = tff.framework.AsyncExecutionContext(
        executor_fn=tff.framework.ResourceManagingExecutorFactory(stack_fn),
        compiler_fn=tff.backends.native.desugar_and_transform_to_native,
        transform_args=tff.tensorflow.transform_args,
        transform_result=tff.tensorflow.transform_result)

  def close(self):
    # Frees this client's executors (and their values) on the worker; TFF
    # ignores the RPC error of a worker that is gone.
    for executor in list(self._executors):
      executor.close()
    self.channel.close()


def _wait_until_reachable(workers, timeout_s: float) -> None:
  """Raises `WorkerError` naming the workers that do not answer within `timeout_s`.

  Each worker is sent one call of a method it does not implement; any gRPC
  answer (UNIMPLEMENTED) shows that a gRPC server listens there. Unlike
  `grpc.channel_ready_future`, this starts no connectivity-polling thread,
  which gRPC 1.74 lets race with `channel.close()`.
  """
  probes = [w.channel.unary_unary(_PROBE_METHOD).future(
      b'', timeout=max(timeout_s, 0.01), wait_for_ready=True) for w in workers]
  unreachable = []
  for worker, probe in zip(workers, probes):
    try:
      probe.result()
    except grpc.RpcError as e:
      if e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
        unreachable.append(worker)
  if len(unreachable) == 1:
    w = unreachable[0]
    raise WorkerError(f'TFF worker at {w.address} is not reachable; start it with '
                      f'`tff-rdq worker --port {w.port}`.')
  if unreachable:
    raise WorkerError(
        'TFF workers at ' + ', '.join(w.address for w in unreachable) + ' are not reachable; '
        'start each on its host with `tff-rdq worker --port PORT`.')


def _places_values_at_clients(type_spec) -> bool:
  """Whether `type_spec` holds `CLIENTS`-placed values that differ per client."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  return type_spec is not None and tff.types.contains(
      type_spec, lambda t: (isinstance(t, tff.FederatedType) and t.placement is tff.CLIENTS
                            and not t.all_equal))


def _make_splitting_context_class():
  """`MergeableCompExecutionContext` with a compile step that explains failures."""
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  class SplittingContext(tff.framework.MergeableCompExecutionContext):
    """Splits each invocation across the workers at `addresses`."""

    def __init__(self, async_contexts, addresses):
      # No `compiler_fn`: `invoke` compiles (and caches) here, so that
      # `check_splittable` can compile ahead of time into the same cache.
      super().__init__(async_contexts, transform_result=tff.tensorflow.transform_result)
      self.addresses = tuple(addresses)
      self._compiled = {}

    def compile(self, comp, name: str = 'a computation'):
      """`comp` in `tff.framework.MergeableCompForm`, or `NotSplittableError`."""
      form = self._compiled.get(comp)
      if form is None:
        try:
          form = tff.backends.native.compile_to_mergeable_comp_form(comp)
        except ValueError as e:
          reason = ' '.join(str(e).split())
          reason = reason if len(reason) <= 300 else reason[:300] + '...'
          raise NotSplittableError(
              f'{name} cannot be split across the TFF workers {", ".join(self.addresses)}: '
              'this needs at most one logical aggregation per invocation (no aggregate may '
              'depend on an earlier aggregate), and TFF could not compile it to that form '
              f'({reason}). Run without --workers, or use an aggregator with a single '
              'tff.federated_aggregate per round.') from None
        self._compiled[comp] = form
      return form

    def invoke(self, comp, arg=None):
      if isinstance(comp, tff.framework.MergeableCompForm):
        return super().invoke(comp, arg)
      if not _places_values_at_clients(comp.type_signature.parameter):
        # Nothing to split (e.g. `initialize`, `get_model_weights`): split, it
        # would run once per worker over zero clients each. Whole, on one
        # worker, it computes the same.
        return self._async_runner.run_coro_and_return_result(
            self._async_execution_contexts[0].invoke(comp, arg))
      return super().invoke(self.compile(comp), arg)

  return SplittingContext


@contextlib.contextmanager
def remote_execution_context(addresses, *, connect_timeout_s: float = CONNECT_TIMEOUT_S):
  """Installs a context splitting each invocation across TFF workers.

  Each worker is a `tff-rdq worker --port P` (or `worker_binary --port=P`)
  process; see the module doc for how work is split. The context is pushed on
  TFF's context stack for the `with` body and popped after it, so the context
  that was current before is current again; the workers' executors are freed
  and the connections closed. The workers themselves keep running: they are
  not this process's children.

  Args:
    addresses: `host:port` strings, one per worker (at least one, distinct).
    connect_timeout_s: How long to wait for every worker to accept a
      connection.

  Yields:
    The installed `tff.framework.MergeableCompExecutionContext`.

  Raises:
    AddressError: (a `ValueError`) For a malformed or repeated address, or none.
    WorkerError: If a worker is not reachable within `connect_timeout_s`, or
      (from computations run in the body) stops answering.
  """
  if isinstance(addresses, str):
    addresses = [addresses]
  addresses = list(addresses)
  if not addresses:
    raise AddressError('no TFF worker addresses given; expected host:port,...')
  parsed = [parse_address(a) for a in addresses]
  if len(set(parsed)) != len(parsed):
    repeated = next(a for a, p in zip(addresses, parsed) if parsed.count(p) > 1)
    raise AddressError(f'TFF worker address {repeated!r} is listed twice.')
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top

  workers = [_RemoteWorker(a.strip(), host, port) for a, (host, port) in zip(addresses, parsed)]
  context = None
  try:
    _wait_until_reachable(workers, connect_timeout_s)
    stub_class = _make_worker_stub_class()
    for worker in workers:
      worker.build_context(stub_class)
    context = _make_splitting_context_class()(
        [w.context for w in workers], [w.address for w in workers])
    with tff.framework.get_context_stack().install(context):
      yield context
  finally:
    for worker in workers:
      worker.close()
    # Drops the context's event-loop thread and the executors' remote values.
    del context, workers
    gc.collect()


def check_splittable(process) -> None:
  """Raises `NotSplittableError` now if `process` cannot be split across workers.

  Call it right after building a process inside `remote_execution_context`:
  it compiles the process's computations the way each invocation would (the
  result is cached and reused by those invocations, so this costs nothing
  extra), which otherwise would fail only at the first call of `next`.
  Outside a remote context this does nothing: the local context runs any
  computation whole.

  Args:
    process: A `tff.templates.IterativeProcess` (its `initialize` and `next`
      are checked) or a single `tff.Computation`.
  """
  import tensorflow_federated as tff  # pylint: disable=g-import-not-at-top
  context = tff.framework.get_context_stack().current
  if not (isinstance(context, tff.framework.MergeableCompExecutionContext)
          and hasattr(context, 'compile')):
    return
  if isinstance(process, tff.Computation):
    named = [(process, 'this computation')]
  else:
    named = [(process.initialize, 'the `initialize` computation of this process'),
             (process.next, 'the `next` computation (one round) of this process')]
  for comp, name in named:
    # As `invoke`: only computations with per-client arguments are split.
    if _places_values_at_clients(comp.type_signature.parameter):
      context.compile(comp, name)
