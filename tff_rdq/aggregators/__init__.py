"""TFF aggregation factories that move compressed client updates as bytes."""
from tff_rdq.aggregators.compressed import CompressedMeanFactory
from tff_rdq.aggregators.compressed import CompressedSumFactory
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeCompressor
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeFactory
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeSumFactory
