"""Regularizers and batch-coupling terms, as objectives (Lucid's convention).

The penalties (:func:`total_variation`, :func:`l1`, :func:`l2`, :func:`blur`)
return a positive size per image; subtract them with a weight:
``channel("mixed4a", 7) - 0.05 * total_variation()``. They read ``"input"``,
the parameterized image before transforms (Lucid's ``T("input")``), or a layer.

:func:`diversity` couples the images of a batch (Lucid's Gram-matrix cosine).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz.objectives import Context, Objective, register

Array = jax.Array
INPUT = "input"


def _read(ctx: Context, layer: str) -> Array:
  return ctx.image if layer == INPUT else ctx.acts[layer]


class _OnLayer(Objective):
  layer: str

  @property
  def layers(self):
    return frozenset() if self.layer == INPUT else frozenset([self.layer])

  def bind(self, spec, batch):
    if self.layer != INPUT:
      spec.check_layer(self.layer)
    return self

  def labels(self, batch):
    return [self.name] * batch


@register(data=[], meta=["layer"])
class TotalVariation(_OnLayer):
  """``tf.image.total_variation`` per image: sum of absolute neighbour differences."""

  layer: str = INPUT
  name = "tv"

  def score(self, ctx):
    x = _read(ctx, self.layer)
    dy = jnp.abs(x[:, 1:, :, :] - x[:, :-1, :, :]).sum(axis=(1, 2, 3))
    dx = jnp.abs(x[:, :, 1:, :] - x[:, :, :-1, :]).sum(axis=(1, 2, 3))
    return dy + dx


@register(data=["constant"], meta=["layer"])
class L1(_OnLayer):
  """``sum |x - constant|`` per image (Lucid's ``L1``)."""

  layer: str = INPUT
  constant: Any = 0.0
  name = "l1"

  def score(self, ctx):
    x = _read(ctx, self.layer)
    return jnp.abs(x - self.constant).reshape(x.shape[0], -1).sum(axis=1)


@register(data=["constant", "epsilon"], meta=["layer"])
class L2(_OnLayer):
  """``sqrt(epsilon + sum (x - constant)^2)`` per image (Lucid's ``L2``, eps 1e-6)."""

  layer: str = INPUT
  constant: Any = 0.0
  epsilon: Any = 1e-6
  name = "l2"

  def score(self, ctx):
    x = _read(ctx, self.layer)
    return jnp.sqrt(self.epsilon + ((x - self.constant) ** 2).reshape(x.shape[0], -1).sum(axis=1))


def blur3x3(x: Array) -> Array:
  """Per-channel 3x3 binomial blur ``[1, 2, 1] (x) [1, 2, 1] / 16`` of NHWC ``x``.

  Zero padding, renormalized by the blurred all-ones image, so borders are not
  darkened (the weights that fall outside the image are dropped).
  """
  k1 = np.asarray([1.0, 2.0, 1.0], np.float32)
  k = np.outer(k1, k1) / 16.0
  c = x.shape[-1]
  kernel = jnp.asarray(np.tile(k[:, :, None, None], (1, 1, 1, c)))  # HWIO, depthwise

  def conv(t):
    return jax.lax.conv_general_dilated(
      t, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c
    )

  return conv(x) / conv(jnp.ones_like(x[:1]))


@register(data=[], meta=["layer"])
class Blur(_OnLayer):
  """Lucid's ``blur_input_each_step`` penalty: ``0.5 sum (x - stop_grad(blur(x)))^2``.

  Its gradient ``x - blur(x)`` is a high-pass image: subtracting it pulls each
  step toward its own blur.
  """

  layer: str = INPUT
  name = "blur"

  def score(self, ctx):
    x = _read(ctx, self.layer)
    x = x if x.ndim == 4 else x[:, None, None, :]
    target = jax.lax.stop_gradient(blur3x3(x))
    return 0.5 * ((x - target) ** 2).sum(axis=(1, 2, 3))


@register(data=[], meta=["layer"])
class Diversity(Objective):
  """Lucid's ``diversity``: minus the mean cosine between images' Gram matrices.

  Image ``i`` scores ``-(1/B) sum_{j != i} <G_i, G_j>`` with each Gram matrix
  ``G = A^T A`` (``A`` the ``(HW, C)`` activations) L2-normalized; the batch sum
  equals Lucid's objective. This term couples the images of a batch.
  """

  layer: str

  def score(self, ctx):
    acts = ctx.acts[self.layer]
    b, c = acts.shape[0], acts.shape[-1]
    flat = acts.reshape(b, -1, c)
    grams = jnp.einsum("bpc,bpd->bcd", flat, flat).reshape(b, -1)
    grams = grams / jnp.sqrt(jnp.maximum(jnp.sum(grams**2, axis=1, keepdims=True), 1e-10))
    sims = grams @ grams.T
    return -(sims.sum(axis=1) - jnp.diagonal(sims)) / b

  @property
  def layers(self):
    return frozenset([self.layer])

  @property
  def couples_batch(self):
    return True

  def bind(self, spec, batch):
    spec.check_layer(self.layer)
    return self

  def labels(self, batch):
    return [f"diversity:{self.layer}"] * batch


def total_variation(layer: str = INPUT) -> TotalVariation:
  return TotalVariation(layer)


def l1(layer: str = INPUT, constant: float = 0.0) -> L1:
  return L1(layer, constant)


def l2(layer: str = INPUT, constant: float = 0.0, epsilon: float = 1e-6) -> L2:
  return L2(layer, constant, epsilon)


def blur(layer: str = INPUT) -> Blur:
  return Blur(layer)


def diversity(layer: str) -> Diversity:
  return Diversity(layer)
