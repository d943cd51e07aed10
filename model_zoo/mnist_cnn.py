"""mnist_cnn: a small MNIST classifier, trained here by ``model_zoo/train_mnist.py``.

The architecture (every convolution is 3x3, stride 1, ``VALID`` padding, so each
one trims 1 pixel from every border; every pool is 2x2, stride 2)::

  input    (B, 28, 28, 1)   pixel / 255, so [0, 1]
  conv1    (B, 26, 26, 32)  relu
  conv2    (B, 24, 24, 32)  relu  -> max pool -> (B, 12, 12, 32)
  conv3    (B, 10, 10, 64)  relu
  conv4    (B,  8,  8, 64)  relu  -> max pool -> (B, 4, 4, 64)
  flatten  (B, 1024)        4 * 4 * 64
  fc       (B, 128)         relu
  logits   (B, 10)          no nonlinearity

``VALID`` padding (not ``SAME``) keeps the flattened map at 4 * 4 * 64 = 1024
rather than 7 * 7 * 64 = 3136 values, so the dense layer holds 131k weights
instead of 401k, and the whole network 197,482 float32 parameters (793 kB as
an ``.npz``, under the 1 MB budget for committed weights).

Named activations are taken after the ReLU (the layer's output, as lucid names
them); ``logits`` are before the softmax. Every ReLU is ``ops.relu``, so the
render loop can swap in a gradient-redirecting one. The forward pass returns
as soon as it has every requested layer: asking for ``conv1`` never runs the
dense layers. The flatten makes the network take 28 x 28 inputs only
(``fixed_size=True``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import state_dict as sd

__all__ = ("MnistCNN", "spec", "convert", "forward")

IMAGE_SIZE = 28  # MNIST images are 28 x 28 greyscale.
CONV_FEATURES = {"conv1": 32, "conv2": 32, "conv3": 64, "conv4": 64}
FC_FEATURES = 128
LABELS = tuple(str(d) for d in range(10))  # Class i is the digit i (MNIST's labels).


class MnistCNN(nn.Module):
  """The network; ``__call__`` returns ``{layer: activation}`` for ``layers``."""

  @nn.compact
  def __call__(
    self, x: jax.Array, layers: tuple[str, ...] = ("logits",), ops: Ops = STANDARD_OPS
  ) -> dict[str, jax.Array]:
    """Runs the network up to the deepest of ``layers``.

    Args:
      x: images ``(B, 28, 28, 1)`` in ``[0, 1]`` (pixel / 255).
      layers: names from :func:`spec`; unknown names raise.
      ops: the ReLU to use.

    Returns:
      ``{name: activation}`` for exactly ``layers``: NHWC for conv layers,
      ``(B, C)`` for ``fc`` and ``logits``.
    """
    keep, out = fv_model.ActivationRecorder(spec(), layers).start()
    if not layers:
      return out
    h = x
    for name, features in CONV_FEATURES.items():
      h = ops.relu(nn.Conv(features, (3, 3), padding="VALID", name=name)(h))
      if keep(name, h):
        return out
      if name in ("conv2", "conv4"):  # A 2x2 pool after each pair of convolutions.
        h = nn.max_pool(h, (2, 2), strides=(2, 2))
    h = h.reshape(h.shape[0], -1)
    h = ops.relu(nn.Dense(FC_FEATURES, name="fc")(h))
    if keep("fc", h):
      return out
    keep("logits", nn.Dense(len(LABELS), name="logits")(h))
    return out


@functools.cache
def spec() -> fv_model.ModelSpec:
  """The static facts about mnist_cnn (channel counts checked in tests)."""
  return fv_model.ModelSpec(
    name="mnist_cnn",
    value_range=(0.0, 1.0),
    value_range_source="model_zoo/train_mnist.py trains on uint8 pixel / 255",
    image_size=IMAGE_SIZE,
    channels=1,
    layers={**CONV_FEATURES, "fc": FC_FEATURES, "logits": len(LABELS)},
    labels=LABELS,
    fixed_size=True,
    min_size=IMAGE_SIZE,
  )


@functools.cache
def _expected_shapes() -> dict[str, tuple[int, ...]]:
  """``{"conv1.kernel": (3, 3, 1, 32), ...}``, read off an abstract init."""
  x = jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 1), jnp.float32)
  variables = jax.eval_shape(MnistCNN().init, jax.random.key(0), x)
  return {
    f"{layer}.{leaf}": tuple(a.shape)
    for layer, leaves in variables["params"].items()
    for leaf, a in leaves.items()
  }


def convert(state: Mapping[str, np.ndarray]) -> dict[str, dict[str, jax.Array]]:
  """Flat state dict (the ``.npz`` layout) -> nested Flax params.

  Args:
    state: ``{"conv1.kernel": (3, 3, 1, 32), "conv1.bias": (32,), ...,
      "logits.bias": (10,)}``, as ``train_mnist.py`` saves it.

  Returns:
    ``{"conv1": {"kernel": ..., "bias": ...}, ...}`` as float32 arrays.

  Raises:
    WeightMismatchError: naming every missing key, unexpected key and shape mismatch.
  """
  expected = _expected_shapes()
  missing = sorted(expected.keys() - state.keys())
  unexpected = sorted(state.keys() - expected.keys())
  mismatched = [
    f"{k}: expected {expected[k]}, got {tuple(np.shape(state[k]))}"
    for k in sorted(expected.keys() & state.keys())
    if tuple(np.shape(state[k])) != expected[k]
  ]
  problems = [
    f"{what}: {', '.join(items)}"
    for what, items in (
      ("missing keys", missing),
      ("unexpected keys", unexpected),
      ("shape mismatches", mismatched),
    )
    if items
  ]
  if problems:
    raise sd.WeightMismatchError(
      "mnist_cnn weights do not fit the architecture; " + "; ".join(problems)
    )
  params: dict[str, dict[str, jax.Array]] = {}
  for key, value in state.items():
    layer, leaf = key.split(".")
    params.setdefault(layer, {})[leaf] = jnp.asarray(value, jnp.float32)
  return params


def forward(weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops) -> dict[str, jax.Array]:
  """Pure forward pass: ``x`` ``(B, 28, 28, 1)`` in ``[0, 1]`` -> ``{layer: activation}``."""
  return MnistCNN().apply({"params": weights}, x, tuple(layers), ops)
