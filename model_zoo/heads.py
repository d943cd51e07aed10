"""Classifier heads that are a global average pool followed by one linear layer.

Class Activation Mapping (Zhou et al. 2016, "Learning Deep Features for
Discriminative Localization") needs a network whose logits are
``logits[k] = sum_c kernel[c, k] * mean_{y,x} A[y, x, c] + bias[k]`` for the
activations ``A`` of one layer. Then ``sum_c kernel[c, k] * A[y, x, c]`` is the
class-``k`` evidence at each position. This module says, per zoo model, which
layer that is and where its linear layer's weights sit in the converted weights.

``HEADS[name](weights) -> (layer, kernel (C, K), bias (K,))``:

- ``efficientnet_lite0``: ``head`` (7 x 7 x 1280 at 224 px) -> mean over y, x -> ``fc``
  (``kernel (1280, 1000)``), see ``efficientnet_lite0.forward``.
- ``inceptionv1``: ``mixed5b`` (7 x 7 x 1024 at 224 px) -> ``avgpool0`` (7 x 7, VALID) ->
  ``softmax2_pre_activation`` (``kernel (1024, 1008)``). At 224 px the final map is
  exactly 7 x 7, so the pool is global; larger inputs make it a local pool and CAM
  is then only an approximation.
- ``efficientnet_lite1``, ``efficientnet_lite2``: as Lite0 (the family's head, ``head`` -> ``fc``).
- torchvision's ``resnet18``, ``resnet50`` (``layer4`` -> ``avgpool`` -> ``fc``), ``googlenet``
  (``inception5b`` -> ``avgpool`` -> dropout, the identity at inference -> ``fc``) and
  ``mobilenet_v2`` (``features.18`` -> mean over y, x -> dropout -> ``classifier.1``): their
  ``AdaptiveAvgPool2d((1, 1))`` is global at every input size, so CAM is exact at any size.
  VGG (flatten of a 7 x 7 pool into three dense layers), MobileNetV3 (a hidden dense layer)
  and ViT have no entry.
- ``mnist_cnn`` has no entry: it flattens a 4 x 4 map into a dense layer, not a
  pool (use Grad-CAM there).

Tests check each entry against the model's own logits (``tests/test_cam.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


def _efficientnet_lite0(weights: Any) -> tuple[str, jax.Array, jax.Array]:
  return "head", weights["fc"]["kernel"], weights["fc"]["bias"]


def _inceptionv1(weights: Any) -> tuple[str, jax.Array, jax.Array]:
  fc = weights["softmax2_pre_activation"]
  return "mixed5b", fc["kernel"], fc["bias"]


def _torchvision(layer: str, *path: str) -> Callable[[Any], tuple[str, jax.Array, jax.Array]]:
  """The head of a torchvision-layout model: ``layer`` pooled into the linear layer at ``path``
  of the converted weights (nested by module path, ``classifier.1`` -> ``["classifier"]["1"]``)."""

  def head(weights: Any) -> tuple[str, jax.Array, jax.Array]:
    fc = weights
    for key in path:
      fc = fc[key]
    return layer, fc["kernel"], fc["bias"]

  return head


HEADS: dict[str, Callable[[Any], tuple[str, jax.Array, jax.Array]]] = {
  "efficientnet_lite0": _efficientnet_lite0,
  "efficientnet_lite1": _efficientnet_lite0,
  "efficientnet_lite2": _efficientnet_lite0,
  "inceptionv1": _inceptionv1,
  "resnet18": _torchvision("layer4", "fc"),
  "resnet50": _torchvision("layer4", "fc"),
  "googlenet": _torchvision("inception5b", "fc"),
  "mobilenet_v2": _torchvision("features.18", "classifier", "1"),
}


def linear_head(name: str, weights: Any) -> tuple[str, jax.Array, jax.Array] | None:
  """``(layer, kernel (C, K), bias (K,))`` for model ``name``; None when it has no GAP head."""
  fn = HEADS.get(name)
  return None if fn is None else fn(weights)
