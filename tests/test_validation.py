"""Tests of `tff_rdq.validation`."""

import numpy as np
import pytest

from tff_rdq import validation


def test_check_number():
  assert validation.check_number('x', 3) == 3.0 and isinstance(
      validation.check_number('x', 3), float)
  assert validation.check_number('x', np.float32(0.5)) == 0.5
  assert validation.check_number('n', 4.0, integer=True) == 4
  assert isinstance(validation.check_number('n', np.int64(4), integer=True), int)
  assert validation.check_number('p', 1.0, low=0, high=1) == 1.0
  for value, error, match in [
      (True, TypeError, 'x must be a number'), ('1', TypeError, 'x must be a number'),
      (float('nan'), ValueError, 'x must be finite'), (float('inf'), ValueError, 'finite')]:
    with pytest.raises(error, match=match):
      validation.check_number('x', value)
  with pytest.raises(TypeError, match='n must be an integer'):
    validation.check_number('n', 4.5, integer=True)
  with pytest.raises(ValueError, match=r'p must be > 0'):
    validation.check_number('p', 0.0, low=0, low_open=True)
  with pytest.raises(ValueError, match=r'p must be < 1'):
    validation.check_number('p', 1.0, high=1, high_open=True)
  with pytest.raises(ValueError, match=r'p must be >= 2'):
    validation.check_number('p', 1.0, low=2)


def test_check_int_positive_choice_bool():
  assert validation.check_int('k', np.int32(3), low=1) == 3
  with pytest.raises(TypeError, match='k must be an int'):
    validation.check_int('k', 3.0)
  with pytest.raises(TypeError, match='k must be an int'):
    validation.check_int('k', False)
  with pytest.raises(ValueError, match='k must be <= 2'):
    validation.check_int('k', 3, high=2)
  assert validation.check_positive('s', 2) == 2.0
  with pytest.raises(ValueError, match='s must be > 0'):
    validation.check_positive('s', -1)
  assert validation.check_choice('c', 'a', ('a', 'b')) == 'a'
  with pytest.raises(ValueError, match=r"c must be one of \('a', 'b'\), got 'z'"):
    validation.check_choice('c', 'z', ('a', 'b'))
  with pytest.raises(ValueError, match='c must be one of'):
    validation.check_choice('c', 1, ('a', 'b'))
  assert validation.check_bool('b', True) is True
  with pytest.raises(TypeError, match='b must be a bool'):
    validation.check_bool('b', 1)
