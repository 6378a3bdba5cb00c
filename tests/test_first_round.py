"""Tests of `benchmarks/first_round.py` on the tiny config's model."""

import pathlib
import re
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'benchmarks'))
import first_round  # pylint: disable=wrong-import-position


@pytest.mark.slow
def test_times_each_codec_in_a_fresh_process(capsys):
  assert first_round.main(['--config', str(REPO / 'configs' / 'tiny.toml'),
                           '--codecs', 'elias_gamma', '--clients', '1', '--rounds', '1']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 2
  match = re.search(r'elias_gamma +static Grappler on : create +([\d.]+) +first +([\d.]+) +'
                    r'next +([\d.]+) +\(([\d.]+) bits/parameter, 10,304 parameters\)', lines[1])
  assert match, lines[1]
  create, first, after, bits = (float(g) for g in match.groups())
  assert create > 0 and first > after > 0 and 0 < bits < 32


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
  with pytest.raises(SystemExit):
    first_round.main(['--config', str(tmp_path / 'missing.toml')])
  assert 'does not exist' in capsys.readouterr().err
  with pytest.raises(SystemExit):
    first_round.main(['--rounds', '0'])
  assert '--clients and --rounds must be at least 1' in capsys.readouterr().err
