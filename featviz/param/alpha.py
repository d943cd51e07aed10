"""Semi-transparent images (Lucid's ``image(alpha=True)`` and its transparency notebook).

Any parameterization with one more channel: the first three are colour, the fourth
``sigmoid``-ed to an alpha in (0, 1). The render loop composites each image onto a random
background at every step, so the network cannot see what is transparent, and weights the
objective so that transparency pays (Lucid, ``notebooks/differentiable-parameterizations/
transparency.ipynb``)::

    background = a random Fourier image, sd 0.2, decay 1.5 (Lucid's image_sample)
    composite  = rgb * alpha + background * (1 - alpha)   -> transforms -> network
    loss       = -obj * (1 - mean alpha of the transformed crop) - 0.5 obj (1 - mean alpha)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from featviz.param.core import EPS, Param, ParamError
from featviz.param.fourier_image import fourier
from featviz.param.maco_image import maco

# Lucid's transparency notebook: the background is image_sample([1, h, w, 3], sd=0.2,
# decay_power=1.5), and the full image's mean alpha is weighted by 0.5 against the crop's 1.
BACKGROUND_SD = 0.2
BACKGROUND_DECAY = 1.5
FULL_IMAGE_WEIGHT = 0.5


@dataclasses.dataclass(frozen=True)
class WithAlpha:
  """The factory ``base`` with an alpha channel: ``f(size, batch, channels)`` makes
  ``base(size, batch, channels + 1)``. Equal by ``base`` (a stable compile key)."""

  base: Callable[..., Param]

  def __call__(self, size, batch=1, channels=3) -> Param:
    if channels != 3:
      raise ParamError(f"alpha renders RGBA images for RGB networks; this one has {channels}")
    if self.base is maco:
      raise ParamError("maco has no alpha channel; its transparency is result.transparency")
    p = self.base(size, batch, channels + 1)

    def from_image(images):
      images = jnp.asarray(images, jnp.float32)
      if images.shape[-1] == 3:  # a photo is opaque
        images = jnp.concatenate([images, jnp.full(images.shape[:-1] + (1,), 1 - EPS)], -1)
      return p.from_image(images)

    return dataclasses.replace(p, name=p.name + "+alpha", channels=4, from_image=from_image)


def background(key: jax.Array, batch: int, size: tuple[int, int]) -> jax.Array:
  """Lucid's random background ``(B, H, W, 3)``: a Fourier image, sd 0.2, decay 1.5."""
  p = fourier(size, batch, 3, decay_power=BACKGROUND_DECAY, sd=BACKGROUND_SD, implementation="xla")
  return p.to_image(p.init(key))


def composite(rgba: jax.Array, back: jax.Array) -> jax.Array:
  """``rgb * alpha + back * (1 - alpha)``, ``(B, H, W, 3)``."""
  alpha = rgba[..., 3:]
  return rgba[..., :3] * alpha + back * (1 - alpha)


def objective_weight(alpha_crop: jax.Array, alpha_full: jax.Array) -> jax.Array:
  """``(B,)``: Lucid's ``(1 - mean crop alpha) + 0.5 (1 - mean alpha)`` per image; the loss
  is ``-objective * weight``."""
  crop = jnp.mean(alpha_crop, axis=(1, 2, 3))
  full = jnp.mean(alpha_full, axis=(1, 2, 3))
  return (1 - crop) + FULL_IMAGE_WEIGHT * (1 - full)
