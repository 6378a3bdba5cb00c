"""The compressor protocol: what every method of `tff_rdq` implements.

A *compressor* turns one client's update into one `tf.string` per tensor on
the client placement and back into float32 values on the server.
`tff_rdq.aggregators.compressed` does the federated plumbing around it (the
same for our method and for every baseline), so that every method's bits are
counted the same way: 8 x the byte length of the strings a client sends, plus
`WEIGHT_BITS` for the client's weight in the weighted form.

`Compressor` is the protocol, as code; `compressed` calls exactly its
members, all of them while tracing TFF computations (TensorFlow code, core
ops only: they run inside TFF's C++ worker):

  `diagnostic_names`: the keys `encode` returns, in order; it must hold
    `squared_error`.
  `initial_state()`: the server state (a structure of tensors).
  `client_params(state)`: what is broadcast to the clients each round.
  `encode(flat_values, params)`: the client's float32 vectors (one per
    tensor, flattened in `tf.nest` order) -> `(streams, diagnostics)`: a list
    of scalar `tf.string` (one per tensor) and an `OrderedDict` of float64
    scalars keyed by `diagnostic_names`. `squared_error` is the sum over all
    elements of the squared reconstruction error, which the client computes
    from the same reconstruction the server will make; the other keys are
    reported as their mean and `<key>_std` across clients.
  `decode(streams, sizes)`: one client's strings and the static tensor sizes
    -> `OrderedDict(values, ok, side_info_bits, zeros)`: float32 vectors,
    whether every stream decoded exactly (a truncated or corrupted stream must
    give `ok=False`, never an out-of-bounds read), the int64 side-information
    bits within the streams and the int64 count of zero quantized symbols
    (for `sparsity`).
  `update_state(state, diagnostic_means)`: the next server state from the
    round's mean diagnostics (for step-size control).

`StatelessCompressor` supplies the state members for methods without server
state; `client_seed` is the per-client seed every randomized method derives
from its update.
"""

import abc
import collections
import typing

import tensorflow as tf

# The client's float32 weight, sent beside the payload in the weighted form.
WEIGHT_BITS = 32


@typing.runtime_checkable
class Compressor(typing.Protocol):
  """The compressor protocol (module doc). Subclass it or match it structurally."""

  diagnostic_names: tuple[str, ...]

  @abc.abstractmethod
  def initial_state(self):
    """The server state, a structure of tensors."""

  @abc.abstractmethod
  def client_params(self, state):
    """What is broadcast to the clients this round."""

  @abc.abstractmethod
  def encode(self, flat_values: list[tf.Tensor],
             params) -> tuple[list[tf.Tensor], collections.OrderedDict]:
    """`(streams, diagnostics)` of one client (module doc)."""

  @abc.abstractmethod
  def decode(self, streams: list[tf.Tensor], sizes: list[int]) -> collections.OrderedDict:
    """`OrderedDict(values, ok, side_info_bits, zeros)` of one client (module doc)."""

  @abc.abstractmethod
  def update_state(self, state, diagnostic_means):
    """The next server state."""


class StatelessCompressor(Compressor):
  """Protocol defaults for methods without server state.

  The state is a placeholder `int32` scalar 0, broadcast unchanged (the
  configuration is static Python, known to clients and server alike).
  Subclasses implement `encode` and `decode`.
  """

  diagnostic_names = ('squared_error',)

  def initial_state(self):
    return tf.constant(0, tf.int32)

  def client_params(self, state):
    return state

  def update_state(self, state, diagnostic_means):
    del diagnostic_means
    return state


def client_seed(flat_values: list[tf.Tensor]) -> tf.Tensor:
  """A per-client `int32` seed derived from the update itself.

  The bit pattern of the update's float32 L1 norm: deterministic for a given
  update (reproducible runs) and different across clients and rounds.
  Tensor `i` of a method uses the stateless seed `[client_seed, i]`.
  """
  total = tf.add_n([tf.reduce_sum(tf.abs(v)) for v in flat_values])
  return tf.bitcast(tf.cast(total, tf.float32), tf.int32)
