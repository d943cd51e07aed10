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


HEADS: dict[str, Callable[[Any], tuple[str, jax.Array, jax.Array]]] = {
  "efficientnet_lite0": _efficientnet_lite0,
  "inceptionv1": _inceptionv1,
}


def linear_head(name: str, weights: Any) -> tuple[str, jax.Array, jax.Array] | None:
  """``(layer, kernel (C, K), bias (K,))`` for model ``name``; None when it has no GAP head."""
  fn = HEADS.get(name)
  return None if fn is None else fn(weights)
