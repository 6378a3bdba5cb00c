"""Tests of Claim 1's analysis (`tff_rdq.experiments.reproduce.claim1`)."""

import json
import math
import pathlib
import types

import numpy as np
import pytest

from tff_rdq.experiments import claims
from tff_rdq.experiments.reproduce import claim1
from tff_rdq.experiments.reproduce import reporting
from tff_rdq.experiments.reproduce import results

KEYS = tuple(results.NORMALIZATIONS)
STEPS = (0.5, 1.0, 2.0, 4.0)
FRONTIER_DIR = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'reproduction' / 'frontier'


def _update_rows(setting, corpus, optimizer, round_num, client, bits_at_one,
                 nonzero_at_one=0.2, examples=100, squared_norm=1.0, alpha=1.0):
  """Frontier rows of one update: at step `s`, bits `bits_at_one * s**-alpha`,
  relative distortion `0.1 * s**2` (0.1 at step 1, a grid point) and nonzero
  fraction `nonzero_at_one * s**-0.5`."""
  return [dict(setting=setting, corpus=corpus, optimizer=optimizer, round=round_num,
               client=client, client_id=f'id{client}', examples=examples, tokens=math.nan,
               embedding_rows_touched=nonzero_at_one / 2, squared_norm=squared_norm,
               parameters=1000, step=s, step_size=s,
               bits_per_parameter=bits_at_one * s ** -alpha,
               relative_distortion=0.1 * s ** 2, tensor_relative_distortion=0.2 * s ** 2,
               zero_fraction=1 - nonzero_at_one * s ** -0.5) for s in STEPS]


def test_value_at_interpolates_any_column_in_log_log():
  rows = _update_rows('a', 'local', 'x', 1, 0, bits_at_one=2.0)
  assert claim1.bits_at(rows, 'relative_distortion', 0.1) == pytest.approx(2.0)
  # Between steps 1 and 2 (distortion 0.1 and 0.4): the power law is exact in log-log.
  assert claim1.bits_at(rows, 'relative_distortion', 0.2) == pytest.approx(2.0 / 2 ** 0.5)
  with_nonzero = [dict(r, nonzero=1 - r['zero_fraction']) for r in rows]
  assert claim1.value_at(with_nonzero, 'relative_distortion', 0.1, 'nonzero') == (
      pytest.approx(0.2))
  assert math.isnan(claim1.bits_at(rows, 'relative_distortion', 10.0))


def _design(log2_bits):
  """2 corpora x 2 optimizers x 3 rounds x 3 clients; a client's id is the same
  under both optimizers (as in the sweep: one sampling seed per corpus)."""
  rows = []
  for corpus in ('local', 'sotu'):
    for optimizer in ('fedadam', 'fedavg'):
      for round_num in (2, 40, 80):
        for client in range(3):
          bits = 2 ** log2_bits(corpus, optimizer, round_num, client)
          for row in _update_rows(f'{corpus}_{optimizer}', corpus, optimizer, round_num,
                                  client + 10 * round_num, bits):
            rows.append(row)
  return rows


def test_shares_split_corpus_round_and_the_real_client():
  rng = np.random.default_rng(0)
  client_effect = {(c, r, k): rng.normal(0, 0.3) for c in ('local', 'sotu')
                   for r in (2, 40, 80) for k in range(3)}
  rows = _design(lambda c, o, r, k: 1.0 * (c == 'sotu') + client_effect[(c, r, k)])
  table = claim1.update_table(rows, KEYS[:1], (0.1,))
  (shares,) = claim1.shares_table(table)
  assert shares['updates'] == 36 and shares['clients'] == 18
  assert shares['repeated_clients'] == 18
  # Both optimizers' updates of a client are equal: nothing for the optimizer or
  # the residual; the corpus enters first, so it has its one-way share.
  assert shares['share_optimizer'] == pytest.approx(0, abs=1e-12)
  assert shares['share_residual'] == pytest.approx(0, abs=1e-12)
  log2_bits = [u['log2_bits'] for u in table]
  one_way = claims.variance_shares(log2_bits, {'corpus': [u['corpus'] for u in table]})
  assert shares['share_corpus'] == pytest.approx(one_way['corpus'])
  assert shares['share_corpus'] + shares['share_round'] + shares['share_client'] == (
      pytest.approx(1))
  assert shares['share_client'] > 0.1


def test_sequential_shares_add_up_and_a_pure_corpus_effect_takes_all():
  shares = claim1.sequential_shares([1, 1, 3, 3], {'corpus': [0, 0, 1, 1], 'client': [0, 1, 2, 3]})
  assert shares == pytest.approx(dict(corpus=1.0, client=0.0, residual=0.0))
  rng = np.random.default_rng(1)
  values = rng.normal(size=20)
  factors = {'a': rng.integers(0, 2, 20), 'b': rng.integers(0, 3, 20)}
  shares = claim1.sequential_shares(values, factors)
  assert sum(shares.values()) == pytest.approx(1)
  assert all(v >= 0 for v in shares.values())


def _regression_rows(corpus_gap, rng, updates_per_corpus=20):
  """Updates whose log2 bits at distortion 0.1 are `1 + log2 nonzero + 0.3 log2
  examples + corpus_gap * [sotu] + noise`; SOTU's clients are 5 times larger."""
  rows = []
  for corpus, size in (('local', 100), ('sotu', 500)):
    for client in range(updates_per_corpus):
      nonzero = rng.uniform(0.1, 0.3)
      examples = size * rng.uniform(0.5, 2)
      log2_bits = (1 + math.log2(nonzero) + 0.3 * math.log2(examples)
                   + corpus_gap * (corpus == 'sotu') + rng.normal(0, 0.02))
      rows += _update_rows(f'{corpus}_fedadam', corpus, 'fedadam', 2, client, 2 ** log2_bits,
                           nonzero_at_one=nonzero, examples=examples)
  return rows


def test_regression_recovers_the_coefficients_and_the_corpus_gap():
  rows = _regression_rows(0.5, np.random.default_rng(2))
  table = claim1.update_table(rows, KEYS[:1], (0.1,))
  fits = {r['model']: r for r in claim1.regression_table(table, tolerance=0.25)}
  full = fits['corpus + nonzero fraction + client size']
  assert full['r2'] > 0.99 and full['client_size'] == 'examples'
  assert full['corpus_effect'] == pytest.approx(0.5, abs=0.05)
  assert full['corpus_low'] < full['corpus_effect'] < full['corpus_high']
  assert full['corpus_high'] - full['corpus_low'] < 0.1
  assert full['log2_nonzero_fraction'] == pytest.approx(1.0, abs=0.05)
  assert full['log2_client_size'] == pytest.approx(0.3, abs=0.05)
  assert full['consistent'] == 'outside tolerance'  # 0.5 > log2(1.25) = 0.32.


def test_a_corpus_gap_explained_by_client_size_is_consistent_given_it():
  rows = _regression_rows(0.0, np.random.default_rng(3), updates_per_corpus=60)
  table = claim1.update_table(rows, KEYS[:1], (0.1,))
  fits = {r['model']: r for r in claim1.regression_table(table, tolerance=0.25)}
  # Alone, the corpus carries SOTU's larger clients (0.3 * log2(5) = 0.70 log2 bits) ...
  assert fits['corpus']['corpus_effect'] > 0.4
  assert fits['corpus']['consistent'] == 'outside tolerance'
  # ... given sparsity and client size, the corpus adds nothing.
  full = fits['corpus + nonzero fraction + client size']
  assert abs(full['corpus_effect']) < 0.05 and full['consistent'] == 'within tolerance'
  text = claim1.describe(claim1.analyse(rows, KEYS[:1], (0.1,), tolerance=0.25))
  assert 'consistent across corpora at' in text


def test_consistency_against_the_tolerance():
  margin = math.log2(1.25)
  assert claim1.consistency(-0.1, 0.1, 0.25) == 'within tolerance'
  assert claim1.consistency(margin + 0.01, 1.0, 0.25) == 'outside tolerance'
  assert claim1.consistency(-1.0, -margin - 0.01, 0.25) == 'outside tolerance'
  assert claim1.consistency(0.0, 1.0, 0.25) == 'inconclusive'


def _curves(scales, alphas, norms=None):
  """Frontier rows of one setting, one update per (scale, alpha)."""
  rows = []
  for client, (scale, alpha) in enumerate(zip(scales, alphas)):
    rows += _update_rows('s', 'local', 'x', 1, client, scale, alpha=alpha,
                         squared_norm=1.0 if norms is None else norms[client])
  return rows


def test_per_update_lagrangian_steps_are_never_worse_than_one_step():
  rng = np.random.default_rng(4)
  rows = _curves(rng.uniform(0.3, 3, 8), rng.uniform(0.5, 2, 8), rng.uniform(0.1, 10, 8))
  table = claim1.fixed_step_table(rows, levels=(0.3, 0.5, 1.0, 2.0))
  ratios = [r['ratio'] for r in table if not math.isnan(r['ratio'])]
  assert len(ratios) >= 6
  assert min(ratios) >= 1 - 1e-9
  assert max(ratios) > 1.01  # Different curves: one step is not optimal.


def test_identical_updates_make_one_step_optimal():
  rows = _curves([1.0] * 5, [1.0] * 5, [2.0] * 5)
  table = claim1.fixed_step_table(rows, levels=(0.5, 1.0))
  assert {r['distortion'] for r in table} == set(claim1.DISTORTIONS)
  for row in table:
    assert row['ratio'] == pytest.approx(1.0, abs=1e-9)


def test_lagrangian_curve_is_the_lower_hull_of_the_sums():
  bits = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0]])
  errors = np.array([[4.0, 1.0, 0.5], [2.0, 1.5, 0.0]])
  total_bits, total_error = claim1.lagrangian_curve(bits, errors)
  # Every combination of one choice per update lies on or above the curve.
  for i in range(3):
    for j in range(3):
      b, e = bits[0, i] + bits[1, j], errors[0, i] + errors[1, j]
      assert np.interp(b, total_bits, total_error) <= e + 1e-12
  assert (total_bits[0], total_error[0]) == (2.0, 6.0)
  assert (total_bits[-1], total_error[-1]) == (7.0, 0.5)


def test_missing_columns_say_not_measured():
  rows = [{k: v for k, v in r.items() if k not in (*results.UPDATE_FIELDS, 'zero_fraction')}
          for r in _design(lambda c, o, r, k: 1.0 * (c == 'sotu') + 0.1 * k)]
  analysis = claim1.analyse(rows, KEYS, (0.1,))
  fits = {r['model']: r for r in analysis['regressions'] if r['normalization'] == KEYS[0]}
  assert not math.isnan(fits['corpus']['corpus_effect'])
  for model in claim1.MODELS:
    if model != 'corpus':
      assert fits[model]['note'].startswith(claim1.NOT_MEASURED)
  by_distortion = {r['distortion']: r for r in analysis['fixed_step']}
  assert by_distortion['squared error']['note'].startswith(claim1.NOT_MEASURED)
  assert not by_distortion['relative distortion']['note']
  assert claim1.NOT_MEASURED in claim1.describe(analysis)


def test_embedding_rows_touched_counts_the_rows_of_the_vocabulary_table():
  embedding = np.zeros((10, 3))
  embedding[[1, 4]] = 0.5
  tensors = [embedding, np.ones((3, 4)), np.ones((3, 10)), np.ones(10)]
  assert results.embedding_rows_touched(tensors) == pytest.approx(0.2)
  assert math.isnan(results.embedding_rows_touched([np.ones((3, 4)), np.ones(5)]))


def test_measure_frontier_records_what_the_regression_needs(tmp_path):
  rng = np.random.default_rng(5)
  embedding = np.zeros((12, 3), np.float32)
  embedding[[0, 5, 7]] = rng.normal(size=(3, 3))
  tensors = [embedding, rng.normal(size=(3, 12)).astype(np.float32),
             rng.normal(size=12).astype(np.float32)]
  (tmp_path / 'updates').mkdir()
  np.savez(tmp_path / 'updates' / 'u.npz', **{f'tensor_{k:02d}': t for k, t in enumerate(tensors)})
  (tmp_path / 'updates' / 'index.json').write_text(json.dumps([dict(
      file='u.npz', round=3, client=0, client_id='abc', examples=17, parameters=84)]))
  run = types.SimpleNamespace(
      setting='s', corpus='local', optimizer='fedavg', frontier_steps=(0.5, 4.0),
      config=types.SimpleNamespace(run_dir=tmp_path, aggregator=types.SimpleNamespace(
          rounding='uniform', codec='elias_gamma', normalization='rms')))
  rows = results.measure_frontier(run)
  assert [r['step'] for r in rows] == [0.5, 4.0]
  for row in rows:
    assert set(results.FRONTIER_FIELDS) <= set(row)
    assert row['examples'] == 17 and row['tokens'] == '' and row['client_id'] == 'abc'
    assert row['embedding_rows_touched'] == pytest.approx(3 / 12)
    assert row['squared_norm'] == pytest.approx(
        sum(float(np.sum(t.astype(np.float64) ** 2)) for t in tensors))
  # The embedding's 36 untouched entries quantize to 0 at any step; a coarser
  # step zeroes more.
  assert 36 / 84 <= rows[0]['zero_fraction'] < rows[1]['zero_fraction'] <= 1


def test_committed_first_sweep_gives_finite_shares_and_ratios(tmp_path):
  rows = [r for path in sorted(FRONTIER_DIR.glob('*.csv')) for r in results.read_frontier(path)]
  assert rows and all(math.isnan(r['zero_fraction']) for r in rows)
  analysis = claim1.analyse(rows, KEYS, (0.1, 0.01))
  for shares in analysis['shares']:
    values = [shares[f'share_{k}'] for k in (*claim1.FACTORS, 'residual')]
    assert all(math.isfinite(v) for v in values) and sum(values) == pytest.approx(1)
    assert shares['clients'] == 18  # Real clients, not the saved-update index.
  ratios = {}
  for row in analysis['fixed_step']:
    if not math.isnan(row['ratio']):
      ratios.setdefault(row['setting'], []).append(row['ratio'])
  assert len(ratios) == 4 and min(min(r) for r in ratios.values()) >= 1 - 1e-9
  text, claim1_rows = reporting._claim1_section(rows, tmp_path)
  assert claim1.NOT_MEASURED in text and len(claim1_rows) == 4
  for key in claim1.CSV_FIELDS:
    assert (tmp_path / f'claim1_{key}.csv').is_file()
