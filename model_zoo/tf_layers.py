"""TensorFlow-semantics layers for ported networks: SAME padding, pools, LRN, BN.

Networks trained in TensorFlow (InceptionV1's ``inception5h`` graph, EfficientNet-Lite0)
compute "SAME" padding from the size of the tensor each layer actually receives, and pad
unevenly when the total is odd (one more pixel after than before). PyTorch ports hard-code
the pads for 224 px inputs; here they are recomputed for every input size, so feature
visualizations at 128 or 320 px see the same arithmetic the original graph would.

All tensors are NHWC, float32 (or bfloat16 when the render loop asks for it; constants
here are Python floats so that they keep the input's dtype). Kernels are HWIO (Flax's
``nn.Conv`` layout): a plain conv ``(kh, kw, C_in, C_out)``, a depthwise conv ``(kh, kw, 1, C)``
with ``groups=C``.

The conv and the max pool have CPU rewrites, which a caller switches on by name
(``featviz.nonlin.CPU_REWRITES``; an architecture passes ``ops.rewrites``): the same values and
gradients as XLA's op, as programs XLA:CPU runs faster (benchmarks/README.md). None by default.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import errors as flax_errors
from jax import lax

__all__ = (
  "same_padding",
  "Conv",
  "depthwise_shifted",
  "BatchNorm",
  "max_pool_same",
  "max_pool_shifted",
  "avg_pool_valid",
  "lrn",
)

_NHWC = ("NHWC", "HWIO", "NHWC")


def _param(module: nn.Module, name: str, init, shape: tuple[int, ...]) -> jax.Array:
  """``module.param(name, init, shape, float32)``, less Flax's trace-time cost when it exists.

  On apply, Flax's ``param`` checks a stored parameter's shape against ``jax.eval_shape`` of
  its initializer: a trace of ``lecun_normal``'s random draw for every kernel, every time the
  network is traced (measured under a profiler: 4.8 of the 26 s that tracing
  EfficientNet-Lite0's sweep chunk and scorer took, 2-core CPU, a busy machine). Here the check
  is the same comparison against ``shape``, which is what the initializer would give, with
  Flax's own error; on init, Flax's ``param``.
  """
  if not module.has_variable("params", name):
    return module.param(name, init, shape, jnp.float32)
  value = module.get_variable("params", name)
  if np.shape(value) != tuple(shape):
    raise flax_errors.ScopeParamShapeError(
      name, module.scope.path_text, np.shape(value), tuple(shape)
    )
  return value


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TF "SAME" padding ``(before, after)`` along one axis of length ``size``.

  TF picks the output length ``ceil(size / stride)`` and pads just enough to reach it:
  ``total = max((ceil(size / stride) - 1) * stride + kernel - size, 0)``, with
  ``before = total // 2`` and the odd pixel, if any, after
  (``tensorflow/core/framework/kernel_shape_util.cc``, ``GetWindowedOutputSize``).

  >>> same_padding(224, 7, 2)   # InceptionV1 conv2d0 at 224 px
  (2, 3)
  >>> same_padding(112, 3, 2)   # a 3x3 stride-2 max pool
  (0, 1)
  """
  out = -(-size // stride)  # ceil(size / stride) in integers.
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _same_pads(
  shape: Sequence[int], window: Sequence[int], strides: Sequence[int]
) -> list[tuple[int, int]]:
  """SAME pads for the H and W axes of an NHWC ``shape``."""
  return [same_padding(n, k, s) for n, k, s in zip(shape[1:3], window, strides)]


class Conv(nn.Module):
  """2-D convolution with TF "SAME" padding for the input it is given.

  Attributes:
    features: output channels ``C_out``.
    kernel_size: ``(kh, kw)``.
    strides: ``(sh, sw)``.
    groups: ``feature_group_count``; ``groups == C_in == features`` is a depthwise conv.
    use_bias: add a ``bias`` of shape ``(C_out,)``.
    rewrites: names from ``featviz.nonlin.CPU_REWRITES``. With ``"depthwise_shifted"`` a
      depthwise conv runs as :func:`depthwise_shifted`, with ``"conv_flipped_backward"`` a plain
      conv as :func:`conv_flipped_backward`; otherwise (the default) every conv is
      ``lax.conv_general_dilated``. The values and gradients are the same either way.

  Params (the names and shapes of ``nn.Conv``): ``kernel`` ``(kh, kw, C_in // groups,
  C_out)`` and ``bias`` ``(C_out,)``. Input ``(B, H, W, C_in)`` -> output
  ``(B, ceil(H / sh), ceil(W / sw), C_out)``.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  groups: int = 1
  use_bias: bool = True
  rewrites: frozenset[str] = frozenset()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c_in = x.shape[-1]
    kernel = _param(
      self,
      "kernel",
      nn.initializers.lecun_normal(),
      (*self.kernel_size, c_in // self.groups, self.features),
    )
    pads = _same_pads(x.shape, self.kernel_size, self.strides)
    # Multiply in the kernel's dtype (bfloat16 when the render loop asks for it), accumulate
    # and return float32.
    x = x.astype(kernel.dtype)
    if self.groups == c_in == self.features and "depthwise_shifted" in self.rewrites:
      y = depthwise_flipped_backward(x, kernel, tuple(self.strides), tuple(map(tuple, pads)))
    elif self.groups == 1 and "conv_flipped_backward" in self.rewrites:
      y = conv_flipped_backward(x, kernel, tuple(self.strides), tuple(map(tuple, pads)))
    else:
      y = lax.conv_general_dilated(
        x,
        kernel,
        window_strides=self.strides,
        padding=pads,
        dimension_numbers=_NHWC,
        feature_group_count=self.groups,
        preferred_element_type=jnp.float32,
      )
    if self.use_bias:
      y = y + _param(self, "bias", nn.initializers.zeros, (self.features,))
    return y


def _pointwise(kernel: jax.Array, strides, pads) -> bool:
  """A 1x1 conv of stride 1 without padding: a product over channels at every pixel."""
  return kernel.shape[:2] == (1, 1) and tuple(strides) == (1, 1) and not np.any(pads)


def _plain_conv(
  x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
  if _pointwise(kernel, strides, pads):
    return lax.dot_general(
      x,
      lax.reshape(kernel, kernel.shape[2:]),
      (((3,), (0,)), ((), ())),
      preferred_element_type=jnp.float32,
    )
  return lax.conv_general_dilated(
    x,
    kernel,
    window_strides=strides,
    padding=pads,
    dimension_numbers=_NHWC,
    preferred_element_type=jnp.float32,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_flipped_backward(
  x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
  """A plain conv (``groups == 1``) whose input gradient is a forward conv on a kernel copy.

  The input gradient of a conv is a conv of the output gradient with the kernel
  flipped in space and its in/out axes swapped. JAX's transpose rule asks XLA for
  that as a view of the kernel (reversed, read ``01oi``); XLA:CPU then misses its
  fast convolution path and the backward convolutions run slower than forward
  ones of the same FLOPs. Here the flipped, swapped kernel is a real
  HWIO array, so the input gradient is an ordinary forward conv. A 1x1 conv of stride 1
  (:func:`_pointwise`) is a ``dot_general`` instead, forward and input gradient, on the kernel
  as stored. The kernel gradient is JAX's own. Measured: benchmarks/README.md.
  """
  return _plain_conv(x, kernel, strides, pads)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Saved:
  """A conv rewrite's residuals: its input and kernel, and which of the two a gradient is asked
  for (``custom_vjp``'s ``symbolic_zeros``). The weights of a feature visualization are
  constants, so its backward asks for the input's gradient only; tracing the kernel's too and
  leaving it to XLA to drop cost seconds per trace of a network (measured: the kernel VJPs of
  EfficientNet-Lite0's 11 depthwise convs up to ``block10`` were 5.7 of the 19 s, under a
  profiler, that tracing the sweep's chunk program took)."""

  x: jax.Array
  kernel: jax.Array
  wants: tuple[bool, bool] = dataclasses.field(metadata={"static": True})


def _define_vjp(primal, input_grad, kernel_grad):
  """Gives the conv rewrite ``primal(x, kernel, strides, pads)`` (a ``custom_vjp``) its rules
  with ``symbolic_zeros``: the forward saves which gradients are asked for, and the backward
  computes those only, ``input_grad(x, kernel, strides, pads, g)`` and ``kernel_grad(...)``
  (None for the others and for a zero output gradient)."""

  def fwd(x, kernel, strides, pads):
    saved = _Saved(x.value, kernel.value, (bool(x.perturbed), bool(kernel.perturbed)))
    return primal(x.value, kernel.value, strides, pads), saved

  def bwd(strides, pads, saved, g):
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
      return None, None
    args = (saved.x, saved.kernel, strides, pads, g)
    wants_x, wants_kernel = saved.wants
    return (input_grad(*args) if wants_x else None, kernel_grad(*args) if wants_kernel else None)

  primal.defvjp(fwd, bwd, symbolic_zeros=True)


def _conv_input_grad(x, kernel, strides, pads, g):
  if _pointwise(kernel, strides, pads):
    # A 1x1 conv is a product over channels, and its input gradient g times the kernel's
    # transpose, which a dot_general contracting the kernel's output axis reads in place. The
    # flipped copy below would be a transpose of the kernel on every step: XLA:CPU leaves it in
    # the render loop's body (4.9 of the 40 ms of an EfficientNet-Lite0 block15 step at
    # batch 1, 128 px, went to those copies; benchmarks/README.md).
    return lax.dot_general(
      g.astype(kernel.dtype),
      lax.reshape(kernel, kernel.shape[2:]),
      (((3,), (1,)), ((), ())),
      preferred_element_type=jnp.float32,
    ).astype(x.dtype)
  flipped = jnp.swapaxes(jnp.flip(kernel, (0, 1)), 2, 3)  # (kh, kw, C_out, C_in)
  return lax.conv_general_dilated(
    g.astype(flipped.dtype),
    flipped,
    window_strides=(1, 1),
    padding=_transposed_pads(x.shape[1:3], g.shape[1:3], kernel.shape[:2], strides, pads),
    lhs_dilation=strides,
    dimension_numbers=_NHWC,
    preferred_element_type=jnp.float32,
  ).astype(x.dtype)


def _conv_kernel_grad(x, kernel, strides, pads, g):
  _, kernel_vjp = jax.vjp(lambda k: _plain_conv(x, k, strides, pads), kernel)
  return kernel_vjp(g)[0]


_define_vjp(conv_flipped_backward, _conv_input_grad, _conv_kernel_grad)


def _padded(x: jax.Array, pads: Sequence[tuple[int, int]]) -> jax.Array:
  """``x`` zero-padded on H and W by ``pads``, in float32 (what the depthwise products read)."""
  config = [(0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)]
  return lax.convert_element_type(lax.pad(x, np.array(0, x.dtype), config), jnp.float32)


def _window(xp: jax.Array, u: int, v: int, out_hw: Sequence[int], strides: Sequence[int]):
  """Tap ``(u, v)`` of a depthwise conv: ``xp[:, i * sh + u, j * sw + v, :]`` for every output
  pixel ``(i, j)`` of ``out_hw``."""
  (oh, ow), (sh, sw) = out_hw, strides
  b, c = xp.shape[0], xp.shape[3]
  return lax.slice(
    xp, (0, u, v, 0), (b, u + (oh - 1) * sh + 1, v + (ow - 1) * sw + 1, c), (1, sh, sw, 1)
  )


def depthwise_shifted(
  x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Sequence[tuple[int, int]]
) -> jax.Array:
  """Depthwise conv as a sum of ``kh * kw`` shifted, strided, per-channel products.

  ``y[b, i, j, c] = sum_{u, v} xp[b, i * sh + u, j * sw + v, c] * kernel[u, v, 0, c]`` with
  ``xp`` the zero-padded input: the definition of a depthwise convolution (the tests hold it
  to ``lax.conv_general_dilated`` with ``feature_group_count=C``), which XLA:CPU runs
  slowly as a grouped convolution. Measured: benchmarks/README.md.

  Args:
    x: ``(B, H, W, C)``.
    kernel: ``(kh, kw, 1, C)``.
    strides: ``(sh, sw)``.
    pads: ``((top, bottom), (left, right))``.

  Returns:
    ``(B, (H + top + bottom - kh) // sh + 1, (W + left + right - kw) // sw + 1, C)``.
  """
  # lax, not jnp, for the kh * kw products: the same operations (a broadcast of the tap's
  # (C,) weights, a multiply, an add), without jnp's dispatch on every call, which made tracing
  # these sums a large part of tracing a whole network.
  xp = _padded(x, pads)
  taps = lax.convert_element_type(kernel, jnp.float32)
  (kh, kw), c = kernel.shape[:2], xp.shape[3]
  out_hw = [(n - k) // s + 1 for n, k, s in zip(xp.shape[1:3], (kh, kw), strides)]
  y = None
  for u in range(kh):
    for v in range(kw):
      window = _window(xp, u, v, out_hw, strides)
      tap = lax.reshape(lax.slice(taps, (u, v, 0, 0), (u + 1, v + 1, 1, c)), (c,))
      term = lax.mul(window, lax.broadcast_in_dim(tap, window.shape, (3,)))
      y = term if y is None else lax.add(y, term)
  return y


def _depthwise_kernel_grad(x, kernel, strides, pads, g):
  """The kernel gradient of :func:`depthwise_shifted`, written out: ``dk[u, v, 0, c]`` is the sum
  over ``b, i, j`` of tap ``(u, v)``'s window times ``g``, what autodiff's transpose of each
  product and broadcast gives (a reduce-sum per tap), without tracing autodiff through the
  ``kh * kw`` products. In the kernel's dtype."""
  xp, g = _padded(x, pads), lax.convert_element_type(g, jnp.float32)
  kh, kw = kernel.shape[:2]
  zero = np.array(0, np.float32)
  rows = [
    lax.reduce(lax.mul(_window(xp, u, v, g.shape[1:3], strides), g), zero, lax.add, (0, 1, 2))
    for u in range(kh)
    for v in range(kw)
  ]
  dk = lax.reshape(
    lax.concatenate([lax.reshape(r, (1, r.shape[0])) for r in rows], 0), kernel.shape
  )
  return lax.convert_element_type(dk, kernel.dtype)


def _transposed_pads(
  in_hw: Sequence[int],
  out_hw: Sequence[int],
  window: Sequence[int],
  strides: Sequence[int],
  pads: Sequence[tuple[int, int]],
) -> list[tuple[int, int]]:
  """Padding ``(before, after)`` per spatial axis of the transposed conv (no dilation):
  before = k - 1 - pad_before; after fills the input size from the output gradient dilated
  by the stride, ``1 + s (n_out - 1)`` pixels."""
  t_pads = []
  for n_in, n_out, k, s, (lo, _) in zip(in_hw, out_hw, window, strides, pads):
    before = k - 1 - lo
    t_pads.append((before, n_in + k - 1 - (1 + s * (n_out - 1)) - before))
  return t_pads


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_flipped_backward(
  x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: tuple[tuple[int, int], ...]
) -> jax.Array:
  """:func:`depthwise_shifted` whose input gradient is a shifted sum too, on a flipped kernel.

  Autodiff transposes each of the ``kh * kw`` strided slices of the forward into a ``pad``
  with interior padding and adds them: per input pixel, ``kh * kw`` bounds checks and
  selects. The input gradient of a depthwise conv is the depthwise conv of the output
  gradient, dilated by the stride and padded (one ``lax.pad``), with the kernel flipped in
  space: the same slices-and-products as the forward. The kernel gradient is JAX's own.
  Shapes as :func:`depthwise_shifted`. Measured: benchmarks/README.md.
  """
  return depthwise_shifted(x, kernel, strides, pads)


def _depthwise_input_grad(x, kernel, strides, pads, g):
  kh, kw = kernel.shape[:2]
  t_pads = _transposed_pads(x.shape[1:3], g.shape[1:3], (kh, kw), strides, pads)
  config = [(0, 0, 0), *((lo, hi, s - 1) for (lo, hi), s in zip(t_pads, strides)), (0, 0, 0)]
  g_dilated = lax.pad(g.astype(kernel.dtype), np.array(0, kernel.dtype), config)
  dx = depthwise_shifted(g_dilated, jnp.flip(kernel, (0, 1)), (1, 1), ((0, 0), (0, 0)))
  return dx.astype(x.dtype)


_define_vjp(depthwise_flipped_backward, _depthwise_input_grad, _depthwise_kernel_grad)


class BatchNorm(nn.Module):
  """Batch norm in inference mode, from the stored statistics (no batch statistics).

  ``y = (x - mean) * scale / sqrt(var + eps) + bias`` per channel, which is
  PyTorch's ``BatchNorm2d.eval()`` and TF's ``FusedBatchNorm(is_training=False)``.
  All four per-channel vectors ``(C,)`` live in the ``params`` collection (they are
  constants of a pretrained network, not state that inference updates): ``scale``
  (PyTorch ``weight``), ``bias``, ``mean`` (``running_mean``), ``var`` (``running_var``).

  Attributes:
    eps: added to the variance; EfficientNet uses 1e-3 (TF's ``batch_norm_epsilon``).
  """

  eps: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = (x.shape[-1],)
    scale = _param(self, "scale", nn.initializers.ones, shape)
    bias = _param(self, "bias", nn.initializers.zeros, shape)
    mean = _param(self, "mean", nn.initializers.zeros, shape)
    var = _param(self, "var", nn.initializers.ones, shape)
    return (x - mean) * (scale * lax.rsqrt(var + float(self.eps))) + bias


def max_pool_same(
  x: jax.Array, window: int, stride: int, rewrites: frozenset[str] = frozenset()
) -> jax.Array:
  """``window x window`` max pool, TF SAME padding, padded with ``-inf``.

  Padding with ``-inf`` (TF's behaviour, not zeros) means a border pixel is never
  beaten by padding, even when every real value in the window is negative.
  ``(B, H, W, C)`` -> ``(B, ceil(H / stride), ceil(W / stride), C)``.

  The gradient goes to the first maximum of each window in row-major order, as
  XLA's ``select_and_scatter`` gives ``reduce_window``. With ``"max_pool_shifted"``
  in ``rewrites`` (names from ``featviz.nonlin.CPU_REWRITES``) the pool runs as
  :func:`max_pool_shifted`, which has that gradient without the argmax
  reduce-window and scatter XLA:CPU makes of it.
  """
  if "max_pool_shifted" in rewrites:
    return max_pool_shifted(x, window, stride)
  pads = _same_pads(x.shape, (window, window), (stride, stride))
  # A concrete (NumPy) init value lets JAX recognise a max pool, which it can differentiate.
  neg_inf = np.array(-np.inf, x.dtype)
  return lax.reduce_window(
    x, neg_inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), [(0, 0), *pads, (0, 0)]
  )


def _pool_taps(x: jax.Array, window: int, stride: int) -> list[jax.Array]:
  """The ``window**2`` strided slices of the ``-inf``-padded input, row-major: tap ``(u, v)``
  holds, at each output pixel, the input pixel at offset ``(u, v)`` in its window."""
  pads = _same_pads(x.shape, (window, window), (stride, stride))
  xp = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=-jnp.inf)
  n, h, w, c = x.shape
  oh, ow = -(-h // stride), -(-w // stride)
  return [
    lax.slice(
      xp,
      (0, u, v, 0),
      (n, u + (oh - 1) * stride + 1, v + (ow - 1) * stride + 1, c),
      (1, stride, stride, 1),
    )
    for u in range(window)
    for v in range(window)
  ]


def _untap_pads(shape: Sequence[int], window: int, stride: int) -> list[list[tuple[int, ...]]]:
  """For each tap, the ``lax.pad`` config that puts an output-shaped array back at the
  input pixels the tap read (zeros elsewhere; negative edge padding drops what fell in the
  ``-inf`` border)."""
  (top, _), (left, _) = _same_pads(shape, (window, window), (stride, stride))
  h, w = shape[1:3]
  oh, ow = -(-h // stride), -(-w // stride)
  configs = []
  for u in range(window):
    for v in range(window):
      config = [(0, 0, 0)]
      for offset, size, out in ((u - top, h, oh), (v - left, w, ow)):
        config.append((offset, size - offset - ((out - 1) * stride + 1), stride - 1))
      configs.append(config + [(0, 0, 0)])
  return configs


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool_shifted(x: jax.Array, window: int, stride: int) -> jax.Array:
  """:func:`max_pool_same` as the max of ``window**2`` strided slices, with a custom VJP.

  Forward: the elementwise max of the slices of the ``-inf``-padded input, and (for
  the backward) the index of the first slice, in row-major window order, that equals
  it. Backward: each output pixel's gradient goes to that slice's input pixel, which
  is ``reduce_window``'s gradient, ties included (after a ReLU, ties at 0 are
  common). All of it is elementwise compares, selects and pads, instead of the
  variadic argmax ``reduce-window`` and the scatter that XLA:CPU makes of
  ``reduce_window``'s gradient. Measured: benchmarks/README.md.
  """
  taps = _pool_taps(x, window, stride)
  y = taps[0]
  for tap in taps[1:]:
    y = jnp.maximum(y, tap)
  return y


def _max_pool_fwd(x, window, stride):
  taps = _pool_taps(x, window, stride)
  y = taps[0]
  for tap in taps[1:]:
    y = jnp.maximum(y, tap)
  first = jnp.full(y.shape, len(taps), jnp.int8)
  for k in reversed(range(len(taps))):  # The earliest equal tap is written last.
    first = jnp.where(taps[k] == y, jnp.int8(k), first)
  return y, (x.shape, first)


def _max_pool_bwd(window, stride, res, g):
  shape, first = res

  def untap(first, g):
    dx = jnp.zeros(shape, g.dtype)
    for k, back in enumerate(_untap_pads(shape, window, stride)):
      dx = dx + lax.pad(jnp.where(first == k, g, 0), np.array(0, g.dtype), back)
    return dx

  # Both branches are the same: the conditional is there because XLA:CPU materializes a
  # conditional's operands. Without it, XLA fuses the chain that computes ``first`` into
  # each of the pads above and recomputes it for every tap.
  return (lax.cond(first[0, 0, 0, 0] < window * window, untap, untap, first, g),)


max_pool_shifted.defvjp(_max_pool_fwd, _max_pool_bwd)


def avg_pool_valid(x: jax.Array, window: int, stride: int = 1) -> jax.Array:
  """``window x window`` average pool with VALID padding (no partial windows).

  ``(B, H, W, C)`` -> ``(B, (H - window) // stride + 1, ..., C)``; empty when
  ``H < window``, which callers must rule out.
  """
  zero = np.array(0, x.dtype)  # Concrete, as in max_pool_same: a differentiable window sum.
  summed = lax.reduce_window(
    x, zero, lax.add, (1, window, window, 1), (1, stride, stride, 1), "VALID"
  )
  return summed / float(window * window)


def lrn(
  x: jax.Array, depth_radius: int = 5, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.5
) -> jax.Array:
  """Local response normalization across channels, ``tf.nn.lrn``'s formula.

  ``y[..., c] = x[..., c] / (bias + alpha * sum(x[..., c'] ** 2)) ** beta`` where ``c'``
  runs over ``c - depth_radius .. c + depth_radius`` (11 channels for radius 5, clipped
  at the edges) and, unlike PyTorch's ``LocalResponseNorm``, ``alpha`` is *not* divided
  by the window size (PyTorch's equivalent is ``size=11, alpha=11e-4``). The defaults are
  the attributes of the ``localresponsenorm0/1`` nodes of InceptionV1's TF graph
  (``depth_radius=5, bias=2, alpha=1e-4, beta=0.5``, as dumped in greentfrapp/lucent
  PR #51). Shape-preserving, ``(B, H, W, C)``.
  """
  window = 2 * depth_radius + 1
  zero = np.array(0, x.dtype)  # Concrete, as in max_pool_same: a differentiable window sum.
  squares = lax.reduce_window(
    x * x,
    zero,
    lax.add,
    (1, 1, 1, window),
    (1, 1, 1, 1),
    [(0, 0), (0, 0), (0, 0), (depth_radius, depth_radius)],
  )
  # Python floats are weakly typed: they keep the input's dtype (float32, or bfloat16).
  norm = float(bias) + float(alpha) * squares
  if beta == 0.5:  # InceptionV1's value: rsqrt, and its derivative, cost less than pow's exp/log
    return x * lax.rsqrt(norm)
  return x * norm ** float(-beta)
