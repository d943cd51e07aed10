"""What every parameterization shares: :class:`Param`, the initial draw, Lucid's colour map.

A parameterization is ``f(size, batch, channels) -> Param``: ``init(key) -> params`` (every leaf
with a leading batch axis, so each image optimizes its own problem), ``to_image(params) ->
images (B, H, W, C)`` in ``(0, 1)``, and, where the decode can be inverted or fitted,
``from_image(images) -> params`` (start from a photo).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz.kernels.fourier_decode.reference import COLOR_MATRIX

# Lucid's initial standard deviation for its parameterizations (sd=None -> 0.01).
DEFAULT_SD = 0.01
# Photos given as a start are clipped to [EPS, 1 - EPS] before the sigmoid is inverted: half
# of one 8-bit step (1 / 510), so a saturated pixel of a PNG maps to a finite logit.
EPS = 1.0 / 510.0


class ParamError(ValueError):
  """A parameterization cannot do what was asked (start from a photo, an unknown name, a
  photo of the wrong shape); the message says what it can do."""


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Standard normal draws of ``shape``, drawn as one flat vector and reshaped.

  Same distribution as ``jax.random.normal(key, shape)``; with jax 0.10's
  partitionable threefry a multi-dimensional draw takes seconds to compile on
  CPU, a flat one milliseconds (measured: 5.5 s against 0.2 s).
  """
  return jax.random.normal(key, (int(np.prod(shape)),), jnp.float32).reshape(shape)


def _no_inverse(name: str) -> Callable[[Any], Any]:
  def from_image(images):
    raise ParamError(
      f"the {name} parameterization cannot start from a photo; use fourier, pixel, "
      "maco, laplacian or lowres"
    )

  return from_image


@dataclasses.dataclass(frozen=True)
class Param:
  """A parameterization: ``init(key) -> params``, ``to_image(params) -> images``, and
  ``from_image(images) -> params`` (the inverse of the decode, or its closest fit)."""

  name: str
  init: Callable[[jax.Array], Any]
  to_image: Callable[[Any], jax.Array]
  batch: int
  size: tuple[int, int]
  channels: int
  from_image: Callable[[Any], Any] | None = None

  def __post_init__(self):
    if self.from_image is None:
      object.__setattr__(self, "from_image", _no_inverse(self.name))


def side(size: int | tuple[int, int]) -> tuple[int, int]:
  """``(H, W)`` of an int side or a pair."""
  return (size, size) if isinstance(size, int) else tuple(size)


def decorrelate_color(t: jax.Array) -> jax.Array:
  """Maps decorrelated colour ``(..., 3)`` to RGB: ``t @ (M / max_norm).T`` (Lucid).

  In full float32 precision (a GPU's default matmul precision, TF32, would round it).
  """
  return _mix3(t, COLOR_MATRIX.T)


def correlate_color(rgb: jax.Array) -> jax.Array:
  """The inverse of :func:`decorrelate_color`: ``rgb @ inv((M / max_norm).T)``."""
  return _mix3(rgb, np.linalg.inv(COLOR_MATRIX.T.astype(np.float64)).astype(np.float32))


def _mix3(t: jax.Array, matrix: np.ndarray) -> jax.Array:
  """``t @ matrix`` for ``t (..., 3)`` and a constant ``matrix (3, 3)``, written as nine
  element-wise products and sums, which XLA fuses with the ops around them. As a matmul,
  XLA:CPU ran it as a matrix-product call of its own, on a 16,384 x 3 by 3 x 3 product: 1.0
  of the 32.5 ms of an EfficientNet-Lite0 block15 step (batch 1, 128 px; benchmarks/README.md)."""
  r, g, b = t[..., 0], t[..., 1], t[..., 2]
  m = [[float(v) for v in row] for row in matrix]
  return jnp.stack([r * m[0][j] + g * m[1][j] + b * m[2][j] for j in range(3)], axis=-1)


def to_valid_rgb(t: jax.Array, decorrelate: bool = True) -> jax.Array:
  """Lucid's ``to_valid_rgb(sigmoid=True)``: colour decorrelation of the first three channels
  (RGB, or RGB of RGBA: Lucid's ``image(alpha=True)``), then sigmoid of every channel."""
  if decorrelate and t.shape[-1] in (3, 4):
    t = jnp.concatenate([decorrelate_color(t[..., :3]), t[..., 3:]], axis=-1)
  return jax.nn.sigmoid(t)


def from_valid_rgb(images: jax.Array, decorrelate: bool = True) -> jax.Array:
  """The inverse of :func:`to_valid_rgb`: logit (of the images clipped to ``[EPS, 1 - EPS]``),
  then the inverse colour map."""
  x = jnp.clip(jnp.asarray(images, jnp.float32), EPS, 1 - EPS)
  t = jnp.log(x) - jnp.log1p(-x)
  if decorrelate and t.shape[-1] in (3, 4):
    t = jnp.concatenate([correlate_color(t[..., :3]), t[..., 3:]], axis=-1)
  return t


def check_images(images: Any, batch: int, size: tuple[int, int], channels: int) -> jax.Array:
  """``images`` as ``(batch, H, W, channels)`` float32: one photo is repeated for the batch;
  other counts or shapes are a :class:`ParamError`."""
  x = jnp.asarray(images, jnp.float32)
  if x.ndim == 3:
    x = x[None]
  want = (*size, channels)
  if x.ndim != 4 or tuple(x.shape[1:]) != want or x.shape[0] not in (1, batch):
    raise ParamError(
      f"start images must be (1 or {batch}, {want[0]}, {want[1]}, {channels}) in [0, 1]; "
      f"got shape {tuple(np.shape(images))}"
    )
  return jnp.broadcast_to(x, (batch, *want))
