"""InceptionV1 as Lucid knows it: the ``inception5h`` GoogLeNet graph, ported exactly.

This is the network of most published feature visualizations (Lucid's ``InceptionV1``,
lucent's ``inceptionv1``, Captum's ``googlenet``), a TensorFlow graph released with the
DeepDream tutorial (``inception5h.zip``). The weights come as lucent's PyTorch
``state_dict`` (``inception5h.pth``); :func:`convert` turns it into Flax params.

Sizes for a 224 px input; every conv and pool uses TF "SAME" padding computed for the
size it is actually given (:mod:`featviz.zoo.tf_layers`), so any size works::

  input          (B, 224, 224, 3)  255 * x - 117 (Lucid's image_value_range (-117, 138))
  conv2d0        (B, 112, 112, 64)   7x7 stride 2, ReLU
  maxpool0, LRN  (B, 56, 56, 64)     3x3 stride 2 max pool; LRN radius 5, bias 2, 1e-4, 0.5
  conv2d1        (B, 56, 56, 64)     1x1, ReLU
  conv2d2        (B, 56, 56, 192)    3x3, ReLU
  LRN, maxpool1  (B, 28, 28, 192)
  mixed3a, 3b    (B, 28, 28, 256 / 480)
  maxpool4       (B, 14, 14, 480)
  mixed4a .. 4e  (B, 14, 14, 508 / 512 / 512 / 528 / 832)
  maxpool10      (B, 7, 7, 832)
  mixed5a, 5b    (B, 7, 7, 832 / 1024)
  avgpool0       (B, 1, 1, 1024)     7x7 VALID average pool
  logits         (B, 1008)           softmax2_pre_activation: FC 1024 -> 1008

A mixed block runs four branches on its input, ``1x1``; ``3x3_bottleneck`` (1x1) -> ReLU
-> ``3x3``; ``5x5_bottleneck`` (1x1) -> ReLU -> ``5x5``; 3x3 stride-1 max pool ->
``pool_reduce`` (1x1), and concatenates them in that order. ``mixedXX_pre_relu`` is the
concatenation before the branch ReLUs (Lucid builds the same tensor in ``post_import``),
``mixedXX`` after. Each branch has its own ReLU, as in the TF graph, so a tensor-wide
gradient override (Lucid's redirected ReLU) sees the same tensors it would there.

The auxiliary heads (``head0``, ``head1``) are not in lucent's weights and are omitted.
Labels: the 1008 outputs follow Lucid's ``ImageNet_alternate.txt`` order (index 0 is
``"dummy"``), a file no pip package ships, so ``spec().labels`` is empty: address classes by
index.
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
from featviz.zoo import tf_layers as tfl

__all__ = ("InceptionV1", "spec", "convert", "forward", "LOGITS_MIN_SIZE")

IMAGE_SIZE = 224  # The graph's nominal input (Lucid's InceptionV1.image_shape).
MIN_SIZE = 64  # Five stride-2 stages leave mixed5b 2x2 here; smaller is mostly padding.
STEM = {"conv2d0": (7, 2, 64), "conv2d1": (1, 1, 64), "conv2d2": (3, 1, 192)}  # k, stride, C.
# name: (in, 1x1, 3x3_bottleneck, 3x3, 5x5_bottleneck, 5x5, pool_reduce), the conv widths of
# the inception5h graph (identical in lucent's and Captum's ports).
MIXED = {
  "mixed3a": (192, 64, 96, 128, 16, 32, 32),
  "mixed3b": (256, 128, 128, 192, 32, 96, 64),
  "mixed4a": (480, 192, 96, 204, 16, 48, 64),
  "mixed4b": (508, 160, 112, 224, 24, 64, 64),
  "mixed4c": (512, 128, 128, 256, 24, 64, 64),
  "mixed4d": (512, 112, 144, 288, 32, 64, 64),
  "mixed4e": (528, 256, 160, 320, 32, 128, 128),
  "mixed5a": (832, 256, 160, 320, 48, 128, 128),
  "mixed5b": (832, 384, 192, 384, 48, 128, 128),
}
POOL_BEFORE = ("mixed4a", "mixed5a")  # maxpool4 and maxpool10, 3x3 stride 2.
FINAL_POOL = 7  # avgpool0: 7x7 VALID.
# Stride-2 stages (conv2d0, maxpool0, maxpool1, maxpool4, maxpool10) give a ceil(n / 32)
# final map; avgpool0 needs at least 7 of it, so n > 6 * 32.
LOGITS_MIN_SIZE = 6 * 32 + 1
CLASSES = 1008  # softmax2_pre_activation: 1000 ImageNet classes, "dummy" and 7 unused.
BRANCHES = ("1x1", "3x3_bottleneck", "3x3", "5x5_bottleneck", "5x5", "pool_reduce")


class Mixed(nn.Module):
  """One inception block; returns ``(pre_relu, post_relu)``, both ``(B, H, W, out)``."""

  widths: tuple[int, ...]  # A row of MIXED without the input width.

  @nn.compact
  def __call__(self, x: jax.Array, ops: Ops) -> tuple[jax.Array, jax.Array]:
    w = dict(zip(BRANCHES, self.widths))

    def conv(name: str, k: int, h: jax.Array) -> jax.Array:
      return tfl.Conv(w[name], (k, k), rewrites=ops.rewrites, name=name)(h)

    b1 = conv("1x1", 1, x)
    b3 = conv("3x3", 3, ops.relu(conv("3x3_bottleneck", 1, x)))
    b5 = conv("5x5", 5, ops.relu(conv("5x5_bottleneck", 1, x)))
    bp = conv("pool_reduce", 1, tfl.max_pool_same(x, 3, 1, ops.rewrites))
    branches = (b1, b3, b5, bp)
    pre = jnp.concatenate(branches, axis=-1)
    post = jnp.concatenate([ops.relu(b) for b in branches], axis=-1)
    return pre, post


class InceptionV1(nn.Module):
  """The network; ``__call__`` returns ``{layer: activation}`` for ``layers``."""

  @nn.compact
  def __call__(
    self, x: jax.Array, layers: tuple[str, ...] = ("logits",), ops: Ops = STANDARD_OPS
  ) -> dict[str, jax.Array]:
    """Runs the network up to the deepest of ``layers``.

    Args:
      x: images ``(B, H, W, 3)`` in ``(-117, 138)`` (``255 * x - 117``), H, W >= 64.
      layers: names from :func:`spec`; unknown names raise.
      ops: the ReLU to use, and the CPU rewrites of the convs and max pools.

    Returns:
      ``{name: activation}`` for exactly ``layers``: NHWC, ``(B, 1008)`` for ``logits``.

    Raises:
      ValueError: ``logits`` asked for an input under 193 px (no 7x7 final map).
    """
    keep, out = fv_model.ActivationRecorder(spec(), layers).start()
    if not layers:
      return out
    h = x
    for name, (k, stride, features) in STEM.items():
      h = tfl.Conv(features, (k, k), (stride, stride), rewrites=ops.rewrites, name=name)(h)
      if keep(f"{name}_pre_relu", h):
        return out
      h = ops.relu(h)
      if keep(name, h):
        return out
      if name == "conv2d0":
        h = tfl.lrn(tfl.max_pool_same(h, 3, 2, ops.rewrites))  # maxpool0, localresponsenorm0.
      elif name == "conv2d2":
        h = tfl.max_pool_same(tfl.lrn(h), 3, 2, ops.rewrites)  # localresponsenorm1, maxpool1.
    for name, widths in MIXED.items():
      if name in POOL_BEFORE:
        h = tfl.max_pool_same(h, 3, 2, ops.rewrites)
      pre, h = Mixed(widths[1:], name=name)(h, ops)
      if keep(f"{name}_pre_relu", pre) or keep(name, h):
        return out
    keep("logits", _logits(h, x.shape))
    return out


def _logits(h: jax.Array, input_shape: tuple[int, ...]) -> jax.Array:
  """avgpool0 -> softmax2_pre_activation: ``(B, h, w, 1024)`` -> ``(B, 1008)``.

  A final map larger than 7x7 (inputs over 224 px) gives several pooled positions; the
  TF graph's ``reshape(-1, 1024)`` would turn them into extra batch rows, which Lucid's
  objectives then average over. Here they are averaged directly (the FC is linear, so
  averaging pooled features or logits is the same), keeping logits ``(B, 1008)``.
  """
  if min(h.shape[1:3]) < FINAL_POOL:
    raise ValueError(
      f"InceptionV1 logits need a final map of at least {FINAL_POOL}x{FINAL_POOL} for "
      f"its 7x7 VALID average pool, i.e. inputs of at least {LOGITS_MIN_SIZE} px "
      f"(nominal {IMAGE_SIZE}); got {input_shape[1]}x{input_shape[2]}, a "
      f"{h.shape[1]}x{h.shape[2]} map. Resize the images up, or use a conv layer."
    )
  pooled = tfl.avg_pool_valid(h, FINAL_POOL).mean(axis=(1, 2))
  return nn.Dense(CLASSES, name="softmax2_pre_activation")(pooled)


@functools.cache
def spec() -> fv_model.ModelSpec:
  """The static facts about InceptionV1 (channel counts checked in tests)."""
  layers = {}
  for name, (_, _, features) in STEM.items():
    layers[f"{name}_pre_relu"] = layers[name] = features
  for name, (_, b1, _, b3, _, b5, bp) in MIXED.items():
    layers[f"{name}_pre_relu"] = layers[name] = b1 + b3 + b5 + bp
  layers["logits"] = CLASSES
  return fv_model.ModelSpec(
    name="inceptionv1",
    value_range=(-117.0, 138.0),
    value_range_source=(
      "Lucid lucid/modelzoo/other_models/InceptionV1.py "
      "image_value_range = (-117, 255-117); lucent preprocess_inceptionv1 "
      "x*255 - 117"
    ),
    image_size=IMAGE_SIZE,
    channels=3,
    layers=layers,
    labels=(),  # ImageNet_alternate.txt (1008 names) is not available offline.
    min_size=MIN_SIZE,
  )


def _conv_nodes() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """TF node name -> (Flax param path, OIHW shape), e.g. ``"mixed3a_3x3"``."""
  nodes, c_in = {}, 3
  for name, (k, _, features) in STEM.items():
    nodes[name] = (name,), (features, c_in, k, k)
    c_in = features
  for name, (c_in, b1, r3, b3, r5, b5, bp) in MIXED.items():
    for branch, shape in (
      ("1x1", (b1, c_in, 1, 1)),
      ("3x3_bottleneck", (r3, c_in, 1, 1)),
      ("3x3", (b3, r3, 3, 3)),
      ("5x5_bottleneck", (r5, c_in, 1, 1)),
      ("5x5", (b5, r5, 5, 5)),
      ("pool_reduce", (bp, c_in, 1, 1)),
    ):
      nodes[f"{name}_{branch}"] = (name, branch), shape
  return nodes


@functools.cache
def expected_shapes() -> dict[str, tuple[int, ...]]:
  """The 116 keys and shapes of lucent's ``inception5h.pth`` (58 modules, weight + bias)."""
  shapes = {}
  for node, (_, shape) in _conv_nodes().items():
    shapes[f"{node}_pre_relu_conv.weight"] = shape
    shapes[f"{node}_pre_relu_conv.bias"] = shape[:1]
  last = sum(MIXED["mixed5b"][i] for i in (1, 3, 5, 6))  # 1024
  shapes["softmax2_pre_activation_matmul.weight"] = (CLASSES, last)
  shapes["softmax2_pre_activation_matmul.bias"] = (CLASSES,)
  return shapes


def convert(state: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """lucent's ``inception5h.pth`` state dict -> nested Flax params.

  Args:
    state: ``{"conv2d0_pre_relu_conv.weight": (64, 3, 7, 7), ...,
      "softmax2_pre_activation_matmul.weight": (1008, 1024), ...}``, 116 tensors, convs OIHW.

  Returns:
    ``{"conv2d0": {"kernel": (7, 7, 3, 64), "bias": (64,)}, "mixed3a": {"1x1": {...},
    ...}, "softmax2_pre_activation": {"kernel": (1024, 1008), "bias": (1008,)}}``,
    float32 numpy arrays.

  Raises:
    WeightMismatchError: if any key is missing or unexpected, or any shape differs.
  """
  sd.check_state_dict(state, expected_shapes(), "InceptionV1 (lucent inception5h.pth)")
  params: dict[str, Any] = {}
  for node, (path, _) in _conv_nodes().items():
    leaf = params
    for part in path:
      leaf = leaf.setdefault(part, {})
    leaf["kernel"] = sd.conv_kernel(state[f"{node}_pre_relu_conv.weight"])
    leaf["bias"] = sd.vector(state[f"{node}_pre_relu_conv.bias"])
  params["softmax2_pre_activation"] = {
    "kernel": sd.dense_kernel(state["softmax2_pre_activation_matmul.weight"]),
    "bias": sd.vector(state["softmax2_pre_activation_matmul.bias"]),
  }
  return params


def forward(
  weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """Pure forward pass: ``x`` ``(B, H, W, 3)`` in ``(-117, 138)`` -> ``{layer: activation}``."""
  return InceptionV1().apply({"params": weights}, x, tuple(layers), ops)
