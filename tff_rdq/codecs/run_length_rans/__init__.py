"""Context-modelled run-length rANS coder of integer vectors, in core TF ops.

Codes an `int32` vector (a flattened tensor of quantized update values) with a
two-pass, per-vector static model of what real updates look like: long runs of
zeros whose lengths depend on the previous run (dense rows and all-zero rows
of embeddings, scale differences between rows and columns), and nonzero values
whose magnitude depends on the length of the zero run before them and whose
sign may depend on the previous sign. Only core TensorFlow ops are used, so it
runs eagerly and inside TFF federated computations. When the run-length Elias-
gamma format of `elias_gamma` is not larger (tiny or peculiar vectors), the
output *is* that format, byte for byte, so this codec is never larger than
Elias-gamma on any vector.

**Coded order.** The values are coded in index order (`W = 0`) or, for a
vector that looks like a matrix, as the `n / W` by `W` matrix, possibly
transposed, with its columns grouped by class (a stable sort of the columns
by class), read row by row (`analyze`, `choose_order`): zeros of the rows of
unseen words then form long runs. Below, "index order" means this order.

**Symbols.** The nonzero values `v_0 .. v_{N-1}` (in index order) are coded
as pairs: the number `r_i >= 0` of zeros before `v_i` (after `v_{i-1}`), then
`v_i`. Zeros after the last nonzero value are implied by `N`. Both `r` and
`m = |v| - 1` (`0 .. 2**31 - 1`) are mapped to *class symbols* (`class_symbol`):
`x < 4` is symbol `x` with no extra bits; otherwise, with `u = x - 3` and
`e = bit_length(u) - 1`, symbol `4 + e` followed by the `e` low bits of `u`
(its *mantissa*, coded raw). Symbols are below 35 (`ALPHABET`).

- *Run symbol* of `v_i`: the class symbol of `r_i`.
- *Value symbol* of `v_i`: in sign mode `S = 0`, the class symbol `c` of
  `|v_i| - 1`, and the sign is a raw bit; in `S = 1`, `2c + s` with `s = 1`
  for a negative value (the sign is modelled).

**Contexts.** Run symbol `i` is coded in context `ctx_r(p)`, `p` the previous
run symbol (`p = 0` at the start of a lane); value symbol `i` in context
`ctx_v(q)` (`S = 0`) or `2 ctx_v(q) + s'` (`S = 1`), `q` the run symbol of `v_i`
and `s'` the sign bit of the previous value (0 at the start of a lane). A
context map with `G` contexts and thresholds `b_1 <= .. <= b_{G-1}` maps `p`
to `#{k : b_k <= p}` (`context_of_symbol`). The encoder chooses `G_r` in {1, 2,
4, 8}, `G_v` in {1, 2, 4}, `S` and the thresholds (quantiles of the symbols'
distribution) minimizing the estimated size (tables included); see
`encode_to_bytes`.

**Tables.** Each context `g` has precision `T_g` (0 for a context that codes
nothing, else `table_precision(n_g, k_g)` of its symbol count `n_g` and number
of distinct symbols `k_g`) and frequencies `f_s` summing to `2**T_g`
(`quantize_frequencies`: at least 1 for each symbol that occurs). The rANS
coder uses `f_s * 2**(12 - T_g)` out of `2**12` (`PRECISION`).

**rANS** (as in `rans`, with 12-bit probabilities): state `x` in `[L, L *
2**16)`, `L = 2**20`. Encoding a symbol of frequency `F` and cumulative
frequency `C` (last to first): if `x >= F * 2**24`, emit `x mod 2**16` and set
`x //= 2**16`; then `x = (x // F) * 2**12 + x mod F + C`. Decoding: `slot = x
mod 2**12` selects the symbol, `x = F * (x // 2**12) + slot - C`, and if `x <
L`, `x = x * 2**16 + (next word)`.

**Lanes.** With lane size `K` (nonzero values per lane, the encoder's
choice), lane `j` codes the pairs `j*K .. min(N, (j+1)*K) - 1`, so all lanes
but the last have exactly `K` pairs and decoding takes `K` steps. Step `t`
decodes the `t`-th run symbol of every lane that has one, reads a word for each
lane that needs one (in lane order), then decodes those lanes' value symbols
and reads again (in lane order). The word stream is these reads in this order.

**Raw bits and lane states** ("bits back"). The raw bits of pair `i` form one
field: the mantissa of `r_i`, then (if `S = 0`) the sign bit (1 = negative),
then the mantissa of `|v_i| - 1`. The fields of a lane, concatenated, are its
raw bits; the first `c_j = min(35, (its raw bit count))` of them are not
written to the payload: the encoder starts lane `j` in state `2**35 + (those
bits)` instead of `L`, and the decoder recovers them from the lane's final
state. A lane state thus costs about 8 bits instead of about 28.

**Byte format** (fields LSB-first as in `bitstream`; `n` is not stored):

  bits 0..7    byte 0: bit 7 = 1 (this format; Elias-gamma's first byte is
               below 128), bits 0..2 `G_r - 1`, bits 3..5 `G_v - 1`, bit 6 `S`
  bits 8..39   `N`, the number of nonzero values (1 <= N <= n; the vector of
               `n` zeros is the 5 bytes `0x80 0 0 0 0`)
  bits 40..71  `K` (1..N)
  bits 72..77  `A_r`: the largest run symbol plus one (1..35)
  bits 78..83  `A_m`: the largest magnitude class symbol plus one (1..35)
  bits 84..99  `W`, the row length of the coded order (0: the vector as is;
               else a divisor of `n` in `2 .. min(n // 2, 65535)`)
  bit  100     `t`: 1 if the `n / W` by `W` matrix is coded transposed
  bits 101..103 `k`: the column classes are `2**k` (`k` in 0..4; 0 = none)
  thresholds   `G_r - 1` run thresholds, then `G_v - 1` value thresholds,
               6 bits each (0..35, non-decreasing)
  classes      if `k > 0`: each column's class (`column_classes`), `k` bits
               per column of the coded matrix (at most 65535 columns)
  run table    the tables of the `G_r` run contexts (alphabet `A = A_r`)
  value table  the tables of the `G_v * (1 + S)` value contexts (alphabet
               `A = A_m * (1 + S)`)
  lane states  `ceil(N / K)` 36-bit fields, each lane's initial decoder state
  zero bits up to a whole byte
  words        16-bit words (2 bytes each, little-endian), in read order
  payload      the raw bits of the lanes in lane order, each lane without its
               first `c_j` bits
  zero bits up to a whole byte

A table of `G` contexts over an alphabet of `A` symbols (`write_table`):
`G` 4-bit precisions `T_g` (0..12); then for each context with `T_g > 0`, `A`
presence bits (1 = the symbol has `f_s > 0`); then for each present symbol (in
context, then symbol order) `bit_length(f_s) - 1` (0..`T_g`) in
`bit_length(T_g)` bits; then for each present symbol the `bit_length(f_s) - 1`
low bits of `f_s`.

Everything before the word stream except the lane states is side information
(`side_info_bits`): header, thresholds, column classes, tables and alignment.

**Canonical decoding.** `G_r`, `G_v`, `S`, the thresholds, `K` and the order
(`W`, `t`, `k`) are the encoder's free choices. For given values and choices
exactly one byte string is valid: `decode_from_bytes` checks that the order is
well formed (`W = 0` with `t = k = 0`, or `W` a divisor of `n` as above with
`t = 1` or `k > 0`) and its classes are exactly the `column_classes` of the
decoded columns, that `N`, `A_r` and `A_m` are exact, that every table is
exactly the quantized table of the symbols decoded in its context (so an
unused context has `T_g = 0`), that every lane ends in a state `2**35 + c`
with `c < 2**c_j`, that all words are read, that the decoded values lie in the
`int32` range, and that the stream ends with the payload and fewer than 8 zero
padding bits. A byte string whose first byte is below 128 is decoded (and
checked) by `elias_gamma`.
"""

# The package, by concern (each module imports only the ones above it):
#   format  the format's constants, class symbols and small field helpers
#   model   contexts, frequency tables, the model search and table fields
#   order   the coded order (row length, column classes) and `analyze`
#   lanes   raw fields, bits carried in lane states, the rANS loops
#   encoder `encode_to_bytes`, `encode_many`, `encode`
#   decoder `decode_from_bytes`, `decode_many`, `side_info_bits`, `decode`
# The rANS primitives shared with the `rans` codec are in `rans_core`. The
# names imported below are this package's API.
# pylint: disable=unused-import

from tff_rdq.codecs.run_length_rans.decoder import (
    decode, decode_from_bytes, decode_many, side_info_bits)
from tff_rdq.codecs.run_length_rans.encoder import (
    elias_gamma_bits, elias_gamma_lower_bound, encode, encode_many,
    encode_to_bytes)
from tff_rdq.codecs.run_length_rans.format import (
    ALPHABET, CARRY_BASE, CARRY_BITS, COLUMN_CLASSES, DEFAULT_LANE_OVERHEAD,
    DIRECT, EMPTY_BYTES, HEADER_BITS, LOG2_TABLE, MARKER, MAX_COLUMNS,
    MAX_PRECISION, MAX_ROW_LENGTH, MAX_RUN_CONTEXTS, MAX_VALUE_CONTEXTS,
    MIN_LANE_SIZE, ORDER_SAMPLE_VALUES, PRECISION, PRECISION_FIELD_BITS,
    PROB_SCALE, ROW_LENGTH_SAMPLES, RUN_CONTEXT_CHOICES, STATE_BITS,
    STATE_LOWER, THRESHOLD_BITS, VALUE_ALPHABET, VALUE_CONTEXT_CHOICES,
    WORD_BITS, class_symbol, class_value, mantissa_bits)
from tff_rdq.codecs.run_length_rans.lanes import (
    RUN_CONTEXT_MAP, VALUE_CONTEXT_MAP, carry_layout, decode_lanes,
    encode_lanes, raw_fields)
from tff_rdq.codecs.run_length_rans.model import (
    candidate_thresholds, choose_lane_size, choose_model, coded_cost,
    coding_table, context_counts, context_of_symbol, lane_contexts,
    model_tables, quantile_thresholds, quantize_frequencies, read_table,
    table_bits, table_fields, table_precision)
from tff_rdq.codecs.run_length_rans.order import (
    ORDERS, analyze, choose_order, coded_matrix, column_classes, column_order,
    row_length_candidate, sample_rows)
