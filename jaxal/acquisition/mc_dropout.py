"""MC-dropout scores (Gal et al. 2017; ALGORITHMS.md §2). Higher = query first.

Public functions take `(T, n, C)` probabilities from T stochastic passes. The loop never
stores that tensor: `Predictor.mc_statistics` accumulates per-chunk statistics, and the
`*_from_stats` versions score from those.

* `bald`: mutual information `H[mean_t p_t] - mean_t H[p_t]`, clipped at 0.
* `predictive_entropy`: `H[mean_t p_t]`.
* `variation_ratio`: probability form `1 - max_c mean_t p_t` (Gal et al. 2017).
* `variation_ratio_mode`: mode-count form `1 - f_m / T`, with `f_m` the passes that
  vote for the modal class.
* `mc_pred_class_variance`: active-iNAS's score -- the population variance (ddof 0) over
  the T passes of `p_t(c_hat | x)`, where `c_hat` is the deterministic model's class.
"""

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy


def _entropy(p, axis=-1):
  return -jnp.sum(xlogy(p, p), axis=axis)


@jax.jit
def predictive_entropy(mc_probs):
  return _entropy(jnp.mean(mc_probs, axis=0))


@jax.jit
def bald(mc_probs):
  return bald_from_stats(jnp.mean(mc_probs, axis=0), jnp.mean(_entropy(mc_probs), axis=0))


@jax.jit
def variation_ratio(mc_probs):
  return 1.0 - jnp.max(jnp.mean(mc_probs, axis=0), axis=-1)


@jax.jit
def variation_ratio_mode(mc_probs):
  num_classes = mc_probs.shape[-1]
  votes = jax.nn.one_hot(jnp.argmax(mc_probs, axis=-1), num_classes).sum(axis=0)  # (n, C)
  return 1.0 - jnp.max(votes, axis=-1) / mc_probs.shape[0]


@jax.jit
def mc_pred_class_variance(mc_probs, pred_class):
  p = jnp.take_along_axis(mc_probs, pred_class[None, :, None].astype(jnp.int32), axis=-1)[..., 0]  # (T, n)
  return jnp.var(p, axis=0)


@jax.jit
def bald_from_stats(mean_probs, mean_entropy):
  return jnp.maximum(_entropy(mean_probs) - mean_entropy, 0.0)
