"""The files of `DOCS` (`docs/reproduction`): the runs' copies and the frontiers.

`DOCS/runs/SETTING/LABEL/` holds a finished run's `summary.json`,
`metrics.csv`, `config.json` and `wall_seconds.json`; `DOCS/frontier/SETTING.csv`
the frontier of the updates that the setting's run saved (`FRONTIER_FIELDS`
rows, `measure_frontier`) and `SETTING_seconds.json` the time measuring it took.
"""

import csv
import json
import math
import pathlib
import time

import numpy as np

from tff_rdq.experiments import config as config_lib
from tff_rdq.experiments import frontier
from tff_rdq.experiments import updates as updates_lib
from tff_rdq.experiments.reproduce.settings import Run
from tff_rdq.quantizers import uniform

# Distortion normalizations: frontier CSV column -> description.
NORMALIZATIONS = {
    'relative_distortion': 'whole update (squared error / squared norm)',
    'tensor_relative_distortion': 'per tensor (mean over tensors of squared error / squared norm)',
}


def _normalization_name(key: str) -> str:
  """The short name of a normalization: its description up to the parenthesis."""
  return NORMALIZATIONS[key].split(' (')[0]


# What Claim 1's regression needs (`claim1`), per update: the client's
# `examples` and `tokens` (from the saved update's index entry; blank where it
# has none: `updates.save_round` records no tokens so far), the fraction of
# embedding rows the update touches (`embedding_rows_touched`) and its
# `squared_norm`; per step, the `zero_fraction` of the quantized integers.
# The first sweep's CSVs lack them: `read_frontier` gives NaN.
UPDATE_FIELDS = ('examples', 'tokens', 'embedding_rows_touched', 'squared_norm')
FRONTIER_FIELDS = ('setting', 'corpus', 'optimizer', 'round', 'client', 'client_id',
                   *UPDATE_FIELDS, 'parameters', 'step', 'step_size', 'bits_per_parameter',
                   *NORMALIZATIONS, 'zero_fraction')


def _run_docs(docs_dir: pathlib.Path, run: Run) -> pathlib.Path:
  return docs_dir / 'runs' / run.setting / run.label


def _frontier_path(docs_dir: pathlib.Path, setting: str) -> pathlib.Path:
  return docs_dir / 'frontier' / f'{setting}.csv'


def _frontier_seconds_path(docs_dir: pathlib.Path, setting: str) -> pathlib.Path:
  return docs_dir / 'frontier' / f'{setting}_seconds.json'


def _read_json(path: pathlib.Path):
  return json.loads(path.read_text()) if path.is_file() else None


def _same_config(saved: dict | None, config: config_lib.ExperimentConfig) -> bool:
  """Whether a copied `config.json` is `config`, keys added since taking their defaults.

  (A key added to the config later, such as `aggregator.on_corrupt`, defaults
  to what runs did before it existed.)
  """
  if saved is None:
    return False
  try:
    return config_lib.to_dict(config_lib.from_dict(saved)) == config_lib.to_dict(config)
  except config_lib.ConfigError:  # A key that no longer exists: another config.
    return False


def finished_summary(docs_dir, run: Run):
  """The run's copied summary if it is finished with the run's config, else None."""
  directory = _run_docs(pathlib.Path(docs_dir), run)
  summary = _read_json(directory / 'summary.json')
  if (summary is None or not _same_config(_read_json(directory / 'config.json'), run.config)
      or summary.get('rounds') != run.config.training.rounds):
    return None
  return summary


def _add_wall_seconds(path: pathlib.Path, seconds: float) -> float:
  total = (_read_json(path) or {}).get('seconds', 0.0) + seconds
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({'seconds': total}))
  return total


def _copy_run(run: Run, docs_dir: pathlib.Path) -> None:
  target = _run_docs(docs_dir, run)
  target.mkdir(parents=True, exist_ok=True)
  for name in ('metrics.csv', 'wall_seconds.json', 'config.json', 'summary.json'):
    source = run.config.run_dir / name
    if source.is_file():
      # The summary last: its presence marks the copy complete.
      tmp = target / (name + '.tmp')
      tmp.write_bytes(source.read_bytes())
      tmp.replace(target / name)


def measure(flat, step: float, rounding='uniform', codec='elias_gamma',
            normalization='rms') -> dict:
  """Compresses one update (float32 vectors) as the aggregator does, at grid `step`.

  Returns `dict(step_size, bytes, squared_errors, squared_norms, zeros)`, the
  errors and norms per tensor (float64), `bytes` the streams' length with
  headers, `zeros` the number of quantized integers equal to 0.
  """
  _, size, streams, _, quantized = frontier.compress_update(
      flat, step, rounding, codec, normalization)
  errors, zeros = [], 0
  for values, (tensor_step, tensor_seed, integers) in zip(flat, quantized):
    reconstruction = uniform.dequantize(integers, tensor_step, rounding, tensor_seed).numpy()
    errors.append(float(np.sum(np.square(reconstruction.astype(np.float64) - values))))
    zeros += int(np.count_nonzero(integers.numpy() == 0))
  norms = [float(np.sum(np.square(v.astype(np.float64)))) for v in flat]
  return dict(step_size=size, bytes=sum(len(s.numpy()) for s in streams),
              squared_errors=errors, squared_norms=norms, zeros=zeros)


def embedding_rows_touched(tensors) -> float:
  """Fraction of the embedding's rows that an update changes; NaN if none is found.

  The embedding is the first 2-D tensor with one row per vocabulary entry, i.e.
  as many rows as the last tensor (the output layer's bias, one logit per
  entry, in `create_recurrent_model`) has entries. Local SGD changes the rows of
  the tokens in the client's batches only, so this is about the share of the
  vocabulary (OOV, beginning and end of sentence included) the client used.
  """
  vocabulary = np.asarray(tensors[-1]).size if len(tensors) else 0
  for tensor in tensors:
    tensor = np.asarray(tensor)
    if tensor.ndim == 2 and tensor.shape[0] == vocabulary and vocabulary > 0:
      return float(np.mean(np.any(tensor != 0, axis=1)))
  return float('nan')


def measure_frontier(run: Run) -> list[dict]:
  """`FRONTIER_FIELDS` rows of every update `run` saved, over its frontier steps."""
  a = run.config.aggregator
  rows = []
  for entry, tensors in updates_lib.load_updates(run.config.run_dir):
    flat = [np.asarray(t, np.float32).reshape(-1) for t in tensors]
    n = sum(v.size for v in flat)
    update = dict(
        setting=run.setting, corpus=run.corpus, optimizer=run.optimizer,
        round=int(entry['round']), client=int(entry['client']),
        client_id=entry.get('client_id', ''), examples=entry.get('examples', ''),
        tokens=entry.get('tokens', ''), embedding_rows_touched=embedding_rows_touched(tensors),
        squared_norm=sum(float(np.sum(np.square(v.astype(np.float64)))) for v in flat),
        parameters=n)
    for step in run.frontier_steps or frontier.DEFAULT_STEPS:
      m = measure(flat, step, a.rounding, a.codec, a.normalization)
      per_tensor = [e / s for e, s in zip(m['squared_errors'], m['squared_norms']) if s > 0]
      rows.append(dict(
          update, step=step, step_size=m['step_size'], bits_per_parameter=8 * m['bytes'] / n,
          relative_distortion=sum(m['squared_errors']) / sum(m['squared_norms']),
          tensor_relative_distortion=float(np.mean(per_tensor)), zero_fraction=m['zeros'] / n))
  return rows


def write_frontier(run: Run, docs_dir) -> pathlib.Path:
  start = time.perf_counter()
  rows = measure_frontier(run)
  path = _frontier_path(pathlib.Path(docs_dir), run.setting)
  path.parent.mkdir(parents=True, exist_ok=True)
  _write_csv(path, FRONTIER_FIELDS, rows)
  _add_wall_seconds(_frontier_seconds_path(pathlib.Path(docs_dir), run.setting),
                    time.perf_counter() - start)
  return path


def _write_csv(path, fields, rows) -> None:
  tmp = path.with_suffix('.tmp')
  with tmp.open('w', newline='') as f:
    writer = csv.DictWriter(f, fields, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
  tmp.replace(path)


def read_frontier(path) -> list[dict]:
  with open(path, newline='') as f:
    rows = list(csv.DictReader(f))
  for row in rows:
    for key in ('round', 'client', 'parameters'):
      row[key] = int(row[key])
    for key in ('step', 'step_size', 'bits_per_parameter', *NORMALIZATIONS):
      row[key] = float(row[key])
    # Absent from the first sweep's CSVs (and blank where not recorded).
    for key in (*UPDATE_FIELDS, 'zero_fraction'):
      row[key] = float(row[key]) if row.get(key) not in (None, '') else math.nan
  return rows
