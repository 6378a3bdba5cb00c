"""Tests of benchmarks/codec_benchmark.py's in-graph timer."""

import pathlib
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'))
import codec_benchmark  # pylint: disable=wrong-import-position


def _upstream_ops(op):
  """Every op that `op` waits for (data and control inputs), transitively."""
  seen, stack = set(), [op]
  while stack:
    current = stack.pop()
    for parent in [t.op for t in current.inputs] + list(current.control_inputs):
      if parent not in seen:
        seen.add(parent)
        stack.append(parent)
  return seen


def test_timer_starts_after_its_input_exists():
  # The decode's input is the encode's output: a start timestamp that does not
  # wait for it would time the encode as well.
  graph = tf.Graph()
  with graph.as_default():
    source = tf.compat.v1.placeholder(tf.int32, [None])
    produced = tf.math.cumsum(source)
    out, seconds = codec_benchmark._timed_in_graph(lambda v: v * 2, produced, 3)
  timestamps = [op for op in graph.get_operations() if op.type == 'Timestamp']
  assert len(timestamps) == 2
  start, end = sorted(timestamps, key=lambda op: op.name)
  assert produced.op in _upstream_ops(start)
  assert start in _upstream_ops(end)
  assert out.op not in _upstream_ops(start) and seconds.dtype == tf.float64


def test_timer_returns_the_chained_result():
  @tf.function
  def timed(x):
    return codec_benchmark._timed_in_graph(lambda v: v + 1, x, 4)

  out, seconds = timed(tf.constant([1, 2, 3]))
  assert out.numpy().tolist() == [2, 3, 4]
  assert float(seconds) >= 0


def test_max_codewords_per_block_counts_values_and_trailing_runs():
  rng = np.random.default_rng(0)
  for n, block in ((1, 4), (10, 4), (4096, 1024), (5000, 1024), (999, 7)):
    values = np.where(rng.random(n) < 0.3, rng.integers(-5, 6, n), 0).astype(np.int32)
    values[-1] = 0  # a trailing run in the last block
    expected = 0
    for start in range(0, n, block):
      part = values[start:start + block]
      nonzero = np.flatnonzero(part)
      trailing = part.size - (nonzero[-1] + 1 if nonzero.size else 0)
      expected = max(expected, nonzero.size + (trailing > 0))
    assert codec_benchmark.max_codewords_per_block(values, block) == expected, (n, block)
  assert codec_benchmark.max_codewords_per_block(np.ones(2048, np.int32), 1024) == 1024
