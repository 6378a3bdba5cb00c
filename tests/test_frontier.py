"""Tests of `tff_rdq.experiments.frontier` and `frontier_report` on small fake saved
updates (eager TF only); the bounds themselves are in test_rd_bounds.py."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from tff_rdq import codecs
from tff_rdq.aggregators import quantize_encode
from tff_rdq.experiments import frontier
from tff_rdq.experiments import frontier_report
from tff_rdq.quantizers import uniform

STEPS = (0.25, 0.5, 1.0, 2.0)
SHAPES = ((40, 50), (1000,), (30, 30))  # 3900 parameters.


def _write_updates(run_dir, updates):
  """Writes `updates` ({round: (client_id, tensors)}) like `updates.save_round`."""
  directory = run_dir / 'updates'
  directory.mkdir(parents=True)
  index = []
  for round_num, (client_id, tensors) in updates.items():
    name = f'round{round_num:04d}_client00.npz'
    np.savez(directory / name, **{f'tensor_{k:02d}': t for k, t in enumerate(tensors)})
    index.append(dict(file=name, round=round_num, client=0, client_id=client_id,
                      examples=20, parameters=int(sum(t.size for t in tensors))))
  (directory / 'index.json').write_text(json.dumps(index, indent=1))


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  run_dir = tmp_path_factory.mktemp('run')
  rng = np.random.default_rng(0)
  gaussian = [rng.normal(0.0, 0.01, s).astype(np.float32) for s in SHAPES]
  laplacian = [rng.laplace(0.0, 0.02, s).astype(np.float32) for s in SHAPES]
  _write_updates(run_dir, {1: ('gaussian', gaussian), 2: ('laplacian', laplacian)})
  rows = frontier.sweep(run_dir, steps=STEPS, verbose=False)
  return run_dir, {1: gaussian, 2: laplacian}, rows


def _select(rows, round_num, rounding, codec):
  return sorted((r for r in rows if r['round'] == round_num and r['rounding'] == rounding
                 and r['codec'] == codec), key=lambda r: r['step'])


@pytest.mark.slow
def test_rows_cover_the_default_combinations(run):
  _, _, rows = run
  pairs = {(r['rounding'], r['codec']) for r in rows}
  assert pairs == {('uniform', 'elias_gamma'), ('stochastic', 'elias_gamma'),
                   ('dithered', 'elias_gamma'), ('uniform', 'rans'),
                   ('uniform', 'run_length_rans')}
  assert len(rows) == 2 * 5 * len(STEPS)
  assert all(r['parameters'] == 3900 for r in rows)


@pytest.mark.parametrize('rounding,codec', frontier.combinations(
    uniform.ROUNDINGS, ('elias_gamma', 'rans', 'run_length_rans')))
def test_bits_fall_and_distortion_rises_with_the_step(run, rounding, codec):
  _, _, rows = run
  for round_num in (1, 2):
    points = _select(rows, round_num, rounding, codec)
    bits = [p['bits_per_parameter'] for p in points]
    distortion = [p['distortion'] for p in points]
    assert all(a > b for a, b in zip(bits, bits[1:])), bits
    assert all(a < b for a, b in zip(distortion, distortion[1:])), distortion


def test_dithered_distortion_is_step_squared_over_12(run):
  _, data, rows = run
  for round_num, tensors in data.items():
    for row in _select(rows, round_num, 'dithered', 'elias_gamma'):
      # Per tensor: (step * rms)**2 / 12, pooled over the tensors.
      expected = sum(t.size * (row['step'] * np.sqrt(np.mean(np.square(t, dtype=np.float64))))**2
                     / 12 for t in tensors) / 3900
      assert row['distortion'] == pytest.approx(expected, rel=0.08)


def test_points_lie_above_the_bound_of_the_matching_source(run):
  _, _, rows = run
  for row in rows:
    bound = row['gaussian_bound'] if row['round'] == 1 else row['laplacian_bound']
    assert row['bits_per_parameter'] > bound, row
    # And the bounds are what the module doc says.
    d = row['normalized_distortion']
    assert row['gaussian_bound'] == pytest.approx(max(0.0, 0.5 * math.log2(1 / d)))
    b = math.sqrt(row['variance'] / 2)
    slb = math.log2(2 * math.e * b) - 0.5 * math.log2(2 * math.pi * math.e * row['distortion'])
    assert row['laplacian_bound'] == pytest.approx(max(0.0, slb), abs=1e-9)


def test_per_tensor_bound_is_below_the_pooled_bound(run):
  # Never above the Gaussian bound of the pooled variance.
  _, _, rows = run
  for row in rows:
    assert row['gaussian_tensor_bound'] <= row['gaussian_bound'] + 1e-9
    assert len(row['tensor_sizes']) == len(row['tensor_variances']) == 3


def test_bits_are_the_real_coded_bytes(run):
  _, data, rows = run
  flat = [t.reshape(-1) for t in data[2]]
  # Uniform rounding, recomputed with numpy rounding and the codec directly.
  row = _select(rows, 2, 'uniform', 'rans')[1]
  total = 0
  for values in flat:
    step = float(uniform.normalized_step(tf.constant(values), row['step'], 'rms'))
    integers = np.round(values / np.float32(step)).astype(np.int32)
    total += 4 + int(tf.size(codecs.get_codec('rans').encode_to_bytes(tf.constant(integers))))
  assert row['bytes'] == total
  assert row['bits_per_parameter'] == 8 * total / 3900
  # Dithered rounding: the aggregator's own compressor sends the same bytes
  # (its rate excludes the client weight in the sum form) with the same error.
  row = _select(rows, 2, 'dithered', 'elias_gamma')[2]
  compressor = quantize_encode.QuantizeEncodeCompressor(
      row['step'], rounding='dithered', normalization='rms', codec='elias_gamma')
  streams, diagnostics = compressor.encode(
      [tf.constant(v) for v in flat], tf.constant(row['step'], tf.float32))
  assert row['bytes'] == sum(int(tf.strings.length(s)) for s in streams)
  assert row['header_bytes'] == 3 * 8
  assert row['distortion'] * 3900 == pytest.approx(float(diagnostics['squared_error']),
                                                   rel=1e-6)


def test_write_and_gap_table(run):
  run_dir, _, rows = run
  paths = frontier.write(run_dir, rows)
  names = {p.name for p in paths}
  assert names == {'frontier.csv', 'frontier_per_update.png', 'frontier_methods.png', 'gap.md'}
  for path in paths:
    assert path.parent == run_dir / 'frontier' and path.stat().st_size > 0
  csv_lines = (run_dir / 'frontier' / 'frontier.csv').read_text().splitlines()
  assert len(csv_lines) == len(rows) + 1
  assert csv_lines[0].split(',') == list(frontier.FIELDS)
  read_back = frontier.read(run_dir)
  assert len(read_back) == len(rows)
  for a, b in zip(read_back, rows):
    for key in frontier.FIELDS:
      assert a[key] == (pytest.approx(b[key]) if isinstance(b[key], (float, tuple)) else b[key])
  gap = (run_dir / 'frontier' / 'gap.md').read_text()
  assert '| uniform | rans | 0.1 |' in gap and 'Spread across updates' in gap

  table = frontier_report.gap_table(rows, targets=(0.1, 0.03))
  assert len(table) == 5 * 2
  for entry in table:
    assert entry['updates'] == 2
    assert entry['above_gaussian'] > 0 and entry['above_laplacian'] > entry['above_gaussian']
  # Uniform + rANS on the Gaussian update: high-rate ECSQ is 0.254 bits above
  # R(D); small tensors add table and header overhead.
  gaussian_rows = [r for r in rows if r['round'] == 1]
  entry = next(e for e in frontier_report.gap_table(gaussian_rows, targets=(0.03,))
               if (e['rounding'], e['codec']) == ('uniform', 'rans'))
  assert 0.25 < entry['above_gaussian'] < 0.8


def test_main_prints_tables(run, capsys):
  run_dir, _, _ = run
  assert frontier.main(run_dir, steps=(0.5, 1.0), roundings=('uniform',),
                       codecs=('elias_gamma',), verbose=False) == 0
  out = capsys.readouterr().out
  assert '| uniform | elias_gamma | 0.1 |' in out and 'gap.md' in out


def test_missing_updates_raise_a_helpful_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='save_updates_rounds'):
    frontier.sweep(tmp_path)
  with pytest.raises(FileNotFoundError, match='save_updates_clients'):
    frontier.main(tmp_path / 'no_such_run')


def test_no_normalization_runs_the_aggregator_with_an_absolute_step(run):
  run_dir, data, rows = run
  assert all(r['step_size'] == r['step'] for r in rows)  # rms: the grid is the step.
  swept = frontier.sweep(run_dir, steps=(1.0,), roundings=('uniform',),
                         codecs=('elias_gamma',), normalization='none', verbose=False)
  row = next(r for r in swept if r['round'] == 2)
  flat = [t.reshape(-1) for t in data[2]]
  rms = np.sqrt(np.mean(np.square(np.concatenate(flat).astype(np.float64))))
  assert row['step_size'] == float(np.float32(rms))
  # One absolute step for every tensor, as QuantizeEncodeFactory(step_size,
  # normalization='none') quantizes: recomputed with numpy rounding.
  step = np.float32(row['step_size'])
  codec = codecs.EliasGammaCodec()
  total = sum(4 + int(codec.coded_bits(tf.constant(np.round(v / step).astype(np.int32)))) // 8
              for v in flat)
  assert row['bytes'] == total
