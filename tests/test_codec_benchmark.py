"""Tests of benchmarks/codec_benchmark.py's in-graph timer."""

import pathlib
import sys

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
