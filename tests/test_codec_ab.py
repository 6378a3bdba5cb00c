"""Tests of `benchmarks/codec_ab.py` on a small synthetic update."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'))
import codec_ab  # pylint: disable=wrong-import-position


@pytest.mark.slow
def test_against_head_is_the_same_code(update_path, capsys):
  assert codec_ab.main(['--against', 'HEAD', '--codec', 'elias_gamma', '--update',
                        str(update_path), '--steps', '1', '--repeats', '2']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith('elias_gamma: today against HEAD')
  assert lines[1].startswith('step 1: encode ') and lines[1].endswith('; same bytes')


@pytest.mark.slow
def test_different_bytes_are_reported(update_path):
  integers = codec_ab.real_update_codecs.quantize(
      codec_ab.round_profile.load_update(update_path), 0.3)
  # Another codec as "the revision": both decode their own bytes; the bytes differ.
  result = codec_ab.compare(codec_ab.run_length_rans, codec_ab.elias_gamma, integers, 1)
  assert not result['same_bytes']
  for phase in ('encode', 'decode'):
    old_ms, new_ms, ratio = result[phase]
    assert old_ms > 0 and new_ms > 0 and ratio > 0


def test_unknown_revision_is_a_clear_error(update_path):
  with pytest.raises(SystemExit, match='no-such-revision'):
    codec_ab.main(['--against', 'no-such-revision', '--update', str(update_path)])
