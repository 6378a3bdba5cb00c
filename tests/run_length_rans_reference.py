"""A plain numpy/Python reference encoder of `tff_rdq.codecs.run_length_rans`.

Written independently of the TensorFlow encoder, from the format of that
module's docstring: sequential bit writing, one rANS lane at a time in Python
integers, and a sequential Elias-gamma writer for the fallback. Tests check
that the TensorFlow encoder's bytes equal `encode(values)` exactly. Slow
(Python loops over symbols): for tests, not for real updates.
"""

import numpy as np

from tff_rdq.codecs import run_length_rans as rl

PRECISION = 12
M = 1 << PRECISION
L = 1 << 20
DIRECT = 4
ALPHABET = 35
CARRY = 35


def bit_length(x):
  x = np.asarray(x, np.int64)
  return np.where(x > 0, np.frexp(x.astype(np.float64))[1], 0).astype(np.int64)


class BitWriter:
  """Appends LSB-first fields; `bytes()` pads with zero bits to a whole byte."""

  def __init__(self):
    self.bits = []

  def write(self, value, length):
    value, length = int(value), int(length)
    assert 0 <= value < (1 << max(length, 0)) or (value == 0 and length == 0), (value, length)
    self.bits.extend((value >> j) & 1 for j in range(length))

  def pad(self):
    self.bits.extend([0] * (-len(self.bits) % 8))

  def bytes(self):
    self.pad()
    bits = np.array(self.bits, np.uint8).reshape(-1, 8)
    return bytes(np.packbits(bits, axis=1, bitorder='little').reshape(-1).tolist())


def class_symbol(x):
  """`(symbol, mantissa, mantissa bits)` of one non-negative integer."""
  x = int(x)
  if x < DIRECT:
    return x, 0, 0
  u = x - (DIRECT - 1)
  e = u.bit_length() - 1
  return DIRECT + e, u - (1 << e), e


def quantile_thresholds(hist, g):
  cum = np.cumsum(hist)
  total = int(cum[-1])
  return np.array([int(np.sum(cum < (k * total + g - 1) // g)) + 1
                   for k in range(1, g)], np.int64)


def context_of_symbol(thresholds, size=ALPHABET + 1):
  p = np.arange(size)
  return np.sum(np.asarray(thresholds)[None, :] <= p[:, None], axis=1).astype(np.int64)


def table_precision(count, distinct):
  if count == 0:
    return 0
  half = (int(max(count - 1, 0)).bit_length() + 1) // 2 + 2
  need = int(max(distinct - 1, 0)).bit_length()
  return max(1, min(max(half, need), PRECISION))


def quantize(counts, precision):
  counts = np.asarray(counts, np.int64)
  if precision == 0:
    return np.zeros_like(counts)
  present = counts > 0
  k, total, scale = int(present.sum()), int(counts.sum()), 1 << precision
  f = np.where(present, 1 + counts * (scale - k) // total, 0)
  top = int(np.argmax(counts))  # numpy returns the first largest
  f[top] += scale - int(f.sum())
  return f


def tables(counts2d):
  """`(T [rows], f [rows, A])` of `[rows, A]` counts."""
  precision = np.array([table_precision(int(c.sum()), int((c > 0).sum()))
                        for c in counts2d], np.int64)
  freqs = np.stack([quantize(c, t) for c, t in zip(counts2d, precision)])
  return precision, freqs


def cost(counts2d, precision, freqs, num_contexts, alphabet):
  """`(coded cost in 2**-16 bits, table bits)`, as `choose_model` counts them."""
  coded = 0
  bits = 4 * num_contexts
  for c, t, f in zip(counts2d, precision, freqs):
    if t == 0:
      continue
    present = c > 0
    coded += int(np.sum(c[present] * ((int(t) << 16) - rl.LOG2_TABLE[f[present]])))
    fp = f[f > 0]
    bits += alphabet + int(np.sum(int(t).bit_length() + bit_length(fp) - 1))
  return coded, bits


def choose_model(rs, mc, neg):
  n = len(rs)
  prev = np.concatenate([[0], rs[:-1]]).astype(np.int64)
  prev_neg = np.concatenate([[0], neg[:-1]]).astype(np.int64)
  pair = np.zeros((ALPHABET, ALPHABET), np.int64)
  np.add.at(pair, (prev, rs), 1)
  val = np.zeros((ALPHABET, 2, 2 * ALPHABET), np.int64)
  np.add.at(val, (rs, prev_neg, 2 * mc + neg), 1)
  a_r, a_m = int(rs.max()) + 1, int(mc.max()) + 1
  run_best = None
  for g in (1, 2, 4, 8):
    b = quantile_thresholds(pair.sum(axis=1), g)
    ctx = context_of_symbol(b, ALPHABET)
    counts = np.zeros((8, ALPHABET), np.int64)
    np.add.at(counts, ctx, pair)
    t, f = tables(counts)
    coded, bits = cost(counts, t, f, g, a_r)
    total = coded + ((bits + 6 * (g - 1)) << 16)
    if run_best is None or total < run_best[0]:
      run_best = (total, g, b)
  by_mag = val.reshape(ALPHABET, 2, ALPHABET, 2).sum(axis=(1, 3))
  value_best = None
  for s in (0, 1):
    for g in (1, 2, 4):
      b = quantile_thresholds(pair.sum(axis=0), g)
      ctx = context_of_symbol(b, ALPHABET)
      if s:
        c3 = np.zeros((4, 2, 2 * ALPHABET), np.int64)
        np.add.at(c3, ctx, val)
        counts, alphabet, raw = c3.reshape(8, 2 * ALPHABET), 2 * a_m, 0
      else:
        counts = np.zeros((8, ALPHABET), np.int64)
        np.add.at(counts, ctx, by_mag)
        alphabet, raw = a_m, n
      t, f = tables(counts)
      coded, bits = cost(counts, t, f, g * (1 + s), alphabet)
      total = coded + ((bits + 6 * (g - 1) + raw) << 16)
      if value_best is None or total < value_best[0]:
        value_best = (total, g, s, b)
  return run_best, value_best, a_r, a_m


def row_length_candidate(values):
  """See `run_length_rans.row_length_candidate`."""
  n = len(values)
  candidates = [w for w in range(2, min(n // 2, 65535) + 1) if n % w == 0]
  index = np.nonzero(values)[0]
  if not candidates or not len(index):
    return 0
  sample = index[np.arange(2048) * len(index) // 2048]

  def score(d):
    above = sample - d
    valid = above >= 0
    hits = int(np.sum(valid & (values[np.maximum(above, 0)] != 0)))
    return (hits << 20) // max(int(valid.sum()), 1)

  contrast = [score(w) - (score(w - 1) + score(w + 1)) // 2 for w in candidates]
  best = max(contrast + [0])
  for w, c in zip(candidates, contrast):
    if c > 0 and 16 * c >= 15 * best:
      return w
  return 0


def column_classes(matrix, num_classes):
  activity = np.abs(matrix).sum(axis=0)
  rank = np.empty(len(activity), np.int64)
  rank[np.argsort(activity, kind='stable')] = np.arange(len(activity))
  return rank * num_classes // len(activity)


def _rans_encode(x, f, c):
  if x >= f << 24:
    word, x = x & 0xFFFF, x >> 16
  else:
    word = None
  return (x // f) * M + x % f + c, word


def encode_context_rans(values, lane_overhead=rl.DEFAULT_LANE_OVERHEAD):
  """This format's bytes (never the Elias-gamma fallback) of a vector."""
  return _encode_context_rans(values, lane_overhead)[0]


def side_info_bits(values, lane_overhead=rl.DEFAULT_LANE_OVERHEAD):
  """Bits of `encode_context_rans` before the words, less the lane states."""
  return _encode_context_rans(values, lane_overhead)[1]


def _model(values):
  """Symbols, chosen model and estimated bits of one order of the values."""
  idx = np.nonzero(values)[0]
  runs = np.diff(np.concatenate([[-1], idx])) - 1
  nz = values[idx]
  run_cls = [class_symbol(r) for r in runs]
  mag_cls = [class_symbol(abs(int(v)) - 1) for v in nz]
  rs = np.array([c[0] for c in run_cls], np.int64)
  mc = np.array([c[0] for c in mag_cls], np.int64)
  neg = (nz < 0).astype(np.int64)
  model = choose_model(rs, mc, neg)
  (run_cost, *_), (value_cost, *_), _, _ = model
  mantissa_bits = sum(c[2] for c in run_cls) + sum(c[2] for c in mag_cls)
  estimate = (run_cost + value_cost + (1 << 16) - 1) // (1 << 16) + mantissa_bits
  return (run_cls, mag_cls, rs, mc, neg, model, mantissa_bits), estimate


def _order(values, width, transposed, num_classes):
  """`(model of _model, classes or None, estimate)` of one coded order."""
  matrix = values.reshape(-1, max(width, 1))
  if transposed:
    matrix = matrix.T
  classes = None
  if num_classes > 1:
    classes = column_classes(matrix, num_classes)
    matrix = matrix[:, np.argsort(classes, kind='stable')]
  chosen, estimate = _model(np.ascontiguousarray(matrix).reshape(-1))
  return chosen, classes, estimate


def _encode_context_rans(values, lane_overhead):
  """`(bytes, side information bits)` of this format."""
  values = np.asarray(values, np.int64).reshape(-1)
  n = int(np.count_nonzero(values))
  if n == 0:
    return bytes([0x80, 0, 0, 0, 0]), 40
  width = row_length_candidate(values)
  orders = ((False, 1), (False, 16), (True, 1), (True, 16))
  order = 0
  if width:
    # Compare the orders on every stride-th row (about 2**18 values).
    rows = len(values) // width
    target = max((1 << 18) // width, 1)
    stride = max((rows + target - 1) // target, 1)
    sample = values.reshape(rows, width)[::stride]
    costs = []
    for transposed, num_classes in orders:
      _, _, estimate = _order(sample.reshape(-1), width, transposed, num_classes)
      cost = estimate * rows // len(sample)
      if num_classes > 1:
        columns = rows if transposed else width
        cost = cost + columns * 4 if columns <= 65535 else 1 << 60
      costs.append(cost)
    order = int(np.argmin(costs))
  transposed, num_classes = orders[order]
  chosen, classes, estimate = _order(values, width, transposed, num_classes)
  row_length = width if order else 0
  run_cls, mag_cls, rs, mc, neg, model, mantissa_bits = chosen
  (run_cost, g_r, b_r), (value_cost, g_v, s, b_v), a_r, a_m = model

  # Lane size.
  raw = mantissa_bits + (0 if s else n)
  d8, d36 = round(8 / lane_overhead), round(36 / lane_overhead)
  lanes = min(estimate // d8, max(estimate // d36, raw // CARRY))
  lanes = min(max(lanes, 1), max(n // 32, 1))
  k = max((n + lanes - 1) // lanes, 1)
  lanes = (n + k - 1) // k

  # Contexts with lanes restarting, and tables.
  first = np.arange(n) % k == 0
  prev = np.where(first, 0, np.concatenate([[0], rs[:-1]]))
  prev_neg = np.where(first, 0, np.concatenate([[0], neg[:-1]]))
  run_ctx = context_of_symbol(b_r)[prev]
  value_ctx = context_of_symbol(b_v)[rs]
  vs = 2 * mc + neg if s else mc
  if s:
    value_ctx = 2 * value_ctx + prev_neg
  run_counts = np.zeros((8, ALPHABET), np.int64)
  np.add.at(run_counts, (run_ctx, rs), 1)
  value_counts = np.zeros((8, 2 * ALPHABET), np.int64)
  np.add.at(value_counts, (value_ctx, vs), 1)
  run_t, run_f = tables(run_counts)
  value_t, value_f = tables(value_counts)

  # Raw fields and the bits carried in the lane states.
  fields = []
  for (_, rman, rlen), (_, mman, mlen), ng in zip(run_cls, mag_cls, neg):
    if s:
      fields.append((rman | (mman << rlen), rlen + mlen))
    else:
      fields.append((rman | (int(ng) << rlen) | (mman << (rlen + 1)), rlen + 1 + mlen))
  initial, payload = [], []
  for j in range(lanes):
    carried, used = 0, 0
    for value, length in fields[j * k:(j + 1) * k]:
      take = min(CARRY - used, length)
      carried |= (value & ((1 << take) - 1)) << used
      used += take
      if take < length:
        payload.append((value >> take, length - take))
    initial.append((1 << CARRY) + carried)

  # rANS, lane by lane; words in decoding order (step, run/value, lane).
  def scaled(t, f, ctx, sym):
    freq = int(f[ctx, sym]) << (PRECISION - int(t[ctx]))
    cum = int(sum(int(x) << (PRECISION - int(t[ctx])) for x in f[ctx, :sym]))
    return freq, cum

  words = {}
  states = []
  for j in range(lanes):
    x = initial[j]
    for i in reversed(range(j * k, min(n, (j + 1) * k))):
      t = i - j * k
      x, w = _rans_encode(x, *scaled(value_t, value_f, value_ctx[i], vs[i]))
      words[(t, 1, j)] = w
      x, w = _rans_encode(x, *scaled(run_t, run_f, run_ctx[i], rs[i]))
      words[(t, 0, j)] = w
    states.append(x)

  out = BitWriter()
  out.write(0x80 + (g_r - 1) + 8 * (g_v - 1) + 64 * s, 8)
  out.write(n, 32)
  out.write(k, 32)
  out.write(a_r, 6)
  out.write(a_m, 6)
  out.write(row_length, 16)
  out.write(int(transposed), 1)
  out.write(num_classes.bit_length() - 1, 3)
  for b in list(b_r) + list(b_v):
    out.write(b, 6)
  if classes is not None:
    for c in classes:
      out.write(c, 4)
  for t, f, rows, alphabet in ((run_t, run_f, g_r, a_r),
                               (value_t, value_f, g_v * (1 + s), a_m * (1 + s))):
    for g in range(rows):
      out.write(t[g], 4)
    for g in range(rows):
      if t[g]:
        for sym in range(alphabet):
          out.write(int(f[g, sym] > 0), 1)
    for g in range(rows):
      for sym in range(alphabet):
        if f[g, sym]:
          out.write(int(f[g, sym]).bit_length() - 1, int(t[g]).bit_length())
    for g in range(rows):
      for sym in range(alphabet):
        if f[g, sym]:
          length = int(f[g, sym]).bit_length() - 1
          out.write(int(f[g, sym]) - (1 << length), length)
  for x in states:
    out.write(x, 36)
  out.pad()
  side_bits = len(out.bits) - 36 * lanes
  for key in sorted(words):
    if words[key] is not None:
      out.write(words[key], 16)
  for value, length in payload:
    out.write(value, length)
  return out.bytes(), side_bits


def _gamma(out, v):
  nbits = int(v).bit_length()
  out.write(0, nbits - 1)
  out.write(1, 1)
  out.write(int(v) - (1 << (nbits - 1)), nbits - 1)


def elias_gamma_bytes(values, block_size=1024):
  """The blocked Elias-gamma format of `tff_rdq.codecs.elias_gamma`."""
  values = np.maximum(np.asarray(values, np.int64).reshape(-1), -(2**31 - 1))
  blocks = []
  for start in range(0, len(values), block_size):
    out = BitWriter()
    last = -1
    block = values[start:start + block_size]
    for i in np.nonzero(block)[0]:
      _gamma(out, i - last)
      out.write(int(block[i] > 0), 1)
      _gamma(out, abs(int(block[i])))
      last = i
    if last < len(block) - 1:
      _gamma(out, len(block) - 1 - last + 1)
    blocks.append(out.bytes())
  width = max([len(b) for b in blocks] + [0]).bit_length()
  header = BitWriter()
  header.write(width, 8)
  for b in blocks:
    header.write(len(b), width)
  return header.bytes() + b''.join(blocks)


def encode(values, lane_overhead=rl.DEFAULT_LANE_OVERHEAD, block_size=1024):
  """The codec's bytes: this format unless Elias-gamma is not larger."""
  values = np.asarray(values).reshape(-1)
  eg = elias_gamma_bytes(values, block_size)
  if len(values) == 0:
    return eg
  ours = encode_context_rans(values, lane_overhead)
  lossy = np.any(values == -2**31)  # Elias-gamma cannot code INT32_MIN
  return ours if len(ours) < len(eg) or lossy else eg
