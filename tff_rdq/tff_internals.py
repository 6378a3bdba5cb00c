"""Every private TensorFlow Federated symbol `tff_rdq` uses, in one module.

Written against tensorflow-federated `TFF_VERSION` (0.87.0, with its
tensorflow-model-optimization). None of these is exported by `tff` or
`tff.aggregators`: they are module-private functions of TFF's own
aggregators, used here so that the measured wrappers run TFF's exact code
rather than a re-implementation. A TFF upgrade may move or change any of
them; `tests/test_tff_builtin.py` checks the installed version, so an upgrade
fails there first and this is the one module to revisit.

Importing this module only imports TFF's modules; it changes no state. It is
the one place in `tff_rdq`, its tests and its benchmarks that names
`tensorflow_federated.python`: the aggregators' symbols for the measured
TFF baselines; the experiment's Stack Overflow model, metrics and
preprocessing; the execution-context classes the experiment runtime uses to
stop TFF's worker; and the compiler hooks the first-round benchmark uses.
"""

import tensorflow_federated as tff
from tensorflow_federated.python.aggregators import discretization as _discretization
from tensorflow_federated.python.aggregators import distributed_dp as _distributed_dp
from tensorflow_federated.python.aggregators import hadamard as _hadamard
from tensorflow_federated.python.aggregators import modular_clipping as _modular_clipping
from tensorflow_federated.python.aggregators import rotation as _rotation
from tensorflow_federated.python.core.backends.native import compiler as _compiler
from tensorflow_federated.python.core.environments.tensorflow_backend import tensorflow_tree_transformations as _tf_tree_transformations
from tensorflow_federated.python.core.impl.computation import computation_impl as _computation_impl
from tensorflow_federated.python.core.impl.context_stack import context_stack_impl as _context_stack_impl
from tensorflow_federated.python.core.impl.context_stack import runtime_error_context as _runtime_error_context
from tensorflow_federated.python.core.impl.executor_stacks import executor_factory as _executor_factory
from tensorflow_federated.python.learning import model_update_aggregator as _model_update_aggregator
from tensorflow_federated.python.simulation.baselines import keras_metrics as _keras_metrics
from tensorflow_federated.python.simulation.baselines.stackoverflow import constants as _stackoverflow_constants
from tensorflow_federated.python.simulation.baselines.stackoverflow import word_prediction_models as _word_prediction_models
from tensorflow_federated.python.simulation.baselines.stackoverflow import word_prediction_preprocessing as _word_prediction_preprocessing
from tensorflow_model_optimization.python.core.internal import tensor_encoding
from tensorflow_model_optimization.python.core.internal.tensor_encoding.stages import stages_impl as _stages_impl

# pylint: disable=protected-access

TFF_VERSION = '0.87.0'

# tensorflow-model-optimization's internal `tensor_encoding` package: the
# encoders behind `tff.aggregators.EncodedSumFactory`.
te = tensor_encoding
stages_impl = _stages_impl


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

# aggregators (tests compare our wrappers with TFF's own factories).
discretization = _discretization
modular_clipping = _modular_clipping

# simulation/baselines: the Stack Overflow word task's model, masked metrics
# and preprocessing (the experiment builds the task itself, with its own vocabulary).
keras_metrics = _keras_metrics
word_prediction_models = _word_prediction_models
word_prediction_preprocessing = _word_prediction_preprocessing
stackoverflow_constants = _stackoverflow_constants

# core/impl: the context that refuses to run anything (installed after the
# worker is stopped) and the module whose `subprocess` global starts workers.
RuntimeErrorContext = _runtime_error_context.RuntimeErrorContext
executor_factory = _executor_factory

# core/backends and environments: what the local C++ contexts compile with
# (the first-round benchmark swaps the compiler to measure Grappler's cost).
compiler = _compiler
tensorflow_tree_transformations = _tf_tree_transformations
ConcreteComputation = _computation_impl.ConcreteComputation
context_stack = _context_stack_impl.context_stack
