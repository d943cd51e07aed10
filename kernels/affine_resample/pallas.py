"""``affine_resample`` in Pallas (Triton lowering): a gather forward and a gather backward.

**Forward.** Grid ``(B, ceil(H' W' / block))``: each program computes ``block`` consecutive output
pixels of one image (row-major, so a program covers a few whole rows), maps each to its source
point, and gathers its four taps per channel straight from the image in global memory. One read
of the taps (they come from L1/L2: neighbouring pixels share taps) and one write per output value;
nothing else touches device memory.

**Backward, without atomics.** The transpose of a bilinear gather is a scatter-add, and Pallas's
interpreter applies an indexed atomic add as a plain set (duplicates lose updates), while on a GPU
atomics make the sum order, and so the bits, vary from run to run. Instead each *input* pixel ``p``
gathers from the output pixels that sampled it. Those are the output pixels ``n`` with
``|A n + t - p| < 1`` in both coordinates (``A``, ``t``: the matrix's linear part and offset), so
``n - q`` lies within ``h_y = |B00| + |B01|`` (rows) and ``h_x = |B10| + |B11|`` (columns) of
``q = B (p - t)``, ``B = A^-1``. With ``r = round(q)`` the window ``r +- radius`` holds all of them
when ``h <= radius + 1/2``. Each gets the bilinear weight
``max(0, 1 - |src_y - p_y|) * max(0, 1 - |src_x - p_x|)``, which is the forward's weight for that
tap. ``radius = 1`` (a 3 x 3 window) covers every zoom ``z`` and angle ``a`` with
``z (|cos a| + |sin a|) <= 1.5``: Lucid's draws reach at most 1.1 (cos 10 deg + sin 10 deg) = 1.27.
The API checks the bound per image and returns NaN gradients for images that break it.

Triton needs every loaded or stored array to have a power-of-two size: blocks are 1-D runs of
``block`` pixels (a power of two) and each channel is gathered or stored as one ``(block,)``
vector; the last block of an image is masked.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

Array = jax.Array

# Output pixels per program: 8 per thread at Triton's 4 warps of 32 threads. A guess to tune
# on the GPU (benchmarks/kernels_bench.py --block), not a measurement.
BLOCK = 1024
NUM_WARPS = 4
# The backward's window half-width; see the module docstring for what it covers.
RADIUS = 1
# Layout of the per-image coefficient row (B, 16): the source matrix (6), the canvas matrix (6,
# zeros without a canvas), the inverse of the source matrix's linear part (4). 16: a power of two.
N_COEFFICIENTS = 16


def pack_coefficients(matrices: Array, canvas: Array | None) -> Array:
  """``(B, 16)`` float32: ``matrices (B, 2, 3)``, ``canvas (B, 2, 3)`` or zeros, ``inv(A)``."""
  m = matrices.astype(jnp.float32)
  b = m.shape[0]
  c = jnp.zeros_like(m) if canvas is None else canvas.astype(jnp.float32)
  a00, a01, a10, a11 = m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1]
  det = a00 * a11 - a01 * a10
  inv = jnp.stack([a11, -a01, -a10, a00], axis=-1) / det[:, None]
  return jnp.concatenate([m.reshape(b, 6), c.reshape(b, 6), inv], axis=-1)


def _pixel_coordinates(block: int, width: int, count: int):
  """Row, column (int32 and float32) of this program's ``block`` pixels, and the in-range mask."""
  i = pl.program_id(1) * block + jnp.arange(block, dtype=jnp.int32)
  row = lax.div(i, jnp.int32(width))
  col = i - row * width
  return row, col, row.astype(jnp.float32), col.astype(jnp.float32), i < count


def _forward_kernel(
  coef_ref,
  image_ref,
  out_ref,
  *,
  image_size,
  out_size,
  channels,
  fill,
  canvas_size,
  canvas_fill,
  block,
):
  """One program: ``block`` output pixels of one image, every channel."""
  h, w = image_size
  out_h, out_w = out_size
  _, _, y, x, valid = _pixel_coordinates(block, out_w, out_h * out_w)
  m = [coef_ref[k] for k in range(6)]
  sy = m[0] * y + m[1] * x + m[2]
  sx = m[3] * y + m[4] * x + m[5]
  y0f = jnp.floor(sy)
  x0f = jnp.floor(sx)
  wy = sy - y0f
  wx = sx - x0f
  y0 = y0f.astype(jnp.int32)
  x0 = x0f.astype(jnp.int32)
  taps = []
  for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
    yi, xi = y0 + dy, x0 + dx
    inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
    taps.append((jnp.clip(yi, 0, h - 1), jnp.clip(xi, 0, w - 1), inside))
  cov = None
  if canvas_size is not None:
    c = [coef_ref[6 + k] for k in range(6)]
    zy = c[0] * y + c[1] * x + c[2]
    zx = c[3] * y + c[4] * x + c[5]
    zy0 = jnp.floor(zy)
    zx0 = jnp.floor(zx)
    vy = zy - zy0
    vx = zx - zx0

    def inside(lo, n):
      return ((lo >= 0) & (lo < n)).astype(jnp.float32)

    row = inside(zy0, canvas_size[0]) * (1 - vy) + inside(zy0 + 1, canvas_size[0]) * vy
    col = inside(zx0, canvas_size[1]) * (1 - vx) + inside(zx0 + 1, canvas_size[1]) * vx
    cov = row * col
  for ch in range(channels):
    v = [jnp.where(inside, image_ref[yi, xi, ch], fill) for yi, xi, inside in taps]
    top = v[0] * (1 - wx) + v[1] * wx
    bottom = v[2] * (1 - wx) + v[3] * wx
    value = top * (1 - wy) + bottom * wy
    if cov is not None:
      value = cov * value + (1 - cov) * canvas_fill
    plt.store(out_ref.at[:, pl.ds(ch, 1)], value[:, None], mask=valid[:, None])


def _backward_kernel(coef_ref, g_ref, out_ref, *, image_size, out_size, channels, radius, block):
  """One program: the gradient at ``block`` input pixels of one image, every channel."""
  h, w = image_size
  out_h, out_w = out_size
  _, _, py, px, valid = _pixel_coordinates(block, w, h * w)
  m = [coef_ref[k] for k in range(6)]
  b00, b01, b10, b11 = (coef_ref[12 + k] for k in range(4))
  dy = py - m[2]
  dx = px - m[5]
  # r = round(B (p - t)); floor(q + 1/2) because Triton has no round.
  ry = jnp.floor(b00 * dy + b01 * dx + 0.5).astype(jnp.int32)
  rx = jnp.floor(b10 * dy + b11 * dx + 0.5).astype(jnp.int32)
  acc = [jnp.zeros((block,), jnp.float32) for _ in range(channels)]
  for oy in range(-radius, radius + 1):
    ny = ry + oy
    nyf = ny.astype(jnp.float32)
    for ox in range(-radius, radius + 1):
      nx = rx + ox
      nxf = nx.astype(jnp.float32)
      sy = m[0] * nyf + m[1] * nxf + m[2]
      sx = m[3] * nyf + m[4] * nxf + m[5]
      weight = jnp.maximum(0.0, 1 - jnp.abs(sy - py)) * jnp.maximum(0.0, 1 - jnp.abs(sx - px))
      in_out = (ny >= 0) & (ny < out_h) & (nx >= 0) & (nx < out_w)
      weight = jnp.where(in_out, weight, 0.0)
      n = jnp.clip(ny, 0, out_h - 1) * out_w + jnp.clip(nx, 0, out_w - 1)
      for ch in range(channels):
        acc[ch] = acc[ch] + weight * g_ref[n, ch]
  for ch in range(channels):
    plt.store(out_ref.at[:, pl.ds(ch, 1)], acc[ch][:, None], mask=valid[:, None])


def _compiler_params():
  return plt.CompilerParams(num_warps=NUM_WARPS)


@functools.partial(
  jax.jit, static_argnames=("out_size", "fill", "canvas_size", "canvas_fill", "block", "interpret")
)
def forward(
  coefficients: Array,
  images: Array,
  *,
  out_size: tuple[int, int],
  fill: float,
  canvas_size: tuple[int, int] | None,
  canvas_fill: float,
  block: int = BLOCK,
  interpret: bool = False,
) -> Array:
  """``images (B, H, W, C)`` float32 -> ``(B, H', W', C)``; coefficients: ``pack_coefficients``."""
  b, h, w, c = images.shape
  out_h, out_w = out_size
  n = out_h * out_w
  kernel = functools.partial(
    _forward_kernel,
    image_size=(h, w),
    out_size=out_size,
    channels=c,
    fill=float(fill),
    canvas_size=canvas_size,
    canvas_fill=float(canvas_fill),
    block=block,
  )
  out = pl.pallas_call(
    kernel,
    out_shape=jax.ShapeDtypeStruct((b, n, c), jnp.float32),
    grid=(b, pl.cdiv(n, block)),
    in_specs=[
      pl.BlockSpec((None, N_COEFFICIENTS), lambda i, t: (i, 0)),
      pl.BlockSpec((None, h, w, c), lambda i, t: (i, 0, 0, 0)),
    ],
    out_specs=pl.BlockSpec((None, block, c), lambda i, t: (i, t, 0)),
    compiler_params=_compiler_params(),
    interpret=interpret,
    name="affine_resample_fwd",
  )(coefficients, images.astype(jnp.float32))
  return out.reshape(b, out_h, out_w, c)


@functools.partial(jax.jit, static_argnames=("image_size", "radius", "block", "interpret"))
def backward(
  coefficients: Array,
  cotangent: Array,
  *,
  image_size: tuple[int, int],
  radius: int = RADIUS,
  block: int = BLOCK,
  interpret: bool = False,
) -> Array:
  """Transpose of ``forward`` in ``images``: ``cotangent (B, H', W', C)`` -> ``(B, H, W, C)``.

  ``cotangent`` must already carry the canvas coverage factor (the API multiplies it in).
  """
  b, out_h, out_w, c = cotangent.shape
  h, w = image_size
  n = h * w
  kernel = functools.partial(
    _backward_kernel,
    image_size=image_size,
    out_size=(out_h, out_w),
    channels=c,
    radius=radius,
    block=block,
  )
  out = pl.pallas_call(
    kernel,
    out_shape=jax.ShapeDtypeStruct((b, n, c), jnp.float32),
    grid=(b, pl.cdiv(n, block)),
    in_specs=[
      pl.BlockSpec((None, N_COEFFICIENTS), lambda i, t: (i, 0)),
      pl.BlockSpec((None, out_h * out_w, c), lambda i, t: (i, 0, 0)),
    ],
    out_specs=pl.BlockSpec((None, block, c), lambda i, t: (i, t, 0)),
    compiler_params=_compiler_params(),
    interpret=interpret,
    name="affine_resample_bwd",
  )(coefficients, cotangent.astype(jnp.float32).reshape(b, out_h * out_w, c))
  return out.reshape(b, h, w, c)
