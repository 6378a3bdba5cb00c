"""Executable documentation: the README's drop-in example runs, and every
relative link and image path in the README, the changelog and `docs/*.md` exists."""

import math
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE_HEADING = '## Drop-in example'

_FENCE = re.compile(r'^(```|~~~).*?^\1[^\n]*$', re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r'`[^`\n]*`')
# [text](target) and ![alt](target), with an optional "title" after the target.
_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def readme_example(text: str) -> str:
  """The first ```python block after the drop-in example heading."""
  start = text.index(EXAMPLE_HEADING)
  match = re.compile(r'^```python\n(.*?)^```', re.MULTILINE | re.DOTALL).search(text, start)
  assert match, f'no ```python block after {EXAMPLE_HEADING!r}'
  return match.group(1)


def relative_links(text: str) -> list[str]:
  """Targets of the Markdown links and images outside code, that are paths."""
  text = _INLINE_CODE.sub('', _FENCE.sub('', text))
  targets = []
  for target in _LINK.findall(text):
    if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.IGNORECASE) or target.startswith('#'):
      continue  # http(s), mailto, ...; an anchor in the same file
    targets.append(target.split('#', 1)[0])
  return targets


def documents() -> list[pathlib.Path]:
  return [REPO / 'README.md', REPO / 'CHANGELOG.md', *sorted((REPO / 'docs').glob('*.md'))]


def test_relative_links_parse():
  text = ('[a](docs/usage.md) ![b](x.png "t") [c](https://e.org) [d](#anchor)\n'
          '[e](docs/f.md#part) `[g](not/a/link.md)`\n```\n[h](in/code.md)\n```\n')
  assert relative_links(text) == ['docs/usage.md', 'x.png', 'docs/f.md']


# The reproduction summary that `tff-rdq reproduce --readme PATH` writes into a page
# has its links made relative to that page, so it is checked like the rest.
@pytest.mark.parametrize('document', documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_exist(document):
  assert document.exists(), document
  missing = [t for t in relative_links(document.read_text())
             if not (document.parent / t).exists()]
  assert not missing, f'{document.relative_to(REPO)}: missing link targets {missing}'


@pytest.mark.slow
def test_readme_example_runs(capfd):
  # `capfd`, not a redirected `sys.stdout`: TFF's worker process inherits the
  # descriptors, so the stream needs a real one.
  source = readme_example((REPO / 'README.md').read_text())
  namespace = {'__name__': '__readme_example__'}
  exec(compile(source, 'README.md (drop-in example)', 'exec'), namespace)  # pylint: disable=exec-used
  printed = capfd.readouterr().out
  rates = [float(r) for r in re.findall(r'([0-9.]+) bits/parameter', printed)]
  assert len(rates) == 2, printed
  measurements = namespace['measurements']
  for name in ('bits_per_parameter', 'uplink_bits', 'side_info_bits', 'distortion',
               'relative_distortion', 'aggregate_relative_distortion', 'sparsity',
               'clients', 'dropped_clients', 'corrupt_clients'):
    assert name in measurements, name
  bits = float(measurements['bits_per_parameter'])
  assert math.isfinite(bits) and 0 < bits < 32
  assert rates[-1] == pytest.approx(bits, abs=1e-3)
  assert measurements['clients'] == 3 and measurements['corrupt_clients'] == 0
