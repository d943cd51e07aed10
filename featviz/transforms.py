"""Random image transforms: each is ``(key, images) -> images``, batched and jit-able.

**Each image of the batch draws its own offset, scale and angle.** Lucid, Lucent
and Captum draw one value per step for the whole batch (``anchors.md`` §3); pass
``shared=True`` to get that behaviour, so the two can be compared.

The transforms are frozen dataclasses, equal when their settings are equal, so a
render with the same transforms reuses the compiled loop.

Differences from Lucid, on purpose:

* :class:`RandomScale` zooms about the image centre and keeps the image size.
  Lucid resizes the whole canvas (``resize_bilinear`` to ``scale * (H, W)``),
  so the network input size changes from step to step; a compiled loop needs one
  shape. The content is scaled by the same factors; pixels the zoomed-out image
  does not cover take ``fill`` (0.5, Lucid's pad colour).
* :class:`RandomRotate` converts degrees with the exact pi (Lucid uses 3.14)
  and samples bilinearly (TF 1.15's ``contrib.image.rotate`` defaults to nearest).
* :func:`standard` applies Lucid's five transforms as **one** bilinear resample
  per image (:class:`StandardOnePass`): the same draws and the same geometry (to
  0.04 px), one interpolation instead of two (scale, then rotate), so slightly
  less blur.
  ``standard(one_pass=False)`` is the five steps one after another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from featviz.kernels import affine_resample

# The bilinear sampler and Lucid's scale and angle tables have one home, the affine_resample
# kernel (its reference and its composed standard transforms); the names are re-exported here.
from featviz.kernels.affine_resample.api import STANDARD_ANGLES, STANDARD_SCALES
from featviz.kernels.affine_resample.reference import bilinear_sample as bilinear_resample

Array = jax.Array


def _draw(key: Array, values: Sequence[float], batch: int, shared: bool) -> Array:
  """One value per image (or one for all), uniform over the list's entries."""
  table = jnp.asarray(values, jnp.float32)
  idx = jax.random.randint(key, () if shared else (batch,), 0, len(values))
  return jnp.broadcast_to(table[idx], (batch,))


def affine_about_center(images: Array, scale: Array, angle: Array, fill: float) -> Array:
  """Scales by ``scale (B,)`` and rotates by ``angle (B,)`` radians about the centre.

  Output size equals input size. Positive angles turn the picture
  counterclockwise, as TF's ``rotate`` (Lucid) and ``np.rot90`` do. In (row,
  column) coordinates relative to the centre ``c = ((H - 1) / 2, (W - 1) / 2)``,
  output pixel ``(y, x)`` samples the input at
  ``c + (cos a * y + sin a * x, -sin a * y + cos a * x) / scale``.
  """
  _, h, w, _ = images.shape
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  yy, xx = jnp.meshgrid(
    jnp.arange(h, dtype=jnp.float32) - cy, jnp.arange(w, dtype=jnp.float32) - cx, indexing="ij"
  )
  cos = (jnp.cos(angle) / scale)[:, None, None]
  sin = (jnp.sin(angle) / scale)[:, None, None]
  src_y = cy + cos * yy + sin * xx
  src_x = cx - sin * yy + cos * xx
  return bilinear_resample(images, src_y, src_x, fill)


@dataclasses.dataclass(frozen=True)
class Pad:
  """Pads every side by ``width``: ``mode`` "constant" (with ``value``) or "reflect".

  ``value="uniform"`` draws one constant per image from U(0, 1) (Lucid draws one
  for the batch; ``shared=True`` does that).
  """

  width: int
  mode: str = "reflect"
  value: float | str = 0.5
  shared: bool = False

  def __post_init__(self):
    if self.mode not in ("constant", "reflect"):
      raise ValueError(f"pad mode must be 'constant' or 'reflect', got {self.mode!r}")

  def __call__(self, key: Array, images: Array) -> Array:
    w = self.width
    pads = ((0, 0), (w, w), (w, w), (0, 0))
    if self.mode == "reflect":
      return jnp.pad(images, pads, mode="reflect")
    if self.value == "uniform":
      b = images.shape[0]
      value = jax.random.uniform(key, () if self.shared else (b,), images.dtype)
      value = jnp.broadcast_to(value, (b,))[:, None, None, None]
      padded = jnp.pad(images, pads, constant_values=0.0)
      mask = jnp.pad(jnp.ones(images.shape[1:3], bool), pads[1:3])[None, :, :, None]
      return jnp.where(mask, padded, value)
    return jnp.pad(images, pads, constant_values=float(self.value))


@dataclasses.dataclass(frozen=True)
class Jitter:
  """Random crop to ``(H - d, W - d)``: offsets uniform in ``0..d`` (``tf.random_crop``)."""

  d: int
  shared: bool = False

  def __call__(self, key: Array, images: Array) -> Array:
    b, h, w, c = images.shape
    n = 1 if self.shared else b
    # Drawn flat: multi-dimensional threefry draws compile slowly (see param.normal).
    offsets = jax.random.randint(key, (2 * n,), 0, self.d + 1).reshape(n, 2)
    offsets = jnp.broadcast_to(offsets, (b, 2))

    def crop(image, offset):
      return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h - self.d, w - self.d, c))

    return jax.vmap(crop)(images, offsets)


@dataclasses.dataclass(frozen=True)
class RandomScale:
  """Zoom about the centre by a factor drawn from ``scales`` (uniform over entries)."""

  scales: tuple[float, ...]
  shared: bool = False
  fill: float = 0.5

  def __call__(self, key: Array, images: Array) -> Array:
    scale = _draw(key, self.scales, images.shape[0], self.shared)
    return affine_about_center(images, scale, jnp.zeros_like(scale), self.fill)


@dataclasses.dataclass(frozen=True)
class RandomRotate:
  """Rotation about the centre by an angle drawn from ``angles`` (uniform over entries).

  ``units`` is "degrees" or "radians"; degrees convert with the exact pi. Corners
  the rotated image does not cover take ``fill`` (0, as Lucid's zero fill).
  """

  angles: tuple[float, ...]
  units: str = "degrees"
  shared: bool = False
  fill: float = 0.0

  def __post_init__(self):
    if self.units not in ("degrees", "radians"):
      raise ValueError(f"units must be 'degrees' or 'radians', got {self.units!r}")

  def __call__(self, key: Array, images: Array) -> Array:
    angle = _draw(key, self.angles, images.shape[0], self.shared)
    if self.units == "degrees":
      angle = angle * (math.pi / 180.0)
    return affine_about_center(images, jnp.ones_like(angle), angle, self.fill)


@dataclasses.dataclass(frozen=True)
class Compose:
  """Applies transforms in order, each with its own key folded from ``key``."""

  transforms: tuple = ()

  def __call__(self, key: Array, images: Array) -> Array:
    for i, transform in enumerate(self.transforms):
      with jax.named_scope(type(transform).__name__.lower()):
        images = transform(jax.random.fold_in(key, i), images)
    return images


def pad(width: int, mode: str = "reflect", value: float | str = 0.5, shared: bool = False) -> Pad:
  return Pad(width, mode, value, shared)


def jitter(d: int, shared: bool = False) -> Jitter:
  return Jitter(d, shared)


def random_scale(scales: Sequence[float], shared: bool = False, fill: float = 0.5) -> RandomScale:
  return RandomScale(tuple(float(s) for s in scales), shared, fill)


def random_rotate(
  angles: Sequence[float], units: str = "degrees", shared: bool = False, fill: float = 0.0
) -> RandomRotate:
  return RandomRotate(tuple(float(a) for a in angles), units, shared, fill)


def compose(transforms: Sequence) -> Compose:
  return Compose(tuple(transforms))


@dataclasses.dataclass(frozen=True)
class StandardOnePass:
  """Lucid's ``standard_transforms`` as one bilinear resample per image.

  Pad 12 (0.5), jitter 8, scale, rotate and jitter 4 are all affine in the pixel
  coordinates, so they compose into one map per image
  (``featviz.kernels.affine_resample.standard``): one gather forward and one
  scatter-add backward instead of a pad, two crops and two resamples, each with
  its transpose. Same key, same draws as ``standard(one_pass=False)``; the output
  differs from the five steps by interpolation (one bilinear pass instead of two)
  and by the map's coefficients being rounded to multiples of 2**-12, which moves
  a source point by at most 0.04 px and keeps a render on 4 CPU devices bitwise
  equal to one on a single device (``tests/test_kernels_affine_resample.py``
  bounds the difference; ``tests/test_sweep_multidevice.py`` checks the devices).
  It keeps both fill colours: grey where the pad and the zoom reach, black in the
  corners the rotation uncovers. Measured in the render loop (InceptionV1 ``mixed4a``,
  128 px, 2 CPU cores): ``benchmarks/README.md``.

  ``implementation`` is the kernel switch: ``"xla"``, ``"pallas"``, or ``None``
  (Pallas only on devices where ``benchmarks/kernels_bench.py`` measured it
  faster; none yet, so XLA).
  """

  implementation: str | None = None

  def __call__(self, key: Array, images: Array) -> Array:
    return affine_resample.standard(key, images, implementation=self.implementation)


def standard(
  shared: bool = False, one_pass: bool = True, implementation: str | None = None
) -> StandardOnePass | Compose:
  """Lucid's ``standard_transforms``: pad 12 (constant 0.5), jitter 8, scale, rotate, jitter 4.

  Args:
    shared: one draw for the whole batch, as Lucid (step by step: the one-pass
      map draws per image).
    one_pass: compose the five into one resample (:class:`StandardOnePass`);
      ``False``: apply them one after another (a :class:`Compose`).
    implementation: the one-pass resample's kernel switch (see
      :class:`StandardOnePass`).
  """
  if one_pass and not shared:
    return StandardOnePass(implementation)
  return compose(
    [
      pad(12, mode="constant", value=0.5, shared=shared),
      jitter(8, shared=shared),
      random_scale(STANDARD_SCALES, shared=shared),
      random_rotate(STANDARD_ANGLES, shared=shared),
      jitter(4, shared=shared),
    ]
  )


def identity() -> Compose:
  """No transform."""
  return compose([])
