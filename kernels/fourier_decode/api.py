"""``fourier_decode``: the public op and its ``implementation`` switch.

The render loop calls the parameterization's ``to_image`` once per step and differentiates it:
``featviz.param.fourier`` is this op followed by nothing else, so the render loop could call
``fourier_decode(params)`` in its place (``kernels/README.md`` sketches the change).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from featviz.kernels import choose_implementation, default_interpret
from featviz.kernels.fourier_decode import pallas, reference

Array = jax.Array

# Device kinds on which benchmarks/kernels_bench.py measured the Pallas kernel faster than XLA,
# forward + VJP, at 128 px. Empty: no GPU measurement exists yet, so auto picks "xla" everywhere.
PALLAS_WINS_ON: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class _Static:
  decay_power: float
  decorrelate: bool
  precision: object
  rows: int
  interpret: bool


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pallas_op(static: _Static, params: Array) -> Array:
  return pallas.forward(
    params,
    decay_power=static.decay_power,
    decorrelate=static.decorrelate,
    precision=static.precision,
    rows=static.rows,
    interpret=static.interpret,
  )


def _pallas_fwd(static, params):
  images = _pallas_op(static, params)
  return images, images  # the sigmoid's derivative is y (1 - y): the output is the residual


def _pallas_bwd(static, images, cotangent):
  return (
    pallas.backward(
      images,
      cotangent,
      decay_power=static.decay_power,
      decorrelate=static.decorrelate,
      precision=static.precision,
      interpret=static.interpret,
    ),
  )


_pallas_op.defvjp(_pallas_fwd, _pallas_bwd)


def fourier_decode(
  params: Array,
  *,
  decay_power: float = 1.0,
  decorrelate: bool = True,
  width: int | None = None,
  precision=jax.lax.Precision.HIGHEST,
  implementation: str | None = None,
  interpret: bool | None = None,
  rows: int = pallas.ROWS,
) -> Array:
  """Lucid's Fourier image: spectrum ``(B, 2, C, H, W // 2 + 1)`` -> RGB ``(B, H, W, C)``.

  Equal to ``featviz.param.fourier((H, W), B, C, decay_power=..., decorrelate=...).to_image``
  (``reference.py`` has the maths).

  Args:
    params: real and imaginary spectrum per image and channel, float32.
    decay_power: spectrum decay exponent (Lucid 1).
    decorrelate: Lucid's colour decorrelation (RGB only).
    width: ``W`` when odd; ``None``: even, ``2 (W // 2)``.
    precision: of every matmul; HIGHEST (full float32) as ``featviz.param``.
      ``jax.lax.DotAlgorithmPreset.TF32_TF32_F32_X3`` is a GPU option for both paths.
    implementation: ``"xla"`` (the reference, differentiated by JAX), ``"pallas"`` (needs
      ``H``, ``W`` powers of two, ``W >= 32``), or ``None``: Pallas only where measured faster
      (``PALLAS_WINS_ON``; nowhere yet) and the size allows it.
    interpret: run the Pallas kernels interpreted; ``None``: everywhere but on a GPU.
    rows: output rows per Pallas forward program (a power of two, 16 to ``H``).

  Returns:
    ``(B, H, W, C)`` float32 in (0, 1).
  """
  h, wf = params.shape[-2:]
  w = 2 * (wf - 1) if width is None else int(width)
  impl = choose_implementation(implementation, PALLAS_WINS_ON)
  if impl == "pallas" and not (w == 2 * (wf - 1) and pallas.supported(h, w, rows)):
    if implementation == "pallas":
      raise ValueError(
        f"the Pallas fourier_decode needs H, W powers of two with W >= 32 and "
        f"rows a power of two in 16..H; got H={h}, W={w}, rows={rows}"
      )
    impl = "xla"
  if impl == "xla":
    return reference.fourier_decode(
      params.astype(jnp.float32), decay_power, decorrelate, precision, w
    )
  static = _Static(
    decay_power=float(decay_power),
    decorrelate=bool(decorrelate),
    precision=precision,
    rows=rows,
    interpret=default_interpret() if interpret is None else bool(interpret),
  )
  return _pallas_op(static, params.astype(jnp.float32))
