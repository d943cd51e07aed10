"""torchvision's ResNet-18 and ResNet-50 (``torchvision.models.resnet``), ImageNet-1k.

He et al. 2016, "Deep Residual Learning for Image Recognition", as torchvision builds it
(the stride of a bottleneck block sits on its 3x3 conv, "ResNet v1.5"). Every BN is
inference-mode with eps 1e-5 (``nn.BatchNorm2d``'s default). Sizes for a 224 px input::

  relu      (B, 112, 112, 64)    conv1 7x7 stride 2 pad 3 -> bn1 -> ReLU
  maxpool   (B, 56, 56, 64)      3x3 stride 2 pad 1
  layer1    (B, 56, 56, 64 e)    blocks layer1.0 ... (e: 1 for ResNet-18, 4 for ResNet-50)
  layer2    (B, 28, 28, 128 e)   the first block strides 2
  layer3    (B, 14, 14, 256 e)
  layer4    (B, 7, 7, 512 e)
  avgpool   (B, 1, 1, 512 e)     global average pool (AdaptiveAvgPool2d((1, 1)))
  logits    (B, 1000)            fc

A block's output (``layer3.5``) is after its residual sum and final ReLU, what a forward hook
on torchvision's module sees; ``layerN`` is the same tensor as its last block. Any input
size works (every stage keeps at least one pixel). Inputs: [0, 1] images normalised as
torchvision does (``ModelSpec.mean`` / ``std``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import torchvision_layers as tvl

__all__ = ("ResNetConfig", "resnet18", "resnet50")

CLASSES = 1000
STEM = 64
PLANES = (64, 128, 256, 512)  # The four stages' widths (before a bottleneck's expansion).


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  """One ResNet: its name, block type and the number of blocks per stage."""

  name: str
  title: str
  bottleneck: bool
  depths: tuple[int, int, int, int]

  @property
  def expansion(self) -> int:
    return 4 if self.bottleneck else 1


RESNET18 = ResNetConfig("resnet18", "ResNet-18", bottleneck=False, depths=(2, 2, 2, 2))
RESNET50 = ResNetConfig("resnet50", "ResNet-50", bottleneck=True, depths=(3, 4, 6, 3))


def _blocks(cfg: ResNetConfig):
  """(torch path, stage, c_in, planes, stride) of every block, in order."""
  c_in = STEM
  for stage, (planes, depth) in enumerate(zip(PLANES, cfg.depths)):
    for i in range(depth):
      stride = 2 if stage > 0 and i == 0 else 1
      yield f"layer{stage + 1}.{i}", stage, c_in, planes, stride
      c_in = planes * cfg.expansion


@functools.cache
def spec(cfg: ResNetConfig) -> fv_model.ModelSpec:
  layers = {"relu": STEM, "maxpool": STEM}
  for path, stage, _, planes, _ in _blocks(cfg):
    layers[path] = planes * cfg.expansion
    if path.endswith(f".{cfg.depths[stage] - 1}"):
      layers[f"layer{stage + 1}"] = planes * cfg.expansion
  layers.update(avgpool=PLANES[-1] * cfg.expansion, logits=CLASSES)
  return tvl.imagenet_spec(cfg.name, layers, min_size=1, source=f"{cfg.name} IMAGENET1K_V1")


@functools.cache
def layout(cfg: ResNetConfig) -> tvl.Layout:
  """Every tensor of torchvision's ``resnet18()`` / ``resnet50()`` state dict."""
  lay = tvl.Layout(f"{cfg.title} (torchvision)")
  lay.conv("conv1", 3, STEM, 7)
  lay.bn("bn1", STEM)
  for path, _, c_in, planes, stride in _blocks(cfg):
    c_out = planes * cfg.expansion
    if cfg.bottleneck:
      lay.conv(f"{path}.conv1", c_in, planes, 1)
      lay.bn(f"{path}.bn1", planes)
      lay.conv(f"{path}.conv2", planes, planes, 3)
      lay.bn(f"{path}.bn2", planes)
      lay.conv(f"{path}.conv3", planes, c_out, 1)
      lay.bn(f"{path}.bn3", c_out)
    else:
      lay.conv(f"{path}.conv1", c_in, planes, 3)
      lay.bn(f"{path}.bn1", planes)
      lay.conv(f"{path}.conv2", planes, planes, 3)
      lay.bn(f"{path}.bn2", planes)
    if stride != 1 or c_in != c_out:
      lay.conv(f"{path}.downsample.0", c_in, c_out, 1)
      lay.bn(f"{path}.downsample.1", c_out)
  lay.linear("fc", PLANES[-1] * cfg.expansion, CLASSES)
  return lay


def convert(cfg: ResNetConfig, state: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision ResNet state dict (``conv1.weight`` ... ``fc.bias``) -> nested weights.

  Raises:
    WeightMismatchError: a missing, unexpected or wrongly shaped tensor.
  """
  return layout(cfg).convert(state)


def _block(w, h: jax.Array, stride: int, bottleneck: bool, ops: Ops) -> jax.Array:
  """One BasicBlock or Bottleneck: ``relu(residual(h) + shortcut(h))``."""
  rw = ops.rewrites
  if bottleneck:
    y = ops.relu(tvl.batch_norm(tvl.conv2d(h, w["conv1"], rewrites=rw), w["bn1"]))
    y = tvl.conv2d(y, w["conv2"], stride, padding=1, rewrites=rw)
    y = ops.relu(tvl.batch_norm(y, w["bn2"]))
    y = tvl.batch_norm(tvl.conv2d(y, w["conv3"], rewrites=rw), w["bn3"])
  else:
    y = tvl.conv2d(h, w["conv1"], stride, padding=1, rewrites=rw)
    y = ops.relu(tvl.batch_norm(y, w["bn1"]))
    y = tvl.batch_norm(tvl.conv2d(y, w["conv2"], padding=1, rewrites=rw), w["bn2"])
  if "downsample" in w:
    shortcut = tvl.conv2d(h, w["downsample"]["0"], stride, rewrites=rw)
    h = tvl.batch_norm(shortcut, w["downsample"]["1"])
  return ops.relu(y + h)


def forward(
  cfg: ResNetConfig, weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """``x`` ``(B, H, W, 3)``, normalised -> ``{layer: activation}`` up to the deepest asked."""
  keep, out = fv_model.ActivationRecorder(spec(cfg), layers).start()
  if not layers:
    return out
  h = tvl.conv2d(x, weights["conv1"], 2, padding=3, rewrites=ops.rewrites)
  h = ops.relu(tvl.batch_norm(h, weights["bn1"]))
  if keep("relu", h):
    return out
  h = tvl.max_pool(h, 3, 2, padding=1)
  if keep("maxpool", h):
    return out
  for path, stage, _, _, stride in _blocks(cfg):
    h = _block(tvl.module(weights, path), h, stride, cfg.bottleneck, ops)
    if keep(path, h):
      return out
    if path.endswith(f".{cfg.depths[stage] - 1}") and keep(f"layer{stage + 1}", h):
      return out
  h = tvl.adaptive_avg_pool(h, (1, 1))
  if keep("avgpool", h):
    return out
  keep("logits", tvl.linear(h.reshape(h.shape[0], -1), weights["fc"]))
  return out


def _variant(cfg: ResNetConfig) -> tvl.Variant:
  return tvl.Variant(
    spec=functools.partial(spec, cfg),
    convert=functools.partial(convert, cfg),
    forward=functools.partial(forward, cfg),
  )


resnet18 = _variant(RESNET18)
resnet50 = _variant(RESNET50)
