"""Objectives about a photo: Lucid's caricature and Horama's feature accentuation.

Both start the render from the photo (``featviz.render(..., init=photo)``) and both are
ordinary objectives of the algebra, so they batch, weight and combine like the others.

* :func:`caricature` (Lucid, ``lucid/recipes/caricature.py``, ``feature_inversion``): maximize
  the dot product of the image's activations at a layer with the photo's, times their cosine
  similarity to a power (Lucid's ``_dot_cossim``: ``dot * max(0.1, cos) ** cossim_pow``), so the
  image exaggerates what the layer sees in the photo.
* :func:`accentuation` (Hamblin et al. 2024, "Feature Accentuation"; Horama's
  ``feature_accentuation.accentuation``): any objective minus ``penalty`` times the mean
  squared distance of the image to the photo, so the image stays the photo while the feature
  grows in it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz.model import Model
from featviz.objective_algebra import Objective, register

# Lucid's _dot_cossim: cosines below 0.1 count as 0.1 (so a power cannot flip or zero the
# score), and 1e-4 keeps the cosine finite for a zero activation.
COSSIM_FLOOR = 0.1
COSSIM_EPS = 1e-4
# Lucid's feature_inversion(cossim_pow=0.0): the plain dot product by default.
CARICATURE_COSSIM_POW = 0.0
# Horama's accentuation(penalty=1.0) on images in its values_range (-2.5, 2.5), five times
# our [0, 1]: the same penalty on our images is 1.0 * 5**2.
ACCENTUATION_PENALTY = 25.0


def _resized(target: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """``target (1 or B, ...)`` broadcast to ``shape``; a spatial map ``(1 or B, h, w, C)`` is
  first resized bilinearly to ``shape``'s map (the transforms change the image's size)."""
  if target.ndim == 4 and len(shape) == 4 and target.shape[1:3] != tuple(shape[1:3]):
    target = jax.image.resize(target, target.shape[:1] + shape[1:3] + target.shape[3:], "linear")
  return jnp.broadcast_to(target, shape)


@register(data=["target", "cossim_pow"], meta=["layer"])
class Caricature(Objective):
  """``dot(a, t) * max(0.1, cos(a, t)) ** cossim_pow`` per image, ``a`` the image's activations
  at ``layer`` and ``t`` the photo's (``(1 or B, h, w, C)``; resized to ``a``'s map when the
  transforms change it)."""

  layer: str
  target: Any
  cossim_pow: Any = CARICATURE_COSSIM_POW

  def score(self, ctx):
    acts = ctx.acts[self.layer]
    t = _resized(jnp.asarray(self.target, acts.dtype), acts.shape)
    acts, t = acts.reshape(acts.shape[0], -1), t.reshape(t.shape[0], -1)
    dot = jnp.sum(acts * t, axis=1)
    norms = jnp.sqrt(jnp.sum(acts**2, axis=1) * jnp.sum(t**2, axis=1))
    cos = dot / (norms + COSSIM_EPS)
    return dot * jnp.maximum(COSSIM_FLOOR, cos) ** self.cossim_pow

  @property
  def layers(self):
    return frozenset([self.layer])

  @property
  def batch(self):
    n = np.shape(self.target)[0]
    return n if n > 1 else None

  def bind(self, spec, batch):
    spec.check_layer(self.layer)
    t = np.asarray(self.target, np.float32)
    if t.ndim < 2 or t.shape[-1] != spec.layers[self.layer]:
      raise ValueError(
        f"caricature target has shape {t.shape}; layer {self.layer!r} has "
        f"{spec.layers[self.layer]} channels"
      )
    return Caricature(self.layer, t, np.float32(self.cossim_pow))

  def labels(self, batch):
    return [f"caricature:{self.layer}"] * batch


@register(data=["photo"])
class PhotoDistance(Objective):
  """``mean((image - photo) ** 2)`` per image over its pixels and channels, the image before
  the transforms; ``photo (1 or B, H, W, C)`` in [0, 1] at the render size. A penalty:
  subtract it."""

  photo: Any

  def score(self, ctx):
    photo = jnp.broadcast_to(jnp.asarray(self.photo, ctx.image.dtype), ctx.image.shape)
    return jnp.mean((ctx.image - photo) ** 2, axis=(1, 2, 3))

  @property
  def batch(self):
    n = np.shape(self.photo)[0]
    return n if n > 1 else None

  def bind(self, spec, batch):
    photo = np.asarray(self.photo, np.float32)
    if photo.ndim != 4 or photo.shape[-1] != spec.channels:
      raise ValueError(
        f"photo must be (1 or {batch}, H, W, {spec.channels}) at the render size; got {photo.shape}"
      )
    return PhotoDistance(photo)

  def labels(self, batch):
    return ["photo_distance"] * batch


def caricature(
  model: Model, layer: str, photo: Any, cossim_pow: float = CARICATURE_COSSIM_POW
) -> Caricature:
  """Lucid's caricature of ``photo (H, W, C)`` or ``(B, H, W, C)`` in [0, 1] at ``layer``:
  its activations are computed here, once; render it from the photo
  (``featviz.render(model, caricature(...), init=photo)``)."""
  photo = np.asarray(photo, np.float32)
  photo = photo[None] if photo.ndim == 3 else photo
  target = np.asarray(model.activations(jnp.asarray(photo), [layer])[layer])
  return Caricature(layer, target, cossim_pow)


def accentuation(
  objective: Objective, photo: Any, penalty: float = ACCENTUATION_PENALTY
) -> Objective:
  """Horama's feature accentuation: ``objective - penalty * PhotoDistance(photo)``; render it
  from the photo (``init=photo``) at the photo's size."""
  photo = np.asarray(photo, np.float32)
  return objective - penalty * PhotoDistance(photo[None] if photo.ndim == 3 else photo)
