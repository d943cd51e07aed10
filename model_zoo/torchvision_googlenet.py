"""torchvision's GoogLeNet (``torchvision.models.googlenet``), ImageNet-1k.

Szegedy et al. 2015, "Going Deeper with Convolutions", as torchvision rebuilt and trained it:
*not* Lucid's InceptionV1 (``featviz.zoo.inceptionv1``, the TF ``inception5h`` graph). Every
conv is a ``BasicConv2d``: conv (no bias) -> BN (eps 1e-3) -> ReLU. Differences from the
paper that torchvision keeps, and the weight shapes confirm: the "5x5" branch of each
Inception block is a 3x3 conv, there is no local response norm, and the pools round up
(``ceil_mode=True``). Sizes for a 224 px input::

  conv1        (B, 112, 112, 64)    7x7 stride 2 pad 3
  maxpool1     (B, 56, 56, 64)      3x3 stride 2, ceil
  conv2        (B, 56, 56, 64)      1x1
  conv3        (B, 56, 56, 192)     3x3 pad 1
  maxpool2     (B, 28, 28, 192)
  inception3a  (B, 28, 28, 256)     the four branches concatenated
  inception3b  (B, 28, 28, 480)
  maxpool3     (B, 14, 14, 480)
  inception4a .. inception4e        512, 512, 512, 528, 832 channels
  maxpool4     (B, 7, 7, 832)       2x2 stride 2, ceil
  inception5a, inception5b          832, 1024
  avgpool      (B, 1, 1, 1024)      global average pool
  logits       (B, 1000)            fc (dropout before it is the identity at inference)

``transform_input``: torchvision builds the pretrained GoogLeNet with
``transform_input=True`` (its weights were trained on inputs in [-1, 1]), so its forward
first turns an ImageNet-normalised input back into ``(x - 0.5) / 0.5``. :func:`forward`
does the same, so it matches ``torchvision.models.googlenet(weights=IMAGENET1K_V1)`` given
the usual normalised input. The auxiliary classifiers (``aux1``, ``aux2``) are training-only
and not computed: their tensors, which the official file holds, are checked and dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import state_dict as sd
from featviz.zoo import torchvision_layers as tvl

__all__ = ("googlenet", "INCEPTIONS")

CLASSES = 1000
BN_EPS = 1e-3  # torchvision googlenet.BasicConv2d: nn.BatchNorm2d(out_channels, eps=0.001).
# Smallest input side torchvision's forward takes (14 px leaves maxpool4 an empty map; found
# by running torchvision's googlenet at 1 to 40 px, and checked in the tests).
MIN_SIZE = 15


class Inception(NamedTuple):
  """One Inception block's widths, torchvision's ``Inception(...)`` arguments."""

  c_in: int
  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int

  @property
  def c_out(self) -> int:
    return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj


# torchvision.models.googlenet.GoogLeNet.__init__, in forward order; None is a max pool.
INCEPTIONS = {
  "inception3a": Inception(192, 64, 96, 128, 16, 32, 32),
  "inception3b": Inception(256, 128, 128, 192, 32, 96, 64),
  "maxpool3": None,
  "inception4a": Inception(480, 192, 96, 208, 16, 48, 64),
  "inception4b": Inception(512, 160, 112, 224, 24, 64, 64),
  "inception4c": Inception(512, 128, 128, 256, 24, 64, 64),
  "inception4d": Inception(512, 112, 144, 288, 32, 64, 64),
  "inception4e": Inception(528, 256, 160, 320, 32, 128, 128),
  "maxpool4": None,
  "inception5a": Inception(832, 256, 160, 320, 32, 128, 128),
  "inception5b": Inception(832, 384, 192, 384, 48, 128, 128),
}
AUX = {"aux1": 512, "aux2": 528}  # InceptionAux inputs: after inception4a and 4d.
AUX_WIDTH, AUX_HIDDEN, AUX_POOLED = 128, 1024, 4 * 4  # conv width, fc1 width, 4x4 pool.


@functools.cache
def spec() -> fv_model.ModelSpec:
  layers = {"conv1": 64, "maxpool1": 64, "conv2": 64, "conv3": 192, "maxpool2": 192}
  c = 192
  for name, block in INCEPTIONS.items():
    c = c if block is None else block.c_out
    layers[name] = c
  layers.update(avgpool=1024, logits=CLASSES)
  return tvl.imagenet_spec("googlenet", layers, MIN_SIZE, source="googlenet IMAGENET1K_V1")


def _basic(lay: tvl.Layout, path: str, c_in: int, c_out: int, k: int) -> None:
  lay.conv(f"{path}.conv", c_in, c_out, k)
  lay.bn(f"{path}.bn", c_out)


@functools.cache
def layout() -> tvl.Layout:
  """Every tensor of ``GoogLeNet(aux_logits=False)``'s state dict."""
  lay = tvl.Layout("GoogLeNet (torchvision)")
  _basic(lay, "conv1", 3, 64, 7)
  _basic(lay, "conv2", 64, 64, 1)
  _basic(lay, "conv3", 64, 192, 3)
  for name, b in INCEPTIONS.items():
    if b is None:
      continue
    _basic(lay, f"{name}.branch1", b.c_in, b.ch1x1, 1)
    _basic(lay, f"{name}.branch2.0", b.c_in, b.ch3x3red, 1)
    _basic(lay, f"{name}.branch2.1", b.ch3x3red, b.ch3x3, 3)
    _basic(lay, f"{name}.branch3.0", b.c_in, b.ch5x5red, 1)
    _basic(lay, f"{name}.branch3.1", b.ch5x5red, b.ch5x5, 3)
    _basic(lay, f"{name}.branch4.1", b.c_in, b.pool_proj, 1)
  lay.linear("fc", 1024, CLASSES)
  return lay


@functools.cache
def aux_layout() -> tvl.Layout:
  """The auxiliary classifiers' tensors, which the pretrained file also holds."""
  lay = tvl.Layout("GoogLeNet auxiliary classifiers (torchvision)")
  for name, c_in in AUX.items():
    _basic(lay, f"{name}.conv", c_in, AUX_WIDTH, 1)
    lay.linear(f"{name}.fc1", AUX_WIDTH * AUX_POOLED, AUX_HIDDEN)
    lay.linear(f"{name}.fc2", AUX_HIDDEN, CLASSES)
  return lay


def convert(state: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision GoogLeNet state dict -> nested weights, without the auxiliary heads.

  The official ``googlenet-1378be20.pth`` holds ``aux1.*`` and ``aux2.*`` too (torchvision
  builds the pretrained net with ``aux_logits=True``, then drops the heads): when any is
  present, all of them must be, with their shapes; they are then left out.

  Raises:
    WeightMismatchError: a missing, unexpected or wrongly shaped tensor.
  """
  aux = {k: v for k, v in state.items() if k.split(".", 1)[0] in AUX}
  if aux:
    counters = {f"{path}.num_batches_tracked" for path in aux_layout().bn_modules}
    aux = {k: v for k, v in aux.items() if k not in counters}
    sd.check_state_dict(aux, aux_layout().expected_shapes(), aux_layout().model)
  return layout().convert({k: v for k, v in state.items() if k.split(".", 1)[0] not in AUX})


def _basic_conv(w, h: jax.Array, ops: Ops, stride: int = 1, padding: int = 0) -> jax.Array:
  h = tvl.conv2d(h, w["conv"], stride, padding, rewrites=ops.rewrites)
  return ops.relu(tvl.batch_norm(h, w["bn"], BN_EPS))


def _inception(w, h: jax.Array, ops: Ops) -> jax.Array:
  b1 = _basic_conv(w["branch1"], h, ops)
  b2 = _basic_conv(w["branch2"]["1"], _basic_conv(w["branch2"]["0"], h, ops), ops, padding=1)
  b3 = _basic_conv(w["branch3"]["1"], _basic_conv(w["branch3"]["0"], h, ops), ops, padding=1)
  b4 = _basic_conv(w["branch4"]["1"], tvl.max_pool(h, 3, 1, padding=1, ceil_mode=True), ops)
  return jnp.concatenate([b1, b2, b3, b4], axis=-1)


def transform_input(x: jax.Array) -> jax.Array:
  """GoogLeNet._transform_input: ImageNet-normalised ``x`` -> ``(v - 0.5) / 0.5`` of the
  [0, 1] image ``v``, per channel: ``x std / 0.5 + (mean - 0.5) / 0.5``."""
  std = jnp.asarray(tvl.IMAGENET_STD, x.dtype)
  mean = jnp.asarray(tvl.IMAGENET_MEAN, x.dtype)
  return x * (std / 0.5) + (mean - 0.5) / 0.5


def forward(
  weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """``x`` ``(B, H, W, 3)``, normalised -> ``{layer: activation}`` up to the deepest asked."""
  keep, out = fv_model.ActivationRecorder(spec(), layers).start()
  if not layers:
    return out
  h = _basic_conv(weights["conv1"], transform_input(x), ops, stride=2, padding=3)
  if keep("conv1", h):
    return out
  h = tvl.max_pool(h, 3, 2, ceil_mode=True)
  if keep("maxpool1", h):
    return out
  h = _basic_conv(weights["conv2"], h, ops)
  if keep("conv2", h):
    return out
  h = _basic_conv(weights["conv3"], h, ops, padding=1)
  if keep("conv3", h):
    return out
  h = tvl.max_pool(h, 3, 2, ceil_mode=True)
  if keep("maxpool2", h):
    return out
  for name, block in INCEPTIONS.items():
    if block is not None:
      h = _inception(weights[name], h, ops)
    elif name == "maxpool4":
      h = tvl.max_pool(h, 2, 2, ceil_mode=True)
    else:
      h = tvl.max_pool(h, 3, 2, ceil_mode=True)
    if keep(name, h):
      return out
  h = tvl.adaptive_avg_pool(h, (1, 1))
  if keep("avgpool", h):
    return out
  keep("logits", tvl.linear(h.reshape(h.shape[0], -1), weights["fc"]))
  return out


googlenet = tvl.Variant(spec=spec, convert=convert, forward=forward)
