"""Config checks of the built-in searches, registered as their `validate=` (see `jaxal.search`).

Each takes the whole run config and raises `ConfigError` naming the offending field.
"""

from jaxal import config as config_lib


def _check(cond: bool, field: str, message: str):
  if not cond:
    raise config_lib.ConfigError(f"{field}: {message}")


def inas(config) -> None:
  _check(config.model.name == "resnet_grid", "model.name",
         "iNAS searches the resnet_grid family; set model.name='resnet_grid'")


def pdarts(config) -> None:
  s, p = config.search, config.search.pdarts
  _check(s.mode in ("joint", "spo", "upo"), "search.mode", f"must be joint, spo or upo, got {s.mode!r}")
  _check(config.model.name == "darts_net", "model.name", "P-DARTS trains darts_net; set model.name='darts_net'")
  stages = len(p.layers)
  _check(stages >= 1 and len(p.drop_ops) == stages and len(p.skip_dropout) == stages, "search.pdarts.layers",
         "layers, drop_ops and skip_dropout need one entry per stage")
  _check(all(int(v) >= 1 for v in p.layers), "search.pdarts.layers", "cells per stage must be >= 1")
  ops = [8]
  for d in p.drop_ops:
    ops.append(ops[-1] - int(d))
  _check(all(int(d) >= 1 for d in p.drop_ops) and ops[-1] == 1 and min(ops[:-1]) >= 2, "search.pdarts.drop_ops",
         f"must take the 8 ops down to 1, with >= 2 on during every stage; got ops {ops}")
  _check(all(0 <= float(v) < 1 for v in p.skip_dropout), "search.pdarts.skip_dropout", "rates must be in [0, 1)")
  for field in ("channels", "nodes", "epochs", "batch_size"):
    _check(int(p[field]) >= 1, f"search.pdarts.{field}", "must be >= 1")
  _check(0 <= p.warmup_epochs <= p.epochs, "search.pdarts.warmup_epochs", "must be in [0, epochs]")
  _check(0 < p.train_portion < 1, "search.pdarts.train_portion", "must be in (0, 1)")
  _check(p.max_skips >= 0, "search.pdarts.max_skips", "must be >= 0")
  _check(isinstance(p.upo_size, int) and p.upo_size >= 0, "search.pdarts.upo_size",
         f"must be an integer >= 0 (0 = the whole pool), got {p.upo_size!r}")
  for field in ("lr", "arch_lr", "grad_clip"):
    _check(p[field] > 0, f"search.pdarts.{field}", "must be > 0")
  for field in ("weight_decay", "arch_weight_decay"):
    _check(p[field] >= 0, f"search.pdarts.{field}", "must be >= 0")
  _check(0 <= p.momentum < 1, "search.pdarts.momentum", "must be in [0, 1)")
