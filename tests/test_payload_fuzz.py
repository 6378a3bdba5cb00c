"""Seeded fuzz of the full client message: no corruption yields a wrong sum.

A small sample of `benchmarks/fuzz_payloads.py` (which runs >= 10,000 cases
per codec): valid messages of our method (dithered rounding: a step and seed
header per tensor; a GlobalVote step control: a vote byte in tensor 0), built
by `QuantizeEncodeCompressor.encode` and `compressed.seal`, corrupted in every
way of `fuzz_payloads.CATEGORIES` (bit flips anywhere, in the step/seed/vote
header and in the codec's bytes, truncation, trailing bytes, garbage, header
tampering, bytes moved between streams, empty payloads, status and weight),
through the server's `compressed.unseal`, for every codec. Every case is
either rejected or decodes to exactly the original values.
"""

import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'fuzz_payloads.py'
_SPEC = importlib.util.spec_from_file_location('fuzz_payloads', _PATH)
fuzz_payloads = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fuzz_payloads)

CASES_PER_CATEGORY = 12


@pytest.mark.slow
@pytest.mark.parametrize('codec', fuzz_payloads.CODECS)
def test_every_corruption_is_rejected_or_exact(codec):
  categories = list(fuzz_payloads.CATEGORIES)
  counts = fuzz_payloads.fuzz(codec, CASES_PER_CATEGORY * len(categories), seed=11)
  with_checksum, decoder_alone = counts['checksum'], counts['decoder']
  for category in categories:
    c = with_checksum[category]
    assert sum(c.values()) == CASES_PER_CATEGORY, category
    assert c['silently-wrong'] == 0 and c['crashed'] == 0, (category, c)
    assert c['rejected'] + c['decoded-exact'] == CASES_PER_CATEGORY, (category, c)
    assert decoder_alone[category]['crashed'] == 0, (category, decoder_alone[category])
    # With on_corrupt='drop', exactly the rejected cases are counted and skipped.
    assert counts['drop'][category] == c, (category, counts['drop'][category], c)
  # The check can fail: without the checksum, a tampered step, seed or vote
  # is a valid payload that decodes into other values.
  assert decoder_alone['tamper_header']['silently-wrong'] > 0
  # Truncation, garbage and empty kept payloads the decoders reject alone.
  for category in ('truncate', 'garbage'):
    assert decoder_alone[category]['silently-wrong'] == 0, (category, decoder_alone[category])
