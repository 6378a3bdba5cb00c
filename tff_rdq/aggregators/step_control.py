"""Step-size control for quantize-encode: fixed, scheduled, rate-distortion.

A *step control* decides the quantization step `Δ` that each client uses in
a round (`tff_rdq.aggregators.quantize_encode`, argument `step_control=`).
`Δ` is the un-normalized step: with `normalization` other than `none` every
tensor is quantized with `Δ` times its statistic (`tff_rdq.quantizers.uniform`).
Step control is server-side policy: the state and its update run on the
server; the clients only evaluate candidates when a mode asks them to.
Whatever `Δ` a client uses, each tensor's effective float32 step travels in
its payload (counted as side information) and the server dequantizes every
client with its own steps.

Notation, for one client with `n` parameters in one round:

  R(Δ)  the rate, bits per parameter: `(8 * total payload bytes of all
        tensors + extra_bits) / n`, where the payload is exactly what the
        client sends (step/seed headers, the step-control fields below and
        the codec's bytes) and `extra_bits` is what the client's message
        adds outside the payload (`compressed.overhead_bits`: the 8-bit
        status, the 32-bit checksum unless integrity is off, and the 32-bit
        weight in `QuantizeEncodeFactory`). Its mean over decoded clients is
        the process's `bits_per_parameter` measurement, which the server
        measures from the bytes it received.
  D(Δ)  the distortion: mean over the `n` parameters of the squared error
        between the update and the server's reconstruction (the process's
        `distortion` measurement is its mean over clients).
  λ     the Lagrange multiplier, in bits per parameter per unit of D; for
        updates with entries of size `σ` and high-rate quantization the
        minimizer of `R + λ·D` is near `Δ = sqrt(6 / (λ ln 2))`, independent
        of `σ` (`λ = 1e5` gives `Δ ≈ 0.0093`; with Elias-gamma's real lengths
        the chosen step is a little larger, about 0.011).

Candidate grid (the modes that search): with `K = num_candidates` (odd) and
centre `c` (the float32 step broadcast this round), candidate `k = 0..K-1` is
`Δ_k = float32(c * spread ** (k - (K - 1) / 2))`: a geometric grid whose
middle candidate is `c` itself and neighbours differ by the factor `spread`
(`candidate_steps` computes the same float32 values in numpy). For each
candidate the client really quantizes its whole update and takes `R(Δ_k)`
from the codec: in closed form where the codec has one (a `coded_bits`
method, equal to `8 * len(encode_to_bytes(...))`: the Elias-gamma codec's
`tff_rdq.codecs.EliasGammaCodec.coded_bits`), by encoding every candidate
with any other codec. The search is a static Python loop over the
`K` candidates, vectorized over elements, in core TensorFlow ops only.

What a client sends for step control (every uplink bit counted): the
fields below travel in the payload of tensor 0, right after its step/seed
header (`quantize_encode`'s module doc), so they are counted in
`uplink_bits`, `side_info_bits` and `bits_per_parameter` and covered by the
checksum. The server reads them in its decoding (`payload_values`) and
`update_state` uses only those, plus `bits_per_parameter` and `clients` as
the server measured them; no client-side diagnostic steers anything.

  Fixed, Schedule   nothing
  Lagrangian,       `vote`: uint8, the index `k` of the client's best
  GlobalVote        candidate (8 bits); the server reads it as
                    `vote_offset = k - (K - 1) / 2`
  BitBudget         `bytes_delta_k`: int32 little-endian for every candidate
                    `k` but the centre, the client's payload bytes at
                    candidate `k` minus the payload bytes it sends (32 (K-1)
                    bits: 128 for K = 5); the server reads it as
                    `candidate_rate_delta_k = 8 * bytes_delta_k / n`

Modes (the round counter `t` starts at 0 for the first round; every state
holds it as `round`, broadcast as the per-round nonce of the clients' seeds):

`Fixed(step)`: `Δ = step` every round. `QuantizeEncodeFactory(step_size=s)`
  is `Fixed(s)`. State `OrderedDict(step_size, round)`.

`Schedule(initial, kind, ...)`: `Δ_t` a function of `t` (float64, then
  float32), then `max(Δ_t, minimum)`:
    'exponential' (`decay`):           `Δ_t = initial * decay ** t`
    'step' (`decay`, `every`):         `Δ_t = initial * decay ** floor(t / every)`
    'linear' (`final`, `rounds`):
                         `Δ_t = initial + (final - initial) * min(t, rounds) / rounds`
  State `OrderedDict(step_size=Δ_t, round=t)`.

`Lagrangian(lam, centre, num_candidates=7, spread=sqrt(2), recentre=True)`:
  every client quantizes with its own `Δ = argmin_k R(Δ_k) + lam·D(Δ_k)`
  (ties: the smallest `k`) and sends `k` as its vote. With `recentre`, the
  next round's centre is the geometric mean of the clients' chosen steps on
  the grid, `ln c_{t+1} = ln c_t + ln(spread) * mean(vote_offset)`, so the
  grid follows the data; otherwise it stays at `centre`. State
  `OrderedDict(step_size=centre, round)`.

`GlobalVote(lam, initial, num_candidates=5, spread=2, smoothing=0)`: all
  clients quantize with the broadcast centre `c_t` (one `Δ` for the round);
  each also votes for its best candidate `argmin_k R(Δ_k) + lam·D(Δ_k)` by
  sending its index. The server re-centres on the geometric mean of the
  voted steps (one vote per decoded client), smoothed:
  `ln c_{t+1} = ln c_t + (1 - smoothing) * ln(spread) * mean(vote_offset)`.
  Each round the centre moves at most `spread ** ((K - 1) / 2)`, but since it
  is re-centred every round it can reach any step. State
  `OrderedDict(step_size=c_t, round)`.

`BitBudget(target_bits, initial, num_candidates=5, spread=2, payback_rounds=2)`:
  all clients quantize with the broadcast `c_t`, and each sends how many
  bytes more (or fewer) its payload would take at every other candidate
  (`bytes_delta_k`, from its real encodings). The server keeps the
  cumulative excess `debt_t = sum over rounds s <= t of (mean R_s - target)`
  (`mean R_s` = that round's `bits_per_parameter` as the server measured it
  from the received bytes, so the run's mean rate is `target + debt /
  rounds`), asks for `r* = clip(target - debt_t / payback_rounds, target / 4,
  4 * target)` next round, and sets `c_{t+1}` to the step at which the
  round's mean candidate-rate curve (`bits_per_parameter` at the centre,
  `bits_per_parameter + mean(candidate_rate_delta_k)` elsewhere; made
  non-increasing in `Δ`) reaches `r*`, by linear interpolation in `ln Δ`
  between candidates. Outside the grid it extrapolates with the slope of the
  outermost pair of candidates, moving at most `spread ** ((K - 1) / 2)`
  beyond the outermost candidate; when `r*` is below the whole curve and the
  curve is flat at its coarse end (every value already quantizes to zero), it
  takes the smallest candidate on that floor instead. State
  `OrderedDict(step_size=c_t, round, rate_debt)`.

  The first round runs at `initial` and its excess counts in the debt: an
  `initial` far off costs several rounds of repayment (at most
  `0.75 * target` per round when the first round overshoots).

In every search mode, a round in which no client was decoded leaves the step
unchanged, and the centre is clamped to `[1e-30, 1e30]`.

Measurements added to the common ones of `compressed` (each reported as its
mean over decoded clients and `<name>_std`): the diagnostics `step_size` (the
`Δ` each client used) in every mode and `objective` (`R + lam·D` at the `Δ`
used, as the client computed it) in `Lagrangian` and `GlobalVote` (`R` itself
is `bits_per_parameter`); and the payload values the server read,
`vote_offset` in `Lagrangian` and `GlobalVote`, `candidate_rate_delta_k` (k
not the centre) in `BitBudget`.

Bad settings raise `ValueError` (or `TypeError` for a wrong type) naming the
argument.
"""

import collections
import math

import numpy as np
import tensorflow as tf

from tff_rdq import validation

SCHEDULE_KINDS = ('exponential', 'linear', 'step')
MIN_STEP = 1e-30
MAX_STEP = 1e30


# ----------------------------------------------------------------- validation

def _num_candidates(value) -> int:
  # At most 255: a vote is sent as one uint8.
  value = validation.check_int('num_candidates', value, low=3, high=255)
  if value % 2 == 0:
    raise ValueError(
        f'num_candidates must be odd (the centre is the middle candidate), got {value}.')
  return value


def _spread(value) -> float:
  value = validation.check_positive('spread', value)
  if value <= 1.0:
    raise ValueError(f'spread must be > 1 (the ratio of neighbouring candidates), got {value!r}.')
  return value


# ------------------------------------------------------------ candidate grid

def candidate_multipliers(num_candidates: int, spread: float) -> tuple[float, ...]:
  """`spread ** (k - (K - 1) / 2)` for `k = 0..K-1`, Python floats (the middle is 1.0)."""
  half = (num_candidates - 1) // 2
  return tuple(float(spread) ** (k - half) for k in range(num_candidates))


def candidate_steps(centre, num_candidates: int, spread: float) -> np.ndarray:
  """The float32 candidate steps around `centre`, bit-identical to the clients' ones."""
  multipliers = np.array(candidate_multipliers(num_candidates, spread), np.float64)
  return (np.float64(np.float32(centre)) * multipliers).astype(np.float32)


def tf_candidate_steps(centre: tf.Tensor, multipliers) -> tf.Tensor:
  """The float32 `[K]` candidate steps around the float32 scalar `centre`."""
  centre = tf.cast(tf.cast(centre, tf.float32), tf.float64)
  return tf.cast(centre * tf.constant(multipliers, tf.float64), tf.float32)


# ------------------------------------------------------------------ controls

def _has_clients(means) -> tf.Tensor:
  # `clients`: the number of clients the server decoded this round.
  return means['clients'] > 0


def _clamped_step(log_step: tf.Tensor) -> tf.Tensor:
  log_step = tf.clip_by_value(log_step, math.log(MIN_STEP), math.log(MAX_STEP))
  return tf.cast(tf.exp(log_step), tf.float32)


class StepControl:
  """Base of the step controls (module doc). Subclasses set the attributes.

  Attributes:
    multipliers: the candidate multipliers (a single 1.0 for no search).
    lam: the Lagrange multiplier, or None where none applies.
    payload_fields: `(name, dtype)` of each field a client sends in its
      payload (module doc), in order; uint8 or int32, little-endian.
    payload_names: the float64 values the server reads from those fields.
    initial_step: the step (or centre) of the first round, a Python float.
  """

  multipliers: tuple[float, ...] = (1.0,)
  lam = None
  payload_fields: tuple[tuple[str, tf.DType], ...] = ()
  payload_names: tuple[str, ...] = ()
  initial_step: float

  def initial_state(self):
    raise NotImplementedError

  def client_step(self, state):
    """The float32 step broadcast to clients (the centre of a search)."""
    return state['step_size']

  def nonce(self, state):
    """The per-round nonce broadcast to clients: the round counter."""
    return state['round']

  def client_decision(self, steps, rates, mse, bits):
    """`(index of the candidate to use, OrderedDict of payload fields)`.

    Args:
      steps: float64 `[K]`, the candidate steps.
      rates: float64 `[K]`, R at each candidate.
      mse: float64 `[K]`, D at each candidate.
      bits: int64 `[K]`, the client's message bits at each candidate.
    """
    del steps, rates, mse, bits
    return tf.constant(0, tf.int32), collections.OrderedDict()

  @property
  def payload_bytes(self) -> int:
    """The bytes of the step-control fields in a client's payload."""
    return sum(dtype.size for _, dtype in self.payload_fields)

  def pack_payload(self, fields) -> tf.Tensor:
    """The `uint8` bytes of `client_decision`'s fields (little-endian)."""
    parts = [tf.reshape(tf.bitcast(tf.cast(fields[name], dtype), tf.uint8), [-1])
             for name, dtype in self.payload_fields]
    return tf.concat(parts, 0) if parts else tf.zeros([0], tf.uint8)

  def read_payload(self, data, num_parameters: int):
    """`(OrderedDict of payload values (float64), ok)` from the field bytes.

    Args:
      data: `uint8` `[payload_bytes]`, the fields as sent.
      num_parameters: the client's number of parameters `n`.
    """
    del data, num_parameters
    return collections.OrderedDict(), tf.constant(True)

  def _fields(self, data):
    fields, offset = collections.OrderedDict(), 0
    for name, dtype in self.payload_fields:
      chunk = data[offset:offset + dtype.size]
      fields[name] = chunk[0] if dtype.size == 1 else tf.bitcast(chunk, dtype)
      offset += dtype.size
    return fields

  def update_state(self, state, diagnostic_means):
    raise NotImplementedError

  @property
  def centre_index(self) -> int:
    return (len(self.multipliers) - 1) // 2


class Fixed(StepControl):
  """`Δ = step` every round."""

  def __init__(self, step):
    self.step = validation.check_positive('step', step)
    self.initial_step = self.step

  def __repr__(self):
    return f'Fixed({self.step!r})'

  def initial_state(self):
    return collections.OrderedDict(step_size=tf.constant(self.step, tf.float32),
                                   round=tf.constant(0, tf.int64))

  def update_state(self, state, diagnostic_means):
    del diagnostic_means
    return collections.OrderedDict(step_size=state['step_size'], round=state['round'] + 1)


class Schedule(StepControl):
  """`Δ_t` as a function of the round `t` (module doc for the formulas)."""

  def __init__(self, initial, kind='exponential', *, decay=None, every=None,
               final=None, rounds=None, minimum=0.0):
    """Initializes the schedule.

    Args:
      initial: `Δ_0 > 0`.
      kind: 'exponential', 'linear' or 'step'.
      decay: factor per round ('exponential') or per `every` rounds ('step'),
        > 0 (< 1 decays, > 1 grows).
      every: rounds per decay step ('step'), an int >= 1.
      final: the step reached at round `rounds` and kept after ('linear'), > 0.
      rounds: length of the linear ramp ('linear'), an int >= 1.
      minimum: a floor for `Δ_t`, >= 0.
    """
    self.initial = validation.check_positive('initial', initial)
    self.kind = validation.check_choice('kind', kind, SCHEDULE_KINDS)
    used = {'exponential': ('decay',), 'step': ('decay', 'every'),
            'linear': ('final', 'rounds')}[kind]
    given = dict(decay=decay, every=every, final=final, rounds=rounds)
    for name, value in given.items():
      if name in used and value is None:
        raise ValueError(f'{name} is required for kind={kind!r}.')
      if name not in used and value is not None:
        raise ValueError(f'{name} does not apply to kind={kind!r} (it uses {used}).')
    self.decay = validation.check_positive('decay', decay) if decay is not None else None
    self.every = validation.check_int('every', every, low=1) if every is not None else None
    self.final = validation.check_positive('final', final) if final is not None else None
    self.rounds = validation.check_int('rounds', rounds, low=1) if rounds is not None else None
    self.minimum = validation.check_number('minimum', minimum, low=0)
    self.initial_step = self.initial

  def __repr__(self):
    args = ', '.join(f'{k}={getattr(self, k)!r}' for k in
                     ('decay', 'every', 'final', 'rounds') if getattr(self, k) is not None)
    return (f'Schedule({self.initial!r}, kind={self.kind!r}, {args}, '
            f'minimum={self.minimum!r})')

  def step_at(self, t):
    """`Δ_t` in numpy float32 (the reference for the TF computation)."""
    t = np.float64(t)
    if self.kind == 'exponential':
      step = self.initial * np.power(self.decay, t)
    elif self.kind == 'step':
      step = self.initial * np.power(self.decay, np.floor(t / self.every))
    else:
      step = self.initial + (self.final - self.initial) * min(t, self.rounds) / self.rounds
    return np.float32(max(step, self.minimum))

  def _tf_step(self, round_num):
    t = tf.cast(round_num, tf.float64)
    initial = tf.constant(self.initial, tf.float64)
    if self.kind == 'exponential':
      step = initial * tf.pow(tf.constant(self.decay, tf.float64), t)
    elif self.kind == 'step':
      step = initial * tf.pow(tf.constant(self.decay, tf.float64), tf.floor(t / self.every))
    else:
      step = initial + (self.final - self.initial) * tf.minimum(t, self.rounds) / self.rounds
    return tf.cast(tf.maximum(step, self.minimum), tf.float32)

  def initial_state(self):
    round_num = tf.constant(0, tf.int64)
    return collections.OrderedDict(step_size=self._tf_step(round_num), round=round_num)

  def update_state(self, state, diagnostic_means):
    del diagnostic_means
    round_num = state['round'] + 1
    return collections.OrderedDict(step_size=self._tf_step(round_num), round=round_num)


class _GridControl(StepControl):
  """Common part of the modes that evaluate a grid of candidates."""

  def _init_grid(self, initial_name, initial, num_candidates, spread):
    self.initial_step = validation.check_positive(initial_name, initial)
    if not MIN_STEP <= self.initial_step <= MAX_STEP:
      raise ValueError(f'{initial_name} must be in [{MIN_STEP}, {MAX_STEP}], got {initial!r}.')
    self.num_candidates = _num_candidates(num_candidates)
    self.spread = _spread(spread)
    self.multipliers = candidate_multipliers(self.num_candidates, self.spread)

  def candidate_steps(self, centre) -> np.ndarray:
    """The float32 candidates around `centre`, as the clients compute them."""
    return candidate_steps(centre, self.num_candidates, self.spread)

  def _base_state(self):
    return collections.OrderedDict(
        step_size=tf.constant(self.initial_step, tf.float32),
        round=tf.constant(0, tf.int64))

  def _best(self, rates, mse):
    """The smallest index minimizing `rates + lam * mse` (deterministic on ties)."""
    objective = rates + self.lam * mse
    index = tf.range(self.num_candidates, dtype=tf.int32)
    return tf.reduce_min(tf.where(
        tf.equal(objective, tf.reduce_min(objective)), index, self.num_candidates))


class _VoteControl(_GridControl):
  """A grid control whose clients send the index of their best candidate."""

  payload_fields = (('vote', tf.uint8),)
  payload_names = ('vote_offset',)

  def _vote(self, rates, mse):
    best = self._best(rates, mse)
    return best, collections.OrderedDict(vote=tf.cast(best, tf.uint8))

  def read_payload(self, data, num_parameters):
    del num_parameters
    vote = tf.cast(self._fields(data)['vote'], tf.int32)
    offset = tf.cast(vote - self.centre_index, tf.float64)
    return collections.OrderedDict(vote_offset=offset), vote < self.num_candidates

  def _voted_log_step(self, state, means, weight=1.0):
    """`ln c_t + weight * ln(spread) * mean(vote_offset)`, float64."""
    log_centre = tf.math.log(tf.cast(state['step_size'], tf.float64))
    return log_centre + weight * math.log(self.spread) * means['vote_offset']


class Lagrangian(_VoteControl):
  """Each client uses its own `argmin_k R(Δ_k) + lam·D(Δ_k)` (module doc)."""

  def __init__(self, lam, centre, num_candidates=7, spread=2**0.5, recentre=True):
    self.lam = validation.check_number('lam', lam, low=0)
    self._init_grid('centre', centre, num_candidates, spread)
    self.recentre = validation.check_bool('recentre', recentre)

  def __repr__(self):
    return (f'Lagrangian(lam={self.lam!r}, centre={self.initial_step!r}, num_candidates='
            f'{self.num_candidates}, spread={self.spread!r}, recentre={self.recentre})')

  def initial_state(self):
    return self._base_state()

  def client_decision(self, steps, rates, mse, bits):
    del steps, bits
    return self._vote(rates, mse)

  def update_state(self, state, diagnostic_means):
    step = state['step_size']
    if self.recentre:
      step = tf.where(_has_clients(diagnostic_means),
                      _clamped_step(self._voted_log_step(state, diagnostic_means)), step)
    return collections.OrderedDict(step_size=step, round=state['round'] + 1)


class GlobalVote(_VoteControl):
  """One step per round, re-centred on the clients' votes (module doc)."""

  def __init__(self, lam, initial, num_candidates=5, spread=2.0, smoothing=0.0):
    self.lam = validation.check_number('lam', lam, low=0)
    self._init_grid('initial', initial, num_candidates, spread)
    self.smoothing = validation.check_number('smoothing', smoothing, low=0, high=1, high_open=True)

  def __repr__(self):
    return (f'GlobalVote(lam={self.lam!r}, initial={self.initial_step!r}, num_candidates='
            f'{self.num_candidates}, spread={self.spread!r}, smoothing={self.smoothing!r})')

  def initial_state(self):
    return self._base_state()

  def client_decision(self, steps, rates, mse, bits):
    del steps, bits
    _, fields = self._vote(rates, mse)
    return tf.constant(self.centre_index, tf.int32), fields

  def update_state(self, state, diagnostic_means):
    step = state['step_size']
    log_step = self._voted_log_step(state, diagnostic_means, 1.0 - self.smoothing)
    step = tf.where(_has_clients(diagnostic_means), _clamped_step(log_step), step)
    return collections.OrderedDict(step_size=step, round=state['round'] + 1)


def rate_curve_step(log_steps, rates, desired, log_spread):
  """`ln Δ` where the rate curve reaches `desired` (BitBudget; module doc).

  Args:
    log_steps: float64 `[K]`, increasing, spaced by `log_spread`.
    rates: list of K float64 scalars, the mean rate at each candidate.
    desired: float64 scalar, the rate asked for.
    log_spread: Python float, `ln spread`.

  Returns:
    A float64 scalar.
  """
  k_max = len(rates) - 1
  envelope = [rates[0]]
  for r in rates[1:]:
    envelope.append(tf.minimum(envelope[-1], r))
  span = k_max / 2 * log_spread
  min_slope = tf.constant(1e-3, tf.float64)  # bits per parameter per nat

  def edge_slope(a, b):
    return tf.maximum((a - b) / log_spread, min_slope)

  below = log_steps[0] - tf.minimum(
      (desired - envelope[0]) / edge_slope(envelope[0], envelope[1]), span)
  above = log_steps[k_max] + tf.minimum(
      (envelope[k_max] - desired) / edge_slope(envelope[k_max - 1], envelope[k_max]), span)
  # Where the curve is already flat at its floor (every value quantizes to
  # zero), a coarser step saves nothing: stay at the smallest step on the floor.
  knee = log_steps[k_max]
  for k in reversed(range(k_max)):
    knee = tf.where(envelope[k] <= envelope[k_max], log_steps[k], knee)
  above = tf.where(knee < log_steps[k_max], knee, above)
  result = above
  for k in reversed(range(k_max)):
    high, low = envelope[k], envelope[k + 1]
    inside = (high >= desired) & (desired >= low)
    t = tf.where(high > low, (high - desired) / tf.maximum(high - low, 1e-300),
                 tf.zeros_like(desired))
    result = tf.where(inside, log_steps[k] + t * log_spread, result)
  return tf.where(desired > envelope[0], below, result)


class BitBudget(_GridControl):
  """Steers the round's step to a mean rate of `target_bits` (module doc)."""

  def __init__(self, target_bits, initial, num_candidates=5, spread=2.0, payback_rounds=2.0):
    self.target_bits = validation.check_positive('target_bits', target_bits)
    self._init_grid('initial', initial, num_candidates, spread)
    self.payback_rounds = validation.check_number('payback_rounds', payback_rounds, low=1)
    others = [k for k in range(self.num_candidates) if k != self.centre_index]
    self.payload_fields = tuple((f'bytes_delta_{k}', tf.int32) for k in others)
    self.payload_names = tuple(f'candidate_rate_delta_{k}' for k in others)

  def __repr__(self):
    return (f'BitBudget(target_bits={self.target_bits!r}, initial={self.initial_step!r}, '
            f'num_candidates={self.num_candidates}, spread={self.spread!r}, '
            f'payback_rounds={self.payback_rounds!r})')

  def initial_state(self):
    state = self._base_state()
    state['rate_debt'] = tf.constant(0.0, tf.float64)
    return state

  def client_decision(self, steps, rates, mse, bits):
    del steps, rates, mse
    centre = self.centre_index
    # Whole bytes: every part of a message is a whole number of bytes.
    deltas = tf.cast(tf.math.floordiv(bits - bits[centre], 8), tf.int32)
    return (tf.constant(centre, tf.int32), collections.OrderedDict(
        (name, deltas[int(name.rsplit('_', 1)[1])]) for name, _ in self.payload_fields))

  def read_payload(self, data, num_parameters):
    fields = self._fields(data)
    values = collections.OrderedDict()
    for (field, _), name in zip(self.payload_fields, self.payload_names):
      values[name] = 8.0 * tf.cast(fields[field], tf.float64) / max(num_parameters, 1)
    return values, tf.constant(True)

  def update_state(self, state, diagnostic_means):
    target = self.target_bits
    has_clients = _has_clients(diagnostic_means)
    measured = diagnostic_means['bits_per_parameter']  # The server's own measurement.
    excess = measured - target
    debt = state['rate_debt'] + tf.where(has_clients, excess, tf.zeros_like(excess))
    desired = tf.clip_by_value(target - debt / self.payback_rounds, target / 4, 4 * target)
    log_centre = tf.math.log(tf.cast(state['step_size'], tf.float64))
    log_spread = math.log(self.spread)
    log_steps = log_centre + log_spread * tf.constant(
        [k - self.centre_index for k in range(self.num_candidates)], tf.float64)
    rates = [measured if k == self.centre_index
             else measured + diagnostic_means[f'candidate_rate_delta_{k}']
             for k in range(self.num_candidates)]
    log_step = rate_curve_step(log_steps, rates, desired, log_spread)
    step = tf.where(has_clients, _clamped_step(log_step), state['step_size'])
    return collections.OrderedDict(step_size=step, round=state['round'] + 1, rate_debt=debt)


def as_step_control(step_size=None, step_control=None) -> StepControl:
  """The control for `QuantizeEncodeFactory`'s `step_size` / `step_control`."""
  if step_control is None:
    if step_size is None:
      raise ValueError('Pass step_size (a fixed step) or step_control.')
    return Fixed(validation.check_positive('step_size', step_size))
  if step_size is not None:
    raise ValueError('Pass either step_size or step_control, not both.')
  if not isinstance(step_control, StepControl):
    raise TypeError(
        'step_control must be Fixed, Schedule, Lagrangian, GlobalVote or BitBudget from'
        f' tff_rdq.aggregators.step_control, got {step_control!r}.')
  return step_control


# The controls by the names experiment configs use (`aggregator.step_control`).
CONTROLS = {
    'fixed': Fixed,
    'schedule': Schedule,
    'lagrangian': Lagrangian,
    'global_vote': GlobalVote,
    'bit_budget': BitBudget,
}
