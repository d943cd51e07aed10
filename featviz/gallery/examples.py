"""Dataset examples for the gallery: each unit's top photos and top patches, as site files.

Dataset examples (Zeiler and Fergus 2014; the "dataset examples" column of Olah et al.,
"Feature Visualization", Distill 2017) come from :mod:`featviz.analysis.dataset_examples`:
one pass of the photos per layer gives every unit's top images (by channel mean) and top
patches (by largest activation, cropped to the exact receptive field). :class:`Examples`
writes them into the site as JPEG files plus one ``examples.json`` per layer::

  <model>/<layer>/examples.json      the layer's examples, and the key they were made for
  <model>/<layer>/ex/<unit>-<i>.jpg  the unit's top patches (PATCH_PX square)
  <model>/photos/<photo>.jpg         the dataset photos shown as top images

A layer is scanned again only when its units, the dataset (names and sizes of its files),
the weights or ``top`` change; otherwise ``examples.json`` is reused, and a run without a
dataset keeps the examples an earlier run computed.
"""

from __future__ import annotations

import hashlib
import io
import json
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from PIL import Image

from featviz import images
from featviz._sweep import quality as sweep_quality
from featviz._sweep import store as store_lib
from featviz.gallery.files import Writer
from featviz.gallery.read import Layer, Sweep
from featviz.model import Model

EXAMPLES_FORMAT = 1  # bump when the examples' computation or files change
PATCH_PX = 128  # side of a patch file; fields smaller than this are upscaled (nearest)
JPEG_QUALITY = 85


class WeightsMismatchError(ValueError):
  """The model given for dataset examples has other weights than the sweep's."""


def _jpeg(image: np.ndarray, side: int | None = None) -> bytes:
  """A float image ``(H, W, C)`` in [0, 1] as JPEG bytes, resized to ``side`` if given."""
  pil = Image.fromarray(images.to_uint8(image)).convert("RGB")
  if side is not None and pil.size != (side, side):
    pil = pil.resize((side, side), Image.BICUBIC if pil.width > side else Image.NEAREST)
  buf = io.BytesIO()
  pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
  return buf.getvalue()


class Examples:
  """Dataset examples of one sweep's layers: reused from the site, or scanned anew.

  ``dataset`` None: no scan, only what an earlier run wrote is kept. ``load_model`` is
  called once, at the first layer that must be scanned; ``scanned`` lists those layers.
  """

  def __init__(
    self,
    sweep: Sweep,
    writer: Writer,
    dataset: pathlib.Path | None,
    load_model: Callable[[str], Model] | None,
    top: int,
    log: Callable[[str], None] | None = None,
    progress_bar: bool = True,
  ):
    self.sweep, self.writer, self.dataset, self.top = sweep, writer, dataset, top
    self.load_model, self.log, self.progress_bar = load_model, log, progress_bar
    self.key = None
    if dataset is not None:
      from featviz import photos

      files = photos.image_files(dataset)
      if not files:
        raise photos.EmptyFolderError(
          f"no photos in {str(dataset)!r} (looked for files "
          f"ending in {', '.join(photos.EXTENSIONS)})"
        )
      self.key = hashlib.sha256(
        json.dumps(
          [
            EXAMPLES_FORMAT,
            sweep.manifest.get("weights_sha256"),
            top,
            sweep_quality.fingerprint(files),
          ]
        ).encode()
      ).hexdigest()
    self._model: Model | None = None
    self._photos: np.ndarray | None = None
    self._names: list[str] = []
    self._files: dict[int, str] = {}
    self.scanned: list[str] = []

  def _keep_all(self, rel: str, stored: Mapping[str, Any]) -> bool:
    files = [rel] + [x["src"] for e in stored["units"].values() for x in e["images"] + e["patches"]]
    # A list, not a generator: keep every file that is there, not only those up to a gone one.
    return all([self.writer.keep(f) for f in files])  # noqa: C419

  def layer(self, layer: Layer) -> dict[int, dict[str, Any]]:
    """``{unit: {"images": [...], "patches": [...], "field": [h, w]}}`` of the layer."""
    rel = f"{self.sweep.slug}/{layer.dir}/examples.json"
    stored = self.writer.previous(rel)
    if stored is not None and stored.get("format") != EXAMPLES_FORMAT:
      stored = None
    if self.key is None:  # no dataset this run: keep what an earlier run found
      if stored is not None and self._keep_all(rel, stored):
        return {int(u): e for u, e in stored["units"].items()}
      return {}
    if (
      stored is not None
      and stored.get("key") == self.key
      and all(str(u) in stored["units"] for u in layer.rows)
      and self._keep_all(rel, stored)
    ):
      return {int(u): e for u, e in stored["units"].items()}
    found = self._scan(layer)
    self.writer.data(
      rel,
      json.dumps(
        {
          "format": EXAMPLES_FORMAT,
          "key": self.key,
          "layer": layer.name,
          "dataset": str(self.dataset),
          "units": {str(u): e for u, e in found.items()},
        },
        indent=1,
        sort_keys=True,
      )
      + "\n",
    )
    return found

  def _load(self) -> Model:
    if self._model is None:
      from featviz import photos

      if self.load_model is None:
        raise ValueError(
          "dataset examples need load_model, a function from the sweep's "
          "model name to its featviz.model.Model"
        )
      # The manifest's model_source (zoo:NAME, file:PATH:FUNCTION, ...); older stores: the name.
      model = self.load_model(self.sweep.manifest.get("model_source") or self.sweep.model)
      digest, _ = store_lib.weights_sha256(model)
      wanted = self.sweep.manifest.get("weights_sha256")
      if digest != wanted:
        raise WeightsMismatchError(
          f"the sweep in {str(self.sweep.root)!r} was rendered with weights {wanted}, but "
          f"the {self.sweep.model} model loaded for its dataset examples has {digest}; "
          "load the weights the sweep used (on the command line: --weights FILE)"
        )
      self._photos, paths = photos.load_folder(
        self.dataset, model.spec.image_size, model.spec.channels
      )
      self._names = [p.stem for p in paths]
      self._files = {}  # photo -> its thumbnail's name; safe_name may map two stems to one
      for i, name in enumerate(self._names):
        base, n = images.safe_name(name), 2
        stem = base
        while stem in self._files.values():
          stem, n = f"{base}-{n}", n + 1
        self._files[i] = stem
      self._model = model
    return self._model

  def _photo(self, i: int) -> str:
    rel = f"{self.sweep.slug}/photos/{self._files[i]}.jpg"
    self.writer.data(rel, _jpeg(self._photos[i]))
    return rel

  def _scan(self, layer: Layer) -> dict[int, dict[str, Any]]:
    from featviz.analysis import dataset_examples as dx

    model = self._load()
    if self.log:
      self.log(
        f"{self.sweep.model} {layer.name}: scanning {len(self._photos)} photos for the "
        f"top {self.top} examples of {len(layer.rows)} units"
      )
    scan = dx.scan_layer(model, self._photos, layer.name, progress_bar=self.progress_bar)
    found = dx.unit_examples(model, scan, sorted(layer.rows), min(self.top, len(self._photos)))
    self.scanned.append(f"{self.sweep.slug}/{layer.dir}")
    out = {}
    for e in found:
      sizes = e.boxes[:, 2:] - e.boxes[:, :2]
      full = tuple(int(v) for v in sizes.max(axis=0))
      tops = [
        {"src": self._photo(int(i)), "name": self._names[i], "mean": float(v)}
        for i, v in zip(e.images, e.image_values)
      ]
      patches = []
      for j, (i, v, box, at) in enumerate(zip(e.patches, e.patch_values, e.boxes, e.patch_at)):
        rel = f"{self.sweep.slug}/{layer.dir}/ex/{e.unit:04d}-{j}.jpg"
        self.writer.data(rel, _jpeg(dx.crop_patch(self._photos[i], box, full), PATCH_PX))
        patches.append(
          {
            "src": rel,
            "name": self._names[i],
            "max": float(v),
            "at": [int(x) for x in at],
            "box": [int(x) for x in box],
          }
        )
      out[e.unit] = {"images": tops, "patches": patches, "field": list(full)}
    return out
