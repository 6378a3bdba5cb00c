"""Benchmark: a codec module against its version at a git revision, in pairs.

Loads the codec module `tff_rdq/codecs/MODULE.py` or package
`tff_rdq/codecs/MODULE/` as it is at `--against` (a git revision; only that
module's files are taken from it, its other imports are today's) next to today's
module, quantizes one saved update as the aggregator does (uniform rounding,
step times each tensor's RMS; `real_update_codecs.quantize`), and for each
step builds the encode and decode graphs of both versions (`encode_many` /
`decode_many` where the module has them, as the aggregator calls them). It
checks that both versions decode their own bytes exactly and says whether the
bytes are identical, then calls the four graphs in turn `--repeats` times and
prints the median milliseconds per call and the median of the paired ratios
(today / revision) per phase. Pairing in one process cancels most of the
machine's drift, which moves whole runs by tens of percent here.
"""

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

import real_update_codecs  # pylint: disable=wrong-import-position
import round_profile  # pylint: disable=wrong-import-position
from tff_rdq.codecs import elias_gamma  # pylint: disable=wrong-import-position
from tff_rdq.codecs import rans  # pylint: disable=wrong-import-position
from tff_rdq.codecs import run_length_rans  # pylint: disable=wrong-import-position

MODULES = {'elias_gamma': elias_gamma, 'rans': rans, 'run_length_rans': run_length_rans}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args) -> str:
  try:
    return subprocess.run(['git', *args], cwd=_REPO, check=True, capture_output=True,
                          text=True).stdout
  except subprocess.CalledProcessError as e:
    raise SystemExit(f'git {" ".join(args)} failed: {e.stderr.strip()}') from e


def module_at(name, revision, directory):
  """The codec module `name` as it is at git `revision`, loaded from `directory`.

  A single file (`tff_rdq/codecs/NAME.py`) or a package
  (`tff_rdq/codecs/NAME/`): a package's files are copied as the package
  `NAME_at_revision`, its absolute imports of itself renamed to match.
  """
  alias = f'{name}_at_revision'
  package = f'tff_rdq/codecs/{name}'
  files = [f for f in _git('ls-tree', '-r', '--name-only', revision, f'{package}/').split()
           if f.endswith('.py')]
  if not files:
    files = [f'{package}.py']
  root = os.path.join(directory, alias) if len(files) > 1 or files[0].endswith('/__init__.py') \
      else None
  for path in files:
    source = _git('show', f'{revision}:{path}').replace(f'tff_rdq.codecs.{name}', alias)
    if root is None:
      target = os.path.join(directory, f'{alias}.py')
    else:
      target = os.path.join(root, os.path.relpath(path, package))
      os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, 'w') as f:
      f.write(source)
  sys.path.insert(0, directory)
  try:
    return importlib.import_module(alias)
  finally:
    sys.path.remove(directory)


def phase_graphs(module, sizes):
  """`(encode, decode)` graph functions of a codec module for vectors of `sizes`."""
  def encode(*vectors):
    if hasattr(module, 'encode_many'):
      return module.encode_many(list(vectors))
    return [module.encode_to_bytes(v) for v in vectors]

  def decode(*datas):
    if hasattr(module, 'decode_many') and len(datas) > 1:
      pairs = module.decode_many(list(datas), sizes)
    else:
      pairs = [module.decode_from_bytes(d, n) for d, n in zip(datas, sizes)]
    return [values for values, _ in pairs], [ok for _, ok in pairs]

  return tf.function(encode, autograph=False), tf.function(decode, autograph=False)


def _call(fn, args):
  start = time.perf_counter()
  for t in tf.nest.flatten(fn(*args)):
    t.numpy()
  return time.perf_counter() - start


def compare(today, revision, integers, repeats):
  """Median ms per call and median paired ratios (today / revision) per phase."""
  vectors = [tf.constant(q) for q in integers]
  sizes = [int(q.size) for q in integers]
  graphs, datas = {}, {}
  for version, module in (('revision', revision), ('today', today)):
    encode, decode = phase_graphs(module, sizes)
    datas[version] = encode(*vectors)
    decoded, oks = decode(*datas[version])
    if not all(bool(ok) for ok in oks) or not all(
        np.array_equal(y.numpy(), q) for y, q in zip(decoded, integers)):
      raise SystemExit(f'{version}: round trip failed')
    graphs[version] = (encode, decode)
  same = all(np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(datas['revision'], datas['today']))
  times = {(v, p): [] for v in graphs for p in ('encode', 'decode')}
  for _ in range(repeats):
    for version, (encode, decode) in graphs.items():
      times[version, 'encode'].append(_call(encode, vectors))
      times[version, 'decode'].append(_call(decode, datas[version]))
  result = dict(same_bytes=same)
  for phase in ('encode', 'decode'):
    old, new = np.array(times['revision', phase]), np.array(times['today', phase])
    result[phase] = (1e3 * float(np.median(old)), 1e3 * float(np.median(new)),
                     float(np.median(new / old)))
  return result


def checked_update(parser, args):
  """The saved update `args.update`, after checking it and `args.repeats`."""
  if args.repeats < 1:
    parser.error('--repeats must be at least 1')
  if not os.path.exists(args.update):
    parser.error(f'{args.update} does not exist: save updates with --set '
                 'aggregator.save_updates_rounds=[20] --set aggregator.save_updates_clients=1')
  return round_profile.load_update(args.update)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--against', required=True, help='git revision to compare with')
  parser.add_argument('--codec', default='run_length_rans', choices=sorted(MODULES))
  parser.add_argument('--update', default='runs/updates_local/updates/round0020_client00.npz',
                      help='a saved update (.npz; see aggregator.save_updates_rounds)')
  parser.add_argument('--steps', type=float, nargs='+', default=[0.3, 1.0, 3.0],
                      help='steps (multiples of each tensor RMS)')
  parser.add_argument('--repeats', type=int, default=11, help='paired calls per phase')
  args = parser.parse_args(argv)
  update = checked_update(parser, args)
  with tempfile.TemporaryDirectory() as directory:
    revision = module_at(args.codec, args.against, directory)
    print(f'{args.codec}: today against {args.against}, {args.update}, '
          f'{args.repeats} paired calls per phase; ms per call (medians), today / revision '
          '(median of paired ratios)')
    for step in args.steps:
      r = compare(MODULES[args.codec], revision,
                  real_update_codecs.quantize(update, step), args.repeats)
      print(f'step {step:g}: ' + '; '.join(
          f'{phase} {r[phase][0]:.1f} -> {r[phase][1]:.1f} ms ({r[phase][2]:.3f})'
          for phase in ('encode', 'decode'))
            + ('; same bytes' if r['same_bytes'] else '; bytes differ'), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
