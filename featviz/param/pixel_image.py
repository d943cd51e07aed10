"""Lucid's pixel parameterization (``pixel_image`` + ``to_valid_rgb``)."""

from __future__ import annotations

import jax

from featviz.param.core import (
  DEFAULT_SD,
  Param,
  check_images,
  from_valid_rgb,
  normal,
  side,
  to_valid_rgb,
)


def pixel(
  size: int | tuple[int, int],
  batch: int = 1,
  channels: int = 3,
  *,
  sd: float = DEFAULT_SD,
  decorrelate: bool = True,
) -> Param:
  """Lucid's pixel parameterization (``pixel_image`` + ``to_valid_rgb``).

  Params are ``(B, H, W, C)`` float32 drawn from ``N(0, sd)``; images are
  ``sigmoid(decorrelate(params))``; ``from_image`` is its exact inverse (logit, inverse colour).
  """
  h, w = side(size)

  def init(key: jax.Array) -> jax.Array:
    return sd * normal(key, (batch, h, w, channels))

  def to_image(params: jax.Array) -> jax.Array:
    with jax.named_scope("pixel_image"):
      return to_valid_rgb(params, decorrelate)

  def from_image(images) -> jax.Array:
    return from_valid_rgb(check_images(images, batch, (h, w), channels), decorrelate)

  return Param("pixel", init, to_image, batch, (h, w), channels, from_image)
