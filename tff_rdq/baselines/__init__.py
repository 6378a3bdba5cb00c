"""Baseline compression methods for client updates, as TFF aggregation factories.

Each baseline is a compressor (the protocol of
`tff_rdq.aggregators.compressor`) with a weighted factory (a drop-in
`model_aggregator` of `tff.learning.algorithms.build_weighted_fed_avg`) and
an unweighted sum factory; every module's docstring gives its exact byte
format and bit count. All bits are counted from the real payload bytes, plus
32 bits per client weight in the weighted form.

`BASELINES` maps a name to a callable `(**knob) -> weighted factory` (the
factory class; its first positional parameter is the main knob, so
`BASELINES[name](value)` works too); `KNOBS` names each one's main knob:

  'top_k'     fraction             kept fraction of each tensor, in (0, 1]
                                   (or k=absolute count; index_code=
                                   'elias_gamma' | 'fixed')
  'drive'     scale                'unbiased' | 'mse' (always ~1 bit/coord.)
  'eden'      bits                 1 | 2 | 3 | 4 bits per sent coordinate
                                   (p=fraction of rotated coordinates
                                   sent, in (0, 1]: ~p * bits bits/param.)
  'three_lc'  sparsity_multiplier  m in [1, 2); larger is sparser
  'qsgd'      levels               s >= 1 levels per sign, an integer (4.0
                                   is accepted) (bucket_size=...)
  'terngrad'  coding               'packed' (2 bits/elem.) | 'elias_gamma'

For example `BASELINES['qsgd'](levels=4)`. DRIVE and TernGrad have no rate
knob (their knob picks a variant, a string); a bad knob raises `ValueError`
or `TypeError` naming it.
"""

from tff_rdq.baselines.drive import DriveCompressor
from tff_rdq.baselines.drive import DriveFactory
from tff_rdq.baselines.drive import DriveSumFactory
from tff_rdq.baselines.eden import EdenCompressor
from tff_rdq.baselines.eden import EdenFactory
from tff_rdq.baselines.eden import EdenSumFactory
from tff_rdq.baselines.qsgd import QSGDCompressor
from tff_rdq.baselines.qsgd import QSGDFactory
from tff_rdq.baselines.qsgd import QSGDSumFactory
from tff_rdq.baselines.terngrad import TernGradCompressor
from tff_rdq.baselines.terngrad import TernGradFactory
from tff_rdq.baselines.terngrad import TernGradSumFactory
from tff_rdq.baselines.three_lc import ThreeLCCompressor
from tff_rdq.baselines.three_lc import ThreeLCFactory
from tff_rdq.baselines.three_lc import ThreeLCSumFactory
from tff_rdq.baselines.top_k import TopKCompressor
from tff_rdq.baselines.top_k import TopKFactory
from tff_rdq.baselines.top_k import TopKSumFactory

BASELINES = {
    'top_k': TopKFactory,
    'drive': DriveFactory,
    'eden': EdenFactory,
    'three_lc': ThreeLCFactory,
    'qsgd': QSGDFactory,
    'terngrad': TernGradFactory,
}

KNOBS = {
    'top_k': 'fraction',
    'drive': 'scale',
    'eden': 'bits',
    'three_lc': 'sparsity_multiplier',
    'qsgd': 'levels',
    'terngrad': 'coding',
}
