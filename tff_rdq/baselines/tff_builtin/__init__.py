"""TFF's own compression aggregators, measured like every method of `tff_rdq`.

None of TensorFlow Federated's compression aggregators reports a bitrate.
This package runs each of them through `tff_rdq.aggregators.compressed` as a
*compressor* (the protocol of `tff_rdq.aggregators.compressor`), so that each
one reports `bits_per_parameter`, `uplink_bits`, `side_info_bits`,
`distortion`, `sparsity`, `clients` and `dropped_clients` computed the same
way as for our own method: the bits are 8 x the byte length of the
`tf.string` per tensor that each client actually sends (plus the status
byte, checksum and weight of `compressed`'s message), and the server
verifies and decodes each client from those bytes alone before summing; a
decoded value that is not finite stops the round like any corrupted payload. The numbers (the
quantized values and the reconstruction) are produced by TFF's and
tensor_encoding's own code; this package only serializes what they output.

Modules, by what they wrap (each module's doc gives the exact bytes):

  tensor_encoding         `EncodedSumFactory`'s tensor_encoding encoders:
                          `MeasuredEncodedMeanFactory`/`SumFactory`,
                          `EncodedUniformFactory`, `EncodedHadamardFactory`
  discretization          `HadamardTransformFactory` + `DiscretizationFactory`
                          + modular clipping for a b-bit secure sum:
                          `HadamardDiscretizationFactory`
  compression_aggregator  `tff.learning.compression_aggregator`:
                          `measured_compression_aggregator`,
                          `flatten_measurements`
  tff_internals           every private TFF symbol used, and the TFF version
                          (0.87.0) they were written against

Weights: `CompressedMeanFactory` has each client compress its *unweighted*
update and the server multiply by the weight after decoding (and counts the
`float32` weight as 32 bits of side information). TFF's `MeanFactory`
instead encodes `weight * value`. Min/max uniform quantization (with or
without rotation) is scale-equivariant, so the two agree (exactly for
power-of-two weights, to float rounding otherwise); discretization with a
fixed scale is not, so it agrees with TFF's only for equal weights.

Sparsity for these methods is the fraction of the server's reconstruction of
a client's update that is exactly zero (for our method this is the fraction
of zero symbols; min/max quantization and rotated methods rarely produce
exact zeros).

`TFF_BUILTINS` maps a name to a function `(**knobs) -> weighted factory`
(each also takes `integrity`, default True: the message checksum):

  tff_uniform                 `bits` (1..16, default 8), `threshold` (20000),
                              `stochastic` (True)
  tff_hadamard                `bits` (1..16, default 8), `threshold` (20000)
  tff_discretization          `bits` (1..22, default 8), `l2_clip` (1.0),
                              `num_clients` (1), `modclip_prob` (1e-6),
                              `scale_factor` (None: the heuristic),
                              `stochastic` (True), `clip` (True: TFF's fixed
                              L2 `clipping_factory(l2_clip)` first, as in DDP),
                              `seed` (None: TFF's timestamp seed)
  tff_compression_aggregator  `bits` (8; TFF's is 8), `zeroing` (True),
                              `clipping` (True), `stochastic` (True)
"""

import tensorflow_federated as tff

from tff_rdq.baselines.tff_builtin.compression_aggregator import flatten_measurements
from tff_rdq.baselines.tff_builtin.compression_aggregator import measured_compression_aggregator
from tff_rdq.baselines.tff_builtin.discretization import DiscretizationCompressor
from tff_rdq.baselines.tff_builtin.discretization import HadamardDiscretizationFactory
from tff_rdq.baselines.tff_builtin.tensor_encoding import EncodedHadamardFactory
from tff_rdq.baselines.tff_builtin.tensor_encoding import EncodedUniformFactory
from tff_rdq.baselines.tff_builtin.tensor_encoding import hadamard_encoder_fn
from tff_rdq.baselines.tff_builtin.tensor_encoding import MeasuredEncodedMeanFactory
from tff_rdq.baselines.tff_builtin.tensor_encoding import MeasuredEncodedSumFactory
from tff_rdq.baselines.tff_builtin.tensor_encoding import TensorEncodingCompressor
from tff_rdq.baselines.tff_builtin.tensor_encoding import uniform_encoder_fn
from tff_rdq.tff_internals import TFF_VERSION


def _tff_uniform(bits: int = 8, threshold: int = 20000, stochastic: bool = True,
                 integrity: bool = True, on_corrupt: str = 'drop'):
  return EncodedUniformFactory(bits, threshold, stochastic=stochastic,
                               integrity=integrity, on_corrupt=on_corrupt)


def _tff_hadamard(bits: int = 8, threshold: int = 20000, integrity: bool = True,
                  on_corrupt: str = 'drop'):
  return EncodedHadamardFactory(bits, threshold, integrity=integrity, on_corrupt=on_corrupt)


def _tff_discretization(bits: int = 8, l2_clip: float = 1.0, num_clients: int = 1,
                        modclip_prob: float = 1e-6, scale_factor=None,
                        stochastic: bool = True, clip: bool = True, seed=None,
                        integrity: bool = True, on_corrupt: str = 'drop'):
  factory = HadamardDiscretizationFactory(
      bits, l2_clip=l2_clip, num_clients=num_clients, modclip_prob=modclip_prob,
      scale_factor=scale_factor, stochastic=stochastic, seed=seed,
      integrity=integrity, on_corrupt=on_corrupt)
  if not clip:
    return factory
  return flatten_measurements(tff.aggregators.clipping_factory(l2_clip, factory))


def _tff_compression_aggregator(bits: int = 8, zeroing: bool = True, clipping: bool = True,
                                stochastic: bool = True, integrity: bool = True,
                                on_corrupt: str = 'drop'):
  return measured_compression_aggregator(
      zeroing=zeroing, clipping=clipping, bits=bits, stochastic=stochastic,
      integrity=integrity, on_corrupt=on_corrupt)


TFF_BUILTINS = {
    'tff_uniform': _tff_uniform,
    'tff_hadamard': _tff_hadamard,
    'tff_discretization': _tff_discretization,
    'tff_compression_aggregator': _tff_compression_aggregator,
}
