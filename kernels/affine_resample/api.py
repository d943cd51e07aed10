"""``affine_resample``: the public op, its ``implementation`` switch, Lucid's transforms as one map.

Lucid's ``standard_transforms`` (pad 12, jitter 8, scale, rotate, jitter 4) resample the image
twice (scale, then rotate) and copy it three times (pad, two crops). All five are affine in the
pixel coordinates, so they compose into one map per image: :func:`standard` draws the same
random values as ``featviz.transforms.standard()`` for the same key and applies them in one
bilinear pass. The one-pass result differs from the five-step one only by interpolation (one
bilinear blur instead of two); ``tests/test_kernels_affine_resample.py`` bounds the difference.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from featviz.kernels import choose_implementation, default_interpret
from featviz.kernels.affine_resample import pallas, reference

Array = jax.Array

# Device kinds (``jax.devices()[0].device_kind``) on which benchmarks/kernels_bench.py measured
# the Pallas kernel faster than XLA, forward + VJP, at the render loop's shapes. Empty: no GPU
# measurement exists yet, so ``implementation=None`` picks "xla" on every device.
PALLAS_WINS_ON: frozenset[str] = frozenset()
# Float32 slack on the backward's window bound (coordinates of a few hundred pixels carry
# rounding errors near 1e-5 px; 1e-3 leaves a wide margin).
_WINDOW_SLACK = 1e-3


@dataclasses.dataclass(frozen=True)
class _Static:
  image_size: tuple[int, int]
  out_size: tuple[int, int]
  fill: float
  canvas_size: tuple[int, int] | None
  canvas_fill: float
  block: int
  radius: int
  interpret: bool


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pallas_op(static: _Static, images: Array, coefficients: Array) -> Array:
  return pallas.forward(
    coefficients,
    images,
    out_size=static.out_size,
    fill=static.fill,
    canvas_size=static.canvas_size,
    canvas_fill=static.canvas_fill,
    block=static.block,
    interpret=static.interpret,
  )


def _pallas_fwd(static, images, coefficients):
  return _pallas_op(static, images, coefficients), coefficients


def _pallas_bwd(static, coefficients, cotangent):
  g = cotangent
  if static.canvas_size is not None:
    canvas = coefficients[:, 6:12].reshape(-1, 2, 3)
    g = g * reference.coverage(canvas, static.canvas_size, static.out_size)[..., None]
  # The window bound of pallas.py's backward: h_y = |B00| + |B01|, h_x = |B10| + |B11|.
  inv = jnp.abs(coefficients[:, 12:16])
  reach = jnp.maximum(inv[:, 0] + inv[:, 1], inv[:, 2] + inv[:, 3])
  ok = reach <= static.radius + 0.5 - _WINDOW_SLACK
  g = jnp.where(ok[:, None, None, None], g, jnp.nan)  # loud, not silently wrong
  grad = pallas.backward(
    coefficients,
    g,
    image_size=static.image_size,
    radius=static.radius,
    block=static.block,
    interpret=static.interpret,
  )
  return grad, None  # the matrices get no gradient (the public op stops it)


_pallas_op.defvjp(_pallas_fwd, _pallas_bwd)


def affine_resample(
  images: Array,
  matrices: Array,
  out_size: tuple[int, int],
  *,
  fill: float = 0.5,
  canvas: Array | None = None,
  canvas_size: tuple[int, int] | None = None,
  canvas_fill: float = 0.0,
  implementation: str | None = None,
  interpret: bool | None = None,
  block: int = pallas.BLOCK,
  radius: int = pallas.RADIUS,
) -> Array:
  """Resamples each image through its own affine map, in one bilinear pass.

  Output pixel ``(y, x)`` of image ``b`` is the bilinear interpolation of ``images[b]`` at
  ``matrices[b] @ (y, x, 1)`` (row, column); taps outside the image take ``fill``. With a
  ``canvas``, the result is blended towards ``canvas_fill`` where ``canvas[b] @ (y, x, 1)``
  leaves a ``canvas_size`` rectangle (``reference.py`` has the exact formula).

  Args:
    images: ``(B, H, W, C)`` float32.
    matrices: ``(B, 2, 3)``, output pixel -> source point. Treated as constants: no gradient
      flows to them (``stop_gradient``); the render loop draws them at random.
    out_size: ``(H', W')``.
    fill: value of taps outside the image (Lucid's pad colour 0.5).
    canvas, canvas_size, canvas_fill: optional second map, ``(B, 2, 3)``, its rectangle and the
      value outside it (Lucid's rotation fills 0).
    implementation: ``"xla"`` (the reference, differentiated by JAX), ``"pallas"``, or ``None``:
      Pallas only where measured faster (``PALLAS_WINS_ON``; nowhere yet).
    interpret: run the Pallas kernel interpreted; ``None``: everywhere but on a GPU.
    block: output (and, in the backward, input) pixels per Pallas program; a power of two.
    radius: the Pallas backward's window half-width. Its gradient is exact for images whose
      map zooms by ``z`` and turns by ``a`` with ``z (|cos a| + |sin a|) <= radius + 1/2``
      (any shear: ``pallas.py`` has the general bound); other images get NaN gradients.

  Returns:
    ``(B, H', W', C)`` float32.
  """
  if (canvas is None) != (canvas_size is None):
    raise ValueError("canvas and canvas_size go together: pass both or neither")
  matrices = jax.lax.stop_gradient(matrices)
  canvas = None if canvas is None else jax.lax.stop_gradient(canvas)
  out_size = tuple(int(n) for n in out_size)
  canvas_size = None if canvas_size is None else tuple(int(n) for n in canvas_size)
  if choose_implementation(implementation, PALLAS_WINS_ON) == "xla":
    return reference.affine_resample(
      images.astype(jnp.float32), matrices, out_size, fill, canvas, canvas_size, canvas_fill
    )
  if block & (block - 1):
    raise ValueError(f"block must be a power of two (Triton), got {block}")
  static = _Static(
    image_size=tuple(images.shape[1:3]),
    out_size=out_size,
    fill=float(fill),
    canvas_size=canvas_size,
    canvas_fill=float(canvas_fill),
    block=block,
    radius=radius,
    interpret=default_interpret() if interpret is None else bool(interpret),
  )
  coefficients = pallas.pack_coefficients(matrices, canvas)
  return _pallas_op(static, images.astype(jnp.float32), coefficients)


# ----------------------------------------------------------------------------- Lucid's transforms

# featviz.transforms.standard(): Lucid's standard_transforms (lucid/optvis/transform.py).
PAD = 12  # pad(12, mode="constant", value=0.5)
JITTER_BEFORE = 8  # jitter(8)
JITTER_AFTER = 4  # jitter(4)
PAD_VALUE = 0.5  # Lucid's pad colour; featviz's RandomScale fills with it too
ROTATE_FILL = 0.0  # featviz's RandomRotate fill (TF's rotate fills zeros)
# Lucid's standard_transforms tables (lucid/optvis/transform.py, anchors.md §(b)), their one home
# (featviz.transforms imports them): scales 1 + (i - 5) / 50 for i in 0..10 (0.90 ... 1.10);
# angles -10..10 degrees plus 5 extra zeros, so 0 is drawn with probability 6/26.
STANDARD_SCALES = tuple(1 + (i - 5) / 50.0 for i in range(11))
STANDARD_ANGLES = tuple(float(a) for a in list(range(-10, 11)) + 5 * [0])


class StandardDraws(NamedTuple):
  """One image's (row of each array's) random draws of Lucid's standard transforms."""

  offset_before: Array  # (B, 2) int32 crop offset (row, column) of jitter 8, in 0..8
  scale: Array  # (B,) float32 zoom
  angle: Array  # (B,) float32 radians, counterclockwise
  offset_after: Array  # (B, 2) int32 crop offset of jitter 4, in 0..4


class Composite(NamedTuple):
  """Arguments of :func:`affine_resample` that apply a whole transform chain."""

  matrices: Array  # (B, 2, 3)
  out_size: tuple[int, int]
  canvas: Array  # (B, 2, 3)
  canvas_size: tuple[int, int]


def standard_draws(key: Array, batch: int) -> StandardDraws:
  """The draws ``featviz.transforms.standard()`` makes with ``key`` (per image, not shared).

  ``Compose`` gives transform ``i`` the key ``fold_in(key, i)``: pad (0) draws nothing, jitter
  (1, 4) draws ``randint(0, d + 1)`` as one flat ``(2 B,)`` vector, scale (2) and rotate (3)
  draw an index into their tables.
  """

  def offsets(k, d):
    return jax.random.randint(k, (2 * batch,), 0, d + 1).reshape(batch, 2)

  def table(k, values):
    return jnp.asarray(values, jnp.float32)[jax.random.randint(k, (batch,), 0, len(values))]

  return StandardDraws(
    offset_before=offsets(jax.random.fold_in(key, 1), JITTER_BEFORE),
    scale=table(jax.random.fold_in(key, 2), STANDARD_SCALES),
    angle=table(jax.random.fold_in(key, 3), STANDARD_ANGLES) * (math.pi / 180.0),
    offset_after=offsets(jax.random.fold_in(key, 4), JITTER_AFTER),
  )


def compose_standard(draws: StandardDraws, image_size: tuple[int, int]) -> Composite:
  """The one affine map (and the rotation's canvas) of pad, jitter, scale, rotate, jitter.

  With the canvas after pad and the first crop of size ``(H1, W1) = (H + 16, W + 16)`` and its
  centre ``c = ((H1 - 1) / 2, (W1 - 1) / 2)`` (scale and rotate turn about it), output pixel
  ``t`` of the final crop (offset ``o2``) lies at ``z = c + R (t + o2 - c)`` on the rotated
  canvas, ``R = [[cos a, sin a], [-sin a, cos a]]`` (``affine_about_center``'s convention), and
  samples the original image at ``c + (z - c) / s + o1 - 12``. Output size ``(H + 12, W + 12)``.
  """
  h, w = image_size
  h1, w1 = h + 2 * PAD - JITTER_BEFORE, w + 2 * PAD - JITTER_BEFORE
  centre = jnp.asarray([(h1 - 1) / 2.0, (w1 - 1) / 2.0], jnp.float32)
  cos, sin = jnp.cos(draws.angle), jnp.sin(draws.angle)
  rot = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)  # (B, 2, 2)
  shift = draws.offset_after.astype(jnp.float32) - centre  # o2 - c
  canvas_offset = centre + jnp.einsum("bij,bj->bi", rot, shift)
  lin = rot / draws.scale[:, None, None]
  src_offset = (
    centre + jnp.einsum("bij,bj->bi", lin, shift) + draws.offset_before.astype(jnp.float32) - PAD
  )
  return Composite(
    matrices=on_exact_grid(jnp.concatenate([lin, src_offset[:, :, None]], -1)),
    out_size=(h1 - JITTER_AFTER, w1 - JITTER_AFTER),
    canvas=on_exact_grid(jnp.concatenate([rot, canvas_offset[:, :, None]], -1)),
    canvas_size=(h1, w1),
  )


# Map coefficients are multiples of 2**-12 (see on_exact_grid).
MAP_QUANTUM = 2.0**-12


def on_exact_grid(matrices: Array) -> Array:
  """Rounds map coefficients to multiples of :data:`MAP_QUANTUM` (2**-12).

  Then every source coordinate ``m00 y + m01 x + m02`` of an output up to 1024 px, with
  coefficients under 2 (zoom and turn) and offsets under 1024, is computed exactly in float32
  (each product needs at most 13 + 10 bits, each sum 11 + 12 of the 24), and so are the tap
  weights (multiples of 2**-12) and their products. XLA:CPU contracts multiply-adds into FMAs
  fusion by fusion, and the render loop's fusions differ with the number of devices; with exact
  arithmetic that cannot change a bit. Without the rounding, a 4-device render drifted from the
  1-device one (gradients 1.5e-5 apart, images 0.36 after 32 steps;
  ``tests/test_sweep_multidevice.py``). The cost: each coefficient moves by at most 2**-13,
  so a source point moves by at most ``2**-13 (|y| + |x| + 1)`` px, 0.04 px at 140 px.
  """
  return jnp.round(matrices / MAP_QUANTUM) * MAP_QUANTUM


def standard(
  key: Array, images: Array, *, implementation: str | None = None, interpret: bool | None = None
) -> Array:
  """``featviz.transforms.standard()(key, images)`` as one resampling pass.

  ``images (B, H, W, C)`` -> ``(B, H + 12, W + 12, C)``, with the same draws for the same key.
  """
  comp = compose_standard(standard_draws(key, images.shape[0]), images.shape[1:3])
  return affine_resample(
    images,
    comp.matrices,
    comp.out_size,
    fill=PAD_VALUE,
    canvas=comp.canvas,
    canvas_size=comp.canvas_size,
    canvas_fill=ROTATE_FILL,
    implementation=implementation,
    interpret=interpret,
  )
