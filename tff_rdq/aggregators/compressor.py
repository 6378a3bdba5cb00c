"""The compressor protocol: what every method of `tff_rdq` implements.

A *compressor* turns one client's update into one `tf.string` per tensor on
the client placement and back into float32 values on the server.
`tff_rdq.aggregators.compressed` does the federated plumbing around it (the
same for our method and for every baseline), so that every method's bits are
counted the same way: 8 x the byte length of the strings a client sends, plus
`STATUS_BITS` for its status (update dropped or not), `CHECKSUM_BITS` for the
integrity checksum (unless turned off) and `WEIGHT_BITS` for the client's
weight in the weighted form (`compressed`'s module doc gives the message).

`Compressor` is the protocol, as code; `compressed` calls exactly its
members, all of them while tracing TFF computations (TensorFlow code, core
ops only: they run inside TFF's C++ worker):

  `diagnostic_names`: the keys `encode` returns, in order; it must hold
    `squared_error`. Diagnostics are simulation measurements that travel
    beside the payload, uncounted: nothing the server acts on may be one.
  `payload_names` (optional, default none): the keys of `decode`'s
    `payload_values`, in order.
  `counts_bits` (optional, default False): True for a simulation stand-in
    instead of real bytes (our method's `transport="count"`): `decode` then
    also returns `stream_bits`, the exact int64 bits the real streams would
    have, which `compressed` counts instead of 8 x the strings' bytes.
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
    (for `sparsity`); with `payload_names`, also `payload_values`: an
    `OrderedDict` of float64 scalars that the server read from the payload
    (so counted in the client's bits), e.g. a step-control vote.
  `update_state(state, means)`: the next server state from the round's
    means over decoded clients: of the diagnostics, of the `payload_values`,
    and the server's own measurements `bits_per_parameter` (measured from the
    received bytes) and `clients` (the number decoded, float64).

`StatelessCompressor` supplies the state members for methods without server
state (a round counter, broadcast as the per-round nonce); `client_seed` is
the per-client seed every randomized method derives from its update and the
round's nonce.
"""

import abc
import collections
import typing

import tensorflow as tf

# The client's float32 weight, sent beside the payload in the weighted form.
WEIGHT_BITS = 32
# The payload checksum (low 32 bits of farmhash64), unless integrity is off.
CHECKSUM_BITS = 32
# The client's status byte: whether its update was dropped (NaN or Inf).
STATUS_BITS = 8


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
    """The next server state (`diagnostic_means`: the means of the module doc)."""


class StatelessCompressor(Compressor):
  """Protocol defaults for methods without server state.

  The configuration is static Python, known to clients and server alike. The
  state is the `int32` round counter (0 in the first round), broadcast as the
  per-round nonce that `client_seed` mixes into the client's seed (it is
  downlink, not counted in uplink bits). Subclasses implement `encode` and
  `decode`; `encode`'s `params` is the nonce.
  """

  diagnostic_names = ('squared_error',)

  def initial_state(self):
    return tf.constant(0, tf.int32)

  def client_params(self, state):
    return state

  def update_state(self, state, diagnostic_means):
    del diagnostic_means
    return state + 1


# An odd 32-bit constant (2**32 / golden ratio) spreading nonces over the seed.
_NONCE_MULTIPLIER = 0x9E3779B1


def client_seed(flat_values: list[tf.Tensor], nonce=None) -> tf.Tensor:
  """A per-client `int32` seed derived from the update and the round's nonce.

  The bit pattern of the update's float32 L1 norm, XOR the low 32 bits of
  `nonce * 0x9E3779B1` (`nonce`: the per-round nonce broadcast by the server,
  an integer scalar; None or 0 leaves the L1 bits unchanged). Deterministic
  for a given update and round (reproducible runs), different across clients
  and fresh every round even for the same update. Tensor `i` of a method uses
  the stateless seed `[client_seed, i]`; a method whose server needs the seed
  sends it (counted).
  """
  total = tf.add_n([tf.reduce_sum(tf.abs(v)) for v in flat_values])
  seed = tf.bitcast(tf.cast(total, tf.float32), tf.int32)
  if nonce is None:
    return seed
  # uint32 arithmetic wraps modulo 2**32 (defined, unlike signed overflow).
  mixed = tf.cast(tf.cast(nonce, tf.int64), tf.uint32) * tf.constant(_NONCE_MULTIPLIER, tf.uint32)
  return tf.bitwise.bitwise_xor(seed, tf.bitcast(mixed, tf.int32))
