"""Filters: the first convolution's kernels as pictures, and optimized images for deeper units.

First layer. A first convolution's kernel ``(kh, kw, C_in, K)`` is ``K`` little
images in the input's own colour space (C_in = 3: RGB, C_in = 1: grey), so it
can be shown directly, as Krizhevsky et al. (2012, fig. 3) did for AlexNet.
Weights are signed, so each tile is scaled *symmetrically around 0*: a weight of
0 is mid grey (0.5) and ``w -> 0.5 + 0.5 * w / m``, where ``m`` is the largest
``|w|`` of that filter (``scale="filter"``: every filter uses its full contrast)
or of all filters (``scale="global"``: brightness compares across filters). A
filter of all zeros is flat grey.

The input's value range is one affine map for all colour channels in every zoo
model (EfficientNet ``[-1, 1]``, InceptionV1 ``[-117, 138]``, mnist ``[0, 1]``), so
a positive red weight does mean "likes red". A batch norm after the convolution
(EfficientNet's ``stem_bn``) rescales each filter by a positive factor
(``gamma / sqrt(var + eps)``) unless gamma is negative; the per-filter scale is
blind to the former.

Deeper layers have no picture in their weights; there we show what maximizes
each unit (activation maximization, Erhan et al. 2009) with
:func:`featviz.render`, all units in one batch and one compiled program.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from featviz import images as images_lib
from featviz import objectives
from featviz._loop import api as render_api
from featviz.analysis import figures
from featviz.model import Model

SCALES = ("filter", "global")
_PRE = ("_pre_act", "_pre_relu")  # suffixes of zoo layers read before the nonlinearity


@dataclasses.dataclass(frozen=True)
class FirstConv:
  """The first convolution of a model.

  Attributes:
    path: where its kernel sits in the weights, e.g. ``"stem/kernel"``.
    layer: the spec layer it feeds (e.g. ``"stem"``), for captions.
    kernel: ``(kh, kw, C_in, K)`` float32, ``C_in = spec.channels``.
  """

  path: str
  layer: str
  kernel: np.ndarray


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def first_conv(model: Model) -> FirstConv:
  """Finds the kernel that reads the image: a 4-D weight ``(kh, kw, spec.channels, K)``.

  When several weights have that shape (a greyscale model with depthwise 3x3
  convolutions, say), the one whose top-level name matches the first spec layer
  (``stem``, ``conv1``, ``conv2d0``, with ``_pre_act`` / ``_pre_relu`` dropped) wins.

  Raises:
    ValueError: no such weight, or several and none named like the first layer.
  """
  c = model.spec.channels
  leaves = jax.tree_util.tree_flatten_with_path(model.weights)[0]
  found = [
    (_path_str(p), np.asarray(v, np.float32))
    for p, v in leaves
    if np.ndim(v) == 4 and np.shape(v)[2] == c
  ]
  first = next(iter(model.spec.layers))
  for suffix in _PRE:
    first = first.removesuffix(suffix)
  if len(found) > 1:
    found = [(p, v) for p, v in found if p.split("/")[0] == first] or found
  if len(found) != 1:
    names = ", ".join(p for p, _ in found) or "none"
    raise ValueError(
      f"cannot tell {model.spec.name}'s first convolution: kernels (kh, kw, {c}, K) found: {names}"
    )
  path, kernel = found[0]
  k = kernel.shape[-1]
  top = path.split("/")[0]
  layers = [n for n, width in model.spec.layers.items() if width == k]
  layer = (
    top
    if top in model.spec.layers
    else next((n for n in layers if not n.endswith(_PRE)), layers[0] if layers else top)
  )
  return FirstConv(path, layer, kernel)


def kernel_tiles(kernel: np.ndarray, scale: str = "filter") -> np.ndarray:
  """``(kh, kw, C_in, K)`` -> ``K`` tiles ``(K, kh, kw, C_in)`` in ``[0, 1]``, 0 at 0.5.

  Tile ``k`` is ``0.5 + 0.5 * kernel[..., k] / m`` with ``m = max |kernel[..., k]|``
  (``scale="filter"``) or ``max |kernel|`` (``scale="global"``).
  """
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
  w = np.moveaxis(np.asarray(kernel, np.float32), -1, 0)  # (K, kh, kw, C_in)
  axes = (1, 2, 3) if scale == "filter" else None
  m = np.abs(w).max(axis=axes, keepdims=True)
  return (0.5 + 0.5 * w / np.where(m > 0, m, 1.0)).astype(np.float32)


def tile_scale(kh: int, target: int = 48) -> int:
  """Nearest upscaling so a tile is about ``target`` px (3 x 3 -> 16x, 7 x 7 -> 7x)."""
  return max(1, int(round(target / kh)))


def kernel_figure(model: Model, scale: str = "filter") -> Image.Image:
  """Every first-layer filter of ``model`` as a tile, with a heading saying the scaling."""
  conv = first_conv(model)
  tiles = kernel_tiles(conv.kernel, scale)
  kh, kw, cin, k = conv.kernel.shape
  up = tile_scale(kh)
  grid = images_lib.grid(
    tiles, [str(i) for i in range(k)], scale=up, cols=int(np.ceil(np.sqrt(k * 1.6)))
  )
  how = "that filter's" if scale == "filter" else "all filters'"
  colour = "RGB" if cin == 3 else "greyscale"
  heading = [
    f"{model.spec.name} first convolution {conv.path} -> {conv.layer}: "
    f"{k} filters of {kh} x {kw} x {cin} ({colour}, {up}x nearest upscaled)",
    f"scaled symmetrically around 0: each channel value 0.5 (grey) = weight 0, "
    f"0 / 1 = -/+ {how} max |w|",
  ]
  return figures.stack([figures.text_block(heading, grid.width), grid])


def optimized_filters(
  model: Model, layer: str, units: Sequence[int], **render_kwargs
) -> render_api.RenderResult:
  """Images that maximize the mean of each unit's channel in ``layer``, one per unit.

  All units are one batch of :func:`featviz.render` with the objective
  ``channel(layer, units)``, whose unit indices are data: one compiled program
  for all of them (and for other units of the same count). ``render_kwargs`` go
  to ``render`` (``steps``, ``size``, ``seed``, ``param``, ``progress_bar``, ...).
  """
  units = np.asarray(units, np.int32)
  model.spec.check_units(layer, units)
  return render_api.render(model, objectives.channel(layer, jnp.asarray(units)), **render_kwargs)


def optimized_figure(model: Model, result: render_api.RenderResult, layer: str) -> Image.Image:
  """The rendered images with their unit and final objective value."""
  captions = [f"{label} ({value:.3g})" for label, value in zip(result.labels, result.history[-1])]
  size = result.images.shape[1]
  grid = images_lib.grid(result.images, captions, scale=max(1, 96 // size))
  heading = [
    f"{model.spec.name} {layer}: images maximizing each unit's mean activation "
    f"(render: {result.steps} steps, {size} px, seed {result.seed})",
    "caption: layer:unit (objective reached)",
  ]
  return figures.stack([figures.text_block(heading, grid.width), grid])
