"""Image parameterizations: pure ``init(key) -> params`` and ``to_image(params) -> images``.

Every image of the batch has its own parameters (the leading axis of every
params leaf is the batch), so a batch of B images optimizes B independent
problems; Adam is elementwise, so image ``b`` never sees image ``c``'s gradient.

Two parameterizations, both Lucid's (``lucid/optvis/param/spatial.py`` and
``color.py``, defaults in ``shared/design/anchors.md``):

* :func:`fourier`: a spectrum scaled by ``1 / max(f, 1/max(H, W)) ** decay_power``
  times ``sqrt(H W)``, inverse real FFT (``irfft2`` divides by ``H W``, so the
  whole map is Lucid's), divided by 4, decorrelated colour, sigmoid.
* :func:`pixel`: the pixels themselves, with the same colour and sigmoid.

For a one-channel model the colour step is skipped and images are ``(B, H, W, 1)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz.kernels import choose_implementation
from featviz.kernels.fourier_decode import api as fourier_kernel

# Lucid's Fourier maths and colour constants have one home, the kernel's reference
# (kernels/fourier_decode/reference.py, what the fused kernel is tested against); featviz.param
# re-exports the names it had.
from featviz.kernels.fourier_decode.reference import (  # noqa: F401 (re-exports)
  COLOR_CORRELATION_SVD_SQRT,
  COLOR_MATRIX,
  FOURIER_OUTPUT_DIVISOR,
  inverse_dft_matrices,
  irfft2_by_matmul,
  rfft2d_freqs,
)
from featviz.kernels.fourier_decode.reference import spectrum_scale as fourier_scale


def normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Standard normal draws of ``shape``, drawn as one flat vector and reshaped.

  Same distribution as ``jax.random.normal(key, shape)``; with jax 0.10's
  partitionable threefry a multi-dimensional draw takes seconds to compile on
  CPU, a flat one milliseconds (measured: 5.5 s against 0.2 s).
  """
  return jax.random.normal(key, (int(np.prod(shape)),), jnp.float32).reshape(shape)


# Lucid's initial standard deviation for both parameterizations (sd=None -> 0.01).
DEFAULT_SD = 0.01


@dataclasses.dataclass(frozen=True)
class Param:
  """A parameterization: ``init(key) -> params``, ``to_image(params) -> images``."""

  name: str
  init: Callable[[jax.Array], Any]
  to_image: Callable[[Any], jax.Array]
  batch: int
  size: tuple[int, int]
  channels: int


def decorrelate_color(t: jax.Array) -> jax.Array:
  """Maps decorrelated colour ``(..., 3)`` to RGB: ``t @ (M / max_norm).T`` (Lucid).

  Full float32 precision: a GPU's default matmul precision (TF32) would round it.
  """
  return jnp.matmul(t, jnp.asarray(COLOR_MATRIX).T, precision=jax.lax.Precision.HIGHEST)


def to_valid_rgb(t: jax.Array, decorrelate: bool = True) -> jax.Array:
  """Lucid's ``to_valid_rgb(sigmoid=True)``: optional colour decorrelation, then sigmoid."""
  if decorrelate and t.shape[-1] == 3:
    t = decorrelate_color(t)
  return jax.nn.sigmoid(t)


def fourier(
  size: int | tuple[int, int],
  batch: int = 1,
  channels: int = 3,
  *,
  decay_power: float = 1.0,
  sd: float = DEFAULT_SD,
  decorrelate: bool = True,
  implementation: str | None = None,
) -> Param:
  """Lucid's Fourier parameterization (``fft_image`` + ``to_valid_rgb``).

  Params are ``(B, 2, C, H, W // 2 + 1)`` float32: real and imaginary parts of
  each image's spectrum, drawn from ``N(0, sd)``.

  The inverse FFT is :func:`irfft2_by_matmul`, equal to ``numpy.fft.irfft2``.
  For odd widths we use the exact odd-length inverse FFT (``irfft2(s=(h, w))``);
  Lucid computes one more column and crops it, which differs in the highest bin.

  Args:
    size: image side or ``(H, W)``.
    batch: number of images, each with its own spectrum.
    channels: 3 for RGB, 1 for greyscale models.
    decay_power: spectrum decay exponent (Lucid 1).
    sd: standard deviation of the initial spectrum (Lucid 0.01).
    decorrelate: apply Lucid's colour decorrelation (RGB only).
    implementation: the decode's kernel switch. ``"xla"``: the code below;
      ``"pallas"``: ``featviz.kernels.fourier_decode``'s fused kernel (the same
      maths; powers-of-two sizes); ``None``: Pallas only on devices where
      ``benchmarks/kernels_bench.py`` measured it faster (none yet), else XLA.

  Returns:
    A :class:`Param` whose images are ``(B, H, W, C)`` in ``(0, 1)``.
  """
  h, w = (size, size) if isinstance(size, int) else size
  use_kernel = implementation is not None and implementation != "xla"
  if implementation is None:
    use_kernel = choose_implementation(None, fourier_kernel.PALLAS_WINS_ON) == "pallas"
  scale = fourier_scale(h, w, decay_power)

  def init(key: jax.Array) -> jax.Array:
    return sd * normal(key, (batch, 2, channels) + scale.shape)

  def to_image(params: jax.Array) -> jax.Array:
    if use_kernel:  # falls back to XLA for sizes the kernel does not take, unless forced
      with jax.named_scope("fourier_image"):
        return fourier_kernel.fourier_decode(
          params,
          decay_power=decay_power,
          decorrelate=decorrelate,
          width=w,
          implementation=implementation,
        )
    with jax.named_scope("fourier_image"):
      scale_ = jnp.asarray(scale)
      image = irfft2_by_matmul(params[:, 0] * scale_, params[:, 1] * scale_, h, w)  # (B,C,H,W)
      image = jnp.transpose(image, (0, 2, 3, 1)) / FOURIER_OUTPUT_DIVISOR
      return to_valid_rgb(image, decorrelate)

  return Param("fourier", init, to_image, batch, (h, w), channels)


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
  ``sigmoid(decorrelate(params))``.
  """
  h, w = (size, size) if isinstance(size, int) else size

  def init(key: jax.Array) -> jax.Array:
    return sd * normal(key, (batch, h, w, channels))

  def to_image(params: jax.Array) -> jax.Array:
    with jax.named_scope("pixel_image"):
      return to_valid_rgb(params, decorrelate)

  return Param("pixel", init, to_image, batch, (h, w), channels)


PARAMETERIZATIONS = {"fourier": fourier, "pixel": pixel}


def factory(name: str) -> Callable[..., Param]:
  """The factory ``f(size, batch, channels) -> Param`` registered under ``name``."""
  if name not in PARAMETERIZATIONS:
    raise ValueError(
      f"unknown parameterization {name!r}; choose one of {', '.join(PARAMETERIZATIONS)}"
    )
  return PARAMETERIZATIONS[name]
