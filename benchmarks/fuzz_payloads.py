"""Fuzz: corrupted client messages through the server's verification and decoding.

For each codec (`elias_gamma`, `rans`, `run_length_rans`) this builds valid
client messages from small random updates exactly as a round does:
`QuantizeEncodeCompressor.encode` (dithered rounding, so every tensor's
payload starts with a float32 step and an int32 seed; a `GlobalVote` step
control, so tensor 0 also carries a uint8 vote) and `compressed.seal` (status
byte, checksum, weight). It corrupts them (`CATEGORIES`) and passes each
through `compressed.unseal`, the server's checksum check and decoding (in a
`tf.function`). Every case is one of (judged twice: by `valid`, the server's
verdict with the checksum, and by `decodable`, what the decoders alone would
accept without it)

  rejected        `unseal` says the message is invalid (the round would stop)
  decoded-exact   valid, and the status, weight, decoded values and step-control
                  values equal those of the uncorrupted message exactly
  silently-wrong  valid, but something differs (a wrong sum)
  crashed         an exception (the round would fail without the message)

and a third time by the server's `accumulate` with `on_corrupt='drop'`:
rejected when the client is counted in `corrupt_clients` and adds nothing
to the sums, decoded-exact when it adds exactly what the uncorrupted
message adds. The drop counts must equal the checksum counts.

With the checksum (the default) no case may be silently wrong, and the drop
counts must equal the checksum counts; the exit status is 1 otherwise. The decoder-alone counts show what the checksum adds
(header tampering, for one, goes through the decoders).
`tests/test_payload_fuzz.py` runs a small seeded sample of the same.

  python -m uv run python benchmarks/fuzz_payloads.py --cases 10000
"""

import argparse
import collections
import os
import struct
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position
import tensorflow_federated as tff  # pylint: disable=wrong-import-position

from tff_rdq.aggregators import compressed  # pylint: disable=wrong-import-position
from tff_rdq.aggregators import quantize_encode  # pylint: disable=wrong-import-position
from tff_rdq.aggregators import step_control  # pylint: disable=wrong-import-position

CODECS = ('elias_gamma', 'rans', 'run_length_rans')
SIZES = [100, 20]
OUTCOMES = ('rejected', 'decoded-exact', 'silently-wrong', 'crashed')


def make_compressor(codec: str) -> quantize_encode.QuantizeEncodeCompressor:
  """Dithered rounding (step and seed in every header), a vote in tensor 0's."""
  return quantize_encode.QuantizeEncodeCompressor(
      rounding='dithered', codec=codec,
      step_control=step_control.GlobalVote(1e4, 0.02, num_candidates=3),
      extra_bits=compressed.overhead_bits(weighted=True))


Message = collections.namedtuple('Message', 'streams dropped weight checksum')


def base_messages(compressor, seed: int = 0) -> list[Message]:
  """Valid messages of a few updates: sparse, dense, large integers (escapes)."""
  rng = np.random.default_rng(seed)
  updates = [
      [rng.laplace(size=n) * 0.01 for n in SIZES],  # Mostly zeros at step 0.02.
      [rng.laplace(size=n) * 0.3 for n in SIZES],  # Dense.
      [rng.laplace(size=n) * 50.0 for n in SIZES],  # Integers in the thousands.
      [np.where(rng.random(n) < 0.05, rng.normal(size=n), 0.0) for n in SIZES],
  ]
  messages = []
  for i, update in enumerate(updates):
    flat = [tf.constant(v, tf.float32) for v in update]
    params = collections.OrderedDict(step=tf.constant(0.02, tf.float32),
                                     nonce=tf.constant(i, tf.int64))
    streams, _ = compressor.encode(flat, params)
    weight = np.float32(1.0 + i)
    sealed = compressed.seal(streams, False, weight)
    messages.append(Message([s.numpy() for s in streams], False, weight,
                            int(sealed['checksum'])))
  return messages


def make_verifier(compressor):
  """`unseal` as a `tf.function`: `(valid, decodable, values, payload values)`."""
  num = len(SIZES)

  @tf.function(input_signature=[
      tf.TensorSpec([num], tf.string), tf.TensorSpec([], tf.bool),
      tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
  def verify(streams, dropped, weight, checksum):
    message = collections.OrderedDict(
        streams=tf.unstack(streams, num), dropped=dropped, weight=weight, checksum=checksum)
    opened = compressed.unseal(compressor, message, SIZES, weighted=True, integrity=True)
    decoded = opened['decoded']
    return opened['valid'], opened['decodable'], decoded['values'], decoded['payload_values']

  def run(message: Message):
    valid, decodable, values, payload = verify(
        tf.constant(message.streams, tf.string), tf.constant(message.dropped),
        tf.constant(message.weight, tf.float32), tf.constant(message.checksum, tf.int32))
    return (bool(valid), bool(decodable), [v.numpy() for v in values],
            {k: float(v) for k, v in payload.items()})

  return run


def make_dropper(compressor):
  """The server's `accumulate` with `on_corrupt='drop'`, as a `tf.function`:
  `(corrupt_clients, clients, value_sum, weight_sum)` after one message."""
  value_type = tff.types.to_type([tff.TensorType(np.float32, [n]) for n in SIZES])
  # pylint: disable-next=protected-access
  plan = compressed._Plan(compressor, value_type, tff.TensorType(np.float32), True, 'drop', None)
  accumulate = compressed._accumulate_fn(plan)  # pylint: disable=protected-access
  zero = compressed._zero_fn(plan)  # pylint: disable=protected-access
  num = len(SIZES)

  @tf.function(input_signature=[
      tf.TensorSpec([num], tf.string), tf.TensorSpec([], tf.bool),
      tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
  def drop(streams, dropped, weight, checksum):
    f64 = tf.constant(0.0, tf.float64)
    client = collections.OrderedDict(
        streams=tf.unstack(streams, num), dropped=dropped, checksum=checksum, weight=weight,
        diagnostics=collections.OrderedDict((n, f64) for n in compressor.diagnostic_names),
        squared_norm=f64, update=[tf.zeros([n], tf.float32) for n in SIZES])
    acc = accumulate(zero(), client)
    return acc['corrupt_clients'], acc['clients'], acc['value_sum'], acc['weight_sum']

  def run(message: Message):
    corrupt, clients, value_sum, weight_sum = drop(
        tf.constant(message.streams, tf.string), tf.constant(message.dropped),
        tf.constant(message.weight, tf.float32), tf.constant(message.checksum, tf.int32))
    return int(corrupt), int(clients), [v.numpy() for v in value_sum], float(weight_sum)

  return run


# ------------------------------------------------------------- corruptions

def _flip_bits(data: bytes, positions) -> bytes:
  out = bytearray(data)
  for p in positions:
    out[p // 8] ^= 1 << (p % 8)
  return bytes(out)


def _wire(m: Message) -> bytes:
  """The message's fields as one byte string (for flips anywhere)."""
  head = struct.pack('<?if', m.dropped, m.checksum, m.weight)
  return head + b''.join(m.streams)


def _from_wire(data: bytes, like: Message) -> Message:
  dropped_byte = data[0]
  checksum, = struct.unpack('<i', data[1:5])
  weight, = struct.unpack('<f', data[5:9])
  streams, offset = [], 9
  for s in like.streams:
    streams.append(data[offset:offset + len(s)])
    offset += len(s)
  # A status byte other than 0/1 is a corrupted status: read as "dropped".
  return Message(streams, dropped_byte != 0, np.float32(weight), checksum)


def flip_any(rng, m, compressor):
  del compressor
  data = _wire(m)
  count = int(rng.integers(1, 9))
  return _from_wire(_flip_bits(data, rng.choice(8 * len(data), count, replace=False)), m)


def flip_header(rng, m, compressor):
  i = int(rng.integers(len(m.streams)))
  header = compressor.header_bytes(i)
  streams = list(m.streams)
  positions = rng.choice(8 * min(header, len(streams[i])), int(rng.integers(1, 3)), replace=False)
  streams[i] = _flip_bits(streams[i], positions)
  return m._replace(streams=streams)


def flip_body(rng, m, compressor):
  i = int(rng.integers(len(m.streams)))
  header = compressor.header_bytes(i)
  streams = list(m.streams)
  body_bits = 8 * (len(streams[i]) - header)
  if body_bits <= 0:
    return flip_header(rng, m, compressor)
  count = min(int(rng.integers(1, 9)), body_bits)
  positions = 8 * header + rng.choice(body_bits, count, replace=False)
  streams[i] = _flip_bits(streams[i], positions)
  return m._replace(streams=streams)


def truncate(rng, m, compressor):
  del compressor
  i = int(rng.integers(len(m.streams)))
  streams = list(m.streams)
  streams[i] = streams[i][:int(rng.integers(0, len(streams[i])))]
  return m._replace(streams=streams)


def extend(rng, m, compressor):
  del compressor
  i = int(rng.integers(len(m.streams)))
  streams = list(m.streams)
  extra = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
  streams[i] = streams[i] + extra
  return m._replace(streams=streams)


def garbage(rng, m, compressor):
  del compressor
  i = int(rng.integers(len(m.streams)))
  streams = list(m.streams)
  length = int(rng.integers(0, 2 * len(streams[i]) + 2))
  streams[i] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
  return m._replace(streams=streams)


def tamper_header(rng, m, compressor):
  """Another valid-looking header value: step x2, /2 or the next float32,
  another seed, another vote."""
  i = int(rng.integers(len(m.streams)))
  data = bytearray(m.streams[i])
  choice = int(rng.integers(4 if i == 0 else 3))
  if choice == 0:
    step = np.frombuffer(bytes(data[:4]), np.float32)[0]
    new = [step * 2, step / 2, np.nextafter(step, np.float32(np.inf))][int(rng.integers(3))]
    data[:4] = np.float32(new).tobytes()
  elif choice in (1, 2):
    seed = np.frombuffer(bytes(data[4:8]), np.int32)[0]
    data[4:8] = np.int32(seed ^ int(rng.integers(1, 2**31))).tobytes()
  else:
    offset = compressor.header_size
    data[offset] = (data[offset] + int(rng.integers(1, 3))) % 3  # Another valid vote.
  streams = list(m.streams)
  streams[i] = bytes(data)
  return m._replace(streams=streams)


def move_bytes(rng, m, compressor):
  del compressor
  a, b = (0, 1) if rng.random() < 0.5 else (1, 0)
  streams = list(m.streams)
  k = int(rng.integers(1, min(8, len(streams[a])) + 1))
  if a == 0:
    streams[0], streams[1] = streams[0][:-k], streams[0][-k:] + streams[1]
  else:
    streams[1], streams[0] = streams[1][k:], streams[0] + streams[1][:k]
  return m._replace(streams=streams)


def empty(rng, m, compressor):
  del compressor
  dropped = bool(rng.random() < 0.5)  # Empty streams, as kept or as dropped.
  return m._replace(streams=[b''] * len(m.streams), dropped=dropped)


def status_or_weight(rng, m, compressor):
  del compressor
  if rng.random() < 0.5:
    return m._replace(dropped=not m.dropped)
  return m._replace(weight=np.float32(m.weight * [2.0, 0.5, -1.0][int(rng.integers(3))]))


CATEGORIES = collections.OrderedDict(
    flip_any=flip_any, flip_header=flip_header, flip_body=flip_body, truncate=truncate,
    extend=extend, garbage=garbage, tamper_header=tamper_header, move_bytes=move_bytes,
    empty=empty, status_or_weight=status_or_weight)


# ------------------------------------------------------------------ running

# Judged by `valid`, by `decodable`, or by what `accumulate` with
# `on_corrupt='drop'` added and counted.
MODES = ('checksum', 'decoder', 'drop')


def _drop_outcome(dropper, corrupted: Message, original: Message, exact_values) -> str:
  """'rejected' if counted in `corrupt_clients` with nothing added to the sums,
  'decoded-exact' if added as the original message would be."""
  try:
    corrupt, clients, value_sum, weight_sum = dropper(corrupted)
  except Exception:  # pylint: disable=broad-except
    return 'crashed'
  if corrupt == 1 and clients == 0 and weight_sum == 0 and not any(v.any() for v in value_sum):
    return 'rejected'
  weight = np.float32(original.weight)
  same = (corrupt == 0 and clients == 1 and np.float32(weight_sum) == weight
          and all(np.array_equal(s, weight * v) for s, v in zip(value_sum, exact_values)))
  return 'decoded-exact' if same else 'silently-wrong'


def outcomes(verify, dropper, corrupted: Message, original: Message, expected) -> dict:
  """`{mode: outcome}` of one corrupted message (module doc)."""
  drop = _drop_outcome(dropper, corrupted, original, expected[0])
  try:
    valid, decodable, values, payload = verify(corrupted)
  except Exception:  # pylint: disable=broad-except
    return {'checksum': 'crashed', 'decoder': 'crashed', 'drop': drop}
  exact_values, exact_payload = expected
  same = (corrupted.dropped == original.dropped
          and np.float32(corrupted.weight).tobytes() == np.float32(original.weight).tobytes()
          and all(np.array_equal(a, b) for a, b in zip(values, exact_values))
          and payload == exact_payload)
  accepted = 'decoded-exact' if same else 'silently-wrong'
  return {'checksum': accepted if valid else 'rejected',
          'decoder': accepted if decodable else 'rejected', 'drop': drop}


def fuzz(codec: str, cases: int, seed: int = 0, categories=None) -> dict:
  """`{mode: {category: Counter(outcome)}}` for `cases` corrupted messages of `codec`."""
  categories = list(categories or CATEGORIES)
  compressor = make_compressor(codec)
  messages = base_messages(compressor, seed)
  verify = make_verifier(compressor)
  dropper = make_dropper(compressor)
  expected = []
  for m in messages:  # The uncorrupted messages are valid: the reference.
    valid, _, values, payload = verify(m)
    if not valid:
      raise AssertionError(f'{codec}: an uncorrupted message was rejected.')
    expected.append((values, payload))
  rng = np.random.default_rng(seed + 1)
  counts = {mode: {c: collections.Counter() for c in categories} for mode in MODES}
  for case in range(cases):
    category = categories[case % len(categories)]
    index = int(rng.integers(len(messages)))
    corrupted = CATEGORIES[category](rng, messages[index], compressor)
    results = outcomes(verify, dropper, corrupted, messages[index], expected[index])
    for mode, result in results.items():
      counts[mode][category][result] += 1
  return counts


def print_counts(title: str, counts: dict):
  print(f'\n{title}, {sum(sum(c.values()) for c in counts.values())} cases')
  print(f'  {"category":<18}' + ''.join(f'{o:>16}' for o in OUTCOMES))
  total = collections.Counter()
  for category, c in counts.items():
    total.update(c)
    print(f'  {category:<18}' + ''.join(f'{c[o]:>16}' for o in OUTCOMES))
  print(f'  {"total":<18}' + ''.join(f'{total[o]:>16}' for o in OUTCOMES))
  return total


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--cases', type=int, default=10_000, help='cases per codec')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--codecs', nargs='+', default=list(CODECS), choices=CODECS)
  args = parser.parse_args(argv)
  bad = 0
  for codec in args.codecs:
    start = time.time()
    counts = fuzz(codec, args.cases, args.seed)
    print(f'\n=== {codec}: {args.cases} cases, seed {args.seed}, {time.time() - start:.0f} s')
    total = print_counts(f'{codec}, server with checksum (compressed.unseal: valid)',
                         counts['checksum'])
    print_counts(f'{codec}, decoder alone, no checksum (unseal: decodable)', counts['decoder'])
    dropped = print_counts(f"{codec}, accumulate with on_corrupt='drop' (rejected = counted in"
                           ' corrupt_clients, nothing added)', counts['drop'])
    bad += total['silently-wrong'] + total['crashed']
    # Every case the server rejects is dropped and counted, and nothing else is.
    bad += sum(counts['drop'][c] != counts['checksum'][c] for c in counts['drop'])
  return 1 if bad else 0


if __name__ == '__main__':
  sys.exit(main())
