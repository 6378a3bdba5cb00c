"""Tests of step-size control (fixed, schedules, Lagrangian, global vote, bit budget)."""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import codecs
from tff_rdq.aggregators import quantize_encode
from tff_rdq.aggregators import step_control as sc

SHAPES = collections.OrderedDict(kernel=(40, 30), bias=(30,), scale=(2000,))
VALUE_TYPE = tff.types.to_type(collections.OrderedDict(
    (k, tff.TensorType(np.float32, s)) for k, s in SHAPES.items()))
WEIGHT_TYPE = tff.TensorType(np.float32)
NUM_PARAMS = sum(int(np.prod(s)) for s in SHAPES.values())
# The client's status byte, checksum and weight (compressed.overhead_bits).
MESSAGE_BITS = 8 + 32 + 32
VOTE_BITS = 8  # Lagrangian and GlobalVote send their vote as a uint8.
LAMBDAS = (1e4, 3e4, 3e5)
CENTRE, SPREAD = 0.015, 2**0.5  # Lagrangian candidates 0.00375 .. 0.06
CLIENT_SCALES = (0.008, 0.02, 0.15)


def _update(scale, seed):
  rng = np.random.default_rng(seed)
  return collections.OrderedDict(
      (k, (rng.laplace(size=s) * scale).astype(np.float32)) for k, s in SHAPES.items())


def _drifting_updates(round_num, num_clients=4):
  """Laplacian updates whose scale drifts over rounds and differs by client."""
  scale = 0.05 * (1 + 0.5 * np.sin(round_num / 4)) * 0.97**round_num
  return [_update(scale * (1 + 0.3 * i), 1000 * round_num + i) for i in range(num_clients)]


def _eg_bytes(integers):
  """Bytes of the blocked Elias-gamma format (the codec's closed form)."""
  return int(codecs.EliasGammaCodec().coded_bits(tf.constant(integers, tf.int32))) // 8


def _brute_force(update, steps, lam, fixed_bits=MESSAGE_BITS + VOTE_BITS):
  """numpy: (rate, mse) of `update` at each float32 step, and the argmin."""
  rates, mses = [], []
  for step in steps:
    bits, squared_error = fixed_bits, 0.0
    for v in update.values():
      v = v.reshape(-1)
      q = np.round(v / step).astype(np.int32)
      bits += 8 * (4 + _eg_bytes(q))
      squared_error += np.sum(((q.astype(np.float32) * step) - v).astype(np.float64)**2)
    rates.append(bits / NUM_PARAMS)
    mses.append(squared_error / NUM_PARAMS)
  rates, mses = np.array(rates), np.array(mses)
  return rates, mses, int(np.argmin(rates + lam * mses))


# ------------------------------------------------------------- search

class _OpaqueEliasGamma:
  """Elias-gamma without the closed form: the search must encode every candidate."""

  name = 'opaque_elias_gamma'

  def __init__(self):
    self._codec = codecs.EliasGammaCodec()

  def encode_to_bytes(self, values):
    return self._codec.encode_to_bytes(values)

  def decode_from_bytes(self, data, num_elements):
    return self._codec.decode_from_bytes(data, num_elements)

  def side_info_bits(self, data, num_elements):
    return self._codec.side_info_bits(data, num_elements)


def test_search_by_real_encoding_equals_closed_form_search():
  flat = [tf.constant(v.reshape(-1)) for v in _update(0.05, seed=7).values()]
  step = tf.constant(0.01, tf.float32)
  outputs = []
  for codec in ('elias_gamma', _OpaqueEliasGamma()):
    compressor = quantize_encode.QuantizeEncodeCompressor(
        step_control=sc.Lagrangian(3e4, 0.01, num_candidates=5, spread=2.0),
        codec=codec, rounding='dithered')
    outputs.append(compressor.encode(flat, step))
  (streams_a, diag_a), (streams_b, diag_b) = outputs
  assert [s.numpy() for s in streams_a] == [s.numpy() for s in streams_b]
  for name in diag_a:
    assert float(diag_a[name]) == float(diag_b[name]), name


# --------------------------------------------------------------- Lagrangian

@pytest.fixture(scope='module')
def lagrangian_processes():
  return {lam: quantize_encode.QuantizeEncodeFactory(step_control=sc.Lagrangian(
      lam, CENTRE, num_candidates=9, spread=SPREAD, recentre=False)).create(VALUE_TYPE, WEIGHT_TYPE)
          for lam in LAMBDAS}


@pytest.mark.slow
def test_lagrangian_client_choice_is_brute_force_argmin(lagrangian_processes):
  lam = LAMBDAS[2]
  process = lagrangian_processes[lam]
  steps = sc.candidate_steps(CENTRE, 9, SPREAD)
  assert steps[4] == np.float32(CENTRE)
  updates = [_update(s, seed=i) for i, s in enumerate(CLIENT_SCALES)]
  expected_steps = []
  for update in updates:
    rates, mses, best = _brute_force(update, steps, lam)
    output = process.next(process.initialize(), [update], [1.0])
    m = output.measurements
    assert m['step_size'] == steps[best]  # float32 -> float64 exactly
    assert m['bits_per_parameter'] == pytest.approx(rates[best], rel=1e-12)
    assert m['distortion'] == pytest.approx(mses[best], rel=1e-6)
    assert m['objective'] == pytest.approx(rates[best] + lam * mses[best], rel=1e-6)
    # The vote the server read from the payload: the candidate's grid offset.
    assert m['vote_offset'] == best - 4
    # The choice is not at the edge of the grid: a real trade-off.
    assert 0 < best < len(steps) - 1
    expected_steps.append(float(steps[best]))
  assert len(set(expected_steps)) > 1, expected_steps  # clients choose differently
  # All clients in one round: each uses its own step; the server decodes each
  # with its own step.
  output = process.next(process.initialize(), updates, [1.0, 1.0, 1.0])
  assert output.measurements['step_size'] == pytest.approx(np.mean(expected_steps), rel=1e-6)
  assert output.measurements['step_size_std'] == pytest.approx(np.std(expected_steps), rel=1e-4)
  for k in SHAPES:
    expected = np.mean([np.round(u[k] / np.float32(s)) * np.float32(s)
                        for u, s in zip(updates, expected_steps)], axis=0)
    np.testing.assert_allclose(output.result[k], expected, rtol=1e-5, atol=1e-7)
  # Without re-centring, the centre stays.
  assert output.state['step_size'] == np.float32(CENTRE)


@pytest.mark.slow
def test_larger_lambda_gives_smaller_step_and_lower_distortion(lagrangian_processes):
  updates = [_update(s, seed=i) for i, s in enumerate(CLIENT_SCALES)]
  results = []
  for lam in LAMBDAS:
    process = lagrangian_processes[lam]
    m = process.next(process.initialize(), updates, [1.0, 1.0, 1.0]).measurements
    results.append((m['step_size'], m['distortion'], m['bits_per_parameter']))
  steps, distortions, bits = zip(*results)
  assert steps[0] > steps[1] > steps[2]
  assert distortions[0] > distortions[1] > distortions[2]
  assert bits[0] < bits[1] < bits[2]


@pytest.mark.slow
def test_lagrangian_dithered_rms_server_reconstructs_what_client_measured():
  process = quantize_encode.QuantizeEncodeSumFactory(
      rounding='dithered', normalization='rms',
      step_control=sc.Lagrangian(3e4, 0.3, num_candidates=5)).create(VALUE_TYPE)
  update = _update(0.05, seed=11)
  output = process.next(process.initialize(), [update])
  mse = sum(np.sum((output.result[k] - update[k]).astype(np.float64)**2)
            for k in SHAPES) / NUM_PARAMS
  m = output.measurements
  assert m['distortion'] == pytest.approx(mse, rel=1e-4)
  # The client's own R (its real message size) is what the server measured.
  assert m['objective'] == pytest.approx(
      m['bits_per_parameter'] + 3e4 * m['distortion'], rel=1e-6)
  # Re-centring: the next centre is the client's chosen step.
  assert output.state['step_size'] == pytest.approx(m['step_size'], rel=1e-6)


# -------------------------------------------------------------- global vote

@pytest.mark.slow
def test_global_vote_recentres_beyond_the_initial_band():
  control = sc.GlobalVote(1e5, initial=1.0, num_candidates=5, spread=2.0)
  initial_band = control.candidate_steps(1.0)
  process = quantize_encode.QuantizeEncodeFactory(step_control=control).create(
      VALUE_TYPE, WEIGHT_TYPE)
  state = process.initialize()
  steps, votes = [], []
  for round_num in range(7):
    updates = [_update(0.05 * (1 + 0.2 * i), seed=100 * round_num + i) for i in range(3)]
    output = process.next(state, updates, [1.0, 1.0, 1.0])
    m = output.measurements
    assert m['step_size_std'] == pytest.approx(0.0, abs=1e-12)  # one step for the round
    assert m['step_size'] == pytest.approx(float(state['step_size']), rel=1e-7)
    assert m['objective'] == pytest.approx(
        m['bits_per_parameter'] + 1e5 * m['distortion'], rel=1e-6)
    # Re-centred on the geometric mean of the votes the server read.
    vote = m['step_size'] * 2.0**m['vote_offset']
    assert output.state['step_size'] == pytest.approx(vote, rel=1e-6)
    assert output.state['round'] == round_num + 1
    steps.append(m['step_size'])
    votes.append(vote)
    state = output.state
  # The data calls for a much smaller step: every client votes for the smallest
  # candidate until the centre gets there, moving spread**2 = 4x per round.
  assert votes[0] == pytest.approx(float(initial_band[0]), rel=1e-6)
  assert steps[:4] == pytest.approx([1.0, 0.25, 0.0625, 0.015625], rel=1e-6)
  assert steps[-1] < initial_band[0] / 8
  # Then it settles near the minimizer of R + lambda * D.
  assert steps[-1] == pytest.approx(steps[-2], rel=0.5)
  assert 0.005 < steps[-1] < 0.05


# --------------------------------------------------------------- bit budget

@pytest.mark.slow
@pytest.mark.parametrize('weighted,target,initial', [(True, 1.0, 0.05), (False, 2.5, 0.5)])
def test_bit_budget_meets_target_over_a_run(weighted, target, initial):
  control = sc.BitBudget(target, initial)
  if weighted:
    process = quantize_encode.QuantizeEncodeFactory(step_control=control).create(
        VALUE_TYPE, WEIGHT_TYPE)
  else:
    process = quantize_encode.QuantizeEncodeSumFactory(step_control=control).create(
        VALUE_TYPE)
  state = process.initialize()
  bits = []
  for round_num in range(25):
    updates = _drifting_updates(round_num)
    if weighted:
      output = process.next(state, updates, [1.0, 2.0, 3.0, 4.0])
    else:
      output = process.next(state, updates)
    m = output.measurements
    assert m['step_size_std'] == pytest.approx(0.0, abs=1e-12)
    # Rates at the other candidates, relative to the rate sent: coarser
    # steps cost fewer bits.
    assert 'candidate_rate_delta_2' not in m
    assert m['candidate_rate_delta_0'] > m['candidate_rate_delta_1'] > 0
    assert 0 > m['candidate_rate_delta_3'] > m['candidate_rate_delta_4']
    bits.append(m['bits_per_parameter'])
    state = output.state
  achieved = np.mean(bits)
  assert achieved == pytest.approx(target, rel=0.05), bits
  assert state['rate_debt'] == pytest.approx(np.sum(np.array(bits) - target), abs=1e-9)
  # The first round runs at `initial`, far from the target; the controller
  # reaches it (the last 10 rounds are within 15 %).
  assert abs(bits[0] / target - 1) > 0.3
  assert np.mean(bits[-10:]) == pytest.approx(target, rel=0.15)


@pytest.mark.slow
def test_bit_budget_payload_fields_are_exact_byte_differences():
  """Each client sends, per other candidate, its payload's byte difference
  (int32, counted); the server's curve is its measured rate plus their mean."""
  control = sc.BitBudget(1.0, 0.05)
  process = quantize_encode.QuantizeEncodeFactory(step_control=control).create(
      VALUE_TYPE, WEIGHT_TYPE)
  updates = [_update(0.05, seed=21), _update(0.08, seed=22)]
  output = process.next(process.initialize(), updates, [1.0, 3.0])
  m = output.measurements
  steps = control.candidate_steps(0.05)
  fields_bits = 4 * 32  # Four int32 byte differences.
  rates = [_brute_force(u, steps, 0.0, MESSAGE_BITS + fields_bits)[0] for u in updates]
  # Sent at the centre: what the server measured.
  assert m['bits_per_parameter'] == pytest.approx(np.mean([r[2] for r in rates]), rel=1e-12)
  assert m['uplink_bits'] == round(sum(r[2] for r in rates) * NUM_PARAMS)
  for k in (0, 1, 3, 4):
    deltas = [r[k] - r[2] for r in rates]
    assert m[f'candidate_rate_delta_{k}'] == pytest.approx(np.mean(deltas), rel=1e-9)
    assert m[f'candidate_rate_delta_{k}_std'] == pytest.approx(np.std(deltas), rel=1e-6, abs=1e-9)
  # The next step follows from the server's numbers alone: the curve through
  # the measured rate, from the state and these measurements.
  curve = [m['bits_per_parameter'] + (m[f'candidate_rate_delta_{k}'] if k != 2 else 0.0)
           for k in range(5)]
  debt = m['bits_per_parameter'] - 1.0
  assert output.state['rate_debt'] == pytest.approx(debt, rel=1e-12)
  desired = float(np.clip(1.0 - debt / 2, 0.25, 4.0))
  expected = np.exp(sc.rate_curve_step(
      tf.constant(np.log(np.float64(np.float32(0.05))) + np.log(2.0) * np.arange(-2, 3),
                  tf.float64),
      [tf.constant(r, tf.float64) for r in curve], tf.constant(desired, tf.float64),
      np.log(2.0)).numpy())
  assert output.state['step_size'] == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- schedules

@pytest.mark.slow
@pytest.mark.parametrize('schedule', [
    sc.Schedule(0.1, 'exponential', decay=0.8, minimum=0.04),
    sc.Schedule(0.1, 'step', decay=0.5, every=2),
    sc.Schedule(0.1, 'linear', final=0.02, rounds=4),
], ids=['exponential', 'step', 'linear'])
def test_schedule_step_is_the_closed_form(schedule):
  process = quantize_encode.QuantizeEncodeSumFactory(step_control=schedule).create(VALUE_TYPE)
  state = process.initialize()
  update = _update(0.05, seed=3)
  for t in range(6):
    output = process.next(state, [update])
    m = output.measurements
    expected = {'exponential': max(0.1 * 0.8**t, 0.04), 'step': 0.1 * 0.5**(t // 2),
                'linear': 0.1 + (0.02 - 0.1) * min(t, 4) / 4}[schedule.kind]
    assert m['step_size'] == pytest.approx(expected, rel=1e-6)
    assert m['step_size'] == schedule.step_at(t)
    assert state['round'] == t
    assert 'objective' not in m and 'vote_offset' not in m
    step = np.float32(m['step_size'])
    for k in SHAPES:
      np.testing.assert_allclose(
          output.result[k], np.round(update[k] / step) * step, rtol=1e-6, atol=1e-8)
    state = output.state


def test_plain_step_size_is_fixed_control():
  factory = quantize_encode.QuantizeEncodeFactory(0.05)
  control = factory.compressor.step_control
  assert isinstance(control, sc.Fixed) and control.step == 0.05
  assert factory.compressor.diagnostic_names == ('squared_error', 'step_size')
  assert factory.compressor.payload_names == ()
  explicit = quantize_encode.QuantizeEncodeFactory(step_control=sc.Fixed(0.05))
  flat = [tf.constant(v.reshape(-1)) for v in _update(0.05, seed=1).values()]
  a, da = factory.compressor.encode(flat, tf.constant(0.05, tf.float32))
  b, db = explicit.compressor.encode(flat, tf.constant(0.05, tf.float32))
  assert [s.numpy() for s in a] == [s.numpy() for s in b]
  assert {k: float(v) for k, v in da.items()} == {k: float(v) for k, v in db.items()}


# ------------------------------------------------------------------ config

@pytest.mark.parametrize('make,match', [
    (lambda: sc.Fixed(0.0), 'step'),
    (lambda: sc.Fixed(float('inf')), 'step'),
    (lambda: sc.Schedule(-1.0, decay=0.9), 'initial'),
    (lambda: sc.Schedule(0.1, 'cosine', decay=0.9), 'kind'),
    (lambda: sc.Schedule(0.1, 'exponential'), 'decay'),
    (lambda: sc.Schedule(0.1, 'exponential', decay=0.0), 'decay'),
    (lambda: sc.Schedule(0.1, 'exponential', decay=0.9, rounds=3), 'rounds'),
    (lambda: sc.Schedule(0.1, 'step', decay=0.5), 'every'),
    (lambda: sc.Schedule(0.1, 'step', decay=0.5, every=0), 'every'),
    (lambda: sc.Schedule(0.1, 'linear', final=0.01), 'rounds'),
    (lambda: sc.Schedule(0.1, 'linear', final=-0.01, rounds=3), 'final'),
    (lambda: sc.Schedule(0.1, 'linear', final=0.01, rounds=3, minimum=-1.0), 'minimum'),
    (lambda: sc.Lagrangian(-1.0, 0.01), 'lam'),
    (lambda: sc.Lagrangian(float('nan'), 0.01), 'lam'),
    (lambda: sc.Lagrangian(1e4, 0.0), 'centre'),
    (lambda: sc.Lagrangian(1e4, 0.01, num_candidates=4), 'num_candidates'),
    (lambda: sc.Lagrangian(1e4, 0.01, num_candidates=1), 'num_candidates'),
    (lambda: sc.Lagrangian(1e4, 0.01, spread=1.0), 'spread'),
    (lambda: sc.GlobalVote(1e4, -0.01), 'initial'),
    (lambda: sc.GlobalVote(1e4, 0.01, smoothing=1.0), 'smoothing'),
    (lambda: sc.GlobalVote(1e4, 0.01, spread=0.5), 'spread'),
    (lambda: sc.BitBudget(0.0, 0.01), 'target_bits'),
    (lambda: sc.BitBudget(-2.0, 0.01), 'target_bits'),
    (lambda: sc.BitBudget(1.0, 0.01, payback_rounds=0.5), 'payback_rounds'),
    (lambda: sc.BitBudget(1.0, 0.01, num_candidates=6), 'num_candidates'),
    (lambda: quantize_encode.QuantizeEncodeFactory(), 'step_size'),
    (lambda: quantize_encode.QuantizeEncodeFactory(0.1, step_control=sc.Fixed(0.1)), 'either'),
    (lambda: quantize_encode.QuantizeEncodeSumFactory(-0.1), 'step_size'),
])
def test_bad_config_raises_value_error_naming_the_argument(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_bad_config_types():
  with pytest.raises(TypeError, match='step_control'):
    quantize_encode.QuantizeEncodeFactory(step_control=0.1)
  with pytest.raises(TypeError, match='num_candidates'):
    sc.Lagrangian(1e4, 0.01, num_candidates=5.0)
  with pytest.raises(TypeError, match='lam'):
    sc.GlobalVote('big', 0.01)
