"""Dataset examples: the photos, and the patches of photos, that excite a unit most.

The oldest way to see what a unit does (Zeiler and Fergus, 2014, "Visualizing and
Understanding Convolutional Networks", section 4; Olah et al., 2017, "Feature
Visualization", the "dataset examples" beside each optimized image): run a dataset through
the network and keep, for each unit,

* the **top images**, ranked by the unit's *mean* activation over all positions (what the
  ``channel`` objective maximizes), and
* the **top patches**, ranked by the unit's *largest* activation at one position, cropped to
  the receptive field of that position (:mod:`featviz.analysis.receptive_field`, computed
  from the architecture), so one sees exactly the pixels that unit could see.

One jitted pass over the dataset (:func:`scan_layer`) records, for every image and every
channel of the layer, the mean, the maximum and where the maximum is: ``(N, C)`` numbers,
so the examples of all C units come from the same pass. Each image contributes at most one
patch per unit (its strongest position), so the top patches come from k different photos.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from featviz import progress as progress_lib
from featviz.analysis import figures
from featviz.analysis import receptive_field as rf_lib
from featviz.model import Model, as_map

# Images per compiled batch: 16 photos of 224 px keep EfficientNet-Lite0's largest
# activations (16 x 112 x 112 x 96 floats, 77 MB) small on a laptop; the last batch is
# padded to 16 so every batch reuses one compiled program.
BATCH = 16


@dataclasses.dataclass
class LayerScan:
  """Every unit of one layer summarized on every image of a dataset.

  Attributes:
    layer: the layer's name.
    mean: ``(N, C)`` mean activation over positions (the ``channel`` objective's value).
    peak: ``(N, C)`` largest activation over positions.
    peak_at: ``(N, C, 2)`` ``(row, col)`` of that largest activation in the layer's map.
    map_size: ``(h, w)`` of the layer's activation map (``(1, 1)`` for flat layers).
    image_size: ``(H, W)`` of the images scanned.
  """

  layer: str
  mean: np.ndarray
  peak: np.ndarray
  peak_at: np.ndarray
  map_size: tuple[int, int]
  image_size: tuple[int, int]


@dataclasses.dataclass
class UnitExamples:
  """The top images and top patches of one unit (indices into the scanned dataset).

  Attributes:
    unit: the channel.
    images: ``(k,)`` indices of the images with the largest mean activation, best first.
    image_values: ``(k,)`` those means.
    patches: ``(k,)`` indices of the images with the largest single activation.
    patch_values: ``(k,)`` those activations.
    patch_at: ``(k, 2)`` ``(row, col)`` of each in the layer's map.
    boxes: ``(k, 4)`` ``(top, left, bottom, right)`` receptive field of each, input pixels,
      ends exclusive, clipped by the image.
  """

  unit: int
  images: np.ndarray
  image_values: np.ndarray
  patches: np.ndarray
  patch_values: np.ndarray
  patch_at: np.ndarray
  boxes: np.ndarray


@functools.partial(jax.jit, static_argnums=2)
def _summaries(model: Model, images, layer: str):
  """``(B, H, W, C)`` in [0, 1] -> mean, peak, flat arg-max, each ``(B, C)``."""
  acts = as_map(model.activations(images, (layer,))[layer])  # tokens: a 1 x T map
  flat = acts.reshape(acts.shape[0], -1, acts.shape[-1])  # (B, h * w, C)
  return flat.mean(axis=1), flat.max(axis=1), jnp.argmax(flat, axis=1), acts.shape[1:3]


def scan_layer(
  model: Model, images: np.ndarray, layer: str, batch: int = BATCH, progress_bar: bool = True
) -> LayerScan:
  """One pass of ``images (N, H, W, C)`` in [0, 1] through ``model`` up to ``layer``.

  Runs in batches of ``batch`` images through one jitted program (the last batch padded).
  ``progress_bar``: a bar of photos done / N and photos/s on stderr.
  """
  model.spec.check_layer(layer)
  images = np.asarray(images, np.float32)
  model.check_images(images)
  n = len(images)
  means, peaks, where = [], [], []
  hw = (1, 1)
  desc = f"scan {model.spec.name} {layer}"
  with progress_lib.bar(n, desc, "photo", enabled=progress_bar) as pbar:
    for start in range(0, n, batch):
      part = images[start : start + batch]
      padded = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], part.dtype)])
      mean, peak, arg, hw = _summaries(model, padded, layer)
      means.append(np.asarray(mean)[: len(part)])
      peaks.append(np.asarray(peak)[: len(part)])
      where.append(np.asarray(arg)[: len(part)])
      progress_lib.advance(pbar, start + len(part))
  h, w = int(hw[0]), int(hw[1])
  arg = np.concatenate(where)
  return LayerScan(
    layer,
    np.concatenate(means),
    np.concatenate(peaks),
    np.stack([arg // w, arg % w], axis=-1),
    (h, w),
    tuple(images.shape[1:3]),
  )


def _top(values: np.ndarray, k: int) -> np.ndarray:
  """Indices of the ``k`` largest values, largest first (ties: lower index first)."""
  return np.argsort(-values, kind="stable")[:k]


def unit_examples(
  model: Model, scan: LayerScan, units: Sequence[int], k: int = 9, fields: bool = True
) -> list[UnitExamples]:
  """Top-``k`` images and patches of each unit, from a :func:`scan_layer` pass.

  Args:
    model: the model scanned (its architecture gives the receptive fields).
    scan: the pass over the dataset.
    units: channels of ``scan.layer``.
    k: examples per unit (at most the number of images).
    fields: compute each patch's receptive field (all k * len(units) in a few batched
      pull-backs); False leaves ``boxes`` as the whole image.
  """
  model.spec.check_units(scan.layer, np.asarray(units, np.int64))
  out = []
  for unit in units:
    unit = int(unit)
    top = _top(scan.mean[:, unit], k)
    best = _top(scan.peak[:, unit], k)
    out.append(
      UnitExamples(
        unit,
        top,
        scan.mean[top, unit],
        best,
        scan.peak[best, unit],
        scan.peak_at[best, unit],
        np.zeros((len(best), 4), np.int64),
      )
    )
  h, w = scan.image_size
  if fields:
    queries = np.concatenate(
      [np.column_stack([e.patch_at, np.full(len(e.patches), e.unit)]) for e in out]
    )
    boxes = rf_lib.receptive_fields(model, scan.layer, queries, (h, w))
    start = 0
    for e in out:
      e.boxes = boxes[start : start + len(e.patches)]
      start += len(e.patches)
  else:
    for e in out:
      e.boxes[:] = (0, 0, h, w)
  return out


def dataset_examples(
  model: Model,
  images: np.ndarray,
  layer: str,
  units: Sequence[int],
  k: int = 9,
  progress_bar: bool = True,
) -> tuple[LayerScan, list[UnitExamples]]:
  """:func:`scan_layer` then :func:`unit_examples`: one pass, every unit's examples."""
  scan = scan_layer(model, images, layer, progress_bar=progress_bar)
  return scan, unit_examples(model, scan, units, k)


def crop_patch(
  image: np.ndarray, box: Sequence[int], full: tuple[int, int], fill: float = 0.5
) -> np.ndarray:
  """The pixels of ``box`` from ``image (H, W, C)``, padded back to ``full = (fh, fw)``.

  A field clipped by the image border is padded with ``fill`` on the clipped side (the
  side where the box touches the border), so every patch of a layer shows at one scale
  and the unit's position stays at the patch's centre.
  """
  top, left, bottom, right = (int(v) for v in box)
  patch = np.asarray(image)[top:bottom, left:right]
  fh, fw = max(full[0], patch.shape[0]), max(full[1], patch.shape[1])
  out = np.full((fh, fw, image.shape[-1]), fill, np.float32)
  dy = fh - patch.shape[0] if top == 0 and bottom < image.shape[0] else 0
  dx = fw - patch.shape[1] if left == 0 and right < image.shape[1] else 0
  out[dy : dy + patch.shape[0], dx : dx + patch.shape[1]] = patch
  return out


def _tile(image: np.ndarray, side: int) -> Image.Image:
  """A float image resized to ``side x side`` (bicubic), as a PIL RGB tile."""
  pil = Image.fromarray(np.clip(np.rint(figures.to_rgb(image) * 255), 0, 255).astype(np.uint8))
  return pil.resize((side, side), Image.BICUBIC if pil.width > side else Image.NEAREST)


def fit_text(text: str, width: int) -> str:
  """``text`` cut (with an ellipsis) to fit ``width`` pixels in the figures' font."""
  font = figures.font()
  if font.getlength(text) <= width:
    return text
  while text and font.getlength(text + "…") > width:
    text = text[:-1]
  return text + "…"


def figure(
  images: np.ndarray,
  names: Sequence[str],
  scan: LayerScan,
  examples: Sequence[UnitExamples],
  model_name: str = "",
  tile: int = 112,
  cols: int = 3,
) -> Image.Image:
  """One block per unit: the top images (left) and the top patches (right), captioned.

  Args:
    images: the scanned images ``(N, H, W, C)``.
    names: a short name per image (e.g. the file stem), shown under each tile.
    scan, examples: from :func:`dataset_examples`.
    model_name: shown in the title.
    tile: side of each tile in pixels (patches are resized up or down to it).
    cols: tiles per row in each half.
  """
  blocks = []
  for e in examples:
    sizes = e.boxes[:, 2:] - e.boxes[:, :2]
    full = tuple(int(v) for v in sizes.max(axis=0)) if len(sizes) else (1, 1)
    left = [
      (_tile(images[i], tile), [fit_text(names[i], tile), f"mean {v:.3g}"])
      for i, v in zip(e.images, e.image_values)
    ]
    right = [
      (_tile(crop_patch(images[i], box, full), tile), [fit_text(names[i], tile), f"max {v:.3g}"])
      for i, v, box in zip(e.patches, e.patch_values, e.boxes)
    ]
    halves = []
    for what, tiles in (
      ("top images by channel mean", left),
      (f"top patches by max, field {full[0]}x{full[1]} px", right),
    ):
      rows = [figures.panels(tiles[r : r + cols]) for r in range(0, len(tiles), cols)]
      header = figures.text_block([what], max(r.width for r in rows))
      halves.append(figures.stack([header, *rows]))
    width = halves[0].width + 2 * figures.PAD + halves[1].width
    block = Image.new("RGB", (width, max(h.height for h in halves)), "white")
    block.paste(halves[0], (0, 0))
    block.paste(halves[1], (halves[0].width + 2 * figures.PAD, 0))
    title = (
      f"{model_name} {scan.layer}:{e.unit}   ({len(scan.mean)} images, "
      f"map {scan.map_size[0]}x{scan.map_size[1]})"
    )
    blocks.append(figures.stack([figures.text_block([title], block.width), block]))
  return figures.stack(blocks)
