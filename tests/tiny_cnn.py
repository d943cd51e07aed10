"""A tiny random CNN in the zoo's contract, for fast engine tests (no files, no training)."""

import jax
import jax.numpy as jnp
import numpy as np

from featviz.model import Model, ModelSpec
from featviz.nonlin import Ops

LAYERS = {"conv1": 4, "conv2": 6, "conv3": 8, "logits": 5}


def _conv(x, w, b, stride=1):
  y = jax.lax.conv_general_dilated(
    x.astype(w.dtype),
    w,
    (stride, stride),
    "SAME",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    preferred_element_type=jnp.float32,
  )
  return y + b


def forward(weights, x, layers, ops: Ops):
  out = {}
  deepest = max((list(LAYERS).index(n) for n in layers), default=-1)
  h = x
  for i, name in enumerate(["conv1", "conv2", "conv3"]):
    if i > deepest:
      return out
    h = ops.relu(_conv(h, weights[name]["w"], weights[name]["b"], stride=1 if i == 0 else 2))
    out[name] = h
  if deepest >= 3:
    out["logits"] = h.mean(axis=(1, 2)) @ weights["logits"]["w"] + weights["logits"]["b"]
  return out


def make(channels: int = 3, seed: int = 0) -> Model:
  rng = np.random.default_rng(seed)
  shapes = {"conv1": (3, 3, channels, 4), "conv2": (3, 3, 4, 6), "conv3": (3, 3, 6, 8)}
  weights = {
    n: {
      "w": rng.normal(0, (2.0 / np.prod(s[:3])) ** 0.5, s).astype(np.float32),
      "b": rng.normal(0, 0.05, s[-1]).astype(np.float32),
    }
    for n, s in shapes.items()
  }
  weights["logits"] = {
    "w": rng.normal(0, 0.3, (8, 5)).astype(np.float32),
    "b": np.zeros(5, np.float32),
  }
  spec = ModelSpec(
    name="tiny_cnn",
    value_range=(-1.0, 1.0),
    value_range_source="test model",
    image_size=32,
    channels=channels,
    layers=dict(LAYERS),
    labels=("a", "b", "c", "d", "e"),
  )
  return Model(spec, weights, forward)
