"""Data for `tff_rdq`: a federated corpus in TFF's Stack Overflow format.

`prepare_corpus(source, cache_dir)` builds `cache_dir/stackoverflow.sqlite`
for a source (`'local'`: the SpamAssassin ham mails, `prepare_local_corpus`;
`'sotu'`: the State of the Union addresses, `prepare_sotu_corpus`),
`load_client_data` reads it through TFF's Stack Overflow loader,
`build_vocab` and `make_preprocess_fn` give TFF's next-word-prediction
batches, and `evaluation_dataset` gives a fixed, ordered set of evaluation
examples.
"""

from tff_rdq.experiments.data.corpus import CorpusPreparationError
from tff_rdq.experiments.data.sotu import prepare_sotu_corpus
from tff_rdq.experiments.data.sources import DEFAULT_CACHE_DIRS
from tff_rdq.experiments.data.sources import prepare_corpus
from tff_rdq.experiments.data.sources import SOURCES
from tff_rdq.experiments.data.spam_assassin import prepare_local_corpus
from tff_rdq.experiments.data.sqlite_format import write_stackoverflow_sqlite
from tff_rdq.experiments.data.stackoverflow import build_vocab
from tff_rdq.experiments.data.stackoverflow import CorpusFormatError
from tff_rdq.experiments.data.stackoverflow import CorpusNotFoundError
from tff_rdq.experiments.data.stackoverflow import count_tokens
from tff_rdq.experiments.data.stackoverflow import evaluation_dataset
from tff_rdq.experiments.data.stackoverflow import load_client_data
from tff_rdq.experiments.data.stackoverflow import make_preprocess_fn
