"""featviz's Pallas kernels (installed as ``featviz.kernels``; imports only jax).

One folder per op, as tokamax lays them out: ``reference.py`` (plain ``jnp``: what the op
means), ``pallas.py`` (the kernel), ``api.py`` (the public function and its
``implementation=`` switch), and ``tests/test_kernels_<op>.py`` comparing forward and
gradient with the reference, the kernel interpreted on CPU. ``README.md`` says why each op
exists and what is measured.

* ``featviz.kernels.affine_resample``: per-image affine bilinear resampling; Lucid's pad,
  jitter, scale, rotate, jitter as one pass (``affine_resample.standard``).
* ``featviz.kernels.fourier_decode``: Fourier spectrum to RGB image in one kernel.

This module holds the rule every op follows to pick an implementation.
"""

from __future__ import annotations

import jax

IMPLEMENTATIONS = ("xla", "pallas")


def choose_implementation(implementation: str | None, pallas_wins_on: frozenset[str]) -> str:
  """``"xla"`` or ``"pallas"``.

  ``None`` (auto) picks Pallas only on a device kind (``jax.devices()[0].device_kind``) in
  ``pallas_wins_on``: the kinds where ``benchmarks/kernels_bench.py`` measured the kernel
  faster than XLA, forward and VJP, at the render loop's shapes. Every op's set is empty until
  a GPU run fills it, so auto means XLA everywhere today.
  """
  if implementation is None:
    return "pallas" if jax.devices()[0].device_kind in pallas_wins_on else "xla"
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(
      f"implementation must be one of {IMPLEMENTATIONS} or None (auto), got {implementation!r}"
    )
  return implementation


def default_interpret() -> bool:
  """Pallas runs compiled (Triton) on a GPU and interpreted everywhere else (CPU, in CI)."""
  return jax.default_backend() != "gpu"
