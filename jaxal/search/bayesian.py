"""Bayesian architecture optimizers (Depth-Dropout, BBDropout) as loop searches.

Search names are `<method>_<mode>` with method `depth_dropout` or `bbdropout` and mode:
* `joint`: every round, train the Bayesian model on the current labeled set (ELBO, the
  loop's `train` config, `search.epochs` epochs or `train.epochs` when 0) and read out
  its architecture;
* `spo` (supervised pre-optimization): do that once, in round 0 on the initial labeled
  set, then keep that read-out architecture for every later round;
* `upo` (unsupervised pre-optimization): once, in round 0, train the Bayesian model on
  the whole pool with DeepCluster pseudo-labels (`jaxal.pretrain.deepcluster` with the
  `pretrain.*` settings, `search.epochs` epochs or `train.epochs` when 0), each step an
  ELBO step with the KL scaled by 1 / pool size; read out its architecture and keep it.
  No label is used.

The loop then trains the read-out architecture, a fixed `plain_cnn` with the same block
layout: for Depth-Dropout the sampled depth (the reference's threshold: the most layers
with an active unit over `readout` samples) and each layer's mean active filter count;
for BBDropout every layer with its pruned width (#{k : E[π_k] ≥ threshold}; 0 drops a
residual layer). The Bayesian model's options come from `model.options` when `model.name`
is the method, else its defaults. The round record's `search` field holds the read-out
(π_l, active filters, depths; or E[π_k] and `pruned_widths`) for `jaxal.arch_report`;
`widths` is the read-out network's.
"""

import numpy as np

from jaxal.models import bbdropout as bb_lib
from jaxal.models import depth_dropout as dd_lib
from jaxal.pretrain import deepcluster

METHODS = ("depth_dropout", "bbdropout")
MODES = ("joint", "spo", "upo")


def _model_options(config, method: str) -> dict:
  options = dict(config.model.options) if config.model.name == method else {}
  return {k: v for k, v in options.items() if k != "dropout"}


def _plain_options(config, widths: list[int], width: int) -> dict:
  out = {"layers": len(widths), "width": int(width), "widths": ",".join(str(int(w)) for w in widths)}
  if "dropout" in config.model.options:
    out["dropout"] = float(config.model.options["dropout"])
  return out


def architecture(method: str, params, options: dict) -> tuple[list[int], int, dict]:
  """`(widths, width, read-out)` of trained params: the fixed network the loop trains."""
  if method == "depth_dropout":
    r = dd_lib.readout(params, num_samples=int(options.get("num_samples", 5)),
                       epsilon=float(options.get("epsilon", 0.01)))
    depth = max(1, r["depth"])
    widths = [int(round(f)) for f in r["active_filters"][:depth]]
    widths[0] = max(1, widths[0])
    return widths, r["width"], r
  r = bb_lib.readout(params, threshold=float(options.get("threshold", 0.1)))
  widths = list(r["widths"])
  widths[0] = max(1, widths[0])
  while len(widths) > 1 and widths[-1] == 0:
    widths.pop()
  return widths, r["width"], r


def _optimized_before(context, method: str):
  for record in context.history:
    info = record.get("search") or {}
    if info.get("method") == method and info.get("optimized_round") is not None:
      return info
  return None


def _search(context, method: str, mode: str):
  config = context.config
  if mode in ("spo", "upo"):
    before = _optimized_before(context, method)
    if before is not None:
      return "plain_cnn", dict(before["model_options"]), {**before, "reused": True}
  options = _model_options(config, method)
  labeled = context.pool_state.labeled_indices
  trainer = context.trainer_for(method, options)
  epochs = int(config.search.epochs) or int(config.train.epochs)
  if mode == "upo":
    params, stats = _pseudo_label_elbo(context, trainer, epochs)
  else:
    fit = trainer.fit(context.key, context.data.pool_inputs, context.pool_state.labels, labeled, epochs=epochs)
    params = fit.state.params
    stats = {"num_labeled": int(labeled.size), "elbo_loss": float(fit.train_loss),
             "search_train_accuracy": float(fit.train_accuracy)}
  widths, width, readout = architecture(method, params, options)
  plain = _plain_options(config, widths, width)
  info = {"method": method, "mode": mode, "optimized_round": int(context.round), "reused": False,
          "search_epochs": epochs, **stats, "widths": widths, "model": "plain_cnn",
          "model_options": plain, **_round_floats(readout)}
  return "plain_cnn", plain, info


def _pseudo_label_elbo(context, trainer, epochs: int):
  """UPO: the Bayesian model trained on DeepCluster pseudo-labels of the whole pool."""
  p, data = context.config.pretrain, context.data
  pool_size = int(data.pool_inputs.shape[0])
  result = deepcluster.pretrain(
      trainer.model, data.pool_inputs, data.dataset.num_classes, context.key, preprocess=data.preprocess,
      epochs=epochs, kmeans_iters=int(p.kmeans_iters), clusters_per_class=int(p.clusters_per_class), style=p.style,
      lr=float(p.lr), batch_size=min(int(p.batch_size), pool_size), momentum=float(p.momentum),
      weight_decay=float(p.weight_decay), chunk_size=int(context.config.acquisition.chunk_size),
      mesh=getattr(trainer, "mesh", None), verbose=bool(context.config.output.verbose), data_scale=1.0 / pool_size)
  last = result.history[-1]
  stats = {"num_labeled": 0, "pool_size": pool_size, "elbo_loss": float(last["loss"]),
           "pseudo_label_accuracy": float(last["accuracy"]), "nonempty_clusters": int(last["nonempty_clusters"]),
           "collapsed": bool(result.collapsed)}
  return result.full_variables["params"], stats


def _round_floats(tree, digits: int = 5):
  if isinstance(tree, dict):  # BBDropout's raw per-layer widths become `pruned_widths`
    return {("pruned_widths" if k == "widths" else k): _round_floats(v, digits) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_round_floats(v, digits) for v in tree]
  if isinstance(tree, (float, np.floating)):
    return round(float(tree), digits)
  return tree


def _make(method: str, mode: str):
  def search(context):
    return _search(context, method, mode)
  search.__name__ = f"{method}_{mode}"
  search.__doc__ = f"{method} architecture optimization, {mode} mode (see `jaxal.search.bayesian`)."
  return search


SEARCHES = {f"{method}_{mode}": _make(method, mode) for method in METHODS for mode in MODES}
