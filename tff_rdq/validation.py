"""Checks of configuration values, shared by every module of `tff_rdq`.

Each check returns the value in a canonical Python type or raises an error
whose message starts with the argument's name: `TypeError` for a value of the
wrong type, `ValueError` for a value of the right type that is out of range
or not among the choices. `bool` is never accepted as a number.
"""

import math
import numbers


def check_number(name, value, *, integer=False, low=None, high=None,
                 low_open=False, high_open=False):
  """`value` as a Python `float` (or `int`), checked to be finite and in range.

  Args:
    name: The argument's name, for the message.
    value: The value to check.
    integer: Return an `int`; an integral float such as a config file's `4.0`
      is accepted (use `check_int` to reject floats).
    low, high: Bounds (inclusive unless `low_open` / `high_open`), or None.

  Raises:
    TypeError: `value` is not a real number (or, when `integer`, neither an
      integer nor an integral float).
    ValueError: `value` is not finite or out of range.
  """
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    what = 'an integer' if integer else 'a number'
    raise TypeError(f'{name} must be {what}, got {value!r} ({type(value).__name__}).')
  if not math.isfinite(float(value)):
    raise ValueError(f'{name} must be finite, got {value!r}.')
  if integer:
    if not isinstance(value, numbers.Integral) and not float(value).is_integer():
      raise TypeError(f'{name} must be an integer, got {value!r}.')
    value = int(value)
  else:
    value = float(value)
  return _check_range(name, value, low, high, low_open, high_open)


def check_int(name, value, *, low=None, high=None):
  """`value` as a Python `int`; floats (even integral ones) raise `TypeError`."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(f'{name} must be an int, got {value!r} ({type(value).__name__}).')
  return _check_range(name, int(value), low, high, False, False)


def check_positive(name, value) -> float:
  """`value` as a finite Python `float` > 0."""
  return check_number(name, value, low=0, low_open=True)


def check_choice(name, value, choices):
  """`value`, checked to be one of `choices` (strings); `ValueError` otherwise."""
  if not isinstance(value, str) or value not in choices:
    raise ValueError(f'{name} must be one of {tuple(choices)}, got {value!r}.')
  return value


def check_bool(name, value) -> bool:
  """`value`, checked to be a `bool`; `TypeError` otherwise."""
  if not isinstance(value, bool):
    raise TypeError(f'{name} must be a bool, got {value!r}.')
  return value


def _check_range(name, value, low, high, low_open, high_open):
  if low is not None and (value < low or (low_open and value == low)):
    bound = f'> {low}' if low_open else f'>= {low}'
    raise ValueError(f'{name} must be {bound}, got {value!r}.')
  if high is not None and (value > high or (high_open and value == high)):
    bound = f'< {high}' if high_open else f'<= {high}'
    raise ValueError(f'{name} must be {bound}, got {value!r}.')
  return value
