"""Running the sweep: every run of every setting, resumable, then the report."""

import pathlib
import time

from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import stackoverflow
from tff_rdq.experiments.reproduce.reporting import report
from tff_rdq.experiments.reproduce.results import (
    _add_wall_seconds, _copy_run, _frontier_path, finished_summary, write_frontier)
from tff_rdq.experiments.reproduce.settings import Run, load


def run_order(runs: list[Run]) -> list[Run]:
  """The order `sweep` runs them in: the settings' first runs, then their second, ...

  Round-robin over the settings, each setting's updates-saving run first and
  then its other runs in config order (`load` lists an arm's seeds one after
  the other), so that a sweep stopped early has covered every setting as far
  as it got: the first runs already give every setting's frontier (Claim 1
  needs nothing else), the next ones (with `mean` listed first) the
  uncompressed reference, then whole arms, each ready for its verdict.
  """
  position, seen = [], {}
  for run in runs:
    if run.saves_updates:
      position.append(-1)
      continue
    position.append(seen.get(run.setting, 0))
    seen[run.setting] = position[-1] + 1
  return [run for _, _, run in sorted(
      zip(position, range(len(runs)), runs), key=lambda item: item[:2])]


def sweep(path, overrides=(), progress=True, docs_dir=None, only=()) -> pathlib.Path:
  """Runs the sweep (skipping finished runs), then writes the report; returns its path.

  `docs_dir`: where runs are copied and the report written (default: the
  config's `docs_dir`). `only`: names of settings to run (all if empty); the
  report covers them all.
  """
  loaded = load(path, overrides)
  runs = loaded.runs
  docs_dir = pathlib.Path(docs_dir or loaded.docs_dir)
  names = list(dict.fromkeys(run.setting for run in runs))
  unknown = [name for name in only if name not in names]
  if unknown:
    raise config_lib.ConfigError(
        f'{path}: no setting named {unknown[0]!r}; the settings are {names}.')
  selected = [run for run in run_order(runs) if not only or run.setting in only]
  start = time.perf_counter()
  for i, run in enumerate(selected):
    prefix = f'[{i + 1}/{len(selected)}] {run.setting}/{run.label}'
    frontier_csv = _frontier_path(docs_dir, run.setting)
    needs_frontier = run.saves_updates and not frontier_csv.is_file()
    updates_index = run.config.run_dir / 'updates' / 'index.json'
    if finished_summary(docs_dir, run) is not None and (
        not needs_frontier or updates_index.is_file()):
      print(f'{prefix}: finished earlier, skipped', flush=True)
    else:
      print(f'{prefix}: running', flush=True)
      run_start = time.perf_counter()
      try:
        summary = stackoverflow.run(run.config, progress=progress)
      finally:
        seconds = _add_wall_seconds(run.config.run_dir / 'wall_seconds.json',
                                    time.perf_counter() - run_start)
      _copy_run(run, docs_dir)
      print(f'{prefix}: finished, {seconds:.0f} s in the run; eval loss '
            f'{summary["eval_loss"]:.4f}, accuracy w/o OOV/EOS '
            f'{summary["eval_accuracy_without_oov_or_eos"]:.4f}, '
            f'{summary["mean_bits_per_parameter"]:.3f} bits/parameter', flush=True)
    if needs_frontier and updates_index.is_file():
      write_frontier(run, docs_dir)
      print(f'{prefix}: frontier of its saved updates in {frontier_csv}', flush=True)
    elif needs_frontier:
      print(f'{prefix}: saved no updates (are save_updates.rounds within training.rounds?)',
            flush=True)
    print(f'  elapsed {time.perf_counter() - start:.0f} s', flush=True)
  return report(runs, docs_dir, loaded.analysis)
