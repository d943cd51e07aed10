"""Lucid's Fourier parameterization decoded in one kernel: spectrum scale, inverse real DFT as
matmuls, colour decorrelation and sigmoid.

``api`` is the public op; ``reference`` defines what it means in plain ``jnp`` (``featviz.param``'s
maths, re-expressed); ``pallas`` is the kernel (Triton lowering; interpreted on CPU).
"""

from featviz.kernels.fourier_decode.api import fourier_decode as fourier_decode

__all__ = ["fourier_decode"]
