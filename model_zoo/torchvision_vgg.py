"""torchvision's VGG-16 and VGG-19 (``torchvision.models.vgg``, no batch norm), ImageNet-1k.

Simonyan & Zisserman 2015, configurations D (16 layers) and E (19 layers). ``features`` is a
flat ``nn.Sequential``: each 3x3 conv (pad 1, with bias) is followed by a ReLU, and each stage
ends in a 2x2 stride-2 max pool. The layers are named by their index there, as torchvision
numbers them::

  features.0   (B, 224, 224, 64)   conv (pre-ReLU)
  features.1   (B, 224, 224, 64)   its ReLU
  features.4   (B, 112, 112, 64)   max pool
  ...
  features.29  (B, 14, 14, 512)    VGG-16's last ReLU (features.35 in VGG-19)
  features.30  (B, 7, 7, 512)      the last max pool (features.36 in VGG-19)
  avgpool      (B, 7, 7, 512)      AdaptiveAvgPool2d((7, 7)): any input from 32 px
  classifier.0 (B, 4096)           linear on the flattened C x H x W map (PyTorch's order)
  classifier.1 (B, 4096)           ReLU (classifier.2 is dropout, the identity at inference)
  classifier.3 (B, 4096)           linear
  classifier.4 (B, 4096)           ReLU
  logits       (B, 1000)           classifier.6

Inputs: [0, 1] images normalised as torchvision does. The five pools round down, so 32 px is
the smallest input that keeps a pixel.
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

__all__ = ("VGGConfig", "vgg16", "vgg19")

CLASSES = 1000
HIDDEN = 4096
POOL = "M"
MIN_SIZE = 32  # 2**5: five 2x2 stride-2 pools.
POOLED = (7, 7)  # torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier.


@dataclasses.dataclass(frozen=True)
class VGGConfig:
  """A VGG: its name and torchvision's ``cfgs`` entry (conv widths, ``"M"`` for a pool)."""

  name: str
  title: str
  stages: tuple[int | str, ...]


VGG16 = VGGConfig(
  "vgg16",
  "VGG-16",
  (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
)
VGG19 = VGGConfig(
  "vgg19",
  "VGG-19",
  (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL)
  + (512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL),
)


def _features(cfg: VGGConfig):
  """(index in ``features``, kind ``"conv"``/``"relu"``/``"pool"``, c_in, c_out), in order."""
  index, c_in = 0, 3
  for v in cfg.stages:
    if v == POOL:
      yield index, "pool", c_in, c_in
      index += 1
    else:
      yield index, "conv", c_in, v
      yield index + 1, "relu", v, v
      index, c_in = index + 2, v


@functools.cache
def spec(cfg: VGGConfig) -> fv_model.ModelSpec:
  layers = {f"features.{i}": c_out for i, _, _, c_out in _features(cfg)}
  layers["avgpool"] = 512
  layers.update({f"classifier.{i}": HIDDEN for i in (0, 1, 3, 4)})
  layers["logits"] = CLASSES
  return tvl.imagenet_spec(cfg.name, layers, MIN_SIZE, source=f"{cfg.name} IMAGENET1K_V1")


@functools.cache
def layout(cfg: VGGConfig) -> tvl.Layout:
  """Every tensor of torchvision's ``vgg16()`` / ``vgg19()`` state dict."""
  lay = tvl.Layout(f"{cfg.title} (torchvision)")
  for i, kind, c_in, c_out in _features(cfg):
    if kind == "conv":
      lay.conv(f"features.{i}", c_in, c_out, 3, bias=True)
  lay.linear("classifier.0", 512 * POOLED[0] * POOLED[1], HIDDEN)
  lay.linear("classifier.3", HIDDEN, HIDDEN)
  lay.linear("classifier.6", HIDDEN, CLASSES)
  return lay


def convert(cfg: VGGConfig, state: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision VGG state dict (``features.0.weight`` ... ``classifier.6.bias``) -> weights.

  Raises:
    WeightMismatchError: a missing, unexpected or wrongly shaped tensor.
  """
  return layout(cfg).convert(state)


def forward(
  cfg: VGGConfig, weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """``x`` ``(B, H, W, 3)``, normalised -> ``{layer: activation}`` up to the deepest asked."""
  keep, out = fv_model.ActivationRecorder(spec(cfg), layers).start()
  if not layers:
    return out
  h = x
  for i, kind, _, _ in _features(cfg):
    if kind == "conv":
      h = tvl.conv2d(h, weights["features"][str(i)], padding=1, rewrites=ops.rewrites)
    elif kind == "relu":
      h = ops.relu(h)
    else:
      h = tvl.max_pool(h, 2, 2)
    if keep(f"features.{i}", h):
      return out
  h = tvl.adaptive_avg_pool(h, POOLED)
  if keep("avgpool", h):
    return out
  h = h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)  # torch.flatten of an NCHW map.
  classifier = weights["classifier"]
  for i in (0, 3):
    h = tvl.linear(h, classifier[str(i)])
    if keep(f"classifier.{i}", h):
      return out
    h = ops.relu(h)
    if keep(f"classifier.{i + 1}", h):
      return out
  keep("logits", tvl.linear(h, classifier["6"]))
  return out


def _variant(cfg: VGGConfig) -> tvl.Variant:
  return tvl.Variant(
    spec=functools.partial(spec, cfg),
    convert=functools.partial(convert, cfg),
    forward=functools.partial(forward, cfg),
  )


vgg16 = _variant(VGG16)
vgg19 = _variant(VGG19)
