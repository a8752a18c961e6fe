"""Acquisition functions: score the pool, then select a batch.

Public scores (higher = query first):
* softmax: `least_confidence`, `margin`, `entropy` on `(n, C)` probabilities;
* MC-dropout: `bald`, `predictive_entropy`, `variation_ratio`, `variation_ratio_mode`,
  `mc_pred_class_variance` on `(T, n, C)` probabilities.
Set selectors: `kcenter_greedy(embeddings, labeled_mask, budget)` and
`badge(probs, embeddings, labeled_mask, budget, key)`.

Every acquisition the loop can use is registered by name in `ACQUISITIONS` (a read-only
mapping of `base.Acquisition` entries) and called through `acquire(name, view, budget, key)`.
Add your own with `register(name, fn, needs=..., score=..., defaults=..., validate=...)`,
where `fn(view, budget, key) -> indices`; then set `acquisition.name = name`.
Options (`config.acquisition.options`, passed as `view.options` with the defaults filled in;
one section serves every acquisition of a study, so a key that some registered
acquisition declares is accepted and the others ignore it; other keys are refused):
* `mc_samples` (T, default 100) for `bald` and `mc_variance`;
* `mc_head_only` (default: automatic, i.e. head-only when the backbone has no dropout) to
  force the full-model (`False`) or head-only (`True`) MC path;
* `kcenter_dtype` (`"float32"`, default, or `"bfloat16"`: half the bytes read per pick,
  picks may differ slightly) for `coreset`;
* `kcenter_prune` (default `True`) for `coreset`: screen (row, new center) pairs by a
  projected lower bound and compute only those that may change; same picks as the plain
  kernel (ignored on a multi-device mesh).

`least_confidence` in the registry scores from logits (`least_confidence_from_logits`),
which keeps confident rows ordered in float32; the others score from probabilities.

The built-in acquisitions score and select on the device, from the predictor's device
arrays, and `acquire` reads the picks back with one explicit `jax.device_get`: a round's
selection makes no implicit transfer (it runs under `jax.transfer_guard("disallow")`).
An `fn` may return host or device indices.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxal import config as config_lib
from jaxal.acquisition.badge_seeding import badge
from jaxal.acquisition.class_balance import class_balanced_top_k
from jaxal.acquisition.epig import epig_scores
from jaxal.acquisition import base
from jaxal.acquisition.base import NEEDS, Acquisition, PoolView, score_based, top_k_selectable
from jaxal.acquisition.kcenter import kcenter_greedy
from jaxal.acquisition.mc_dropout import (bald, bald_from_stats, mc_pred_class_variance, predictive_entropy,
                                          variation_ratio, variation_ratio_mode)
from jaxal.acquisition import batchbald as batchbald_lib
from jaxal.acquisition import cluster_margin as cluster_margin_lib
from jaxal.acquisition import stochastic
from jaxal.acquisition import epig as epig_lib
from jaxal.acquisition import probcover as probcover_lib
from jaxal.acquisition import typiclust as typiclust_lib
from jaxal.acquisition.random import random_acquire
from jaxal.acquisition.uncertainty import entropy, least_confidence, least_confidence_from_logits, margin
from jaxal.inference import Predictor

from jaxal.registry import Registry

# Each method's array-level entry point under the package. `batchbald`, `typiclust` and
# `probcover` are the functions (their modules: `importlib.import_module("jaxal.acquisition.X")`).
batchbald = batchbald_lib.batchbald
typiclust = typiclust_lib.typiclust
probcover = probcover_lib.probcover_full
cluster_pool = cluster_margin_lib.cluster_pool
cluster_margin_select = cluster_margin_lib.cluster_margin_select
stochastic_top_k = stochastic.stochastic_top_k

__all__ = ["ACQUISITIONS", "Acquisition", "PoolView", "Predictor", "acquire", "check_options", "register",
           "unregister", "badge", "bald", "bald_from_stats", "batchbald", "class_balanced_top_k", "cluster_margin_select",
           "cluster_pool", "entropy", "epig_scores", "probcover", "stochastic_top_k", "typiclust",
           "kcenter_greedy", "least_confidence", "least_confidence_from_logits", "margin", "mc_pred_class_variance",
           "predictive_entropy", "top_k_selectable", "variation_ratio", "variation_ratio_mode"]


def _mc_stats(view: PoolView, key):
  head_only = view.options["mc_head_only"]
  return view.predictor.mc_statistics(int(view.options["mc_samples"]), key, head_only=head_only)


def least_confidence_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """Top-`budget` by `1 - max p`, computed from logits."""
  logits, _ = view.predictor.outputs()
  return stochastic.select_with_options(least_confidence_from_logits(logits), view, budget, key)


def bald_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """Top-`budget` by BALD mutual information over `mc_samples` dropout passes."""
  stats = _mc_stats(view, key)
  return stochastic.select_with_options(bald_from_stats(stats["mean_probs"], stats["mean_entropy"]), view, budget,
                                        key)


def mc_variance_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """active-iNAS's MC-dropout query: highest variance of the predicted class's probability."""
  stats = _mc_stats(view, key)
  return stochastic.select_with_options(stats["pred_class_variance"], view, budget, key)


def coreset_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """Greedy k-center on penultimate embeddings, the labeled points as initial centers."""
  del key
  _, embeddings = view.predictor.outputs()
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[view.options["kcenter_dtype"]]
  centers = view.labeled_mask | ~view.selectable_mask  # held-out points are never picked
  sharding = getattr(view.predictor, "sharding", None)
  return kcenter_greedy(embeddings, centers, budget, storage_dtype=dtype,
                        mesh=None if sharding is None else sharding.mesh,
                        prune=bool(view.options["kcenter_prune"]))


def badge_acquire(view: PoolView, budget: int, key) -> np.ndarray:
  """BADGE: k-means++ seeding on factorized gradient embeddings of the selectable points."""
  _, embeddings = view.predictor.outputs()
  sharding = getattr(view.predictor, "sharding", None)
  return badge(view.predictor.probs(), embeddings, ~view.selectable_mask, budget, key,
               mesh=None if sharding is None else sharding.mesh)


ACQUISITIONS = Registry("acquisition")


def register(name: str, fn: Callable, *, needs=("probs",), score: Callable | None = None,
             defaults: dict | None = None, validate: Callable[[dict], None] | None = None) -> None:
  """Adds acquisition `name` (see `base.Acquisition` for the metadata); duplicates raise ValueError."""
  needs = tuple(needs)
  if not callable(fn):
    raise ValueError(f"acquisition {name!r}: fn must be callable, got {fn!r}")
  if not set(needs) <= set(NEEDS):
    raise ValueError(f"acquisition {name!r}: needs {needs} must be drawn from {NEEDS}")
  if score is not None and "probs" not in needs:
    raise ValueError(f"acquisition {name!r}: a score of the probabilities needs ('probs',)")
  ACQUISITIONS.add(name, Acquisition(fn, needs, score, dict(defaults or {}), validate))


def unregister(name: str) -> None:
  ACQUISITIONS.remove(name)


def _check(cond: bool, key: str, message: str) -> None:
  if not cond:
    raise config_lib.ConfigError(f"acquisition.options.{key}: {message}")


def _validate_scores(options: dict) -> None:
  """The options every score-based acquisition takes: stochastic batches and class balance."""
  stochastic.validate(options)


def _validate_mc(options: dict) -> None:
  _validate_scores(options)
  base.check_counts(options, ("mc_samples",))
  base.check_head_only(options)


def _validate_kcenter(options: dict) -> None:
  _check(options["kcenter_dtype"] in ("float32", "bfloat16"), "kcenter_dtype",
         f"must be float32 or bfloat16, got {options['kcenter_dtype']!r}")
  _check(isinstance(options["kcenter_prune"], bool), "kcenter_prune",
         f"must be True or False, got {options['kcenter_prune']!r}")


def _validate_margin(options: dict) -> None:
  _validate_scores(options)
  # margin scores are <= 0: their power s^(1/T) is not a sampling weight
  _check(options["stochastic"] != "power", "stochastic",
         "power sampling needs positive scores, and margin's are <= 0; use softmax or softrank")


_SCORES = dict(defaults=stochastic.DEFAULTS, validate=_validate_scores)
_MC = dict(needs=("mc_probs",), defaults={"mc_samples": 100, "mc_head_only": None, **stochastic.DEFAULTS},
           validate=_validate_mc)
register("random", random_acquire, needs=())
register("least_confidence", least_confidence_acquire, needs=("logits", "probs"), score=least_confidence, **_SCORES)
register("margin", score_based(margin), score=margin, defaults=stochastic.DEFAULTS, validate=_validate_margin)
register("entropy", score_based(entropy), score=entropy, **_SCORES)
register("bald", bald_acquire, **_MC)
register("mc_variance", mc_variance_acquire, **_MC)
register("coreset", coreset_acquire, needs=("embeddings",),
         defaults={"kcenter_dtype": "float32", "kcenter_prune": True}, validate=_validate_kcenter)
register("badge", badge_acquire, needs=("probs", "embeddings"))
register("batchbald", batchbald_lib.batchbald_acquire, needs=("mc_probs",), defaults=batchbald_lib.DEFAULTS,
         validate=batchbald_lib.validate)
register("epig", epig_lib.epig_acquire, needs=("mc_probs",), defaults=epig_lib.DEFAULTS, validate=epig_lib.validate)
register("typiclust", typiclust_lib.typiclust_acquire, needs=("embeddings",), defaults=typiclust_lib.DEFAULTS,
         validate=typiclust_lib.validate)
register("probcover", probcover_lib.probcover_acquire, needs=("logits", "embeddings"),
         defaults=probcover_lib.DEFAULTS, validate=probcover_lib.validate)
register("cluster_margin", cluster_margin_lib.cluster_margin_acquire, needs=("probs", "embeddings"),
         defaults=cluster_margin_lib.DEFAULTS, validate=cluster_margin_lib.validate)


def check_options(name: str, options: dict) -> None:
  """Raises `ConfigError` naming `acquisition.options.<key>` for a key no registered
  acquisition declares, or for a value acquisition `name`'s own check refuses."""
  declared = {key for entry in ACQUISITIONS.values() for key in entry.defaults}
  for key in options:
    _check(key in declared, key, f"unknown option for acquisition {name!r}; its options: "
           f"{sorted(ACQUISITIONS[name].defaults)}, all acquisitions': {sorted(declared)}")
  entry = ACQUISITIONS[name]
  if entry.validate is not None:
    entry.validate({**entry.defaults, **options})


def acquire(name: str, view: PoolView, budget: int, key: jax.Array) -> np.ndarray:
  """Runs acquisition `name`; returns `budget` distinct selectable indices."""
  if name not in ACQUISITIONS:
    raise ValueError(ACQUISITIONS.unknown(name))
  entry = ACQUISITIONS[name]
  view = dataclasses.replace(view, options={**entry.defaults, **view.options})  # `state` stays the run's dict
  picked = np.asarray(jax.device_get(entry(view, budget, key)), dtype=np.int32)
  if picked.shape != (budget,) or len(set(picked.tolist())) != budget:
    raise AssertionError(f"acquisition {name!r} returned {picked.shape} indices, not {budget} distinct")
  if not view.selectable_mask[picked].all():
    raise AssertionError(f"acquisition {name!r} picked a point that is not selectable")
  return picked
