"""Every parameterization against Fourier on the same units: own-unit wins, photo ratio, ms/step.

    python -m benchmarks.params_compare [--steps 256] [--size 128] [--figure PATH]

The same 8 units (EfficientNet-Lite0 ``block10`` channels 0-7, the real weights of the pip
package) rendered as one batch of 8 under each parameterization, seed 0, Lucid's settings
(``featviz.RenderConfig()``) except what a parameterization's own recipe sets:

* ``fourier``, ``pixel``, ``lowres``, ``laplacian``: Lucid's settings as they are;
* ``cppn``: Adam at 0.005, the learning rate of Lucid's CPPN notebook (and a row at Lucid's
  default 0.05);
* ``maco``: ``RenderConfig.maco()`` (MACO's crops and noise, no redirected ReLU);
* ``fourier+alpha``: ``alpha=True`` (Lucid's transparency recipe); scored composited on grey 0.5.

Figures per parameterization, each image scored as it is (no transforms, at the render size):

* ``wins_by_unit``: units ``i`` whose own image excites it most of the 8 images;
* ``wins_by_image``: images ``i`` whose strongest of the 8 units is unit ``i`` (raw channel
  means: a harder test, since units differ in scale);
* ``ratio``: each unit's value on its image over its best value on the 264 photos of
  ``shared/images/imagenet-sample`` (``featviz._sweep.quality``), median and min over the 8;
* ``ms/step``: the render's run time over its steps (compile excluded), batch 8.

Writes one RESULTS.md row per parameterization and the figure: rows parameterizations,
columns units, each caption the unit's photo ratio.
"""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np

import featviz
from benchmarks import common
from featviz import images as images_lib
from featviz import objectives as O
from featviz._sweep import quality

LAYER = "block10"
UNITS = list(range(8))
# Lucid's CPPN notebook (differentiable-parameterizations, xy2rgb): Adam at 0.005.
CPPN_LEARNING_RATE = 0.005


def configs(steps: int, size: int) -> dict[str, featviz.RenderConfig]:
  base = featviz.RenderConfig(steps=steps, size=size)
  return {
    "fourier": base,
    "pixel": base.replace(param="pixel"),
    "lowres": base.replace(param="lowres"),
    "laplacian": base.replace(param="laplacian"),
    "cppn": base.replace(param="cppn", learning_rate=CPPN_LEARNING_RATE),
    "cppn lr 0.05": base.replace(param="cppn"),
    "maco": featviz.RenderConfig.maco(steps=steps, size=size),
    "fourier+alpha": base.replace(alpha=True),
  }


def opaque(images: np.ndarray) -> np.ndarray:
  """RGBA images composited on grey 0.5 (what is scored); RGB unchanged."""
  if images.shape[-1] != 4:
    return images
  alpha = images[..., 3:]
  return images[..., :3] * alpha + 0.5 * (1 - alpha)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=256)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--only", nargs="*", default=None, help="parameterizations to run")
  parser.add_argument("--figure", default=str(common.REPO / "docs" / "params_block10.png"))
  parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
  args = parser.parse_args()
  env = common.environment()
  model = featviz.zoo.load("efficientnet_lite0")
  photos_dir = pathlib.Path(os.environ.get("FEATVIZ_SHARED", "/work/shared")) / "images"
  best, _ = quality.dataset_best(model, [LAYER], photos_dir / "imagenet-sample", args.size)[LAYER]
  objective = O.channel(LAYER, np.asarray(UNITS))
  rows, tiles, captions, maco = [], [], [], None
  table = configs(args.steps, args.size)
  for name, config in table.items():
    if args.only and name not in args.only:
      continue
    result = featviz.render(model, objective, config, seed=0, progress_bar=False)
    scored = opaque(result.images)
    means = quality.channel_means(model, [LAYER], scored)[LAYER][:, UNITS]  # (image, unit)
    own = np.diag(means)
    ratios = [quality.ratio(float(v), float(best[u])) for u, v in zip(UNITS, own)]
    defined = [r for r in ratios if r is not None]
    figures = {
      "wins_by_unit": f"{int(np.sum(means.argmax(axis=0) == np.arange(8)))}/8",
      "wins_by_image": f"{int(np.sum(means.argmax(axis=1) == np.arange(8)))}/8",
      "ratio median": float(np.median(defined)) if defined else float("nan"),
      "ratio min": float(np.min(defined)) if defined else float("nan"),
      "ms/step": 1000 * result.run_seconds / config.steps,
      "compile_s": result.compile_seconds,
    }
    settings = {
      "model": "efficientnet_lite0",
      "units": f"{LAYER}:0-7",
      "batch": 8,
      "param": name,
      "steps": config.steps,
      "size": config.size,
      "lr": config.learning_rate,
      "transforms": config.transforms,
      "redirected steps": config.redirect_relu_steps,
      "photos": "imagenet-sample (264)",
    }
    print(name, figures, flush=True)
    rows.append(common.format_row(env, "params_compare", settings, figures))
    tiles.extend(result.images)
    captions.extend(
      f"{name} {u} ({r:.2f})" if r is not None else f"{name} {u}" for u, r in zip(UNITS, ratios)
    )
    if result.transparency is not None:
      maco = result
  if not args.no_record:
    common.append_rows(rows)
  figure = pathlib.Path(args.figure)
  figure.parent.mkdir(parents=True, exist_ok=True)
  title = (
    f"efficientnet_lite0 {LAYER}:0-7, one batch of 8 per row, {args.steps} steps, "
    f"{args.size} px, seed 0"
  )
  note = "(n): the unit's value on its image over its best of 264 ImageNet photos"
  grid = images_lib.grid(tiles, captions, cols=8, title=title, note=note)
  images_lib.save_png(grid, figure)
  print(f"wrote {figure}")
  if maco is not None:
    overlays = [
      images_lib.overlay_transparency(x, t) for x, t in zip(maco.images, maco.transparency)
    ]
    maps = [
      np.repeat(images_lib.normalized_transparency(t)[..., None], 3, -1) for t in maco.transparency
    ]
    path = figure.with_name(figure.stem.replace("block10", "maco_transparency") + figure.suffix)
    labels = [f"image {u}" for u in UNITS] + [f"transparency {u}" for u in UNITS]
    labels += [f"overlay {u}" for u in UNITS]
    grid = images_lib.grid(
      list(maco.images) + maps + overlays,
      labels,
      cols=8,
      title=f"MACO, efficientnet_lite0 {LAYER}:0-7: image, transparency map, image faded by it",
      note="transparency: accumulated |d objective / d image| (Fel et al. 2023); 99th pct = 1",
    )
    images_lib.save_png(grid, path)
    print(f"wrote {path}")


if __name__ == "__main__":
  main()
