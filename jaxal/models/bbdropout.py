"""BBDropout: beta-Bernoulli dropout over filters (Lee et al. 2018; ALGORITHMS.md §10).

Each of a layer's K filters has a gate: π_k ~ Beta(α, 1), z_nk ~ Bernoulli(π_k) per
example. The posterior is q(π_k) = Kumaraswamy(a_k, b_k), a = softplus(max(â, −10)),
b = softplus(clip(b̂, −10, 50)), â = −1 and b̂ = 0.5413 at init (a ≈ 0.313, b ≈ 1.0);
`alpha` (1e−4) is the prior's first parameter itself. q(z|π) is the prior conditional, so
the only KL is KL(Kumaraswamy(a, b) ‖ Beta(α, 1)), exact in closed form because the
prior's second parameter is 1. Each layer sows Σ_k KL_k into the `"losses"` collection
(`train/step.py` divides by N_labeled).

* Training: one π per filter per step, log π = log1mexp(log u / b) / a with u ~ U(1e−6,
  1 − 1e−6), then a per-example relaxed-Bernoulli z with temperature 0.1, broadcast over
  the spatial axes (NHWC: the mask has shape (batch, 1, 1, K)).
* Evaluation: the deterministic mask z_k = E[π_k]·1[E[π_k] ≥ `threshold`], E[π_k] =
  b·B(1 + 1/a, b) via `lgamma`. MC-dropout mode: sampled π and hard Bernoulli z.
* `threshold` defaults to 0.1, the TMLR port's value (the paper this issue reproduces);
  the original TF layer used 1e−3. The pruned width is #{k : E[π_k] ≥ threshold}.

`BBDropoutCNN` is the `plain_cnn.py` residual CNN with a gate on every conv layer's
filters: h_l = gate(LeakyReLU → BN of W_l ⊛ h_{l−1}) + h_{l−1}. The paper's eq. (7) puts
the mask inside σ; with BatchNorm after the activation (the Depth-Dropout block order,
kept so the two methods and the fixed baselines share one family) the gate goes last.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

from jaxal.models.depth_dropout import log1mexp
from jaxal.models.plain_cnn import ConvBlock, ResidualMLP, first_block

Array = Any
EULER_GAMMA = 0.5772156649015329


def kumaraswamy_params(a_hat: Array, b_hat: Array) -> tuple[Array, Array]:
  return jax.nn.softplus(jnp.maximum(a_hat, -10.0)), jax.nn.softplus(jnp.clip(b_hat, -10.0, 50.0))


def kumaraswamy_beta1_kl(a: Array, b: Array, alpha: float) -> Array:
  """KL(Kumaraswamy(a, b) ‖ Beta(α, 1)), exact (the series term vanishes for β = 1)."""
  return ((1 - alpha / a) * (-EULER_GAMMA - special.digamma(b) - 1 / b) + jnp.log(a * b / alpha)
          - (b - 1) / b)


def kumaraswamy_mean(a: Array, b: Array) -> Array:
  """E[π] = b·B(1 + 1/a, b) for π ~ Kumaraswamy(a, b)."""
  return b * jnp.exp(special.gammaln(1 + 1 / a) + special.gammaln(b) - special.gammaln(1 + 1 / a + b))


def sample_log_pi(key: Array, a: Array, b: Array) -> Array:
  """log π for π ~ Kumaraswamy(a, b): π = (1 − u^{1/b})^{1/a}, in log space."""
  u = jax.random.uniform(key, a.shape, minval=1e-6, maxval=1 - 1e-6)
  return log1mexp(jnp.log(u) / b) / a


class BBDropout(nn.Module):
  """Beta-Bernoulli gates over the last axis of `x` (filters)."""
  alpha: float = 1e-4
  temperature: float = 0.1
  threshold: float = 0.1

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mc_dropout: bool = False) -> Array:
    k = x.shape[-1]
    a_hat = self.param("a_hat", nn.initializers.constant(-1.0), (k,))
    b_hat = self.param("b_hat", nn.initializers.constant(0.5413), (k,))
    a, b = kumaraswamy_params(a_hat, b_hat)
    if not (train or mc_dropout):
      mean = kumaraswamy_mean(a, b)
      return x * (mean * (mean >= self.threshold)).astype(x.dtype)
    if train and not self.is_initializing():
      self.sow("losses", "kl", jnp.sum(kumaraswamy_beta1_kl(a, b, self.alpha)))
    k_pi, k_z = jax.random.split(self.make_rng("dropout"))
    log_pi = jnp.clip(sample_log_pi(k_pi, a, b), -69.0, -1e-7)
    logit_pi = log_pi - log1mexp(log_pi)
    shape = x.shape[:-3] + (1, 1, k) if x.ndim >= 4 else x.shape  # per example, shared over H, W
    u = jax.random.uniform(k_z, shape, minval=1e-7, maxval=1 - 1e-7)
    noise = jnp.log(u) - jnp.log1p(-u)
    if train:
      z = jax.nn.sigmoid((logit_pi + noise) / self.temperature)
    else:
      z = (logit_pi + noise > 0).astype(jnp.float32)
    return x * z.astype(x.dtype)


def layer_readout(params, threshold: float) -> dict:
  """E[π_k] and the pruned width #{k : E[π_k] ≥ threshold} of one `BBDropout` layer."""
  a, b = kumaraswamy_params(params["a_hat"], params["b_hat"])
  mean = np.asarray(kumaraswamy_mean(a, b), np.float64)
  return {"expected_pi": mean.tolist(), "width": int((mean >= threshold).sum())}


def readout(params, *, threshold: float = 0.1) -> dict:
  """Per-layer pruned widths and E[π] of a trained `BBDropoutCNN` (or its Classifier)."""
  p = params["backbone"] if "backbone" in params else params
  layers = sorted((k for k in p if k.startswith("gate")), key=lambda k: int(k[4:]))
  per = [layer_readout(p[k], threshold) for k in layers]
  widths = [r["width"] for r in per]
  return {"widths": widths, "expected_pi": [r["expected_pi"] for r in per], "threshold": threshold,
          "depth": sum(1 for w in widths if w), "width": len(per[0]["expected_pi"])}


class BBDropoutCNN(nn.Module):
  """The residual CNN of `plain_cnn.py` with a BBDropout gate on each conv layer."""
  layers: int = 10
  width: int = 64
  alpha: float = 1e-4
  temperature: float = 0.1
  threshold: float = 0.1

  def __post_init__(self):
    if self.layers < 1 or self.width < 1:
      raise ValueError(f"layers and width must be >= 1, got {self.layers}, {self.width}")
    if self.alpha <= 0 or self.temperature <= 0 or not 0 <= self.threshold <= 1:
      raise ValueError("alpha and temperature must be > 0 and threshold in [0, 1]")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, *, train: bool = False, mc_dropout: bool = False) -> Array:
    gate = lambda l: BBDropout(self.alpha, self.temperature, self.threshold, name=f"gate{l}")
    h = gate(0)(first_block(self.width, name="layer0")(x[None], train=train), train=train, mc_dropout=mc_dropout)
    for l in range(1, self.layers):
      y = ConvBlock(self.width, name=f"layer{l}")(h, train=train)
      h = h + gate(l)(y, train=train, mc_dropout=mc_dropout)
    h = jnp.mean(h, axis=(2, 3))
    return ResidualMLP(name="out")(h, train=train)[0]

  depth = property(lambda self: self.layers)
  dropout_in_backbone = True

  @property
  def label(self) -> str:
    return f"bbdropout(l{self.layers},w{self.width})"
