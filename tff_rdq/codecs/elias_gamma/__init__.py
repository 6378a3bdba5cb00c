"""Run-length Elias-gamma code of integer vectors, in core TensorFlow ops.

This is the universal code of tensorflow-compression's
`run_length_gamma_encode`, written with core ops only so that it runs inside
TFF federated computations. Encoding is fully vectorized (no loop per symbol);
decoding runs independent blocks as parallel lanes.

Elias-gamma, `gamma(v)` for `v >= 1` with `k = bit_length(v)`: `k - 1` zero
bits, a one bit, then `v - 2**(k-1)` in `k - 1` bits, least significant bit
first. All fields are LSB-first (see `bitstream`).

**Block stream** (one block, identical to `tfc.run_length_gamma_encode` of the
block): for each nonzero value in order, `gamma(zeros since the previous
nonzero (or the block start) + 1)`, a sign bit (1 = positive) and
`gamma(|value|)`; then, if the block ends with `r > 0` zeros, `gamma(r + 1)`;
then zero bits up to a whole byte. `INT32_MIN` is coded as `-(2**31 - 1)`, as
the tensorflow-compression op does.

**Blocked format** (`encode_to_bytes`) of `n` values with block size `B`, with
`m = ceil(n / B)` blocks (block `i` holds values `i*B .. min(n, (i+1)*B) - 1`):

  byte 0            w: bit width of the largest block byte length (0 if m = 0)
  next ceil(m*w/8)  block byte lengths, w bits each, LSB-first, zero padded
  then              the m block streams, concatenated

`n` and `B` are not stored: both sides know the tensor's shape and the codec's
configuration. The first byte and the length table are the side information
of the format (`side_info_bits`).

**Canonical decoding.** The format has exactly one encoding per vector:
`decode_from_bytes(data, n, B)` returns `ok = True` if and only if `data ==
encode_to_bytes(values, B)` for the values it returns (which never hold
`INT32_MIN`). It rejects, in particular: empty data; a width byte other than
the bit length of the largest block byte length (wider, narrower, or above
32); a block byte length of 0; non-zero padding bits after the length table;
a total length other than header + table + the listed block lengths (missing
or trailing bytes); in a block, a codeword that runs past the block's values
or bytes (a run beyond the block end, a magnitude above `2**31 - 1`), a
trailing run `gamma(1)` (the empty run), bits left after the last codeword
other than fewer than 8 zero padding bits, and a block length longer than
its codewords need. What it cannot see is a change that turns a canonical
stream into another canonical stream (a flipped sign bit, for one): that is
for a checksum around the payload.

**Implementation.** Both directions have a fast path in 32-bit integer
arithmetic and a general path in 64-bit arithmetic that gives the same bytes
and values. Encoding is vectorized over the nonzero values (no loop): the
fast path (a static length with int32 bit offsets, blocks of at most
`_FAST_MAX_BLOCK` values, `|v| <= _FAST_MAX_MAGNITUDE`) computes every
codeword with a handful of int32 operations, its bit offset with one prefix
sum, and writes 32-bit words with one sorted segment sum. Decoding runs the
blocks as parallel lanes, one codeword per lane and step; the fast loop
reads each codeword from one 64-bit window of a row-major copy of the block
streams (in one step the lanes read neighbouring memory). Of its five steps
per iteration, four decode a codeword of at most 16 bits with one lookup in a
table of all 16-bit windows (a longer one waits) and the fifth decodes any
codeword arithmetically; lanes with a rare codeword (|v| of 2**16 or more, an
invalid run) go on in the general loop, which also finds the errors.
Decoding never reads out of bounds, on any input.
"""

# The modules: `format` (gamma fields, header sizes), `fast_path` (where the
# int32 paths apply), `encoder`, `sizes` (`coded_size`), `lanes` (the decoding
# loops), `decoder` (the blocked format, `decode_many`) and `strings` (the
# `tf.string` interface).

from tff_rdq.codecs.elias_gamma.decoder import decode_from_bytes
from tff_rdq.codecs.elias_gamma.decoder import decode_many
from tff_rdq.codecs.elias_gamma.encoder import encode_to_bytes
from tff_rdq.codecs.elias_gamma.format import DEFAULT_BLOCK_SIZE
from tff_rdq.codecs.elias_gamma.format import header_bytes
from tff_rdq.codecs.elias_gamma.format import side_info_bits
from tff_rdq.codecs.elias_gamma.sizes import coded_bits
from tff_rdq.codecs.elias_gamma.sizes import coded_size
from tff_rdq.codecs.elias_gamma.strings import decode
from tff_rdq.codecs.elias_gamma.strings import decode_stream
from tff_rdq.codecs.elias_gamma.strings import encode
from tff_rdq.codecs.elias_gamma.strings import encode_stream

# For the tests: the fast decoder's lookup table and its entry layout.
from tff_rdq.codecs.elias_gamma.lanes import _ENTRY_RUN_BITS
from tff_rdq.codecs.elias_gamma.lanes import _lookup_table
from tff_rdq.codecs.elias_gamma.lanes import _TABLE_BITS
