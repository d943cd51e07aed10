"""``fourier_decode`` in Pallas (Triton lowering): one kernel from spectrum to RGB, and its VJP.

**Forward.** Grid ``(B, H / rows)``: a program makes ``rows`` output rows of one image, all
channels. Per channel it scales the spectrum, runs the inverse DFT over rows for its rows
(``Y = Ch[rows] R - Sh[rows] I`` and the imaginary part), then over columns
(``Y_re Cw - Y_im Sw``), then mixes colours and applies the sigmoid, and writes RGB once.
XLA runs the same maths as six batched matmuls, a transpose, a colour matmul and a sigmoid,
with the ``(B, C, H, W // 2 + 1)`` and ``(B, C, H, W)`` intermediates in device memory.

**Backward.** Grid ``(B,)``: the transpose of each step, in reverse (sigmoid' = y (1 - y) from
the saved output, colour mix transposed, DFT matrices transposed), writing the spectrum
gradient once.

**Triton shapes.** Every loaded, stored or multiplied array must have a power-of-two size, and a
dot needs each of M, N, K >= 16. The spectrum has ``W / 2 + 1`` columns: bins ``0 .. W/2 - 1``
(``W / 2`` of them, a power of two) go through dots, and the last (Nyquist) bin is a rank-one
update. So ``H`` and ``W`` must be powers of two with ``W >= 32`` and ``rows >= 16``; the API
sends other sizes to XLA. Lucid's ``1 / 4`` is folded into ``Cw`` and ``Sw`` (a power of two:
no rounding changes).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from featviz.kernels.fourier_decode import reference

Array = jax.Array

# Output rows per forward program: 4 programs per 128 px image (256 programs at batch 64 on 132
# SMs). A guess to tune on the GPU, not a measurement.
ROWS = 32
NUM_WARPS = 4
# The backward holds whole (H, W) planes per program: more warps, more registers to hold them.
NUM_WARPS_BACKWARD = 8


def supported(h: int, w: int, rows: int = ROWS) -> bool:
  """Whether the kernel handles ``(h, w)`` images (powers of two; see the module docstring)."""

  def pow2(n):
    return n > 0 and n & (n - 1) == 0

  return pow2(h) and pow2(w) and w >= 32 and pow2(rows) and 16 <= rows <= h


def constants(h: int, w: int, decay_power: float) -> dict[str, np.ndarray]:
  """The kernel's constant inputs: DFT matrices (``Cw``, ``Sw`` divided by 4) and the scale."""
  ch, sh, cw, sw = reference.inverse_dft_matrices(h, w)
  div = np.float32(reference.FOURIER_OUTPUT_DIVISOR)
  return {
    "ch": ch,
    "sh": sh,
    "cw": cw / div,
    "sw": sw / div,
    "scale": reference.spectrum_scale(h, w, decay_power),
  }


def _mix(decorrelate: bool, channels: int) -> tuple[tuple[float, ...], ...] | None:
  """The colour matrix as Python floats (a Pallas kernel may not capture arrays)."""
  if not (decorrelate and channels == 3):
    return None
  return tuple(tuple(float(v) for v in row) for row in reference.COLOR_MATRIX)


def _forward_kernel(
  params_ref, scale_ref, ch_ref, sh_ref, cw_ref, sw_ref, out_ref, *, channels, mix, precision
):
  """One program: ``rows`` output rows of one image, every channel.

  Refs: ``params (2, C, H, W/2 + 1)``, ``scale (H, W/2 + 1)``, ``ch``, ``sh`` ``(rows, H)`` (this
  program's rows), ``cw``, ``sw`` ``(W/2 + 1, W)`` (divided by 4), ``out (rows, W, C)``.
  """
  k = cw_ref.shape[0] - 1  # W / 2 bins by dot; bin W / 2 (Nyquist) as a rank-one update
  dot = functools.partial(jnp.dot, precision=precision, preferred_element_type=jnp.float32)
  ch, sh = ch_ref[...], sh_ref[...]  # (rows, H)
  cw, sw = cw_ref[pl.ds(0, k), :], sw_ref[pl.ds(0, k), :]  # (W/2, W)
  cw_t, sw_t = cw_ref[k, :], sw_ref[k, :]  # (W,)
  s, s_t = scale_ref[:, pl.ds(0, k)], scale_ref[:, k]  # (H, W/2), (H,)
  planes = []
  for c in range(channels):
    re, im = params_ref[0, c, :, pl.ds(0, k)] * s, params_ref[1, c, :, pl.ds(0, k)] * s
    re_t, im_t = params_ref[0, c, :, k] * s_t, params_ref[1, c, :, k] * s_t
    y_re = dot(ch, re) - dot(sh, im)  # (rows, W/2)
    y_im = dot(sh, re) + dot(ch, im)
    y_re_t = jnp.sum(ch * re_t[None, :] - sh * im_t[None, :], axis=1)  # (rows,)
    y_im_t = jnp.sum(sh * re_t[None, :] + ch * im_t[None, :], axis=1)
    planes.append(
      dot(y_re, cw)
      - dot(y_im, sw)
      + y_re_t[:, None] * cw_t[None, :]
      - y_im_t[:, None] * sw_t[None, :]
    )
  for j in range(channels):
    z = planes[j] if mix is None else sum(mix[j][c] * planes[c] for c in range(channels))
    out_ref[:, :, j] = jax.nn.sigmoid(z)


def _backward_kernel(
  g_ref, y_ref, scale_ref, ch_ref, sh_ref, cw_ref, sw_ref, out_ref, *, channels, mix, precision
):
  """One program: the spectrum gradient of one image.

  Refs: ``g`` (cotangent) and ``y`` (forward output) ``(H, W, C)``, ``scale``, ``ch``, ``sh``
  ``(H, H)``, ``cw``, ``sw`` as in the forward, ``out (2, C, H, W/2 + 1)``.
  """
  k = cw_ref.shape[0] - 1

  def dot_t(a, b, dims):  # a^T b (dims=(0, 0)) or a b^T (dims=(1, 1))
    return lax.dot_general(
      a,
      b,
      ((dims[:1], dims[1:]), ((), ())),
      precision=precision,
      preferred_element_type=jnp.float32,
    )

  ch, sh = ch_ref[...], sh_ref[...]  # (H, H)
  cw, sw = cw_ref[pl.ds(0, k), :], sw_ref[pl.ds(0, k), :]  # (W/2, W)
  cw_t, sw_t = cw_ref[k, :], sw_ref[k, :]  # (W,)
  s, s_t = scale_ref[:, pl.ds(0, k)], scale_ref[:, k]

  def pre_sigmoid_grad(j):  # recomputed per channel: fewer (H, W) planes live at once
    y = y_ref[:, :, j]
    return g_ref[:, :, j] * y * (1 - y)

  for c in range(channels):
    if mix is None:
      gx = pre_sigmoid_grad(c)
    else:
      gx = sum(mix[j][c] * pre_sigmoid_grad(j) for j in range(channels))  # (H, W)
    g_re = dot_t(gx, cw, (1, 1))  # (H, W/2)
    g_im = -dot_t(gx, sw, (1, 1))
    g_re_t = jnp.sum(gx * cw_t[None, :], axis=1)  # (H,)
    g_im_t = -jnp.sum(gx * sw_t[None, :], axis=1)
    r = dot_t(ch, g_re, (0, 0)) + dot_t(sh, g_im, (0, 0))  # Ch^T g_re + Sh^T g_im
    i = dot_t(ch, g_im, (0, 0)) - dot_t(sh, g_re, (0, 0))
    r_t = jnp.sum(ch * g_re_t[:, None] + sh * g_im_t[:, None], axis=0)
    i_t = jnp.sum(ch * g_im_t[:, None] - sh * g_re_t[:, None], axis=0)
    out_ref[0, c, :, pl.ds(0, k)] = r * s
    out_ref[1, c, :, pl.ds(0, k)] = i * s
    out_ref[0, c, :, k] = r_t * s_t
    out_ref[1, c, :, k] = i_t * s_t


def _const_specs(h, w, wf, row_block):
  """BlockSpecs of scale, Ch, Sh, Cw, Sw; ``row_block`` rows of Ch and Sh per program."""
  return [
    pl.BlockSpec((h, wf), lambda *_: (0, 0)),
    pl.BlockSpec((row_block, h), lambda b, *i: (i[0] if i else 0, 0)),
    pl.BlockSpec((row_block, h), lambda b, *i: (i[0] if i else 0, 0)),
    pl.BlockSpec((wf, w), lambda *_: (0, 0)),
    pl.BlockSpec((wf, w), lambda *_: (0, 0)),
  ]


@functools.partial(
  jax.jit, static_argnames=("decay_power", "decorrelate", "precision", "rows", "interpret")
)
def forward(
  params: Array,
  *,
  decay_power: float = 1.0,
  decorrelate: bool = True,
  precision=lax.Precision.HIGHEST,
  rows: int = ROWS,
  interpret: bool = False,
) -> Array:
  """``params (B, 2, C, H, W/2 + 1)`` float32 -> images ``(B, H, W, C)`` in (0, 1)."""
  b, _, c, h, wf = params.shape
  w = 2 * (wf - 1)
  k = constants(h, w, decay_power)
  kernel = functools.partial(
    _forward_kernel, channels=c, mix=_mix(decorrelate, c), precision=precision
  )
  return pl.pallas_call(
    kernel,
    out_shape=jax.ShapeDtypeStruct((b, h, w, c), jnp.float32),
    grid=(b, h // rows),
    in_specs=[
      pl.BlockSpec((None, 2, c, h, wf), lambda i, t: (i, 0, 0, 0, 0)),
      *_const_specs(h, w, wf, rows),
    ],
    out_specs=pl.BlockSpec((None, rows, w, c), lambda i, t: (i, t, 0, 0)),
    compiler_params=plt.CompilerParams(num_warps=NUM_WARPS),
    interpret=interpret,
    name="fourier_decode_fwd",
  )(params.astype(jnp.float32), k["scale"], k["ch"], k["sh"], k["cw"], k["sw"])


@functools.partial(
  jax.jit, static_argnames=("decay_power", "decorrelate", "precision", "interpret")
)
def backward(
  images: Array,
  cotangent: Array,
  *,
  decay_power: float = 1.0,
  decorrelate: bool = True,
  precision=lax.Precision.HIGHEST,
  interpret: bool = False,
) -> Array:
  """VJP of ``forward``: ``images`` (its output) and ``cotangent``, both ``(B, H, W, C)`` ->
  the spectrum gradient ``(B, 2, C, H, W/2 + 1)``."""
  b, h, w, c = images.shape
  wf = w // 2 + 1
  k = constants(h, w, decay_power)
  kernel = functools.partial(
    _backward_kernel, channels=c, mix=_mix(decorrelate, c), precision=precision
  )
  image_spec = pl.BlockSpec((None, h, w, c), lambda i: (i, 0, 0, 0))
  return pl.pallas_call(
    kernel,
    out_shape=jax.ShapeDtypeStruct((b, 2, c, h, wf), jnp.float32),
    grid=(b,),
    in_specs=[image_spec, image_spec, *_const_specs(h, w, wf, h)],
    out_specs=pl.BlockSpec((None, 2, c, h, wf), lambda i: (i, 0, 0, 0, 0)),
    compiler_params=plt.CompilerParams(num_warps=NUM_WARPS_BACKWARD),
    interpret=interpret,
    name="fourier_decode_bwd",
  )(
    cotangent.astype(jnp.float32),
    images.astype(jnp.float32),
    k["scale"],
    k["ch"],
    k["sh"],
    k["cw"],
    k["sw"],
  )
