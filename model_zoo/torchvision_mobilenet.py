"""torchvision's MobileNetV2 and MobileNetV3-Large (``torchvision.models.mobilenetv*``).

MobileNetV2 (Sandler et al. 2018): ``features.0`` is a 3x3 stride-2 conv -> BN -> ReLU6,
``features.1`` .. ``features.17`` are inverted residual blocks (1x1 expand -> ReLU6 ->
3x3 depthwise -> ReLU6 -> 1x1 linear projection, plus the input when the stride is 1 and
the widths agree), ``features.18`` a 1x1 conv to 1280 -> BN -> ReLU6; then a global average
pool and ``classifier.1`` (dropout first) gives the logits. BN eps 1e-5 (the default).

MobileNetV3-Large (Howard et al. 2019): the same skeleton with hardswish or ReLU per block,
5x5 depthwise convs in some, squeeze-and-excitation (global pool -> 1x1 conv -> ReLU -> 1x1
conv -> hardsigmoid -> scale) in others; ``features.16`` is a 1x1 conv to 960 -> hardswish,
then pool, ``classifier.0`` (960 -> 1280), ``classifier.1`` (hardswish), ``classifier.3``
(the logits). BN eps 1e-3 (torchvision: ``partial(nn.BatchNorm2d, eps=0.001, ...)``).

The block tables are torchvision's (``inverted_residual_setting`` in both files, width 1.0);
the weight shapes confirm them. Every ReLU and ReLU6 goes through ``ops``; hardswish and
hardsigmoid are plain functions (``x relu6(x + 3) / 6`` and ``relu6(x + 3) / 6``, PyTorch's
definitions). Layer outputs are each ``features.N`` module's, then ``logits``. Any input size
works (each stride-2 conv pads 1 and keeps at least one pixel).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import torchvision_layers as tvl

__all__ = ("mobilenet_v2", "mobilenet_v3_large", "V2_BLOCKS", "V3_BLOCKS")

CLASSES = 1000
V3_BN_EPS = 1e-3


def make_divisible(v: float, divisor: int = 8) -> int:
  """torchvision's ``_make_divisible``: round to a multiple of ``divisor``, never below 90 %."""
  new = max(divisor, int(v + divisor / 2) // divisor * divisor)
  return new + divisor if new < 0.9 * v else new


class Block(NamedTuple):
  """One inverted residual block.

  ``act`` is ``"relu6"`` (V2), ``"relu"`` or ``"hardswish"`` (V3); ``se`` marks V3's
  squeeze-and-excitation.
  """

  c_in: int
  kernel: int
  expanded: int
  c_out: int
  se: bool
  act: str
  stride: int

  @property
  def residual(self) -> bool:
    return self.stride == 1 and self.c_in == self.c_out


def _v2_blocks() -> tuple[Block, ...]:
  # torchvision mobilenetv2.py: t (expansion), c (width), n (repeats), s (first stride).
  setting = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2))
  setting += ((6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
  blocks, c_in = [], 32
  for t, c, n, s in setting:
    for i in range(n):
      blocks.append(Block(c_in, 3, c_in * t, c, False, "relu6", s if i == 0 else 1))
      c_in = c
  return tuple(blocks)


# torchvision mobilenetv3.py, _mobilenet_v3_conf("mobilenet_v3_large"): bneck_conf(input,
# kernel, expanded, out, use_se, activation, stride, dilation 1).
_V3_LARGE = (
  (16, 3, 16, 16, False, "relu", 1),
  (16, 3, 64, 24, False, "relu", 2),
  (24, 3, 72, 24, False, "relu", 1),
  (24, 5, 72, 40, True, "relu", 2),
  (40, 5, 120, 40, True, "relu", 1),
  (40, 5, 120, 40, True, "relu", 1),
  (40, 3, 240, 80, False, "hardswish", 2),
  (80, 3, 200, 80, False, "hardswish", 1),
  (80, 3, 184, 80, False, "hardswish", 1),
  (80, 3, 184, 80, False, "hardswish", 1),
  (80, 3, 480, 112, True, "hardswish", 1),
  (112, 3, 672, 112, True, "hardswish", 1),
  (112, 5, 672, 160, True, "hardswish", 2),
  (160, 5, 960, 160, True, "hardswish", 1),
  (160, 5, 960, 160, True, "hardswish", 1),
)
V2_BLOCKS = _v2_blocks()
V3_BLOCKS = tuple(Block(*row) for row in _V3_LARGE)
V2_STEM, V2_HEAD = 32, 1280
V3_STEM, V3_HEAD, V3_HIDDEN = 16, 960, 1280


def _activate(act: str, ops: Ops):
  return {"relu6": ops.relu6, "relu": ops.relu, "hardswish": jax.nn.hard_swish}[act]


# ---- MobileNetV2 ----


@functools.cache
def _v2_spec() -> fv_model.ModelSpec:
  layers = {"features.0": V2_STEM}
  layers.update({f"features.{i + 1}": b.c_out for i, b in enumerate(V2_BLOCKS)})
  layers[f"features.{len(V2_BLOCKS) + 1}"] = V2_HEAD
  layers["logits"] = CLASSES
  return tvl.imagenet_spec("mobilenet_v2", layers, 1, source="mobilenet_v2 IMAGENET1K_V1")


def _conv_bn(lay: tvl.Layout, path: str, c_in: int, c_out: int, k: int, groups: int = 1):
  """A ``Conv2dNormActivation``: ``path.0`` conv (no bias), ``path.1`` BN."""
  lay.conv(f"{path}.0", c_in, c_out, k, groups)
  lay.bn(f"{path}.1", c_out)


@functools.cache
def _v2_layout() -> tvl.Layout:
  lay = tvl.Layout("MobileNetV2 (torchvision)")
  _conv_bn(lay, "features.0", 3, V2_STEM, 3)
  for i, b in enumerate(V2_BLOCKS):
    p, j = f"features.{i + 1}.conv", 0
    if b.expanded != b.c_in:
      _conv_bn(lay, f"{p}.0", b.c_in, b.expanded, 1)
      j = 1
    _conv_bn(lay, f"{p}.{j}", b.expanded, b.expanded, b.kernel, groups=b.expanded)
    lay.conv(f"{p}.{j + 1}", b.expanded, b.c_out, 1)
    lay.bn(f"{p}.{j + 2}", b.c_out)
  _conv_bn(lay, f"features.{len(V2_BLOCKS) + 1}", V2_BLOCKS[-1].c_out, V2_HEAD, 1)
  lay.linear("classifier.1", V2_HEAD, CLASSES)
  return lay


def _conv_bn_act(w, h, act, ops: Ops, stride=1, groups=1, eps=tvl.TORCH_BN_EPS):
  k = w["0"]["kernel"].shape[0]
  h = tvl.conv2d(h, w["0"], stride, (k - 1) // 2, groups, rewrites=ops.rewrites)
  h = tvl.batch_norm(h, w["1"], eps)
  return h if act is None else _activate(act, ops)(h)


def _v2_block(w, h: jax.Array, b: Block, ops: Ops) -> jax.Array:
  y, j = h, 0
  if b.expanded != b.c_in:
    y, j = _conv_bn_act(w["0"], y, b.act, ops), 1
  y = _conv_bn_act(w[str(j)], y, b.act, ops, b.stride, groups=b.expanded)
  y = tvl.batch_norm(tvl.conv2d(y, w[str(j + 1)], rewrites=ops.rewrites), w[str(j + 2)])
  return y + h if b.residual else y


def _v2_forward(
  weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """``x`` ``(B, H, W, 3)``, normalised -> ``{layer: activation}`` up to the deepest asked."""
  keep, out = fv_model.ActivationRecorder(_v2_spec(), layers).start()
  if not layers:
    return out
  features = weights["features"]
  h = _conv_bn_act(features["0"], x, "relu6", ops, stride=2)
  if keep("features.0", h):
    return out
  for i, b in enumerate(V2_BLOCKS):
    h = _v2_block(features[str(i + 1)]["conv"], h, b, ops)
    if keep(f"features.{i + 1}", h):
      return out
  last = f"{len(V2_BLOCKS) + 1}"
  h = _conv_bn_act(features[last], h, "relu6", ops)
  if keep(f"features.{last}", h):
    return out
  keep("logits", tvl.linear(h.mean(axis=(1, 2)), weights["classifier"]["1"]))
  return out


# ---- MobileNetV3-Large ----


@functools.cache
def _v3_spec() -> fv_model.ModelSpec:
  layers = {"features.0": V3_STEM}
  layers.update({f"features.{i + 1}": b.c_out for i, b in enumerate(V3_BLOCKS)})
  layers[f"features.{len(V3_BLOCKS) + 1}"] = V3_HEAD
  layers.update({"classifier.1": V3_HIDDEN, "logits": CLASSES})
  source = "mobilenet_v3_large IMAGENET1K_V1"
  return tvl.imagenet_spec("mobilenet_v3_large", layers, 1, source=source)


def _v3_parts(b: Block) -> dict[str, str]:
  """Which index of the block's ``nn.Sequential`` holds each part (absent parts left out)."""
  parts = ["expand"] if b.expanded != b.c_in else []
  parts += ["depthwise"] + (["se"] if b.se else []) + ["project"]
  return {part: str(j) for j, part in enumerate(parts)}


@functools.cache
def _v3_layout() -> tvl.Layout:
  lay = tvl.Layout("MobileNetV3-Large (torchvision)")
  _conv_bn(lay, "features.0", 3, V3_STEM, 3)
  for i, b in enumerate(V3_BLOCKS):
    p, parts = f"features.{i + 1}.block", _v3_parts(b)
    if "expand" in parts:
      _conv_bn(lay, f"{p}.{parts['expand']}", b.c_in, b.expanded, 1)
    _conv_bn(lay, f"{p}.{parts['depthwise']}", b.expanded, b.expanded, b.kernel, b.expanded)
    if b.se:
      squeeze = make_divisible(b.expanded // 4)
      lay.conv(f"{p}.{parts['se']}.fc1", b.expanded, squeeze, 1, bias=True)
      lay.conv(f"{p}.{parts['se']}.fc2", squeeze, b.expanded, 1, bias=True)
    _conv_bn(lay, f"{p}.{parts['project']}", b.expanded, b.c_out, 1)
  _conv_bn(lay, f"features.{len(V3_BLOCKS) + 1}", V3_BLOCKS[-1].c_out, V3_HEAD, 1)
  lay.linear("classifier.0", V3_HEAD, V3_HIDDEN)
  lay.linear("classifier.3", V3_HIDDEN, CLASSES)
  return lay


def _squeeze_excite(w, h: jax.Array, ops: Ops) -> jax.Array:
  """torchvision's SqueezeExcitation with ``scale_activation=Hardsigmoid``."""
  s = jnp.mean(h, axis=(1, 2), keepdims=True)
  s = ops.relu(tvl.conv2d(s, w["fc1"]))
  return h * jax.nn.hard_sigmoid(tvl.conv2d(s, w["fc2"]))


def _v3_block(w, h: jax.Array, b: Block, ops: Ops) -> jax.Array:
  parts, y = _v3_parts(b), h
  if "expand" in parts:
    y = _conv_bn_act(w[parts["expand"]], y, b.act, ops, eps=V3_BN_EPS)
  y = _conv_bn_act(w[parts["depthwise"]], y, b.act, ops, b.stride, b.expanded, V3_BN_EPS)
  if b.se:
    y = _squeeze_excite(w[parts["se"]], y, ops)
  y = _conv_bn_act(w[parts["project"]], y, None, ops, eps=V3_BN_EPS)
  return y + h if b.residual else y


def _v3_forward(
  weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """``x`` ``(B, H, W, 3)``, normalised -> ``{layer: activation}`` up to the deepest asked."""
  keep, out = fv_model.ActivationRecorder(_v3_spec(), layers).start()
  if not layers:
    return out
  features = weights["features"]
  h = _conv_bn_act(features["0"], x, "hardswish", ops, stride=2, eps=V3_BN_EPS)
  if keep("features.0", h):
    return out
  for i, b in enumerate(V3_BLOCKS):
    h = _v3_block(features[str(i + 1)]["block"], h, b, ops)
    if keep(f"features.{i + 1}", h):
      return out
  last = f"{len(V3_BLOCKS) + 1}"
  h = _conv_bn_act(features[last], h, "hardswish", ops, eps=V3_BN_EPS)
  if keep(f"features.{last}", h):
    return out
  classifier = weights["classifier"]
  h = jax.nn.hard_swish(tvl.linear(h.mean(axis=(1, 2)), classifier["0"]))
  if keep("classifier.1", h):
    return out
  keep("logits", tvl.linear(h, classifier["3"]))
  return out


mobilenet_v2 = tvl.Variant(spec=_v2_spec, convert=_v2_layout().convert, forward=_v2_forward)
mobilenet_v3_large = tvl.Variant(spec=_v3_spec, convert=_v3_layout().convert, forward=_v3_forward)
