"""Tests of `benchmarks/op_profile.py` on a small synthetic update."""

import pathlib
import re
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'))
import op_profile  # pylint: disable=wrong-import-position


@pytest.mark.slow
@pytest.mark.parametrize('codec', ['elias_gamma', 'run_length_rans'])
def test_prints_both_phases_with_consistent_totals(update_path, codec, capsys):
  assert op_profile.main(['--update', str(update_path), '--codec', codec,
                          '--repeats', '1', '--top', '3']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith(f'{codec}, {update_path}, step 0.3: 3,372 values')
  phases = [line for line in lines if line.startswith(('encode:', 'decode:'))]
  assert [p.split(':')[0] for p in phases] == ['encode', 'decode']
  for phase in phases:
    match = re.search(r'busy ([\d.]+) ms, kernels ([\d.]+) ms, (\d+) ops', phase)
    busy, kernels, ops = float(match[1]), float(match[2]), int(match[3])
    assert busy >= kernels > 0 and ops > 0, phase


def test_trace_totals_are_per_call(update_path, tmp_path):
  integers = op_profile.real_update_codecs.quantize(
      op_profile.codec_ab.round_profile.load_update(update_path), 0.3)
  encode, _ = op_profile.codec_ab.phase_graphs(op_profile.codec_ab.elias_gamma,
                                                [q.size for q in integers])
  one = op_profile.profile_phase(encode, integers, 1, str(tmp_path / 'one'))
  three = op_profile.profile_phase(encode, integers, 3, str(tmp_path / 'three'))
  # The same graph: the same op executions per call, whatever the repeats.
  assert one['ops'] == three['ops'] > 0
  assert sum(count for _, count in three['by_type'].values()) == three['ops']


def test_missing_update_is_a_clear_error(tmp_path, capsys):
  with pytest.raises(SystemExit):
    op_profile.main(['--update', str(tmp_path / 'missing.npz')])
  assert 'missing.npz does not exist' in capsys.readouterr().err
