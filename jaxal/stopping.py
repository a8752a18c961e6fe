"""Stopping rules: when labeling more is unlikely to help, a run can stop itself.

`al.stop` names a rule and `al.stop_threshold` its threshold (0 = the rule's default). Each
round that could still query evaluates the rule on the round's model; the round's record
gets `stop = {"rule", "value", "threshold", "fired"}`, and when the rule fires the round
queries nothing and the run ends there (a rerun finds it finished).

* `stabilizing_predictions` (Bloodgood & Vijay-Shanker, CoNLL 2009): Cohen's kappa between
  the predictions of successive rounds' models on a fixed stop set (`al.stop_set_size` pool
  rows drawn once from the seed; the paper draws unlabeled examples, which the stop set
  need not stay). The value is the mean of the last three kappas, and the rule fires when it
  is at least the threshold (default 0.99, the paper's). Until three kappas exist (round 3)
  the value is None and the rule cannot fire.
* `overall_uncertainty` (Zhu, Wang & Hovy, 2008): the mean normalized prediction entropy
  `H(p) / log C` over the unlabeled pool; fires below the threshold (default 0.05, as
  small-text's implementation of the rule).
* `max_confidence` (Zhu, Wang & Hovy, 2008): the largest normalized entropy over the
  unlabeled pool, i.e. that of the most uncertain candidate; fires below the threshold
  (default 0.001: every candidate is classified with near certainty).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

STOP_SET_SEED = 0x5709  # mixed with config.seed: the stop set is fixed per run
KAPPA_WINDOW = 3


@dataclasses.dataclass(frozen=True)
class Rule:
  default_threshold: float
  above: bool  # fires when value >= threshold (kappa) rather than when value < threshold


RULES = {
    "stabilizing_predictions": Rule(0.99, True),
    "overall_uncertainty": Rule(0.05, False),
    "max_confidence": Rule(0.001, False),
}


def check(al) -> None:
  """Raises `config.ConfigError` for a bad `al.stop`, `al.stop_threshold` or `al.stop_set_size`."""
  from jaxal.config import ConfigError  # pylint: disable=g-import-not-at-top  (config imports this module)
  if al.stop and al.stop not in RULES:
    raise ConfigError(f"al.stop: must be '' (no rule) or one of {', '.join(RULES)}, got {al.stop!r}")
  if not (np.isfinite(al.stop_threshold) and al.stop_threshold >= 0):
    raise ConfigError(f"al.stop_threshold: must be >= 0 (0 = the rule's default), got {al.stop_threshold}")
  if al.stop == "stabilizing_predictions" and al.stop_threshold > 1:
    raise ConfigError(f"al.stop_threshold: a kappa threshold must be in [0, 1], got {al.stop_threshold}")


def stop_set(pool_size: int, size: int, seed: int) -> np.ndarray:
  """The fixed rows on which successive models are compared (sorted)."""
  rng = np.random.default_rng([int(seed), STOP_SET_SEED])
  return np.sort(rng.choice(pool_size, size=min(int(size), pool_size), replace=False)).astype(np.int32)


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
  """Cohen's kappa of two label vectors: (p_o - p_e) / (1 - p_e); 1 when both are one constant class."""
  a, b = np.asarray(a), np.asarray(b)
  p_o = float(np.mean(a == b))
  p_e = float(np.sum(np.bincount(a, minlength=num_classes) * np.bincount(b, minlength=num_classes))) / a.size ** 2
  return 1.0 if p_e >= 1.0 else (p_o - p_e) / (1.0 - p_e)


@jax.jit
def _stop_set_classes(probs, rows):
  return jnp.argmax(jnp.take(probs, rows, axis=0), -1)


@jax.jit
def _entropy_summary(probs, unlabeled):
  """Mean and max of `H(p) / log C` over the unlabeled rows."""
  p = probs.astype(jnp.float32)
  h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=-1) / jnp.log(p.shape[-1])
  count = jnp.maximum(jnp.sum(unlabeled), 1)
  return jnp.sum(jnp.where(unlabeled, h, 0.0)) / count, jnp.max(jnp.where(unlabeled, h, -jnp.inf))


def kappas_so_far(history: list[dict]) -> list[float]:
  """The kappas that earlier rounds recorded (`stop.kappa`), oldest first."""
  return [r["stop"]["kappa"] for r in history if (r.get("stop") or {}).get("kappa") is not None]


def evaluate(al, probs, unlabeled_mask: np.ndarray, stop_rows: np.ndarray, history: list[dict],
             previous: np.ndarray | None):
  """This round's `(stop record, stop-set predictions)` for rule `al.stop`.

  Args:
    al: the config's `al` section.
    probs: `(n, C)` pool probabilities of the round's model (a device array).
    unlabeled_mask: `(n,)` rows that could be queried.
    stop_rows: the stop set (`stop_set`).
    history: the earlier rounds' records (their `stop.kappa`).
    previous: the previous round's stop-set predictions, or None.
  """
  rule = RULES[al.stop]
  threshold = float(al.stop_threshold) or rule.default_threshold
  predictions, record = None, {"rule": al.stop}
  if al.stop == "stabilizing_predictions":
    predictions = np.asarray(jax.device_get(_stop_set_classes(probs, jax.device_put(stop_rows))), np.int32)
    kappas = kappas_so_far(history)
    record["kappa"] = None if previous is None else cohen_kappa(previous, predictions, int(probs.shape[-1]))
    if record["kappa"] is not None:
      kappas.append(record["kappa"])
    value = float(np.mean(kappas[-KAPPA_WINDOW:])) if len(kappas) >= KAPPA_WINDOW else None
  else:
    mean, worst = jax.device_get(_entropy_summary(probs, jax.device_put(np.asarray(unlabeled_mask, bool))))
    value = float(mean if al.stop == "overall_uncertainty" else worst)
  fired = value is not None and (value >= threshold if rule.above else value < threshold)
  record.update(value=value, threshold=threshold, fired=bool(fired))
  return record, predictions


def stopped(history: list[dict]) -> bool:
  """Whether the run's last round fired its stopping rule (the run is then over)."""
  return bool(history) and bool((history[-1].get("stop") or {}).get("fired"))
