"""Bayesian architecture optimizers (Depth-Dropout, BBDropout) as loop searches.

Search names are `<method>_<mode>` with method `depth_dropout` or `bbdropout` and mode:
* `joint`: every round, train the Bayesian model on the current labeled set (ELBO, the
  loop's `train` config, `search.epochs` epochs or `train.epochs` when 0) and read out
  its architecture;
* `spo` (supervised pre-optimization): do that once, in round 0 on the initial labeled
  set, then keep that read-out architecture for every later round;
* `upo` (unsupervised pre-optimization on DeepCluster pseudo-labels) stops with a config
  error: `jaxal.pretrain.deepcluster` trains through `train_block` without `data_scale`,
  so the model's KL would be dropped and the posterior never pays for its depth or width;
  UPO needs that pretraining to pass 1 / pool size.

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

from jaxal import config as config_lib
from jaxal.models import bbdropout as bb_lib
from jaxal.models import depth_dropout as dd_lib

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
  if mode == "upo":
    raise config_lib.ConfigError(
        f"search.name: {method}_upo (DeepCluster pseudo-labels) is not supported yet: jaxal.pretrain trains "
        f"without the model's KL term, which the read-out depends on; use {method}_joint or {method}_spo")
  if mode == "spo":
    before = _optimized_before(context, method)
    if before is not None:
      return "plain_cnn", dict(before["model_options"]), {**before, "reused": True}
  options = _model_options(config, method)
  labeled = context.pool_state.labeled_indices
  trainer = context.trainer_for(method, options)
  epochs = int(config.search.epochs) or int(config.train.epochs)
  fit = trainer.fit(context.key, context.data.pool_inputs, context.pool_state.labels, labeled, epochs=epochs)
  widths, width, readout = architecture(method, fit.state.params, options)
  plain = _plain_options(config, widths, width)
  info = {"method": method, "mode": mode, "optimized_round": int(context.round), "reused": False,
          "num_labeled": int(labeled.size), "search_epochs": epochs, "elbo_loss": float(fit.train_loss),
          "search_train_accuracy": float(fit.train_accuracy), "widths": widths, "model": "plain_cnn",
          "model_options": plain, **_round_floats(readout)}
  return "plain_cnn", plain, info


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
