"""Data for `tff_rdq`: a federated corpus in TFF's Stack Overflow format.

`prepare_local_corpus` builds `stackoverflow.sqlite` from the SpamAssassin ham
mails, `load_client_data` reads it through TFF's Stack Overflow loader,
`build_vocab` and `make_preprocess_fn` give TFF's next-word-prediction
batches.
"""

from tff_rdq.data.spam_assassin import CorpusPreparationError
from tff_rdq.data.spam_assassin import prepare_local_corpus
from tff_rdq.data.sqlite_format import write_stackoverflow_sqlite
from tff_rdq.data.stackoverflow import build_vocab
from tff_rdq.data.stackoverflow import CorpusFormatError
from tff_rdq.data.stackoverflow import CorpusNotFoundError
from tff_rdq.data.stackoverflow import count_tokens
from tff_rdq.data.stackoverflow import load_client_data
from tff_rdq.data.stackoverflow import make_preprocess_fn
