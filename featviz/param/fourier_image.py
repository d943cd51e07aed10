"""Lucid's Fourier parameterization (``fft_image`` + ``to_valid_rgb``), and its inverse.

A spectrum scaled by ``1 / max(f, 1/max(H, W)) ** decay_power`` times ``sqrt(H W)``, inverse
real FFT (``irfft2`` divides by ``H W``, so the whole map is Lucid's), divided by 4,
decorrelated colour, sigmoid. The maths lives in ``kernels/fourier_decode/reference.py``.
For a one-channel model the colour step is skipped and images are ``(B, H, W, 1)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from featviz.kernels import choose_implementation
from featviz.kernels.fourier_decode import api as fourier_kernel
from featviz.kernels.fourier_decode.reference import (
  FOURIER_OUTPUT_DIVISOR,
  irfft2_by_matmul,
)
from featviz.kernels.fourier_decode.reference import spectrum_scale as fourier_scale
from featviz.param.core import (
  DEFAULT_SD,
  Param,
  check_images,
  from_valid_rgb,
  normal,
  side,
  to_valid_rgb,
)


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
  ``from_image`` inverts the decode exactly (logit, inverse colour map, times 4, ``rfft2``,
  divided by the scale), for images inside ``(0, 1)``.

  Args:
    size: image side or ``(H, W)``.
    batch: number of images, each with its own spectrum.
    channels: 3 for RGB, 4 for RGBA (colour on the first three), 1 for greyscale models.
    decay_power: spectrum decay exponent (Lucid 1).
    sd: standard deviation of the initial spectrum (Lucid 0.01).
    decorrelate: apply Lucid's colour decorrelation (RGB only).
    implementation: the decode's kernel switch. ``"xla"``: the code below;
      ``"pallas"``: ``featviz.kernels.fourier_decode``'s fused kernel (the same
      maths; powers-of-two sizes, RGB or grey); ``None``: Pallas only on devices where
      ``benchmarks/kernels_bench.py`` measured it faster (none yet), else XLA.

  Returns:
    A :class:`Param` whose images are ``(B, H, W, C)`` in ``(0, 1)``.
  """
  h, w = side(size)
  use_kernel = implementation is not None and implementation != "xla"
  if implementation is None:
    use_kernel = choose_implementation(None, fourier_kernel.PALLAS_WINS_ON) == "pallas"
  use_kernel = use_kernel and channels != 4  # the fused kernel mixes colour of 3 channels only
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

  def from_image(images) -> jax.Array:
    t = from_valid_rgb(check_images(images, batch, (h, w), channels), decorrelate)
    spectrum = jnp.fft.rfft2(jnp.transpose(t, (0, 3, 1, 2)) * FOURIER_OUTPUT_DIVISOR)
    spectrum = spectrum / jnp.asarray(scale)
    return jnp.stack([spectrum.real, spectrum.imag], axis=1).astype(jnp.float32)

  return Param("fourier", init, to_image, batch, (h, w), channels, from_image)
