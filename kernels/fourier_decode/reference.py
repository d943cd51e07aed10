"""What ``fourier_decode`` means, in plain ``jnp``: Lucid's Fourier image, spectrum to RGB.

The one home of the Fourier parameterization's maths (kernels/ imports only jax and NumPy):
``featviz.param`` imports its constants, spectrum scale and inverse DFT from here, and
``featviz.param.fourier(...).to_image`` is :func:`fourier_decode` (its XLA path, colour mixing
apart; ``tests/test_kernels_fourier_decode.py`` checks the two agree)::

    params (B, 2, C, H, W // 2 + 1)     real and imaginary spectrum of every image
    -> times spectrum_scale (H, W // 2 + 1)   Lucid's 1 / max(f, 1 / max(H, W)) ** decay * sqrt(HW)
    -> inverse real DFT over (H, W) as matmuls     (B, C, H, W)
    -> / 4, channels last                          (B, H, W, C)
    -> colour decorrelation (C = 3 only), sigmoid  (B, H, W, C) in (0, 1)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Lucid's colour correlation matrix: the square root of the ImageNet colour covariance from an SVD
# (lucid/optvis/param/color.py, color_correlation_svd_sqrt).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
  [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32
)
# Normalized by its largest column norm (Lucid's max_norm_svd_sqrt, about 0.46195).
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(
  np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)
)
# Lucid divides the Fourier image by 4 (spatial.py: "TODO: is that a magic constant?"). Lucent and
# Xplique keep it; we keep it so that images match theirs.
FOURIER_OUTPUT_DIVISOR = 4.0


def rfft2d_freqs(h: int, w: int) -> np.ndarray:
  """Spatial frequency magnitude of each ``rfft2`` bin, shape ``(h, w // 2 + 1)``."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  return np.sqrt(fx * fx + fy * fy)


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
  """``(h, w // 2 + 1)`` float32: Lucid's ``sqrt(h w) / max(f, 1 / max(h, w)) ** decay_power``.

  ``f`` is each ``rfft2`` bin's frequency magnitude (:func:`rfft2d_freqs`).
  """
  freqs = rfft2d_freqs(h, w)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power
  return (scale * np.sqrt(w * h)).astype(np.float32)


def inverse_dft_matrices(h: int, w: int) -> tuple[np.ndarray, ...]:
  """Real matrices that compute ``numpy.fft.irfft2(X, s=(h, w))`` as two matmuls.

  ``irfft2`` is a complex inverse DFT over rows, then an inverse real DFT over
  columns from the ``w // 2 + 1`` Hermitian bins. With ``X = R + iI``:
  ``Y = (Ch R - Sh I) + i (Sh R + Ch I)`` and ``out = Y_re Cw - Y_im Sw``, where
  ``Ch[y, k] = cos(2 pi k y / h) / h``, ``Sh`` likewise with sine, and ``Cw``,
  ``Sw`` weight bin ``k`` by 2 except the DC and (even ``w``) Nyquist bins, over
  ``w``. The imaginary parts of those two bins drop out by themselves:
  ``sin(0) = sin(pi x) = 0``, as ``irfft`` discards them.

  Returns:
    ``(ch, sh)`` of shape ``(h, h)`` and ``(cw, sw)`` of shape ``(w // 2 + 1, w)``, float32.
  """
  y = np.arange(h)[:, None]
  ky = np.arange(h)[None, :]
  ang_h = 2 * np.pi * y * ky / h
  ch, sh = np.cos(ang_h) / h, np.sin(ang_h) / h
  kx = np.arange(w // 2 + 1)[:, None]
  x = np.arange(w)[None, :]
  weight = np.full((w // 2 + 1, 1), 2.0)
  weight[0] = 1.0
  if w % 2 == 0:
    weight[-1] = 1.0
  ang_w = 2 * np.pi * kx * x / w
  cw, sw = weight * np.cos(ang_w) / w, weight * np.sin(ang_w) / w
  return tuple(m.astype(np.float32) for m in (ch, sh, cw, sw))


def irfft2_by_matmul(
  real: Array, imag: Array, h: int, w: int, precision=jax.lax.Precision.HIGHEST
) -> Array:
  """``irfft2(real + i imag, s=(h, w))`` over the last two axes, by DFT matmuls.

  ``precision`` is every matmul's; HIGHEST (the default) is full float32, no TF32 or bf16 passes
  on GPUs. Four small matmuls per image and channel map onto tensor cores and fuse with the
  spectrum scale.
  """
  ch, sh, cw, sw = (jnp.asarray(m) for m in inverse_dft_matrices(h, w))
  mm = functools.partial(jnp.einsum, precision=precision)
  y_re = mm("yk,...kx->...yx", ch, real) - mm("yk,...kx->...yx", sh, imag)
  y_im = mm("yk,...kx->...yx", sh, real) + mm("yk,...kx->...yx", ch, imag)
  return mm("...yk,kx->...yx", y_re, cw) - mm("...yk,kx->...yx", y_im, sw)


def fourier_decode(
  params: Array,
  decay_power: float = 1.0,
  decorrelate: bool = True,
  precision=jax.lax.Precision.HIGHEST,
  width: int | None = None,
) -> Array:
  """``params (B, 2, C, H, W // 2 + 1)`` -> images ``(B, H, W, C)`` in (0, 1).

  ``width``: ``W``; ``None`` reads the even one, ``2 (W // 2)``, off the spectrum (an odd
  ``W`` has as many bins as ``W - 1``). ``precision`` is every matmul's (HIGHEST: full float32,
  as ``featviz.param``'s inverse DFT).
  """
  _, _, c, h, wf = params.shape
  w = 2 * (wf - 1) if width is None else width
  scale = jnp.asarray(spectrum_scale(h, w, decay_power))
  real, imag = params[:, 0] * scale, params[:, 1] * scale
  image = irfft2_by_matmul(real, imag, h, w, precision)  # (B, C, H, W)
  image = jnp.transpose(image, (0, 2, 3, 1)) / FOURIER_OUTPUT_DIVISOR
  if decorrelate and c == 3:
    # featviz.param.decorrelate_color writes ``image @ COLOR_MATRIX.T`` (at HIGHEST); here the
    # product is at ``precision``, like every other.
    mm = functools.partial(jnp.einsum, precision=precision)
    image = mm("...c,jc->...j", image, jnp.asarray(COLOR_MATRIX))
  return jax.nn.sigmoid(image)
