"""Writes client data in the SQLite format of TFF's Stack Overflow dataset.

`tff.simulation.datasets.stackoverflow.load_data(cache_dir=D)` reads the file
`D/stackoverflow.sqlite` (and downloads nothing when that file exists) through
`tff.simulation.datasets.SqlClientData`. This module writes a file in exactly
that format, so that any federated corpus can be read by TFF's own loader:

  *   Table `examples(split_name TEXT NOT NULL, client_id TEXT NOT NULL,
      serialized_example_proto BLOB NOT NULL)`: one row per example.
  *   Table `client_metadata(client_id TEXT NOT NULL, split_name TEXT NOT NULL,
      num_examples INTEGER NOT NULL)`: one row per (client, split) pair that
      has examples.

The table definitions are those of TFF's own writer,
`tff.simulation.datasets.save_to_sql_client_data`. An index on
`examples(client_id, split_name)` is added; readers do not need it, but
without it every client dataset scans the whole table. `split_name` is one of
`'train'`, `'heldout'` and `'test'` (the names `load_data` asks for); a client
may appear in several splits. Each `serialized_example_proto` is a serialized
`tf.train.Example` with six scalar features, all of which `load_data` requires:

  *   `creation_date` (bytes): UTC date and time, e.g. `2002-08-22 12:36:23
      UTC`.
  *   `score` (int64).
  *   `tags` (bytes): tags separated by `'|'`.
  *   `title` (bytes).
  *   `tokens` (bytes): lower-case tokens separated by single spaces.
  *   `type` (bytes): `'question'` or `'answer'`.

Rows are inserted in the order of the records, and `SqlClientData` returns a
client's examples in that order.
"""

from collections.abc import Iterable, Mapping
import os
import sqlite3
import tempfile
from typing import Any, Union

import tensorflow as tf

DATABASE_FILENAME = 'stackoverflow.sqlite'
SPLIT_NAMES = ('train', 'heldout', 'test')
BYTES_FEATURES = ('creation_date', 'tags', 'title', 'tokens', 'type')
INT64_FEATURES = ('score',)
FEATURE_NAMES = ('creation_date', 'score', 'tags', 'title', 'tokens', 'type')
RECORD_KEYS = ('split_name', 'client_id') + FEATURE_NAMES

_CREATE_TABLES = (
    """CREATE TABLE examples (
       split_name TEXT NOT NULL,
       client_id TEXT NOT NULL,
       serialized_example_proto BLOB NOT NULL);""",
    """CREATE TABLE client_metadata (
       client_id TEXT NOT NULL,
       split_name TEXT NOT NULL,
       num_examples INTEGER NOT NULL);""",
)
# Not part of the format: `SqlClientData` selects a client's examples with
# `WHERE client_id = ... and split_name = ...`, which without this index scans
# the whole table for every client dataset.
_CREATE_INDEX = (
    'CREATE INDEX examples_client_id_split_name '
    'ON examples (client_id, split_name);'
)


def _as_bytes(value: Union[str, bytes], name: str) -> bytes:
  if isinstance(value, bytes):
    return value
  if isinstance(value, str):
    return value.encode('utf-8')
  raise TypeError(f'Feature `{name}` must be str or bytes, got {type(value)}.')


def serialize_example(features: Mapping[str, Any]) -> bytes:
  """Serializes one example's six features into a `tf.train.Example` proto.

  Args:
    features: A mapping with the keys `creation_date`, `tags`, `title`,
      `tokens`, `type` (`str` or `bytes`; `str` is encoded as UTF-8) and
      `score` (an `int`). Other keys are ignored.

  Returns:
    The serialized `tf.train.Example`, as `bytes`.

  Raises:
    KeyError: If a feature is missing.
    TypeError: If a feature has the wrong type.
  """
  feature = {}
  for name in BYTES_FEATURES:
    feature[name] = tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[_as_bytes(features[name], name)])
    )
  score = features['score']
  if isinstance(score, bool) or not isinstance(score, int):
    raise TypeError(f'Feature `score` must be an int, got {type(score)}.')
  feature['score'] = tf.train.Feature(
      int64_list=tf.train.Int64List(value=[score])
  )
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString()


def _check_record(record: Mapping[str, Any]) -> tuple[str, str]:
  """Returns the `(split_name, client_id)` of a record after checking them."""
  missing = [key for key in RECORD_KEYS if key not in record]
  if missing:
    raise KeyError(f'Record is missing the keys {missing}.')
  split_name = record['split_name']
  if split_name not in SPLIT_NAMES:
    raise ValueError(
        f'split_name must be one of {SPLIT_NAMES}, got {split_name!r}.'
    )
  client_id = record['client_id']
  # `SqlClientData` pastes client ids into its SQL queries unescaped.
  if not isinstance(client_id, str) or not client_id or "'" in client_id:
    raise ValueError(
        'client_id must be a non-empty str without single quotes, got '
        f'{client_id!r}.'
    )
  return split_name, client_id


def write_stackoverflow_sqlite(
    path: Union[str, os.PathLike[str]],
    records: Iterable[Mapping[str, Any]],
    allow_overwrite: bool = False,
) -> dict[str, dict[str, int]]:
  """Writes records to a SQLite file that TFF's Stack Overflow loader reads.

  The file is built under a temporary name in the directory of `path` and then
  renamed to `path`, so `path` never holds a partial file.

  Args:
    path: Destination file. To be read by
      `tff.simulation.datasets.stackoverflow.load_data(cache_dir=D)` it must be
      `D/stackoverflow.sqlite`.
    records: An iterable of mappings, one per example, each with the keys
      `split_name` (`'train'`, `'heldout'` or `'test'`), `client_id` (a
      non-empty `str` without `'`) and the six features accepted by
      `serialize_example`. Examples are stored in this order.
    allow_overwrite: Whether an existing file at `path` may be replaced.

  Returns:
    A dict mapping each split name in `SPLIT_NAMES` to a dict with the keys
    `clients` (the number of clients with examples in that split) and
    `examples` (the number of examples).

  Raises:
    FileExistsError: If `path` exists and `allow_overwrite` is `False`.
    KeyError, TypeError, ValueError: If a record is malformed; nothing is
      written then.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not allow_overwrite:
    raise FileExistsError(f'File already exists at {path}.')
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp_path = tempfile.mkstemp(
      prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory
  )
  os.close(fd)
  num_examples = {}  # (client_id, split_name) -> count, in first-seen order.
  try:
    connection = sqlite3.connect(tmp_path)
    try:
      for query in _CREATE_TABLES:
        connection.execute(query)
      for record in records:
        split_name, client_id = _check_record(record)
        connection.execute(
            'INSERT INTO examples '
            '(split_name, client_id, serialized_example_proto) '
            'VALUES (?, ?, ?);',
            (split_name, client_id, serialize_example(record)),
        )
        key = (client_id, split_name)
        num_examples[key] = num_examples.get(key, 0) + 1
      connection.execute(_CREATE_INDEX)
      connection.executemany(
          'INSERT INTO client_metadata (client_id, split_name, num_examples) '
          'VALUES (?, ?, ?);',
          [(c, s, n) for (c, s), n in num_examples.items()],
      )
      connection.commit()
    finally:
      connection.close()
    os.chmod(tmp_path, 0o644)
    os.replace(tmp_path, path)
  except BaseException:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)
    raise
  summary = {name: {'clients': 0, 'examples': 0} for name in SPLIT_NAMES}
  for (_, split_name), count in num_examples.items():
    summary[split_name]['clients'] += 1
    summary[split_name]['examples'] += count
  return summary
