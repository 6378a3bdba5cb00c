"""One entry point for the corpora: `prepare_corpus(source, cache_dir)`.

Sources:

  *   `'local'`: the SpamAssassin ham mails (`tff_rdq.experiments.data.spam_assassin`),
      built on first use; default directory `data/stackoverflow_local`.
  *   `'sotu'`: the State of the Union addresses (`tff_rdq.experiments.data.sotu`), built
      on first use; default directory `data/sotu`.
  *   `'stackoverflow'`: TFF's own Stack Overflow data. Nothing is built; a
      `stackoverflow.sqlite` must already be in the cache directory (TFF's
      loader would otherwise download it, which cannot be done here).

Every source ends as `cache_dir/stackoverflow.sqlite`, read by
`tff_rdq.experiments.data.load_client_data(cache_dir)`.
"""

from collections.abc import Callable
import os
import pathlib
from typing import Optional, Union

from tff_rdq.experiments.data import sotu
from tff_rdq.experiments.data import spam_assassin
from tff_rdq.experiments.data import sqlite_format

_BUILDERS: dict[str, Callable[[Union[str, os.PathLike[str]]], pathlib.Path]] = {
    'local': spam_assassin.prepare_local_corpus,
    'sotu': sotu.prepare_sotu_corpus,
}
SOURCES = ('local', 'sotu', 'stackoverflow')
BUILT_SOURCES = tuple(_BUILDERS)
DEFAULT_CACHE_DIRS = {
    'local': 'data/stackoverflow_local',
    'sotu': sotu.DEFAULT_CACHE_DIR,
    'stackoverflow': 'data/stackoverflow',
}


def prepare_corpus(
    source: str, cache_dir: Optional[Union[str, os.PathLike[str]]] = None
) -> pathlib.Path:
  """Builds the corpus of `source` in `cache_dir` unless it is there already.

  Args:
    source: One of `SOURCES`.
    cache_dir: The corpus directory; `DEFAULT_CACHE_DIRS[source]` if `None`.

  Returns:
    The path of `cache_dir/stackoverflow.sqlite`. For `'stackoverflow'`
    nothing is built or checked; `load_client_data` checks the file.

  Raises:
    ValueError: If `source` is not one of `SOURCES`.
    CorpusPreparationError: If a corpus cannot be built, or `cache_dir`
      holds a corpus built from another source.
  """
  if source not in SOURCES:
    raise ValueError(
        f'Unknown corpus source {source!r}; expected one of {list(SOURCES)}.'
    )
  if cache_dir is None:
    cache_dir = DEFAULT_CACHE_DIRS[source]
  if source in _BUILDERS:
    return _BUILDERS[source](cache_dir)
  return pathlib.Path(cache_dir) / sqlite_format.DATABASE_FILENAME
