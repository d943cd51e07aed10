"""MACO (Fel et al., NeurIPS 2023, "Unlocking Feature Visualization for Deeper Networks with
MAgnitude-Constrained Optimization"): a fixed magnitude spectrum, an optimized phase.

The image is ``irfft2(magnitude * exp(i phase))`` per decorrelated colour channel, standardized
(zero mean, unit standard deviation over the whole image, epsilon 1e-5), Lucid's colour
recorrelation, sigmoid: the paper's decode as Xplique (``maco_image_parametrization``) and
Horama (``maco_preconditioner``) write it. ``magnitude`` is the mean magnitude spectrum of
natural images, package data computed by ``scripts/maco_spectrum.py`` from 264 ImageNet photos
(``maco_spectrum.npz``'s ``meta`` names the folder, its SHA-256, the count and sizes) at 256 px,
resampled bilinearly (half-pixel centres, as their ``resize``/``interpolate``) to other sizes.

One departure: Xplique and Horama also standardize the phase before using it; a phase is an
angle, and standardizing it moves every angle, so that a photo's phase (``from_image``) would
not decode to the photo's structure. Here the phase is used as it is (Adam is invariant to its
scale anyway).

The paper's transparency map, the accumulated absolute gradient of the objective with respect
to the image, is kept by the render loop for this parameterization (``RenderResult.
transparency``). The crops and noise of MACO's optimisation step are :class:`MacoCrops`
(``RenderConfig(transforms="maco")``): one crop per image and step, in one bilinear resample.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from featviz.kernels.affine_resample.api import affine_resample
from featviz.kernels.fourier_decode.reference import irfft2_by_matmul
from featviz.param.core import (
  Param,
  ParamError,
  check_images,
  decorrelate_color,
  from_valid_rgb,
  normal,
  side,
)
from featviz.param.lowres_image import resize_matrix

SPECTRUM_FILE = pathlib.Path(__file__).with_name("maco_spectrum.npz")
# Xplique and Horama: the phase starts from N(0, 1); the standardized image's epsilon is 1e-5.
PHASE_SD = 1.0
STANDARDIZE_EPS = 1e-5


@functools.lru_cache(maxsize=1)
def stored_spectrum() -> tuple[np.ndarray, dict]:
  """The shipped mean magnitude spectrum ``(3, 256, 129)`` float32 and its metadata."""
  with np.load(SPECTRUM_FILE) as f:
    return f["magnitude"].astype(np.float32), json.loads(str(f["meta"]))


@functools.lru_cache(maxsize=16)
def magnitude(h: int, w: int) -> np.ndarray:
  """``(3, H, W // 2 + 1)``: the stored spectrum resampled bilinearly to this size."""
  m, _ = stored_spectrum()
  uy = resize_matrix(h, m.shape[1], half_pixel=True)
  ux = resize_matrix(w // 2 + 1, m.shape[2], half_pixel=True)
  return (uy @ m @ ux.T).astype(np.float32)  # two matmuls per channel


def decode(phase: jax.Array, mag: jax.Array, h: int, w: int) -> jax.Array:
  """``phase (B, 3, H, W // 2 + 1)`` -> images ``(B, H, W, 3)`` in (0, 1) (module doc)."""
  image = irfft2_by_matmul(mag * jnp.cos(phase), mag * jnp.sin(phase), h, w)
  image = jnp.transpose(image, (0, 2, 3, 1))
  mean = jnp.mean(image, axis=(1, 2, 3), keepdims=True)
  sd = jnp.std(image, axis=(1, 2, 3), keepdims=True)
  return jax.nn.sigmoid(decorrelate_color((image - mean) / (sd + STANDARDIZE_EPS)))


def maco(size: int | tuple[int, int], batch: int = 1, channels: int = 3) -> Param:
  """MACO's parameterization: params are each image's phase ``(B, 3, H, W // 2 + 1)``.

  ``from_image`` takes the phase of the photo's spectrum (after the inverse sigmoid and colour
  map): the decode then has the photo's phase with the natural-image magnitude, an
  approximation of the photo (the magnitude is fixed), not the photo itself.
  """
  if channels != 3:
    raise ParamError(f"maco renders RGB images (its spectrum has 3 channels); got {channels}")
  h, w = side(size)
  mag = magnitude(h, w)

  def init(key):
    return PHASE_SD * normal(key, (batch, 3, h, w // 2 + 1))

  def to_image(params):
    with jax.named_scope("maco_image"):
      return decode(params, jnp.asarray(mag), h, w)

  def from_image(images):
    t = from_valid_rgb(check_images(images, batch, (h, w), 3))
    return jnp.angle(jnp.fft.rfft2(jnp.transpose(t, (0, 3, 1, 2)))).astype(jnp.float32)

  return Param("maco", init, to_image, batch, (h, w), 3, from_image)


@dataclasses.dataclass(frozen=True)
class MacoCrops:
  """MACO's optimisation step as a transform ``(key, images) -> images``: a random square crop
  of each image, resized back to the image size, plus noise, in one bilinear resample.

  Side: ``N(box, box_sd)`` of the image side, clipped to ``[min_box, 1]``; centre: uniform
  where the crop fits. Noise: ``N(0, noise) + U(-noise / 2, noise / 2)`` per pixel, as Xplique.
  Xplique draws 32 crops of one image per step, their side decaying from 50% to 5% of a 512 px
  buffer; here each image of the batch (a unit) gets one crop per step, and ``box`` is for
  renders at the network's own scale (128 to 224 px). ``noise`` 0.04 is Xplique's 0.08 on its
  (-1, 1) value range, on our (0, 1).
  """

  box: float = 0.85
  box_sd: float = 0.05
  min_box: float = 0.5
  noise: float = 0.04
  implementation: str | None = None

  def __call__(self, key: jax.Array, images: jax.Array) -> jax.Array:
    b, h, w, c = images.shape
    k_side, k_y, k_x, k_n, k_u = jax.random.split(key, 5)
    s = jnp.clip(self.box + self.box_sd * jax.random.normal(k_side, (b,)), self.min_box, 1.0)
    top = jax.random.uniform(k_y, (b,)) * (1 - s) * h
    left = jax.random.uniform(k_x, (b,)) * (1 - s) * w
    zero = jnp.zeros_like(s)
    # Output pixel (y, x) samples the box [top, top + s H) at its (y + 0.5) / H point.
    matrices = jnp.stack(
      [
        jnp.stack([s, zero, top + 0.5 * s - 0.5], -1),
        jnp.stack([zero, s, left + 0.5 * s - 0.5], -1),
      ],
      1,
    )
    out = affine_resample(images, matrices, (h, w), fill=0.5, implementation=self.implementation)
    gauss = normal(k_n, (b, h, w, c))
    uniform = jax.random.uniform(k_u, (b * h * w * c,), jnp.float32, -0.5, 0.5).reshape(out.shape)
    return out + self.noise * (gauss + uniform)
