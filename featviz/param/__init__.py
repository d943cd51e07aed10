"""Image parameterizations: pure ``init(key) -> params`` and ``to_image(params) -> images``.

Every image of the batch has its own parameters (the leading axis of every params leaf is the
batch), so a batch of B images optimizes B independent problems; Adam is elementwise, so image
``b`` never sees image ``c``'s gradient. ``from_image(images) -> params`` starts from photos.

======================  ==================================================================
``fourier``             Lucid's ``fft_image``: scaled spectrum, irfft2, colour, sigmoid
``pixel``               Lucid's ``pixel_image``: the pixels, colour, sigmoid
``lowres``              Lucid's ``lowres_tensor``: pixels at 1/4 side, bilinear upsampled
``laplacian``           Lucid's ``laplacian_pyramid_image``: sum of 4 upsampled levels
``cppn``                Lucid's CPPN, a network of the pixel coordinates, per image
``maco``                Fel et al. 2023: natural-image magnitude, optimized phase
``alpha.WithAlpha``     any of them with a fourth (alpha) channel (``RenderConfig(alpha=True)``)
======================  ==================================================================

The modules are ``<name>_image.py`` (Lucid's ``fft_image``, ``pixel_image``), so that
``featviz.param.fourier`` etc. stay the functions.

Defaults and sources are in each module (``shared/design/anchors.md`` has Lucid's).
"""

from __future__ import annotations

from collections.abc import Callable

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
from featviz.kernels.fourier_decode.reference import spectrum_scale as fourier_scale  # noqa: F401
from featviz.param import alpha  # noqa: F401
from featviz.param.core import (  # noqa: F401
  DEFAULT_SD,
  Param,
  ParamError,
  correlate_color,
  decorrelate_color,
  from_valid_rgb,
  normal,
  to_valid_rgb,
)
from featviz.param.cppn_image import cppn
from featviz.param.fourier_image import fourier
from featviz.param.lowres_image import laplacian, lowres
from featviz.param.maco_image import MacoCrops, maco  # noqa: F401
from featviz.param.pixel_image import pixel

PARAMETERIZATIONS = {
  "fourier": fourier,
  "pixel": pixel,
  "maco": maco,
  "cppn": cppn,
  "laplacian": laplacian,
  "lowres": lowres,
}


def factory(name: str) -> Callable[..., Param]:
  """The factory ``f(size, batch, channels) -> Param`` registered under ``name``."""
  if name not in PARAMETERIZATIONS:
    raise ParamError(
      f"unknown parameterization {name!r}; choose one of {', '.join(PARAMETERIZATIONS)}"
    )
  return PARAMETERIZATIONS[name]
