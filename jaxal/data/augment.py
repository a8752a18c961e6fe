"""Jitted per-example augmentation of float NHWC image batches.

Each example gets its own key (`jax.random.split(key, batch)`), so the result for one
example does not depend on the rest of the batch. Transforms, each off by default:
* horizontal flip with probability 1/2;
* pixel shifts: zero-pad by `max_shift` and crop back at a random offset;
* rotation by an angle uniform in `[-max_degrees, max_degrees]` (bilinear, zero fill).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  flip: bool = False
  max_shift: int = 0
  max_degrees: float = 0.0

  @property
  def enabled(self) -> bool:
    return self.flip or self.max_shift > 0 or self.max_degrees > 0


def flip_one(key, image):
  return jnp.where(jax.random.bernoulli(key), image[:, ::-1, :], image)


def shift_one(key, image, max_shift: int):
  h, w, _ = image.shape
  padded = jnp.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  dy, dx = jax.random.randint(key, (2,), 0, 2 * max_shift + 1)
  return jax.lax.dynamic_slice(padded, (dy, dx, 0), (h, w, image.shape[2]))


def rotate_one(key, image, max_degrees: float):
  angle = jnp.deg2rad(jax.random.uniform(key, (), minval=-max_degrees, maxval=max_degrees))
  return rotate_by(image, angle)


def rotate_by(image, angle):
  """Rotates an `(H, W, C)` image by `angle` radians about its center (bilinear, zero fill)."""
  h, w, c = image.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  src_y = cos * (yy - cy) - sin * (xx - cx) + cy
  src_x = sin * (yy - cy) + cos * (xx - cx) + cx
  channels = [jax.scipy.ndimage.map_coordinates(image[..., k], [src_y, src_x], order=1, mode="constant", cval=0.0)
              for k in range(c)]
  return jnp.stack(channels, axis=-1)


def augment_one(key, image, cfg: AugmentConfig):
  k_flip, k_shift, k_rot = jax.random.split(key, 3)
  if cfg.flip:
    image = flip_one(k_flip, image)
  if cfg.max_shift > 0:
    image = shift_one(k_shift, image, cfg.max_shift)
  if cfg.max_degrees > 0:
    image = rotate_one(k_rot, image, cfg.max_degrees)
  return image


@functools.partial(jax.jit, static_argnames=("cfg",))
def augment_batch(key, images, cfg: AugmentConfig):
  """Augments a float `(B, H, W, C)` batch, one key per example."""
  if not cfg.enabled:
    return images
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(lambda k, x: augment_one(k, x, cfg))(keys, images)
