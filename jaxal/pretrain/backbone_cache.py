"""The run's pretrained backbone: computed once per workdir, optionally shared through a cache.

`pretrained_backbone` is called by the loop before round 0; the backbone is a nested dict of
arrays stored as npz (`checkpoint.artifacts.save_tree`, never pickle).
"""

import hashlib
import json

import jax

from jaxal import parallel
from jaxal import paths
from jaxal import pretrain as pretrain_lib
from jaxal.checkpoint import artifacts
from jaxal.checkpoint import run_files

PRETRAIN_KEY = 2**31 - 1  # fold_in tag of the pretraining key (rounds use 0, 1, 2, ...)


save_tree, load_tree = artifacts.save_tree, artifacts.load_tree  # where tests and tools look for them


def pretrain_fingerprint(config) -> str:
  """A hash of what determines the pretrained backbone: data, model, pretraining, seed."""
  what = {"data": config.data.to_dict(), "model": config.model.to_dict(), "seed": config.seed,
          "pretrain": {k: v for k, v in config.pretrain.to_dict().items() if k != "cache_dir"},
          "steps_per_call": config.train.steps_per_call, "chunk_size": config.acquisition.chunk_size}
  return hashlib.sha256(json.dumps(what, sort_keys=True, default=list).encode()).hexdigest()[:16]


def pretrained_backbone(config, workdir, data, trainer_for, base_key, mesh, *, log):
  """The run's pretrained backbone variables: computed once, then read from the workdir.

  `WORKDIR/pretrained.npz` holds the backbone (the k-way head dropped) and
  `WORKDIR/pretrained.json` the per-epoch history; a resumed run reads them back. With
  `pretrain.cache_dir`, runs that differ only in what pretraining never sees (the
  acquisition, the AL budget, training settings) share one backbone, found there by
  `pretrain_fingerprint`.
  """
  p = config.pretrain
  pretraining = pretrain_lib.PRETRAINS[p.name]
  if pretraining.fn is None:
    return None
  workdir = paths.of(workdir)
  path = workdir / "pretrained.npz"
  if path.exists():
    log(config, f"pretraining: reusing {path}")
    return load_tree(path)
  cached = None
  if p.cache_dir:
    cached = paths.of(p.cache_dir) / pretrain_fingerprint(config)
    if (cached / "pretrained.npz").exists() and (cached / "pretrained.json").exists():
      log(config, f"pretraining: reusing {cached}")
      if parallel.is_primary():
        for name in ("pretrained.json", "pretrained.npz"):  # the npz last: it marks the workdir done
          artifacts.copy_file(cached / name, workdir / name)
      return load_tree(cached / "pretrained.npz")
  log(config, f"pretraining ({p.name}, {p.style}): {p.epochs} epochs on {len(data.pool)} pool inputs")
  trainer = trainer_for(config.model.name, dict(config.model.options))
  result = pretraining.fn(config=config, trainer=trainer, data=data, key=jax.random.fold_in(base_key, PRETRAIN_KEY),
                          mesh=mesh)
  if parallel.is_primary():
    meta = json.dumps({"name": p.name, "style": p.style, "seconds": round(float(getattr(result, "seconds", 0.0)), 3),
                       "collapsed": bool(getattr(result, "collapsed", False)),
                       "history": list(getattr(result, "history", []))})
    for where in ([cached] if cached else []) + [workdir]:
      where.mkdir(parents=True, exist_ok=True)
      run_files.atomic_write_text(where / "pretrained.json", meta)
      save_tree(where / "pretrained.npz", result.variables)  # last: its presence means complete
  return result.variables
