"""Per-image affine bilinear resampling in one pass (pad, jitter, scale, rotate fused).

``api`` is the public op and Lucid's transforms composed into it; ``reference`` defines what the
op means in plain ``jnp``; ``pallas`` is the kernel (Triton lowering; interpreted on CPU).
"""

from featviz.kernels.affine_resample.api import Composite as Composite
from featviz.kernels.affine_resample.api import StandardDraws as StandardDraws
from featviz.kernels.affine_resample.api import affine_resample as affine_resample
from featviz.kernels.affine_resample.api import compose_standard as compose_standard
from featviz.kernels.affine_resample.api import standard as standard
from featviz.kernels.affine_resample.api import standard_draws as standard_draws

__all__ = [
  "Composite",
  "StandardDraws",
  "affine_resample",
  "compose_standard",
  "standard",
  "standard_draws",
]
