"""Markdown for the reports: numbers as cells, tables, links between files."""

import math
import os
import pathlib
import re

# [text](target) and ![alt](target): the target, when it is a relative path.
_LINK = re.compile(r'(!?\[[^\]]*\]\()([^)\s]+)(\))')


def fmt(value, digits=4) -> str:
  """A table cell: `n/a` for None and NaN, floats to `digits` significant digits."""
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return 'n/a'
  return f'{value:.{digits}g}' if isinstance(value, float) else str(value)


def table(header, rows) -> str:
  """A Markdown table of `rows` (cells through `fmt`) under `header`."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def link(target, from_file) -> str:
  """The path of `target` relative to the folder of `from_file` (both from one root)."""
  return pathlib.PurePosixPath(
      os.path.relpath(target, pathlib.Path(from_file).parent)).as_posix()


def rebase_links(text: str, from_dir, to_dir) -> str:
  """`text`, written in `from_dir`, with its relative link targets made relative to `to_dir`.

  Links to URLs (`scheme:`), anchors (`#...`) and absolute paths are kept.
  """
  def rebase(match):
    target = match.group(2)
    if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.IGNORECASE) or target[0] in '#/':
      return match.group(0)
    path, hash_sign, anchor = target.partition('#')
    moved = pathlib.PurePath(os.path.relpath(pathlib.Path(from_dir) / path, to_dir))
    return f'{match.group(1)}{moved.as_posix()}{hash_sign}{anchor}{match.group(3)}'
  return _LINK.sub(rebase, text)
