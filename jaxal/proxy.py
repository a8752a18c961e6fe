"""Selection via Proxy (Coleman et al. 2020; ALGORITHMS.md §11): the target model's round.

In an SVP run `model` is the *selection model* (the proxy): the loop trains it every round
and it scores the pool. `target` names the expensive model that the selected data is for; it
is trained on the labeled set of the final round, and of any round in `target.eval_rounds`,
for evaluation only: its time is not part of the data-selection runtime. In those rounds the
target also scores the unlabeled pool, and the agreement between proxy and target is
recorded: Spearman's rho and Pearson's r of their acquisition scores on the same unlabeled
points, and the overlap of their top-b selections. Baseline mode is `target.name = ""`:
the selection model is the target.
"""

import copy
import time
from collections.abc import Mapping

import jax
import numpy as np

from jaxal import acquisition
from jaxal import metrics
from jaxal import models


class _ScoresView(Mapping):
  """Read-only, live: acquisition name -> its registered `score` (compatibility; the
  registry's `score=` metadata is the source). Those get rank correlations, others overlap only."""

  def __getitem__(self, name):
    if name not in acquisition.ACQUISITIONS or acquisition.ACQUISITIONS[name].score is None:
      raise KeyError(name)
    return acquisition.ACQUISITIONS[name].score

  def __iter__(self):
    return (name for name, entry in acquisition.ACQUISITIONS.items() if entry.score is not None)

  def __len__(self):
    return sum(1 for _ in self)


SCORES = _ScoresView()


def target_train_config(config):
  """`config.train` with the target's epoch and schedule overrides."""
  cfg = copy.deepcopy(config.train)
  with cfg.unlocked():
    if config.target.epochs:
      cfg.epochs = config.target.epochs
    if config.target.lr_schedule:
      cfg.lr_schedule = config.target.lr_schedule
  return cfg


def eval_rounds(config) -> set[int]:
  """Rounds whose labeled set trains the target: `target.eval_rounds` plus the last round."""
  last = config.al.num_rounds - 1
  text = str(config.target.eval_rounds).strip()
  if text == "all":
    return set(range(config.al.num_rounds))
  rounds = {last}
  for part in filter(None, (p.strip() for p in text.split(","))):
    rounds.add(last if part == "last" else int(part))
  return rounds


def target_round(*, config, data, pool, trainer_for, key, proxy_predictor, picked) -> dict:
  """Trains and evaluates the target if this round asks for it; returns record fields."""
  if not config.target.name or pool.round not in eval_rounds(config):
    return {}
  trainer = trainer_for(config.target.name, dict(config.target.options), target_train_config(config))
  t0 = time.perf_counter()
  fit = trainer.fit(key, data.pool_inputs, pool.labels, pool.labeled_indices, verbose=config.output.verbose)
  seconds = time.perf_counter() - t0
  test_predictor = trainer.predictor(fit.state, data.test_inputs, chunk_size=config.train.eval_chunk_size)
  logits = np.asarray(jax.device_get(test_predictor.outputs()[0]))  # one transfer
  labels = data.dataset.test.labels
  log_z = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
  described = models.describe(trainer.model, (1,) + data.dataset.input_shape, data.pool.inputs.dtype)
  out = {
      "target_architecture": described["architecture"],
      "target_num_params": described["num_params"],
      "target_test_accuracy": float(np.mean(logits.argmax(-1) == labels)),
      "target_test_loss": float(np.mean(log_z - logits[np.arange(labels.size), labels])),
      "target_train_seconds": round(seconds, 3),
  }
  if config.target.agreement and picked.size and proxy_predictor is not None:
    target_predictor = trainer.predictor(fit.state, data.pool_inputs, chunk_size=config.acquisition.chunk_size)
    out.update(agreement(config, pool, proxy_predictor, target_predictor, picked, key))
  return out


def agreement(config, pool, proxy_predictor, target_predictor, picked, key) -> dict:
  """Proxy-target agreement on the unlabeled points of this round."""
  unlabeled = ~pool.labeled_mask
  budget = int(picked.size)
  name = config.acquisition.name
  score = acquisition.ACQUISITIONS[name].score
  if score is not None:
    # Scored on the device; both score vectors come back in one transfer.
    proxy_scores, target_scores = jax.device_get((score(proxy_predictor.probs()), score(target_predictor.probs())))
    proxy_scores, target_scores = np.asarray(proxy_scores)[unlabeled], np.asarray(target_scores)[unlabeled]
    return {"spearman": metrics.spearman(proxy_scores, target_scores),
            "pearson": metrics.pearson(proxy_scores, target_scores),
            "topk_overlap": metrics.topk_overlap(proxy_scores, target_scores, budget)}
  view = acquisition.PoolView(pool.labeled_mask, unlabeled, target_predictor, dict(config.acquisition.options))
  target_picked = acquisition.acquire(name, view, budget, key)
  return {"topk_overlap": metrics.selection_overlap(picked, target_picked)}
