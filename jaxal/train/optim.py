"""Optimizers and learning-rate schedules from config.

SGD with momentum (Nesterov optional) and decoupled-from-loss L2 weight decay added to
the gradient (`add_decayed_weights`), masked to a chosen set of parameters. The learning
rate is a hyperparameter fed each epoch from a step schedule `"epoch:lr,..."`, so one
compiled step serves every epoch and every round.

Keras-style `l2(lam)` regularization (active-iNAS) adds `lam * sum(w**2)` to the loss; its
gradient is `2 * lam * w`, so set `weight_decay = 2 * lam` (ALGORITHMS.md §7.1).
"""

import jax
import optax

from jaxal.data.pool import parse_schedule


def decay_mask(params, which: str):
  """Which leaves get weight decay: `conv` (4-D kernels), `kernels` (ndim > 1), `all`, `none`."""
  def pick(path, leaf):
    if which == "all":
      return True
    if which == "none":
      return False
    name = str(getattr(path[-1], "key", path[-1]))
    if which == "conv":
      return name == "kernel" and leaf.ndim == 4
    if which == "kernels":
      return leaf.ndim > 1
    raise ValueError(f"train.weight_decay_on: unknown value {which!r}")
  return jax.tree_util.tree_map_with_path(pick, params)


def make_optimizer(cfg) -> optax.GradientTransformation:
  """SGD(+Nesterov) or Adam with masked weight decay; lr is an injected hyperparameter."""

  def build(learning_rate):
    parts = []
    if cfg.weight_decay > 0 and cfg.weight_decay_on != "none":
      parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=lambda p: decay_mask(p, cfg.weight_decay_on)))
    if cfg.optimizer == "sgd":
      parts.append(optax.sgd(learning_rate, momentum=cfg.momentum or None, nesterov=cfg.nesterov))
    elif cfg.optimizer == "adam":
      parts.append(optax.adam(learning_rate))
    else:
      raise ValueError(f"train.optimizer: unknown optimizer {cfg.optimizer!r}")
    return optax.chain(*parts)

  return optax.inject_hyperparams(build)(learning_rate=1.0)


def lr_at_epoch(epoch: int, schedule: list[tuple[int, float]]) -> float:
  """The step schedule's learning rate at (0-based) `epoch`."""
  lr = schedule[0][1]
  for start, value in schedule:
    if epoch >= start:
      lr = value
  return lr


def parse_lr_schedule(text: str) -> list[tuple[int, float]]:
  return parse_schedule(text, "train.lr_schedule", float)
