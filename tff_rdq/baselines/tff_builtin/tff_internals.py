"""Every private TensorFlow Federated symbol `tff_rdq` uses, in one module.

Written against tensorflow-federated `TFF_VERSION` (0.87.0, with its
tensorflow-model-optimization). None of these is exported by `tff` or
`tff.aggregators`: they are module-private functions of TFF's own
aggregators, used here so that the measured wrappers run TFF's exact code
rather than a re-implementation. A TFF upgrade may move or change any of
them; `tests/test_tff_builtin.py` checks the installed version, so an upgrade
fails there first and this is the one module to revisit.

Importing this module only imports TFF's modules; it changes no state.
"""

import tensorflow_federated as tff
from tensorflow_federated.python.aggregators import discretization as _discretization
from tensorflow_federated.python.aggregators import distributed_dp as _distributed_dp
from tensorflow_federated.python.aggregators import hadamard as _hadamard
from tensorflow_federated.python.aggregators import modular_clipping as _modular_clipping
from tensorflow_federated.python.aggregators import rotation as _rotation
from tensorflow_federated.python.learning import model_update_aggregator as _model_update_aggregator
from tensorflow_model_optimization.python.core.internal import tensor_encoding

# pylint: disable=protected-access

TFF_VERSION = '0.87.0'

# tensorflow-model-optimization's internal `tensor_encoding` package: the
# encoders behind `tff.aggregators.EncodedSumFactory`.
te = tensor_encoding


def quantize_above_threshold_encoder_fn(bits: int, threshold: int, **kwargs):
  """The `encoder_fn` of TFF's `EncodedSumFactory.quantize_above_threshold`."""
  return tff.aggregators.EncodedSumFactory.quantize_above_threshold(
      quantization_bits=bits, threshold=threshold, **kwargs)._encoder_fn


# rotation.py and hadamard.py: `HadamardTransformFactory`'s own functions.
init_global_seed = _rotation._init_global_seed
unique_seeds_for_struct = _rotation._unique_seeds_for_struct
pad_zeros_pow2 = _rotation._pad_zeros_pow2
sample_rademacher = _rotation.sample_rademacher
fast_walsh_hadamard_transform = _hadamard.fast_walsh_hadamard_transform

# discretization.py and modular_clipping.py: `DiscretizationFactory`'s and
# `ModularClippingSumFactory`'s own functions (neither factory is exported).
discretize_struct = _discretization._discretize_struct
undiscretize_struct = _discretization._undiscretize_struct
modular_clip_by_value = _modular_clipping.modular_clip_by_value

# distributed_dp.py: `DistributedDpSumFactory`'s scale heuristic.
clip_prob_to_num_stddevs = _distributed_dp._clip_prob_to_num_stddevs
heuristic_scale_factor = _distributed_dp._heuristic_scale_factor
MAX_SCALE_FACTOR = _distributed_dp.MAX_SCALE_FACTOR

# learning/model_update_aggregator.py: the wrappers of
# `tff.learning.compression_aggregator`.
default_clipping = _model_update_aggregator._default_clipping
default_zeroing = _model_update_aggregator._default_zeroing
