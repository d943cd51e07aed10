"""Activation atlas: many photos' activations laid out in 2-D, each grid cell rendered.

Carter, Armstrong, Schubert, Johnson and Olah, "Activation Atlas", Distill 2019:

1. **Sample.** Run every photo through the network and keep the activation vectors ``(C,)`` of
   a few random spatial positions of a layer (the paper: one random position per image, over a
   million images; with a few hundred photos we keep :data:`PER_IMAGE` each).
2. **Lay out.** Embed the vectors in 2-D. The paper uses UMAP; we use scikit-learn's t-SNE
   (:func:`featviz.analysis.feature_space.tsne`), a maintained library and no new heavy
   dependency (UMAP would bring numba). The
   layout is clipped to its 1st and 99th percentiles and scaled to the unit square (Lucid's
   ``normalize_layout``).
3. **Grid.** Cut the square into ``N x N`` cells; a cell with at least :data:`MIN_POINTS`
   vectors gets their mean as its direction.
4. **Render** every occupied cell's direction, all in one batch of one compiled
   :func:`featviz.render` call (batch = the number of occupied cells). The objective is
   :func:`featviz.objectives.direction` (the mean over positions of ``dot(acts, v)``, times
   ``cos(acts, v) ** cossim_pow``): Lucid's atlas renders ``direction_neuron`` at the centre
   position with ``cossim_pow=4`` on whitened activations; we do not whiten.

**Class activation atlas** (the paper's section "Focusing on a Single Classification"): the
positions are scored by their attribution to one class logit, gradient x activation summed over
channels (``sum_c dy/dA[p, c] A[p, c]``, as the Building Blocks); only the positions with
positive attribution in the top :data:`CLASS_FRACTION` are kept, the layout is made of those,
and each cell's direction is their attribution-weighted mean. (The paper filters by the class's
rank among every class's attribution; this is the simple documented variant.)
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from PIL import Image, ImageDraw

from featviz import objectives
from featviz import progress as progress_lib
from featviz._loop import api as render_api
from featviz._loop.config import RenderConfig
from featviz.analysis import feature_space, figures
from featviz.analysis.layer_grad import logit_grad_at_layer
from featviz.model import Model

PER_IMAGE = 8  # random positions kept per photo (the paper: 1, with a million photos)
MIN_POINTS = 3  # vectors a cell needs before it is rendered
CLASS_FRACTION = 0.2  # class atlas: the top fifth of positions by attribution
COSSIM_POW = 4.0  # Lucid's activation-atlas recipe (render_icons, cossim=True)
RENDER_SIZE = 80  # Lucid's atlas icons are 80 px
# Photos per compiled batch (the last is padded): see feature_space.BATCH.
BATCH = 16
# Lucid's normalize_layout clips the layout to these percentiles before scaling it.
CLIP_PERCENTILES = (1.0, 99.0)


class AtlasError(ValueError):
  """Settings the data cannot satisfy (too few photos or positions, a bad grid)."""


@functools.partial(jax.jit, static_argnums=2)
def _acts(model: Model, images, layer: str):
  return model.activations(images, (layer,))[layer]


@functools.partial(jax.jit, static_argnums=2)
def _acts_and_attribution(model: Model, images, layer: str, classes):
  acts, grads, _ = logit_grad_at_layer(model, images, layer, classes)
  return acts, (acts * grads).sum(axis=-1)


@dataclasses.dataclass
class Samples:
  """Activation vectors at random positions of many photos.

  Attributes:
    vectors: ``(M, C)``.
    photo: ``(M,)`` the index of the photo each came from.
    row, col: ``(M,)`` its position in the layer's ``h x w`` map.
    attribution: ``(M,)`` gradient x activation to the class logit (None: no class).
  """

  vectors: np.ndarray
  photo: np.ndarray
  row: np.ndarray
  col: np.ndarray
  attribution: np.ndarray | None = None


def sample_activations(
  model: Model,
  images: np.ndarray,
  layer: str,
  per_image: int = PER_IMAGE,
  seed: int = 0,
  target: int | None = None,
  batch: int = BATCH,
  progress=None,
) -> Samples:
  """``per_image`` random positions of ``layer`` for each of ``images (N, H, W, C)`` in [0, 1].

  Positions are drawn without replacement per photo from ``numpy.random.default_rng(seed)``;
  a flat layer ``(C,)`` has one position (``per_image`` must be 1).
  With ``target`` (a class index), each position also gets its attribution to that logit.
  ``progress`` is a :func:`featviz.progress.bar` counting photos (None: no bar).
  """
  images = np.asarray(images, np.float32)
  model.check_images(images)
  model.spec.check_layer(layer)
  rng = np.random.default_rng(seed)
  vecs, photo, rows, cols, attrs = [], [], [], [], []
  for start in range(0, len(images), batch):
    part = images[start : start + batch]
    padded = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], part.dtype)])
    if target is None:
      acts, attr = np.asarray(_acts(model, padded, layer)), None
    else:
      classes = np.full((batch,), target, np.int32)
      out = _acts_and_attribution(model, padded, layer, classes)
      acts, attr = (np.asarray(x) for x in out)
    if acts.ndim == 2:  # a flat layer is one position per photo
      acts = acts[:, None, None, :]
      attr = None if attr is None else attr[:, None, None]
    _, h, w, _ = acts.shape
    if not 1 <= per_image <= h * w:
      raise AtlasError(f"per_image must be from 1 to h * w = {h * w} for {layer!r}: {per_image}")
    for i in range(len(part)):
      flat = rng.choice(h * w, per_image, replace=False)
      r, c = np.divmod(flat, w)
      vecs.append(acts[i, r, c])
      photo.append(np.full(per_image, start + i))
      rows.append(r)
      cols.append(c)
      if attr is not None:
        attrs.append(attr[i, r, c])
    progress_lib.advance(progress, start + len(part))
  return Samples(
    np.concatenate(vecs).astype(np.float32),
    np.concatenate(photo),
    np.concatenate(rows),
    np.concatenate(cols),
    np.concatenate(attrs) if attrs else None,
  )


def class_filter(samples: Samples, fraction: float = CLASS_FRACTION) -> np.ndarray:
  """Indices of the samples kept for a class atlas: positive attribution, in the top fraction."""
  if samples.attribution is None:
    raise ValueError("class_filter needs samples with attribution (sample_activations(target=))")
  if not 0.0 < fraction <= 1.0:
    raise AtlasError(f"the class fraction must be in (0, 1]; got {fraction}")
  a = samples.attribution
  order = np.argsort(-a, kind="stable")[: max(1, int(round(fraction * len(a))))]
  return np.sort(order[a[order] > 0])


def normalize_layout(coords: np.ndarray) -> np.ndarray:
  """``(M, 2)`` -> the unit square: clipped to :data:`CLIP_PERCENTILES`, min-max per axis."""
  lo, hi = np.percentile(coords, CLIP_PERCENTILES, axis=0)
  clipped = np.clip(coords, lo, hi)
  span = np.where(hi - lo > 0, hi - lo, 1.0)
  return (clipped - lo) / span


def grid_cells(
  unit: np.ndarray, grid: int, min_points: int = MIN_POINTS
) -> tuple[list[tuple[int, int]], np.ndarray]:
  """Occupied cells of an ``grid x grid`` cut of the unit square.

  Returns ``(cells, cell_of)``: ``cells`` lists ``(row, col)`` of each cell with at least
  ``min_points`` points, row 0 at the top (largest y), in row-major order; ``cell_of (M,)``
  gives each point's index into ``cells``, or -1 when its cell has too few points.
  """
  if grid < 1:
    raise AtlasError(f"the grid must be at least 1 x 1; got {grid}")
  col = np.minimum((unit[:, 0] * grid).astype(int), grid - 1)
  row = grid - 1 - np.minimum((unit[:, 1] * grid).astype(int), grid - 1)
  key = row * grid + col
  counts = np.bincount(key, minlength=grid * grid)
  occupied = np.flatnonzero(counts >= min_points)
  index = np.full(grid * grid, -1)
  index[occupied] = np.arange(len(occupied))
  return [(int(k // grid), int(k % grid)) for k in occupied], index[key]


def cell_directions(
  vectors: np.ndarray, cell_of: np.ndarray, cells: int, weights: np.ndarray | None = None
) -> np.ndarray:
  """``(cells, C)``: the (``weights``-weighted) mean vector of each cell's points."""
  w = np.ones(len(vectors)) if weights is None else np.asarray(weights, np.float64)
  out = np.zeros((cells, vectors.shape[1]))
  total = np.zeros(cells)
  inside = cell_of >= 0
  np.add.at(out, cell_of[inside], w[inside, None] * vectors[inside])
  np.add.at(total, cell_of[inside], w[inside])
  return (out / np.where(total > 0, total, 1.0)[:, None]).astype(np.float32)


@dataclasses.dataclass
class Atlas:
  """What :func:`atlas` returns.

  Attributes:
    layer, grid: the layer and the grid side ``N``.
    samples: the sampled vectors (all of them; ``kept`` says which made the layout).
    kept: ``(M,)`` indices into ``samples`` of the points laid out.
    coords: ``(M, 2)`` their layout in the unit square.
    cells: ``(row, col)`` of each rendered cell, row 0 at the top.
    cell_of: ``(M,)`` each laid-out point's cell index, -1 for none.
    directions: ``(B, C)`` each cell's direction.
    renders: ``(B, S, S, 3)``, one per cell, in [0, 1].
    target: the class of a class atlas, else None.
    seconds: render time, compile included.
  """

  layer: str
  grid: int
  samples: Samples
  kept: np.ndarray
  coords: np.ndarray
  cells: list[tuple[int, int]]
  cell_of: np.ndarray
  directions: np.ndarray
  renders: np.ndarray
  target: int | None
  seconds: float

  def counts(self) -> np.ndarray:
    """``(B,)`` points in each rendered cell."""
    return np.bincount(self.cell_of[self.cell_of >= 0], minlength=len(self.cells))

  def photos_of(self, cell: int) -> np.ndarray:
    """The distinct photo indices whose points fell in ``cell``."""
    return np.unique(self.samples.photo[self.kept][self.cell_of == cell])


def atlas(
  model: Model,
  images: np.ndarray,
  layer: str,
  grid: int = 8,
  config: RenderConfig | None = None,
  *,
  per_image: int = PER_IMAGE,
  min_points: int = MIN_POINTS,
  target: int | None = None,
  class_fraction: float = CLASS_FRACTION,
  cossim_pow: float = COSSIM_POW,
  seed: int = 0,
  progress_bar: bool = False,
  **overrides,
) -> Atlas:
  """An ``grid x grid`` activation atlas of ``images (N, H, W, C)`` at ``layer``.

  Args:
    model: the network.
    images: photos in [0, 1] (``featviz.photos.load_folder``).
    layer: a spatial layer.
    grid: cells per side.
    config: the render settings (None: Lucid's, at :data:`RENDER_SIZE` px).
    per_image: random positions per photo.
    min_points: points a cell needs to be rendered.
    target: a class index for a class activation atlas (module docstring), else None.
    class_fraction: with ``target``, the fraction of positions kept.
    cossim_pow: the direction objective's cosine power.
    seed: draws the positions, seeds the layout and the render.
    progress_bar: show the render's progress bar.
    **overrides: fields of :class:`featviz.RenderConfig` (``steps=``, ``size=``, ...).

  Every occupied cell is one image of a single compiled render.
  """
  if target is not None:
    model.spec.label_index(int(target))
  with progress_lib.bar(len(images), "activations", "photo", enabled=progress_bar) as pbar:
    samples = sample_activations(model, images, layer, per_image, seed, target, progress=pbar)
  kept = np.arange(len(samples.vectors))
  weights = None
  if target is not None:
    kept = class_filter(samples, class_fraction)
    weights = samples.attribution[kept]
  if len(kept) < max(4, min_points):
    raise AtlasError(
      f"only {len(kept)} positions to lay out; give more photos, --per-image or --class-fraction"
    )
  try:
    laid = feature_space.tsne(samples.vectors[kept], seed=seed).embedding
  except ValueError as e:
    raise AtlasError(str(e)) from None
  coords = normalize_layout(laid)
  cells, cell_of = grid_cells(coords, grid, min_points)
  if not cells:
    raise AtlasError(
      f"no cell of the {grid} x {grid} grid has {min_points} points; use a smaller grid"
    )
  directions = cell_directions(samples.vectors[kept], cell_of, len(cells), weights)
  if config is None:
    config = RenderConfig(size=RENDER_SIZE)
  result = render_api.render(
    model,
    objectives.direction(layer, directions, cossim_pow),
    config,
    seed=seed,
    progress_bar=progress_bar,
    **overrides,
  )
  return Atlas(
    layer,
    grid,
    samples,
    kept,
    coords,
    cells,
    cell_of,
    directions,
    np.asarray(result.images),
    target,
    result.compile_seconds + result.run_seconds,
  )


def figure(result: Atlas, title: str, lines: tuple[str, ...] = ()) -> Image.Image:
  """The grid of renders, each at its cell (empty cells left white), under a heading."""
  side = result.renders.shape[1]
  gap = 2
  n = result.grid
  canvas = Image.new("RGB", (n * (side + gap) + gap, n * (side + gap) + gap), "white")
  draw = ImageDraw.Draw(canvas)
  for (row, col), image in zip(result.cells, result.renders):
    pil = Image.fromarray(np.clip(np.rint(figures.to_rgb(image) * 255), 0, 255).astype(np.uint8))
    x, y = gap + col * (side + gap), gap + row * (side + gap)
    canvas.paste(pil, (x, y))
  for k in range(n + 1):  # faint lines mark the grid, so empty cells read as empty
    at = k * (side + gap)
    draw.line((0, at, canvas.width, at), fill=(235, 235, 235))
    draw.line((at, 0, at, canvas.height), fill=(235, 235, 235))
  counts = result.counts()
  heading = figures.text_block(
    [
      f"{len(result.kept)} activation vectors of {result.layer}, t-SNE layout, {n} x {n} grid: "
      f"{len(result.cells)} cells rendered (at least {int(counts.min())} and at most "
      f"{int(counts.max())} vectors each), all in one compiled render",
      *lines,
    ],
    canvas.width,
    title=title,
  )
  return figures.stack([heading, canvas])
