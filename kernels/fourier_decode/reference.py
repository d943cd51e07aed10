"""What ``fourier_decode`` means, in plain ``jnp``: Lucid's Fourier image, spectrum to RGB.

``featviz.param.fourier(...).to_image`` re-expressed with jax and NumPy only (kernels/ must not
import featviz; ``tests/test_kernels_fourier_decode.py`` checks the two agree)::

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

# Copied from featviz/param.py (COLOR_CORRELATION_SVD_SQRT): Lucid's square root of the ImageNet
# colour covariance (lucid/optvis/param/color.py, color_correlation_svd_sqrt).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02],
     [0.27, 0.00, -0.05],
     [0.27, -0.09, 0.03]], np.float32)
# featviz/param.py COLOR_MATRIX: normalized by the largest column norm (Lucid's
# max_norm_svd_sqrt, about 0.46195).
COLOR_MATRIX = COLOR_CORRELATION_SVD_SQRT / np.max(
    np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))
# featviz/param.py FOURIER_OUTPUT_DIVISOR: Lucid divides the Fourier image by 4 (spatial.py).
FOURIER_OUTPUT_DIVISOR = 4.0


def spectrum_scale(h: int, w: int, decay_power: float = 1.0) -> np.ndarray:
  """``(h, w // 2 + 1)`` float32: ``sqrt(h w) / max(f, 1 / max(h, w)) ** decay_power``.

  ``featviz.param.fourier_scale``: ``f`` is each ``rfft2`` bin's frequency magnitude.
  """
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  freqs = np.sqrt(fx * fx + fy * fy)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power
  return (scale * np.sqrt(w * h)).astype(np.float32)


def inverse_dft_matrices(h: int, w: int) -> tuple[np.ndarray, ...]:
  """``(ch, sh)`` of shape ``(h, h)``, ``(cw, sw)`` of shape ``(w // 2 + 1, w)``, float32.

  ``featviz.param.inverse_dft_matrices``: with ``X = R + iI``, ``numpy.fft.irfft2(X, s=(h, w))``
  is ``(ch R - sh I) cw - (sh R + ch I) sw``. ``ch[y, k] = cos(2 pi k y / h) / h``, ``sh`` with
  sine; ``cw``, ``sw`` weight column bin ``k`` by 2 except DC and (even ``w``) Nyquist, over ``w``.
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


def fourier_decode(params: Array, decay_power: float = 1.0, decorrelate: bool = True,
                   precision=jax.lax.Precision.HIGHEST, width: int | None = None) -> Array:
  """``params (B, 2, C, H, W // 2 + 1)`` -> images ``(B, H, W, C)`` in (0, 1).

  ``width``: ``W``; ``None`` reads the even one, ``2 (W // 2)``, off the spectrum (an odd
  ``W`` has as many bins as ``W - 1``). ``precision`` is every matmul's (HIGHEST: full float32,
  as ``featviz.param``'s inverse DFT).
  """
  _, _, c, h, wf = params.shape
  w = 2 * (wf - 1) if width is None else width
  ch, sh, cw, sw = (jnp.asarray(m) for m in inverse_dft_matrices(h, w))
  scale = jnp.asarray(spectrum_scale(h, w, decay_power))
  real, imag = params[:, 0] * scale, params[:, 1] * scale
  mm = functools.partial(jnp.einsum, precision=precision)
  y_re = mm("yk,...kx->...yx", ch, real) - mm("yk,...kx->...yx", sh, imag)
  y_im = mm("yk,...kx->...yx", sh, real) + mm("yk,...kx->...yx", ch, imag)
  image = mm("...yk,kx->...yx", y_re, cw) - mm("...yk,kx->...yx", y_im, sw)  # (B, C, H, W)
  image = jnp.transpose(image, (0, 2, 3, 1)) / FOURIER_OUTPUT_DIVISOR
  if decorrelate and c == 3:
    # featviz.param writes ``image @ COLOR_MATRIX.T`` at default precision (which a GPU may run
    # as TF32); here every product is at ``precision``, so the meaning is exact float32.
    image = mm("...c,jc->...j", image, jnp.asarray(COLOR_MATRIX))
  return jax.nn.sigmoid(image)
