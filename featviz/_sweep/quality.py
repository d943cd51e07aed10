"""How good is a rendered unit? Its activation against the best a real photo gives.

For each unit, the *dataset max* is the highest value of the unit's objective
(``objectives.channel``: the channel's mean over positions) over a folder of
photos, and the *ratio* is rendered / dataset max. A ratio above 1 means the
visualization excites the unit more than any photo did: the usual outcome of a
working render (Olah et al., "Feature Visualization", Distill 2017, show
optimized images beating dataset examples).

Both sides are scored the same way: on the image as it is (no random
transforms), at the same size, by the same jitted function. Photos are resized
so that their shorter side is the render size, then centre-cropped to a square
(:func:`featviz.photos.load_image`, the same crop every technique uses); a render
at 96 px is compared with photos at 96 px, not at the network's nominal 224, since a channel's
response depends on the scale of what it sees.

The ratio is left out (``None``) where the dataset max is not positive: layers
without a ReLU at their end (EfficientNet's linear bottlenecks) can have a
negative best mean, and a ratio of two negatives reads backwards.
"""

from __future__ import annotations

import functools
import hashlib
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from featviz import photos
from featviz import progress as progress_lib
from featviz.model import Model, as_map

# Images per call of the scorer: a fixed batch (the last one padded) so that it compiles once;
# 32 keeps a 224 px EfficientNet batch's activations well under 1 GB. A sweep that stops units
# early scans its photos at its slots' batch instead (featviz._sweep.run: one program for the
# scan and the checks).
SCORE_BATCH = 32


def dataset_files(folder: str | pathlib.Path) -> list[pathlib.Path]:
  """The photo files of ``folder`` (not recursive), sorted by name; raises if there are none."""
  if not pathlib.Path(folder).is_dir():
    raise photos.UnreadableImageError(f"dataset folder {str(folder)!r} does not exist")
  files = photos.image_files(folder)
  if not files:
    raise photos.EmptyFolderError(
      f"dataset folder {str(folder)!r} has no images ({', '.join(photos.EXTENSIONS)})"
    )
  return files


def fingerprint(files: Sequence[pathlib.Path]) -> str:
  """A hash of the photos' names and sizes: a resumed sweep must score the same dataset."""
  h = hashlib.sha256()
  for f in files:
    h.update(f"{f.name}|{f.stat().st_size}\n".encode())
  return h.hexdigest()


GREY = 0.5  # the background RGBA renders are scored on (channel_means)


@functools.partial(jax.jit, static_argnums=2)
def _channel_means(model: Model, images, layers: tuple[str, ...]):
  """``{layer: (B, C)}``: every channel's mean over positions, as ``objectives.Channel``.

  The input path is the render's, :meth:`Model.activations` (a fixed-size network's
  resize, value range, normalisation), without transforms, with plain ReLUs and the CPU
  rewrites where the backend is a CPU (``model.default_ops``): measured on EfficientNet-Lite0
  ``block10``, 32 photos at 128 px, 2-core CPU: 0.29 s against 1.79 s with XLA's grouped
  convolutions, the same means to float32 rounding.
  """
  acts = model.activations(images, layers)
  out = {}
  for layer in layers:
    a = acts[layer]
    out[layer] = as_map(a).mean(axis=(1, 2))  # maps, tokens (B, T, C) and vectors alike
  return out


def channel_means(
  model: Model,
  layers: Sequence[str],
  images: Any,
  sharding: jax.sharding.Sharding | None = None,
  batch: int = SCORE_BATCH,
  progress=None,
) -> dict[str, np.ndarray]:
  """Every channel's objective value on ``images (N, H, W, C)``: ``{layer: (N, C)}``.

  Runs in batches of ``batch`` (the last padded), one compile per image shape
  and layer set. ``sharding`` (``render.batch_sharding(mesh)``) splits each batch
  over devices; ``batch`` must then be a multiple of the device count. RGBA renders
  (``RenderConfig(alpha=True)``) are scored composited on grey 0.5, as
  ``benchmarks/params_compare.py`` scores them: a fixed background, not the loop's random one.
  ``progress``: a :func:`featviz.progress.bar` counting images (None: no bar).
  """
  layers = model.layers_in_order(layers)
  images = np.asarray(images, np.float32)
  if images.shape[-1] == model.spec.channels + 1:
    alpha = images[..., -1:]
    images = images[..., :-1] * alpha + GREY * (1.0 - alpha)
  n = images.shape[0]
  parts: dict[str, list[np.ndarray]] = {layer: [] for layer in layers}
  for start in range(0, n, batch):
    x = images[start : start + batch]
    real = x.shape[0]
    if real < batch:  # pad by repeating the last image; its scores are dropped
      x = np.concatenate([x, np.repeat(x[-1:], batch - real, axis=0)])
    if sharding is not None:
      x = jax.device_put(x, sharding)
    means = _channel_means(model, x, layers)
    for layer, m in jax.device_get(means).items():
      parts[layer].append(np.asarray(m)[:real])
    progress_lib.advance(progress, start + real)
  return {layer: np.concatenate(p) for layer, p in parts.items()}


def load_dataset(
  folder: str | pathlib.Path, size: int, channels: int
) -> tuple[list[pathlib.Path], np.ndarray]:
  """The folder's photos and their ``(N, size, size, channels)`` images, as the scores see
  them; raises (naming the file) for a photo that does not decode."""
  files = dataset_files(folder)
  return files, photos.load_files(files, size, channels)


def dataset_best(
  model: Model,
  layers: Sequence[str],
  folder: str | pathlib.Path,
  size: int,
  sharding: jax.sharding.Sharding | None = None,
  batch: int = SCORE_BATCH,
  loaded: tuple[list[pathlib.Path], np.ndarray] | None = None,
  progress_bar: bool = False,
) -> dict[str, tuple[np.ndarray, list[str]]]:
  """Per layer, each channel's highest mean over the photos, and the photo that gave it.

  ``loaded``: what :func:`load_dataset` returned for ``folder`` (a sweep reads the photos
  before it writes anything, so that a photo that does not decode leaves no store behind).
  ``progress_bar``: a bar of photos scored / N and photos/s on stderr (off by default: the
  sweep passes its own ``progress_bar``).

  Returns:
    ``{layer: (max (C,), file name of the argmax for each channel)}``.
  """
  files, images = loaded if loaded is not None else load_dataset(folder, size, model.spec.channels)
  desc = f"dataset scores {model.spec.name}"
  with progress_lib.bar(len(images), desc, "photo", enabled=progress_bar) as pbar:
    means = channel_means(model, layers, images, sharding, batch, progress=pbar)
  out = {}
  for layer, m in means.items():
    best = m.argmax(axis=0)
    out[layer] = (m.max(axis=0), [files[i].name for i in best])
  return out


def ratio(rendered: float, dataset_max: float) -> float | None:
  """rendered / dataset max, or None when the dataset max is not positive."""
  return float(rendered / dataset_max) if dataset_max > 0 else None


def ratio_stats(ratios: Sequence[float | None]) -> dict[str, Any]:
  """min, median, max and the fraction above 1 of the defined ratios; counts of all."""
  defined = np.asarray([r for r in ratios if r is not None], np.float64)
  stats: dict[str, Any] = {"units": len(ratios), "with_ratio": int(defined.size)}
  if defined.size:
    stats.update(
      min=float(defined.min()),
      median=float(np.median(defined)),
      max=float(defined.max()),
      above_1=float(np.mean(defined > 1.0)),
    )
  return stats
