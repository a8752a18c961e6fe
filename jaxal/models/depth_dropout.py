"""Depth-Dropout (KC, Li & Gilany, NeurIPS 2021; ALGORITHMS.md §9).

A residual CNN truncated at K layers (`plain_cnn.py` layout), where layer l's M filters
are masked by z_l: h_l = σ(W_l ⊛ h_{l−1}) ⊙ z_l + h_{l−1}. The prior is a stick-breaking
beta process, ν_k ~ Beta(α, β), π_l = Π_{k≤l} ν_k, z_{ml} ~ Bernoulli(π_l); the
variational posterior is q(ν_k) = Beta(a_k, b_k), a_k = softplus(â_k) + 0.01 (same for b),
initialized so that softplus(â) = α and softplus(b̂) = β. The loss is the mean
cross-entropy over S structure samples plus Σ_k KL(Beta(a_k, b_k) ‖ Beta(α, β)) / N,
sown into the `"losses"` collection (`train/step.py` scales it by 1 / N_labeled).

Resolved details (reference code `kckishan/Depth_and_Dropout`):
* ν is sampled with `jax.random.beta` (implicit reparameterisation gradients), log π =
  cumsum(log ν) and logit π = log π − log(1 − π) computed with `log1mexp`; log π is
  clipped to [log 1e−30, −1e−7], so that ν = 1 (or 0) in float32 gives no infinity.
* Training masks are relaxed Bernoulli with temperature τ, z = σ((logit π + logit u)/τ),
  one draw per unit per structure sample, shared across the minibatch; evaluation masks are
  hard Bernoulli, 1[logit π + logit u > 0], from the same logistic noise.
* The threshold (sampled depth) is max over samples of the number of layers with any unit
  above ε; layers at or beyond it are gated off with `jnp.where` (jit-friendly), and their
  BatchNorm statistics do not update. Layer 0 (the width change) always runs, masked; the
  reference would crash at threshold 0.
* In training the S samples run as one batch of shape (S, B, ...), with BatchNorm
  statistics per sample; the running statistics move once per step towards the samples'
  mean statistics (the reference updates them S times).
* Evaluation (`train=False`) draws S hard structures from a fixed key (`eval_seed`), so
  predictions are deterministic, and `SampledClassifier` averages the S *probabilities*
  (returned as log-probabilities; the reference averages logits). MC-dropout mode draws
  one hard structure per pass from the `"dropout"` stream.
* There is no KL term for Z (the reference code has none).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

from jaxal.models.base import Classifier
from jaxal.models.plain_cnn import ConvBlock, ResidualMLP, first_block

Array = Any
_LOG_TINY = -69.0  # log(1e-30)


def softplus_inverse(y: float) -> float:
  return float(np.log(np.expm1(y)))


def log1mexp(x: Array) -> Array:
  """log(1 − e^x) for x < 0, accurate at both ends."""
  return jnp.where(x > -0.6931472, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


def beta_kl(a: Array, b: Array, alpha: float, beta: float) -> Array:
  """KL(Beta(a, b) ‖ Beta(α, β)), elementwise, in closed form."""
  return (special.betaln(alpha, beta) - special.betaln(a, b) + (a - alpha) * special.digamma(a)
          + (b - beta) * special.digamma(b) + (alpha - a + beta - b) * special.digamma(a + b))


def variational_params(a_hat: Array, b_hat: Array) -> tuple[Array, Array]:
  return jax.nn.softplus(a_hat) + 0.01, jax.nn.softplus(b_hat) + 0.01


def expected_pi(a: Array, b: Array) -> Array:
  """E_q[π_l] = Π_{k≤l} a_k / (a_k + b_k) (the ν_k are independent)."""
  return jnp.cumprod(a / (a + b), axis=-1)


def sample_structure(key: Array, a: Array, b: Array, *, num_samples: int, width: int, temperature: float,
                     hard: bool) -> tuple[Array, Array]:
  """Draws masks `z` of shape `(S, K, M)` and `log π` of shape `(S, K)`."""
  k_nu, k_z = jax.random.split(key)
  nu = jax.random.beta(k_nu, a, b, shape=(num_samples, a.shape[0]))
  log_pi = jnp.cumsum(jnp.log(jnp.maximum(nu, jnp.exp(_LOG_TINY))), axis=1)
  log_pi = jnp.clip(log_pi, _LOG_TINY, -1e-7)
  logit_pi = log_pi - log1mexp(log_pi)
  u = jax.random.uniform(k_z, (num_samples, a.shape[0], width), minval=1e-7, maxval=1 - 1e-7)
  noise = jnp.log(u) - jnp.log1p(-u)
  if hard:
    z = (logit_pi[..., None] + noise > 0).astype(jnp.float32)
  else:
    z = jax.nn.sigmoid((logit_pi[..., None] + noise) / temperature)
  return z, log_pi


def threshold(z: Array, epsilon: float = 0.01) -> Array:
  """The reference's depth: max over samples of #layers with any unit above ε."""
  return jnp.max(jnp.sum(jnp.any(z > epsilon, axis=-1), axis=-1))


def mask_readout(z, epsilon: float = 0.01) -> dict:
  """Read-outs of masks `(S, K, M)`: active filters per layer, and both depth counts."""
  on = np.asarray(z) > epsilon
  layer_on = on.any(-1)  # (S, K)
  last = np.where(layer_on.any(-1), layer_on.shape[1] - np.argmax(layer_on[:, ::-1], axis=1), 0)
  return {
      "active_filters": on.sum(-1).mean(0).tolist(),  # mean over samples, per layer
      "depth": int(layer_on.sum(-1).max()),            # counted active layers (reference)
      "depth_last": int(last.max()),                    # index of the last active layer + 1
  }


def readout(params, *, num_samples: int = 5, filter_samples: int = 200, width: int | None = None,
            epsilon: float = 0.01, seed: int = 0) -> dict:
  """Architecture read-out from trained params: π, active filters and effective depth.

  `pi` is E_q[π_l]. Hard structures are drawn with `seed`: `depth` and `depth_last` use
  the first `num_samples` (the reference's S, see `mask_readout`); `active_filters` is the
  mean over `max(num_samples, filter_samples)` of them, since S = 5 draws of a Binomial
  count are too noisy for a width.
  """
  p = params["backbone"] if "backbone" in params else params
  a, b = variational_params(p["a_hat"], p["b_hat"])
  width = width or int(p["layer0"]["conv"]["kernel"].shape[-1])
  z, _ = sample_structure(jax.random.key(seed), a, b, num_samples=max(num_samples, filter_samples), width=width,
                          temperature=1.0, hard=True)
  out = mask_readout(z[:num_samples], epsilon)
  out.update(active_filters=np.asarray(z > epsilon).sum(-1).mean(0).tolist(), pi=np.asarray(expected_pi(a, b)).tolist(),
             a=np.asarray(a).tolist(), b=np.asarray(b).tolist(), width=width)
  return out


class DepthDropoutCNN(nn.Module):
  """The Depth-Dropout backbone; returns `(S, batch, width)` embeddings (S = 1 in MC mode)."""
  truncation: int = 10     # K
  width: int = 64          # M
  alpha: float = 1.1
  beta: float = 10.0
  temperature: float = 0.5
  num_samples: int = 5     # S
  epsilon: float = 0.01
  eval_seed: int = 0

  def __post_init__(self):
    if self.truncation < 1 or self.width < 1 or self.num_samples < 1:
      raise ValueError("truncation, width and num_samples must be >= 1")
    if self.alpha <= 0 or self.beta <= 0 or self.temperature <= 0:
      raise ValueError("alpha, beta and temperature must be > 0")
    super().__post_init__()

  def setup(self):
    init = lambda v: nn.initializers.constant(softplus_inverse(v))
    self.a_hat = self.param("a_hat", init(self.alpha), (self.truncation,))
    self.b_hat = self.param("b_hat", init(self.beta), (self.truncation,))
    self.layer0 = first_block(self.width)
    self.blocks = [ConvBlock(self.width) for _ in range(1, self.truncation)]
    self.out = ResidualMLP()

  def structure(self, *, train: bool, mc_dropout: bool) -> tuple[Array, Array]:
    """Samples masks `(S, K, M)` and the gated depth."""
    a, b = variational_params(self.a_hat, self.b_hat)
    if train and not self.is_initializing():
      self.sow("losses", "kl", jnp.sum(beta_kl(a, b, self.alpha, self.beta)))
    if train or mc_dropout:
      key = self.make_rng("dropout")
    else:
      key = jax.random.key(self.eval_seed)
    samples = 1 if (mc_dropout and not train) else self.num_samples
    z, _ = sample_structure(key, a, b, num_samples=samples, width=self.width, temperature=self.temperature,
                            hard=not train)
    return z, jax.lax.stop_gradient(threshold(z, self.epsilon))

  def forward(self, x: Array, z: Array, depth, *, train: bool) -> Array:
    """Runs the network with masks `z` `(S, K, M)`; layers `l >= depth` are the identity.

    `depth` may be a traced scalar (gated, as in training) or a Python int (the loop
    stops there, as in the reference); both give the same output.
    """
    s = z.shape[0]
    x = jnp.broadcast_to(x[None], (s,) + x.shape)
    mask = lambda l: z[:, l, :].reshape((s, 1, 1, 1, self.width)).astype(x.dtype)
    h = self.layer0(x, train=train) * mask(0)
    for l in range(1, self.truncation):
      block = self.blocks[l - 1]
      if isinstance(depth, int):
        if l >= depth:
          break
        h = block(h, train=train) * mask(l) + h
      else:
        active = l < depth
        h = jnp.where(active, block(h, train=train, active=active) * mask(l) + h, h)
    h = jnp.mean(h, axis=(2, 3))
    return self.out(h, train=train)

  def __call__(self, x: Array, *, train: bool = False, mc_dropout: bool = False) -> Array:
    z, depth = self.structure(train=train, mc_dropout=mc_dropout)
    return self.forward(x, z, depth, train=train)

  depth = property(lambda self: self.truncation)
  dropout_in_backbone = True

  @property
  def label(self) -> str:
    return f"depth_dropout(K{self.truncation},w{self.width})"


class SampledClassifier(Classifier):
  """A `Classifier` over a backbone that returns `(S, batch, d)` structure samples.

  Training returns per-sample logits `(S, batch, classes)` (`train/step.py` averages the
  cross-entropy); otherwise the S predictive distributions are averaged and returned as
  log-probabilities `(batch, classes)`, with the sample-mean embedding.
  """

  def __call__(self, x: Array, *, train: bool = False, mc_dropout: bool = False):
    h = self.features(x, train=train, mc_dropout=mc_dropout)
    logits = self.head(h, train=train, mc_dropout=mc_dropout)
    if train:
      return logits, h
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
    return jax.nn.logsumexp(log_p, axis=0) - jnp.log(log_p.shape[0]), jnp.mean(h, axis=0)


DepthDropoutCNN.classifier_class = SampledClassifier
