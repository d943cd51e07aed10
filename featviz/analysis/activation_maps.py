"""Activation maps: every channel of a layer for one image, and how sparse each layer is.

A spatial layer's activations for one image are ``(h, w, c)``; its activation
maps are the ``c`` greyscale pictures ``A[:, :, k]``. Shown side by side, they
reveal which channels respond where (Yosinski et al. 2015, "Understanding Neural
Networks Through Deep Visualization", the "live activations" view).

Sparsity is the fraction of activations that are *exactly* zero: the ones a ReLU
(or ReLU6) clipped. Layers read before their nonlinearity (``*_pre_act``,
``*_pre_relu``) and linear ones (EfficientNet's block outputs, logits) are
almost never exactly zero.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from featviz import images as images_lib
from featviz.analysis import figures
from featviz.model import Model

NORMALIZE = ("channel", "layer")


@functools.partial(jax.jit, static_argnums=2)
def _run(model: Model, images: jax.Array, layers: tuple[str, ...]):
  acts = model.activations(images, layers)
  zeros = {n: jnp.mean((a == 0).astype(jnp.float32)) for n, a in acts.items()}
  return acts, zeros


def activations_and_sparsity(
  model: Model, images, layer: str | None = None, layers: Sequence[str] | None = None
):
  """One forward pass: ``layer``'s activations, and the sparsity of ``layers``.

  Args:
    model: the network.
    images: ``(B, H, W, C)`` in ``[0, 1]``.
    layer: the layer whose activations to return (None: none).
    layers: the layers to measure; None means every layer of the spec.

  Returns:
    ``(acts, sparsity)``: ``acts`` is ``(B, h, w, c)`` (or ``(B, c)`` for a flat
    layer; None when ``layer`` is None); ``sparsity`` is ``{layer: fraction}`` in
    forward order, the fraction of exactly-zero values over every image, position
    and channel of that layer.
  """
  model.check_images(images)
  names = model.layers_in_order(
    list(layers if layers is not None else model.spec.layers) + ([layer] if layer else [])
  )
  acts, zeros = _run(model, jnp.asarray(images, jnp.float32), names)
  wanted = set(layers if layers is not None else model.spec.layers)
  sparsity = {n: float(zeros[n]) for n in names if n in wanted}
  return (np.asarray(acts[layer]) if layer else None), sparsity


def sparsity(model: Model, images, layers: Sequence[str] | None = None) -> dict[str, float]:
  """``{layer: fraction of exactly-zero activations}``, every layer by default."""
  return activations_and_sparsity(model, images, None, layers)[1]


def channel_tiles(acts: np.ndarray, normalize: str = "channel") -> np.ndarray:
  """One image's ``(h, w, c)`` activations -> ``c`` display tiles ``(c, h, w, 1)`` in ``[0, 1]``.

  Args:
    acts: a spatial layer's activations for one image.
    normalize: ``"channel"``: each map min-max scaled over its own ``h x w`` values
      (its weakest position black, its strongest white; a constant map, such as a
      channel the ReLU zeroed everywhere, is all black). ``"layer"``: one min-max over
      the whole layer, so brightness compares across channels.
  """
  acts = np.asarray(acts, np.float32)
  if acts.ndim != 3:
    raise ValueError(f"activation maps need a spatial layer (h, w, c); got shape {acts.shape}")
  if normalize not in NORMALIZE:
    raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
  maps = np.moveaxis(acts, -1, 0)  # (c, h, w)
  axis = (1, 2) if normalize == "channel" else None
  return figures.minmax(maps, axis=axis)[..., None]


def grid_columns(channels: int) -> int:
  """Tiles per row: ``ceil(sqrt(1.6 c))``, a grid about 1.6 times wider than tall (screens)."""
  return int(np.ceil(np.sqrt(channels * 1.6)))


def tile_scale(h: int, target: int = 40) -> int:
  """Nearest-neighbour upscaling so a tile is about ``target`` px (14 x 14 maps -> 3x: 42 px)."""
  return max(1, int(round(target / h)))


def figure(
  image: np.ndarray,
  acts: np.ndarray,
  sparsity: dict[str, float],
  *,
  layer: str,
  model_name: str,
  normalize: str = "channel",
  image_name: str = "",
) -> Image.Image:
  """The photo and a bar chart of sparsity per layer, over a grid of every channel's map.

  Args:
    image: the input ``(H, W, C)`` in ``[0, 1]``.
    acts: ``layer``'s activations for it, ``(h, w, c)``.
    sparsity: ``{layer: fraction}`` from :func:`activations_and_sparsity`.
  """
  tiles = channel_tiles(acts, normalize)
  c, h = tiles.shape[0], tiles.shape[1]
  scale = tile_scale(h)
  labels = [str(k) for k in range(c)] if h * scale >= 24 else None
  how = (
    "each channel min-max scaled over its own map"
    if normalize == "channel"
    else "one min-max scale for the whole layer"
  )
  heading = [
    f"{model_name} {layer}: {c} channels of {h} x {acts.shape[1]} "
    f"(tiles {scale}x nearest upscaled)",
    f"{how}: black = min, white = max",
  ]
  grid = images_lib.grid(tiles, labels, cols=grid_columns(c), scale=scale)
  chart = figures.bar_chart(
    list(sparsity), list(sparsity.values()), title="sparsity: fraction of exactly-zero activations"
  )
  top = figures.panels(
    [
      (image, [image_name or "input", f"{layer} sparsity {sparsity.get(layer, float('nan')):.1%}"]),
      (chart, []),
    ]
  )
  text = figures.text_block(heading, max(grid.width, top.width))
  return figures.stack([top, text, grid])
