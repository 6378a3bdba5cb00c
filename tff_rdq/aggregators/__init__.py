"""TFF aggregation factories that move compressed client updates as bytes.

`compressor` (the protocol every method implements), `compressed` (the
federated plumbing and measurements), `quantize_encode` (our method) and
`step_control` (its server-side step-size policy).
"""
from tff_rdq.aggregators.compressed import CompressedMeanFactory
from tff_rdq.aggregators.compressed import CompressedSumFactory
from tff_rdq.aggregators.compressor import client_seed
from tff_rdq.aggregators.compressor import Compressor
from tff_rdq.aggregators.compressor import StatelessCompressor
from tff_rdq.aggregators.compressor import WEIGHT_BITS
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeCompressor
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeFactory
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeSumFactory
