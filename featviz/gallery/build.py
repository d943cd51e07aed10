"""Gallery: a static web site of every unit of a sweep, a "Microscope" for any model.

``build(["runs/effnet"], "site")`` turns sweep stores (``featviz._sweep.store``) into plain
HTML files that open from ``file://``: no server, no network, no framework. Layout of the
site folder::

  index.html                      every model (one per sweep) and its layers, with the
                                  ratio summaries when the sweep scored a dataset
  assets/gallery.css, gallery.js  the look, the search box and the keys (gallery_assets)
  assets/units.js                 which units exist, for the search box
  site.json                       what the last run wrote: the memory of incremental runs
  <model>/<layer>/index.html      every unit of the layer; images load lazily
  <model>/<layer>/<unit>.html     one unit: its image, numbers, settings, dataset examples
  <model>/<layer>/<unit>.png      its image: a copy of the store's PNG (never a link)
  <model>/<layer>/examples.json   the layer's dataset examples (with ``dataset=``)
  <model>/<layer>/ex/<unit>-<i>.jpg  the unit's top patches
  <model>/photos/<photo>.jpg      the dataset photos shown as top images
  sweep/                          ``featviz microscope`` only: its sweep store (STORE_DIR),
                                  which the site never writes into (:func:`claim`)

This module is the entry point; the work is in topic modules:

* :mod:`featviz.gallery.read` reads a sweep store (:func:`read_sweep`);
* :mod:`featviz.gallery.pages` makes the HTML pages, every piece of text HTML-escaped;
* :mod:`featviz.gallery.examples` adds dataset examples (top photos and patches), scanning
  a layer's photos again only when something they depend on changed;
* :mod:`featviz.gallery.files` writes atomically and incrementally: re-running on an
  unchanged sweep writes nothing, a grown sweep only its new and changed files;
* :mod:`featviz.gallery.assets` holds the stylesheet and the script.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Callable, Sequence

from featviz import images
from featviz.gallery import assets as gallery_assets
from featviz.gallery.examples import Examples, WeightsMismatchError
from featviz.gallery.files import FORMAT, SITE_MANIFEST, SiteFolderError, Writer
from featviz.gallery.pages import index_html, layer_html, layer_page, unit_html, unit_page, units_js
from featviz.gallery.read import (
  Layer,
  NotASweepError,
  Sweep,
  UnsafeSweepPathError,
  natural_key,
  read_sweep,
  unit_png,
)
from featviz.model import Model

TOP = 8  # dataset examples per unit
# The folder inside a site where ``featviz microscope`` keeps the sweep store it builds the site
# from; no model's folder takes this name (``_slugs``), so the site never writes into the store.
STORE_DIR = "sweep"


@dataclasses.dataclass
class Report:
  """What a :func:`build` did: site-relative paths written and removed, layers scanned."""

  out: pathlib.Path
  written: list[str]
  removed: list[str]
  unchanged: int
  scanned: list[str]
  units: int
  missing: list[str]


def _slugs(sweeps: Sequence[Sweep]) -> None:
  """Folder names: the model's, or model-folder when two sweeps share a model."""
  counts: dict[str, int] = {}
  for s in sweeps:
    counts[s.model] = counts.get(s.model, 0) + 1
  taken: set[str] = {"assets", STORE_DIR}
  for s in sweeps:
    base = images.safe_name(s.model if counts[s.model] == 1 else f"{s.model}-{s.root.name}")
    slug, n = base, 2
    while slug in taken:
      slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    s.slug = slug


def claim(out: str | os.PathLike) -> bool:
  """Makes folder ``out`` a site before anything else is written into it, so that a sweep
  store made inside it next (``out/STORE_DIR``, as ``featviz microscope`` does) is not taken
  for someone else's files by the :func:`build` that follows.

  Returns:
    True when this call claimed a new or empty folder (it wrote an empty ``site.json``),
    False when an earlier build or claim had.

  Raises:
    SiteFolderError: ``out`` holds files but no ``site.json`` (someone else's folder).
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  new = not (out / SITE_MANIFEST).exists()
  Writer(out)  # refuses a foreign folder; claims an empty one
  return new


def unclaim(out: str | os.PathLike) -> None:
  """Undoes a :func:`claim` that nothing followed: removes ``site.json`` when it records no
  files. A site with files recorded is left as it is."""
  record = pathlib.Path(out) / SITE_MANIFEST
  try:
    files = json.loads(record.read_text()).get("files")
  except (OSError, ValueError, AttributeError):
    return
  if files == {}:
    record.unlink()


def build(
  sweeps: str | os.PathLike | Sweep | Sequence[str | os.PathLike | Sweep],
  out: str | os.PathLike,
  *,
  dataset: str | os.PathLike | None = None,
  load_model: Callable[[str], Model] | None = None,
  top: int = TOP,
  link: bool = True,
  log: Callable[[str], None] | None = None,
  progress_bar: bool = True,
) -> Report:
  """Writes (or updates) the static site of ``sweeps`` in folder ``out``.

  Args:
    sweeps: one sweep store folder or several (one model section each), or what
      :func:`read_sweep` made of them.
    out: the site folder: new, empty, or written by an earlier build (it has a
      ``site.json``). Re-running updates it incrementally.
    dataset: a folder of photos: adds each unit's top photos and patches. Without it, the
      examples of an earlier run are kept.
    load_model: ``source -> Model`` for the sweeps' models, called with a manifest's
      ``model_source`` (``"zoo:efficientnet_lite0"``, ``"file:/abs/net.py:build"``; a store
      made before sources were recorded: its model name); needed only when a layer must be
      scanned (the command line loads the zoo model or calls the factory). Its weights must
      be the sweep's.
    top: dataset examples per unit.
    link: ignored: unit PNGs are always copied (a hard link would publish the store
      file itself, with its owner and mode).
    log: called with a line per layer scanned.
    progress_bar: a bar of photos scanned per layer (``dataset_examples.scan_layer``).

  Returns:
    A :class:`Report`; ``written`` is empty when nothing changed.

  Raises:
    NotASweepError: a folder is not a sweep store.
    UnsafeSweepPathError: an index row's PNG is outside its sweep folder or a symlink.
    SiteFolderError: ``out`` holds files the gallery did not write, or its ``site.json``
      names paths outside the site.
    WeightsMismatchError: ``load_model`` gives other weights than the sweep used.
    featviz.photos.EmptyFolderError, UnreadableImageError: a bad ``dataset``.
  """
  paths = [sweeps] if isinstance(sweeps, (str, os.PathLike, Sweep)) else list(sweeps)
  if top < 1:
    raise ValueError(f"top must be a positive number of examples, got {top}")
  read = [p if isinstance(p, Sweep) else read_sweep(p) for p in paths]
  if not read:
    raise ValueError("name at least one sweep folder")
  out = pathlib.Path(out)
  for s in read:
    if out.resolve() == s.root.resolve():
      raise ValueError(f"the site cannot be written into the sweep folder {str(s.root)!r}")
  _slugs(read)
  out.mkdir(parents=True, exist_ok=True)
  del link
  writer = Writer(out)
  writer.data("assets/gallery.css", gallery_assets.CSS)
  writer.data("assets/gallery.js", gallery_assets.JS)
  scanned, units = [], 0
  for sweep in read:
    examples = Examples(
      sweep, writer, pathlib.Path(dataset) if dataset else None, load_model, top, log, progress_bar
    )
    pages = [
      (unit_page(sweep, layer, u), f"{layer.name}:{u}")
      for layer in sweep.layers
      for u in layer.rows
    ]
    position = {page: i for i, (page, _) in enumerate(pages)}
    for layer in sweep.layers:
      if not layer.rows:
        continue
      found = examples.layer(layer)
      writer.data(layer_page(sweep, layer), layer_html(sweep, layer))
      for unit, row in layer.rows.items():
        i = position[unit_page(sweep, layer, unit)]
        png = unit_png(sweep.root, row)
        if png is None:
          raise NotASweepError(
            f"{str(sweep.root)!r}: the PNG of {layer.name}:{unit} ({row['png']}) is gone"
          )
        writer.copy(f"{sweep.slug}/{layer.dir}/{unit:04d}.png", png)
        writer.data(
          pages[i][0],
          unit_html(
            sweep,
            layer,
            unit,
            pages[i - 1] if i else None,
            pages[i + 1] if i + 1 < len(pages) else None,
            found.get(unit),
          ),
        )
        units += 1
    scanned += examples.scanned
  writer.data("assets/units.js", units_js(read))
  writer.data("index.html", index_html(read))
  removed = writer.finish()
  return Report(
    out,
    writer.written,
    removed,
    len(writer.after) - len(writer.written),
    scanned,
    units,
    [f"{s.slug}: {m}" for s in read for m in s.missing],
  )


__all__ = [
  "FORMAT",
  "STORE_DIR",
  "TOP",
  "Layer",
  "NotASweepError",
  "Report",
  "SiteFolderError",
  "Sweep",
  "UnsafeSweepPathError",
  "WeightsMismatchError",
  "build",
  "claim",
  "natural_key",
  "read_sweep",
  "unclaim",
]
