"""What ``affine_resample`` means, in plain ``jnp``: the definition the kernel is tested against.

Every image ``b`` of ``images (B, H, W, C)`` has its own affine map from output pixel
``(y, x)`` (row, column; pixel centres at integers) to a source point in the input image::

    (src_y, src_x) = matrices[b] @ (y, x, 1)        matrices: (B, 2, 3)

and the output pixel is the bilinear interpolation of the input at that point. Each of the four
taps that falls outside the input takes the constant ``fill``. :func:`bilinear_sample` is also
``featviz.transforms.bilinear_resample`` (the step-by-step transforms' sampler), so that with equal
coordinates the one-pass op and the step-by-step transforms agree to the last bit.

**The canvas (optional).** Lucid's pipeline fills with two colours: padding and zoom fill 0.5, but
the rotation fills 0 (``featviz.transforms.RandomRotate``), so the corners that the rotated canvas
does not cover are black. To reproduce that in one pass, a second map ``canvas (B, 2, 3)`` sends
each output pixel into the frame of that canvas (size ``canvas_size``); ``coverage`` is the
bilinear weight of the canvas taps that lie inside it (1 well inside, 0 well outside, a ramp over
the one-pixel border), and::

    out = coverage * sample + (1 - coverage) * canvas_fill

``affine_resample_transpose`` is the transpose of this map in ``images`` (a scatter-add of the
bilinear weights): the gradient the Pallas backward must reproduce.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def affine_coordinates(matrices: Array, out_size: tuple[int, int]) -> tuple[Array, Array]:
  """Source points ``(B, H', W')`` (row, column) of every output pixel under ``matrices``."""
  out_h, out_w = out_size
  y = jnp.arange(out_h, dtype=jnp.float32)[:, None]
  x = jnp.arange(out_w, dtype=jnp.float32)[None, :]
  m = matrices.astype(jnp.float32)[:, :, :, None, None]  # (B, 2, 3, 1, 1)
  src_y = m[:, 0, 0] * y + m[:, 0, 1] * x + m[:, 0, 2]
  src_x = m[:, 1, 0] * y + m[:, 1, 1] * x + m[:, 1, 2]
  return src_y, src_x


def bilinear_sample(images: Array, src_y: Array, src_x: Array, fill: float) -> Array:
  """Samples ``images (B, H, W, C)`` at ``(B, H', W')`` source points; outside taps take ``fill``.

  Coordinates are in pixels (row, column). ``featviz.transforms`` uses this one as its
  ``bilinear_resample``.
  """
  _, h, w, _ = images.shape

  def one(image, ys, xs):
    y0 = jnp.floor(ys)
    x0 = jnp.floor(xs)
    wy = (ys - y0)[..., None]
    wx = (xs - x0)[..., None]
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)

    def tap(yi, xi):
      inside = ((yi >= 0) & (yi < h) & (xi >= 0) & (xi < w))[..., None]
      value = image[jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)]
      return jnp.where(inside, value, jnp.asarray(fill, image.dtype))

    top = tap(y0, x0) * (1 - wx) + tap(y0, x0 + 1) * wx
    bottom = tap(y0 + 1, x0) * (1 - wx) + tap(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy

  return jax.vmap(one)(images, src_y, src_x)


def coverage(canvas: Array, canvas_size: tuple[int, int], out_size: tuple[int, int]) -> Array:
  """``(B, H', W')``: bilinear weight of the canvas taps inside ``canvas_size`` (see module doc).

  Equals ``bilinear_sample`` of an all-ones canvas with fill 0, written out so that it needs no
  canvas-sized array.
  """
  ch, cw = canvas_size
  zy, zx = affine_coordinates(canvas, out_size)
  y0 = jnp.floor(zy)
  x0 = jnp.floor(zx)
  wy = zy - y0
  wx = zx - x0

  def inside(lo, n):
    return ((lo >= 0) & (lo < n)).astype(jnp.float32)

  row = inside(y0, ch) * (1 - wy) + inside(y0 + 1, ch) * wy
  col = inside(x0, cw) * (1 - wx) + inside(x0 + 1, cw) * wx
  return row * col


def affine_resample(
  images: Array,
  matrices: Array,
  out_size: tuple[int, int],
  fill: float = 0.5,
  canvas: Array | None = None,
  canvas_size: tuple[int, int] | None = None,
  canvas_fill: float = 0.0,
) -> Array:
  """The reference op: ``images (B, H, W, C)`` -> ``(B, H', W', C)``, ``out_size = (H', W')``."""
  src_y, src_x = affine_coordinates(matrices, out_size)
  out = bilinear_sample(images, src_y, src_x, fill)
  if canvas is None:
    return out
  cov = coverage(canvas, canvas_size, out_size)[..., None]
  return cov * out + (1 - cov) * jnp.asarray(canvas_fill, out.dtype)


def affine_resample_transpose(
  cotangent: Array,
  matrices: Array,
  image_size: tuple[int, int],
  canvas: Array | None = None,
  canvas_size: tuple[int, int] | None = None,
) -> Array:
  """The transpose of ``affine_resample`` in ``images``: ``(B, H', W', C)`` -> ``(B, H, W, C)``.

  Each output pixel adds ``coverage * cotangent * weight`` to each of its in-bounds taps
  (a scatter-add; taps outside the image fed ``fill``, a constant, and receive nothing). Written
  out rather than taken from ``jax.vjp`` so that the tests check the autodiff gradient, this
  scatter and the Pallas gather against one another.
  """
  b, out_h, out_w, c = cotangent.shape
  h, w = image_size
  g = cotangent
  if canvas is not None:
    g = g * coverage(canvas, canvas_size, (out_h, out_w))[..., None]
  src_y, src_x = affine_coordinates(matrices, (out_h, out_w))
  y0 = jnp.floor(src_y)
  x0 = jnp.floor(src_x)
  wy = src_y - y0
  wx = src_x - x0
  y0 = y0.astype(jnp.int32)
  x0 = x0.astype(jnp.int32)
  batch = jnp.broadcast_to(jnp.arange(b)[:, None, None], y0.shape)
  grad = jnp.zeros((b, h, w, c), cotangent.dtype)
  for dy, dx, weight in (
    (0, 0, (1 - wx) * (1 - wy)),
    (0, 1, wx * (1 - wy)),
    (1, 0, (1 - wx) * wy),
    (1, 1, wx * wy),
  ):
    yi, xi = y0 + dy, x0 + dx
    inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
    contrib = jnp.where(inside, weight, 0.0)[..., None] * g
    grad = grad.at[batch, jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1)].add(contrib)
  return grad
