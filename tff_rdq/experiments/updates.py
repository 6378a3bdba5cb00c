"""Saving a sample of raw client updates, for rate-distortion analysis.

`aggregator.save_updates_rounds = [1, 10, ...]` and
`aggregator.save_updates_clients = K` make the experiment save, in each of
those rounds, the updates of the first `K` sampled clients to
`RUN_DIR/updates/round{R:04d}_client{I:02d}.npz` (one float32 array per
trainable tensor, keys `tensor_00`, `tensor_01`, ... in the model's order) and
an index `RUN_DIR/updates/index.json` (file, round, client index, client id,
examples, parameters).

An update is `trained weights - starting weights` of the client's local
training, recomputed here eagerly with the same model, starting weights
(the global model at the start of the round), preprocessed data and client
optimizer (SGD at `training.client_learning_rate`, one step per batch) as the
TFF client work of `build_weighted_fed_avg`. (TFF does not return individual
client updates from a round.)
"""

import json
import pathlib

import numpy as np
import tensorflow as tf


def client_update(model: tf.keras.Model, start_weights: list[np.ndarray], dataset,
                  learning_rate: float) -> tuple[list[np.ndarray], int]:
  """The update of one client's local SGD from `start_weights`, and its examples."""
  for variable, value in zip(model.trainable_variables, start_weights):
    variable.assign(value)
  loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  examples = 0
  for x, y in dataset:
    with tf.GradientTape() as tape:
      logits = model(x, training=True)
      # As TFF's client work computes it (checked in tests): in TFF's graphs the
      # Keras mask does not reach the loss, so padding positions count;
      # tf.identity drops the mask here the same way.
      loss = loss_fn(y, tf.identity(logits))
    grads = tape.gradient(loss, model.trainable_variables)
    for variable, grad in zip(model.trainable_variables, grads):
      variable.assign_sub(learning_rate * tf.convert_to_tensor(grad))
    examples += int(x.shape[0])
  update = [v.numpy() - w for v, w in zip(model.trainable_variables, start_weights)]
  return update, examples


def save_round(run_dir: pathlib.Path, round_num: int, model: tf.keras.Model,
               start_weights: list[np.ndarray], client_ids: list[str], datasets,
               learning_rate: float) -> None:
  """Saves the updates of `client_ids` (with their `datasets`) for one round."""
  directory = run_dir / 'updates'
  directory.mkdir(parents=True, exist_ok=True)
  index_path = directory / 'index.json'
  index = json.loads(index_path.read_text()) if index_path.exists() else []
  index = [e for e in index if e['round'] != round_num]  # A resumed round is redone.
  for i, (client_id, dataset) in enumerate(zip(client_ids, datasets)):
    update, examples = client_update(model, start_weights, dataset, learning_rate)
    name = f'round{round_num:04d}_client{i:02d}.npz'
    np.savez(directory / name, **{f'tensor_{k:02d}': u for k, u in enumerate(update)})
    index.append(dict(file=name, round=round_num, client=i, client_id=client_id,
                      examples=examples, parameters=int(sum(u.size for u in update))))
  tmp = index_path.with_suffix('.tmp')
  tmp.write_text(json.dumps(index, indent=1))
  tmp.replace(index_path)


def load_updates(run_dir: pathlib.Path) -> list[tuple[dict, list[np.ndarray]]]:
  """The saved `(index entry, tensors)` pairs of a run, in round, client order."""
  directory = pathlib.Path(run_dir) / 'updates'
  index_path = directory / 'index.json'
  if not index_path.exists():
    raise FileNotFoundError(
        f'{index_path} does not exist: run the experiment with '
        '--set aggregator.save_updates_rounds=[1,5] --set aggregator.save_updates_clients=3')
  entries = sorted(json.loads(index_path.read_text()), key=lambda e: (e['round'], e['client']))
  result = []
  for entry in entries:
    with np.load(directory / entry['file']) as arrays:
      result.append((entry, [arrays[k] for k in sorted(arrays.files)]))
  return result
