"""The `tff-rdq` command line.

  tff-rdq run CONFIG [--set section.key=value ...] [--no-progress] [--workers H:P,...]
  tff-rdq compare CONFIG [--set section.key=value ...] [--no-progress]
  tff-rdq reproduce CONFIG [--set section.key=value ...] [--no-progress] [--report-only]
                    [--only SETTING ...]
                    [--docs-dir DIR] [--readme docs/results.md]
  tff-rdq methods
  tff-rdq frontier RUN_DIR
  tff-rdq prepare-data [--source local|sotu] [--cache-dir DIR]
  tff-rdq worker --port P

`tff-rdq worker` serves one TFF worker (TFF's C++ `worker_binary`) on port P
of this machine until Ctrl-C or SIGTERM; `run --workers` splits each round's
clients across such workers.

Errors the user can fix (config, data, run directory) print one line and exit
with status 2. TensorFlow's start-up lines (the CUDA plugin registrations it
prints while being imported on a machine without a GPU) are not shown; what
TensorFlow prints after start-up is. Every TFF worker the command started is stopped before it
exits, also on Ctrl-C and SIGTERM.
"""

import argparse
import contextlib
import os
import pathlib
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog='tff-rdq', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)
  run = commands.add_parser('run', help='run (or resume) an experiment config')
  run.add_argument('config', help='a TOML file, e.g. configs/stackoverflow_local.toml')
  run.add_argument('--set', dest='overrides', action='append', default=[],
                   metavar='SECTION.KEY=VALUE', help='override a config value')
  run.add_argument('--no-progress', action='store_true', help='no progress bar')
  run.add_argument('--workers', default='', metavar='HOST:PORT,...',
                   help='TFF workers (`tff-rdq worker`) to split each round across')
  compare = commands.add_parser('compare', help='run a comparison sweep config')
  compare.add_argument('config', help='a TOML file with [[sweep]] tables, e.g. configs/compare_local.toml')
  compare.add_argument('--set', dest='overrides', action='append', default=[],
                       metavar='SECTION.KEY=VALUE', help='override a base config value')
  compare.add_argument('--no-progress', action='store_true', help='no progress bar')
  reproduce = commands.add_parser(
      'reproduce', help='run the reproduction sweep and write its claims report')
  reproduce.add_argument('config', help='a TOML file with [[setting]] tables, e.g. '
                         'configs/reproduce_local.toml')
  reproduce.add_argument('--set', dest='overrides', action='append', default=[],
                         metavar='SECTION.KEY=VALUE', help='override a base config value')
  reproduce.add_argument('--no-progress', action='store_true', help='no progress bar')
  reproduce.add_argument('--report-only', action='store_true',
                         help='only write the report from the results saved so far')
  reproduce.add_argument('--only', action='append', default=[], metavar='SETTING',
                         help='run only this setting (repeatable); the report covers all')
  reproduce.add_argument('--docs-dir', default=None,
                         help='where results are copied and the report is written '
                         '(the report is DIR.md); default: the config\'s docs_dir '
                         '(docs/reproduction if it names none)')
  reproduce.add_argument('--readme', default=None, metavar='PATH',
                         help='also put the report\'s summary (DIR/summary.md) between '
                         'the reproduction summary markers of this Markdown file (e.g. docs/results.md)')
  commands.add_parser('methods', help='list the aggregation methods')
  frontier = commands.add_parser(
      'frontier', help='rate-distortion sweep over the client updates a run saved')
  frontier.add_argument('run_dir', help='a run directory with updates/ (see aggregator.save_updates_*)')
  prepare = commands.add_parser('prepare-data', help='build a built-in corpus')
  prepare.add_argument('--source', default='local', choices=('local', 'sotu'),
                       help='local: SpamAssassin ham mails; sotu: State of the Union addresses')
  prepare.add_argument('--cache-dir', default=None,
                       help='default: data/stackoverflow_local (local), data/sotu (sotu)')
  worker = commands.add_parser('worker', help='serve a TFF worker for `run --workers`')
  worker.add_argument('--port', type=int, required=True, help='TCP port to serve on')
  return parser


@contextlib.contextmanager
def _quiet_native_stderr():
  """Sends what native code writes to file descriptor 2 to /dev/null meanwhile.

  TensorFlow's C++ logging writes to the descriptor directly and caches its
  log level when first used, so neither `sys.stderr` nor a later
  `TF_CPP_MIN_LOG_LEVEL` can silence its import-time registration errors.
  Python exceptions raised inside are printed after the descriptor is back.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  try:
    with open(os.devnull, 'w') as devnull:
      os.dup2(devnull.fileno(), 2)
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def main(argv=None) -> int:
  args = _parser().parse_args(argv)
  from tff_rdq.experiments import runtime  # pylint: disable=g-import-not-at-top
  if args.command == 'worker':
    # Before the imports below: a worker needs no TensorFlow in this process.
    try:
      return runtime.serve_worker(args.port)
    except (ValueError, runtime.WorkerError) as e:
      print(f'tff-rdq: error: {e}', file=sys.stderr)
      return 2
  # Imported here so that `--help` and argument errors are instant.
  with _quiet_native_stderr():
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  from tff_rdq.experiments import config as config_lib  # pylint: disable=g-import-not-at-top
  from tff_rdq.experiments import stackoverflow  # pylint: disable=g-import-not-at-top
  from tff_rdq.experiments import data as data_lib  # pylint: disable=g-import-not-at-top
  user_errors = (config_lib.ConfigError, stackoverflow.ExperimentError,
                 data_lib.CorpusNotFoundError, data_lib.CorpusFormatError,
                 data_lib.CorpusPreparationError, runtime.WorkerError)
  try:
    if args.command == 'prepare-data':
      path = data_lib.prepare_corpus(args.source, args.cache_dir)
      print(f'corpus ready: {path}')
      return 0
    if args.command == 'frontier':
      from tff_rdq.experiments import frontier  # pylint: disable=g-import-not-at-top
      try:
        return frontier.main(args.run_dir)
      except FileNotFoundError as e:
        print(f'tff-rdq: error: {e}', file=sys.stderr)
        return 2
    if args.command == 'methods':
      from tff_rdq.experiments import methods  # pylint: disable=g-import-not-at-top
      print('\n'.join(methods.method_names()))
      return 0
    if args.command == 'compare':
      from tff_rdq.experiments import compare  # pylint: disable=g-import-not-at-top
      out_dir = compare.compare(args.config, args.overrides, progress=not args.no_progress)
      print((out_dir / 'comparison.md').read_text())
      print(f'results in {out_dir}')
      return 0
    if args.command == 'reproduce':
      from tff_rdq.experiments import reproduce  # pylint: disable=g-import-not-at-top
      loaded = reproduce.load(args.config, args.overrides)
      docs_dir = args.docs_dir or loaded.docs_dir
      if args.report_only:
        path = reproduce.report(loaded.runs, docs_dir, loaded.analysis)
      else:
        path = reproduce.sweep(args.config, args.overrides, progress=not args.no_progress,
                               docs_dir=docs_dir, only=tuple(args.only))
      print(f'report in {path}')
      if args.readme:
        reproduce.update_readme(args.readme, pathlib.Path(docs_dir) / 'summary.md')
        print(f'summary in {args.readme}')
      return 0
    config = config_lib.load(args.config, args.overrides)
    workers = tuple(w for w in args.workers.split(',') if w)
    for address in workers:
      runtime.parse_address(address)  # A typo fails now, not after loading the data.
    summary = stackoverflow.run(config, progress=not args.no_progress, workers=workers)
    print('summary: ' + ', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                                  for k, v in summary.items()))
    print(f'results in {config.run_dir}')
    return 0
  except user_errors as e:
    print(f'tff-rdq: error: {e}', file=sys.stderr)
    return 2
  except (KeyboardInterrupt, stackoverflow.Terminated):
    # The run's context stopped its worker; a computation still in flight on
    # TFF's own thread may start another after that: stop those too.
    runtime.stop_late_workers()
    print('tff-rdq: interrupted; rerun the same command to resume.', file=sys.stderr)
    return 130


if __name__ == '__main__':
  sys.exit(main())
