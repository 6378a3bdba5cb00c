"""TFF aggregation factories that move quantized, coded client updates."""
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeFactory
from tff_rdq.aggregators.quantize_encode import QuantizeEncodeSumFactory
