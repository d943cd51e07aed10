"""Lucid's ``lowres_tensor`` and ``laplacian_pyramid_image``: pixels at lower resolutions,
upsampled bilinearly (``lucid/optvis/param/lowres.py`` and ``spatial.py``).

The upsampling is TF1's ``resize_bilinear`` as Lucid calls it (``align_corners=False``,
``half_pixel_centers=False``): output pixel ``i`` samples the input at ``i * n_in / n_out``,
the last input pixel repeated past the edge. It is linear and separable, so it is two small
matrices, ``U_y (H, h)`` and ``U_x (W, w)``: ``image = U_y @ low @ U_x.T`` per channel.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from featviz.param.core import (
  DEFAULT_SD,
  Param,
  check_images,
  from_valid_rgb,
  normal,
  side,
  to_valid_rgb,
)

# Lucid's laplacian_pyramid_image default: 4 levels (scales 1, 2, 4, 8).
LAPLACIAN_LEVELS = 4
# Our low-res default: a quarter of the side in each direction (Lucid's lowres_tensor takes any
# shape; 4 is its pyramid's middle level).
LOWRES_FACTOR = 4


def resize_matrix(n_out: int, n_in: int, half_pixel: bool = False) -> np.ndarray:
  """``(n_out, n_in)`` float32: 1-D bilinear resampling as a matrix.

  ``half_pixel=False``: TF1's ``resize_bilinear`` (Lucid), source ``i * n_in / n_out``;
  ``True``: half-pixel centres (``tf.image.resize``, PyTorch's ``align_corners=False``),
  source ``(i + 0.5) * n_in / n_out - 0.5``, clamped at 0. Past the last pixel, the last.
  """
  i = np.arange(n_out, dtype=np.float64)
  src = (i + 0.5) * n_in / n_out - 0.5 if half_pixel else i * n_in / n_out
  src = np.clip(src, 0, n_in - 1)
  lo = np.floor(src).astype(int)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = src - lo
  m = np.zeros((n_out, n_in))
  np.add.at(m, (np.arange(n_out), lo), 1 - frac)
  np.add.at(m, (np.arange(n_out), hi), frac)
  return m.astype(np.float32)


def _upsample(low: jax.Array, uy: np.ndarray, ux: np.ndarray) -> jax.Array:
  """``low (B, h, w, C)`` -> ``(B, H, W, C)`` by the two matrices (full float32)."""
  return jnp.einsum(
    "yi,bijc,xj->byxc", jnp.asarray(uy), low, jnp.asarray(ux), precision=jax.lax.Precision.HIGHEST
  )


def _levels(h: int, w: int, factors) -> list[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
  out = []
  for k in factors:
    lh, lw = max(1, h // k), max(1, w // k)
    out.append(((lh, lw), resize_matrix(h, lh), resize_matrix(w, lw)))
  return out


def lowres(
  size: int | tuple[int, int],
  batch: int = 1,
  channels: int = 3,
  *,
  factor: int = LOWRES_FACTOR,
  sd: float = DEFAULT_SD,
  decorrelate: bool = True,
) -> Param:
  """Pixels at ``1 / factor`` of the side, upsampled bilinearly (Lucid's ``lowres_tensor``
  with ``offset=None``), then Lucid's colour and sigmoid.

  Params are ``(B, H // factor, W // factor, C)`` from ``N(0, sd)``. ``from_image`` is the
  least-squares fit of the low-res pixels (the pseudo-inverse of the upsampling): the closest
  image the parameterization can make, not the photo itself.
  """
  h, w = side(size)
  ((lh, lw), uy, ux) = _levels(h, w, [int(factor)])[0]
  py, px = np.linalg.pinv(uy).astype(np.float32), np.linalg.pinv(ux).astype(np.float32)

  def init(key):
    return sd * normal(key, (batch, lh, lw, channels))

  def to_image(params):
    with jax.named_scope("lowres_image"):
      return to_valid_rgb(_upsample(params, uy, ux), decorrelate)

  def from_image(images):
    t = from_valid_rgb(check_images(images, batch, (h, w), channels), decorrelate)
    return _upsample(t, py, px)

  return Param("lowres", init, to_image, batch, (h, w), channels, from_image)


def laplacian(
  size: int | tuple[int, int],
  batch: int = 1,
  channels: int = 3,
  *,
  levels: int = LAPLACIAN_LEVELS,
  sd: float = DEFAULT_SD,
  decorrelate: bool = True,
) -> Param:
  """Lucid's ``laplacian_pyramid_image``: the sum of ``levels`` low-res tensors at sides
  ``H / 2**n`` (``n = 0 .. levels - 1``), each upsampled bilinearly, then colour and sigmoid.

  Params are a tuple of ``levels`` arrays ``(B, H // 2**n, W // 2**n, C)``, each from
  ``N(0, sd)``. ``from_image`` puts the whole photo in the full-resolution level and zeros in
  the others: an exact inverse.
  """
  h, w = side(size)
  table = _levels(h, w, [2**n for n in range(int(levels))])

  def init(key):
    keys = jax.random.split(key, len(table))
    return tuple(sd * normal(k, (batch, *shape, channels)) for k, (shape, _, _) in zip(keys, table))

  def to_image(params):
    with jax.named_scope("laplacian_image"):
      t = sum(_upsample(p, uy, ux) for p, (_, uy, ux) in zip(params, table))
      return to_valid_rgb(t, decorrelate)

  def from_image(images):
    t = from_valid_rgb(check_images(images, batch, (h, w), channels), decorrelate)
    zeros = tuple(jnp.zeros((batch, *shape, channels), jnp.float32) for shape, _, _ in table[1:])
    return (t,) + zeros

  return Param("laplacian", init, to_image, batch, (h, w), channels, from_image)
