"""Loads a Stack Overflow-format corpus and preprocesses it for next words.

The corpus is read by TFF's own loader,
`tff.simulation.datasets.stackoverflow.load_data(cache_dir=...)`, from the file
`cache_dir/stackoverflow.sqlite` (see `tff_rdq.experiments.data.sqlite_format`). The file is
checked first, because TFF's loader would otherwise try to download the
original archive.

TFF's `load_word_counts` only accepts the original word-count archive (it
deletes and re-downloads any local substitute), so the vocabulary is built here
from the training split instead: `build_vocab` returns its most frequent
tokens.

Client datasets are turned into next-word-prediction batches by TFF's baseline
preprocessing,
`tff.simulation.baselines.stackoverflow.word_prediction_preprocessing`, with
the same token ids as TFF's baseline task: for a vocabulary of `V` words, `0` is
padding, `1..V` are the words in vocabulary order, `V + 1 .. V + B` are the `B`
out-of-vocabulary buckets, `V + B + 1` is beginning-of-sentence and `V + B + 2`
is end-of-sentence (`V + B + 3` ids in all; 10,004 for `V = 10000`, `B = 1`).
"""

import collections
from collections.abc import Callable
import os
import sqlite3
from typing import Optional, Union

import tensorflow as tf
import tensorflow_federated as tff
# TFF's baseline preprocessing; `tff.simulation.baselines.stackoverflow` does
# not re-export it.
# pylint: disable=g-direct-tensorflow-import
# pylint: enable=g-direct-tensorflow-import

from tff_rdq import validation
from tff_rdq import tff_internals
from tff_rdq.experiments.data import sqlite_format

_REQUIRED_COLUMNS = {
    'examples': frozenset(
        ['split_name', 'client_id', 'serialized_example_proto']
    ),
    'client_metadata': frozenset(['client_id', 'split_name', 'num_examples']),
}


class CorpusNotFoundError(FileNotFoundError):
  """The corpus file `stackoverflow.sqlite` does not exist."""


class CorpusFormatError(ValueError):
  """The corpus file is not a SQLite database in the Stack Overflow format."""


def database_path(cache_dir: Union[str, os.PathLike[str]]) -> str:
  """Returns the path of the corpus file in `cache_dir`."""
  return os.path.join(os.fspath(cache_dir), sqlite_format.DATABASE_FILENAME)


def check_database(path: Union[str, os.PathLike[str]]) -> None:
  """Checks that `path` is a SQLite file with the tables TFF's loader reads.

  The file is opened read-only; nothing is created or modified.

  Args:
    path: The file to check.

  Raises:
    CorpusNotFoundError: If `path` does not exist.
    CorpusFormatError: If `path` is not a readable SQLite database with the
      tables `examples` and `client_metadata` and their required columns.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CorpusNotFoundError(
        f'No corpus at {path}: run `tff-rdq prepare-data` or place a '
        f'{sqlite_format.DATABASE_FILENAME} in the Stack Overflow SQLite '
        'format there.'
    )
  uri = 'file:' + os.path.abspath(path) + '?mode=ro'
  try:
    connection = sqlite3.connect(uri, uri=True)
    try:
      tables = {
          row[0]
          for row in connection.execute(
              "SELECT name FROM sqlite_master WHERE type = 'table';"
          )
      }
      problems = []
      for table, required in _REQUIRED_COLUMNS.items():
        if table not in tables:
          problems.append(f'missing table `{table}`')
          continue
        columns = {
            row[1] for row in connection.execute(f'PRAGMA table_info({table});')
        }
        missing = sorted(required - columns)
        if missing:
          problems.append(f'table `{table}` lacks columns {missing}')
    finally:
      connection.close()
  except sqlite3.Error as e:
    raise CorpusFormatError(
        f'{path} is not a readable SQLite database ({e}); delete it and run '
        '`tff-rdq prepare-data` again.'
    ) from e
  if problems:
    raise CorpusFormatError(
        f'{path} is not in the Stack Overflow SQLite format: '
        f'{"; ".join(problems)}.'
    )


def load_client_data(
    cache_dir: Union[str, os.PathLike[str]],
) -> tuple[
    tff.simulation.datasets.ClientData,
    tff.simulation.datasets.ClientData,
    tff.simulation.datasets.ClientData,
]:
  """Loads the corpus in `cache_dir` through TFF's Stack Overflow loader.

  Args:
    cache_dir: The directory holding `stackoverflow.sqlite`.

  Returns:
    The `(train, heldout, test)` `tff.simulation.datasets.ClientData` returned
    by `tff.simulation.datasets.stackoverflow.load_data`; their datasets yield
    `OrderedDict`s with the keys `creation_date`, `score`, `tags`, `title`,
    `tokens` and `type`.

  Raises:
    CorpusNotFoundError: If `cache_dir/stackoverflow.sqlite` does not exist.
    CorpusFormatError: If that file is not in the expected format.
  """
  check_database(database_path(cache_dir))
  return tff.simulation.datasets.stackoverflow.load_data(
      cache_dir=os.fspath(cache_dir)
  )


def count_tokens(
    client_data: tff.simulation.datasets.ClientData,
    max_clients: Optional[int] = None,
) -> collections.Counter:
  """Counts the space-separated tokens of the `tokens` feature.

  Args:
    client_data: A `ClientData` as returned by `load_client_data`.
    max_clients: If given, only the first `max_clients` clients in sorted
      client id order are counted.

  Returns:
    A `collections.Counter` mapping each token (a `str`) to its number of
    occurrences.
  """
  client_ids = sorted(client_data.client_ids)
  if max_clients is not None:
    client_ids = client_ids[:max_clients]
  counts = collections.Counter()
  if not client_ids:
    return counts
  # One pipeline over all clients (as `create_tf_dataset_from_all_clients`
  # does), traced once rather than once per client.
  tokens = (
      tf.data.Dataset.from_tensor_slices(client_ids)
      .flat_map(client_data.serializable_dataset_fn)
      .map(lambda example: example['tokens'])
      .batch(4096)
  )
  for batch in tokens.as_numpy_iterator():
    for sentence in batch:
      counts.update(t for t in sentence.decode('utf-8').split(' ') if t)
  return counts


def evaluation_dataset(
    client_data: tff.simulation.datasets.ClientData,
    max_elements: Optional[int] = None,
) -> tf.data.Dataset:
  """Returns a fixed, ordered set of examples of all clients, for evaluation.

  The clients' datasets are concatenated in sorted client id order, each
  client's examples in their stored order (for the SQLite corpora, the order
  in which they were written), and the first `max_elements` examples are
  taken. Nothing is shuffled, so every call, in any process, gives the same
  elements in the same order. (TFF's
  `ClientData.create_tf_dataset_from_all_clients()` shuffles the client ids
  with a fresh random seed, so that `.take(n)` of it is a different subset
  in every process.)

  Note that with a `max_elements` below the split's size, the subset is the
  first clients in id order: for the `sotu` corpus, whose ids start with the
  year, the oldest addresses.

  Args:
    client_data: A `ClientData`, e.g. the test split from `load_client_data`.
    max_elements: If given, a positive integer, the maximum number of
      examples; `None` takes all.

  Returns:
    A `tf.data.Dataset` of the client datasets' elements (for the corpora
    here, the `OrderedDict`s yielded by `load_client_data`'s datasets).

  Raises:
    ValueError: If `max_elements` is not positive or `client_data` has no
      clients.
  """
  if max_elements is not None:
    if isinstance(max_elements, bool) or not isinstance(max_elements, int):
      raise TypeError(
          f'max_elements must be an int or None, got {type(max_elements)}.'
      )
    if max_elements < 1:
      raise ValueError(f'max_elements must be positive, got {max_elements}.')
  client_ids = sorted(client_data.client_ids)
  if not client_ids:
    raise ValueError('client_data has no clients.')
  # `flat_map` keeps the order: each client's elements, clients in sequence.
  dataset = tf.data.Dataset.from_tensor_slices(client_ids).flat_map(
      client_data.serializable_dataset_fn
  )
  if max_elements is not None:
    dataset = dataset.take(max_elements)
  return dataset


def build_vocab(
    train_client_data: tff.simulation.datasets.ClientData,
    vocab_size: int,
    max_clients: Optional[int] = None,
) -> list[str]:
  """Returns the `vocab_size` most frequent tokens of the training split.

  Tokens are ranked by their number of occurrences in the `tokens` feature,
  most frequent first; tokens with equal counts are ordered by their string
  value, so the result does not depend on iteration order.

  Args:
    train_client_data: The training `ClientData` from `load_client_data`.
    vocab_size: A positive integer, the maximum vocabulary size. Fewer words
      are returned when the split has fewer distinct tokens.
    max_clients: If given, only the first `max_clients` clients in sorted
      client id order are counted.

  Returns:
    A list of at most `vocab_size` distinct `str` tokens.

  Raises:
    ValueError: If `vocab_size` is not positive.
  """
  if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
    raise TypeError(f'vocab_size must be an int, got {type(vocab_size)}.')
  if vocab_size < 1:
    raise ValueError(f'vocab_size must be positive, got {vocab_size}.')
  counts = count_tokens(train_client_data, max_clients)
  ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return [token for token, _ in ranked[:vocab_size]]


def _check_preprocess_args(vocab, *, batch_size, sequence_length, num_epochs, max_elements,
                           num_out_of_vocab_buckets) -> None:
  """`ValueError` (or `TypeError`) for arguments `make_preprocess_fn` refuses."""
  if not vocab:
    raise ValueError('vocab must be non-empty.')
  if len(set(vocab)) != len(vocab):
    raise ValueError('vocab must not contain duplicate tokens.')
  for name, value in (('batch_size', batch_size), ('num_epochs', num_epochs),
                      ('sequence_length', sequence_length),
                      ('num_out_of_vocab_buckets', num_out_of_vocab_buckets)):
    validation.check_int(name, value, low=1)
  if max_elements is not None:
    validation.check_int('max_elements', max_elements, low=1)


def make_preprocess_fn(
    vocab: list[str],
    *,
    batch_size: int,
    sequence_length: int = 20,
    num_epochs: int = 1,
    max_elements: Optional[int] = None,
    shuffle_buffer_size: Optional[int] = None,
    seed: Optional[int] = None,
    num_out_of_vocab_buckets: int = 1,
) -> Callable[[tf.data.Dataset], tf.data.Dataset]:
  """Builds TFF's Stack Overflow next-word-prediction preprocessing.

  This is the pipeline of `tff.simulation.baselines.stackoverflow.
  word_prediction_preprocessing.create_preprocess_fn` (built from that
  module's `build_to_ids_fn` and `split_input_target`; the same elements,
  tested): a client dataset is shuffled, repeated `num_epochs`
  times, cut to `max_elements` examples, and each example's `tokens` is split
  on spaces, truncated to `sequence_length` words and mapped to ids, with a
  beginning-of-sentence id in front and an end-of-sentence id after it when it
  has fewer than `sequence_length` words. The id sequences are padded with `0`
  to `sequence_length + 1`, batched, and split into inputs `x = ids[:, :-1]`
  and targets `y = ids[:, 1:]`. Ids are as described in the module docstring.

  TFF's function shuffles without a seed. When `seed` is given, the dataset is
  shuffled here with `seed` (same buffer size, at the same point of the
  pipeline) and TFF's own shuffle is turned off, so the pipeline is otherwise
  identical.

  Args:
    vocab: The vocabulary, a non-empty list of distinct `str` tokens.
    batch_size: A positive integer, the number of sequences per batch.
    sequence_length: A positive integer, the length of `x` and `y`.
    num_epochs: A positive integer, the number of passes over the dataset.
    max_elements: If given, a positive integer, the maximum number of examples
      taken after repeating.
    shuffle_buffer_size: If given, a positive integer; `1` turns shuffling off.
      `None` means TFF's default for Stack Overflow (1000).
    seed: If given, an integer seed for shuffling.
    num_out_of_vocab_buckets: A positive integer, the number of ids that
      out-of-vocabulary tokens are hashed into.

  Returns:
    A function mapping a client's `tf.data.Dataset` (of the `OrderedDict`s
    yielded by `load_client_data`'s datasets) to a dataset of `(x, y)` pairs of
    `int64` tensors of shape `[batch, sequence_length]`.
  """
  _check_preprocess_args(vocab, batch_size=batch_size, sequence_length=sequence_length,
                         num_epochs=num_epochs, max_elements=max_elements,
                         num_out_of_vocab_buckets=num_out_of_vocab_buckets)
  if shuffle_buffer_size is None:
    shuffle_buffer_size = tff_internals.stackoverflow_constants.DEFAULT_SHUFFLE_BUFFER_SIZE
  seeded_shuffle = seed is not None and shuffle_buffer_size > 1
  # TFF's pipeline with its own `build_to_ids_fn` and `split_input_target`,
  # built once here and traced once per element structure: TFF's function
  # builds the table and traces both functions again for every client dataset,
  # which cost about 0.15 s per client per round.
  to_ids = tf.function(tff_internals.word_prediction_preprocessing.build_to_ids_fn(
      list(vocab), max_sequence_length=sequence_length,
      num_out_of_vocab_buckets=num_out_of_vocab_buckets), autograph=False)
  split = tf.function(tff_internals.word_prediction_preprocessing.split_input_target, autograph=False)
  autotune = tf.data.experimental.AUTOTUNE

  def preprocess_fn(dataset: tf.data.Dataset) -> tf.data.Dataset:
    if seeded_shuffle:
      # One fixed order for every iteration: the worker and eager Python then
      # see the same batches.
      dataset = dataset.shuffle(shuffle_buffer_size, seed=seed,
                                reshuffle_each_iteration=False)
    elif shuffle_buffer_size > 1:
      dataset = dataset.shuffle(shuffle_buffer_size)
    if num_epochs > 1:
      dataset = dataset.repeat(num_epochs)
    if max_elements is not None:
      dataset = dataset.take(max_elements)
    dataset = dataset.map(to_ids, num_parallel_calls=autotune)
    return dataset.padded_batch(batch_size, padded_shapes=[sequence_length + 1]).map(
        split, num_parallel_calls=autotune)

  return preprocess_fn

