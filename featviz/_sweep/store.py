"""The on-disk store of a sweep: a folder that a crash never leaves inconsistent.

Layout of ``DIR``::

  manifest.json                  what made the store (model, weights, settings)
  <layer>/<unit:04d>.png         one image per unit
  _index/<layer>/<chunk:05d>.json  the rows of one chunk: the truth about what is done
  <layer>_atlas.png              every rendered unit of the layer, labelled
  summary.json                   per-layer statistics (featviz.sweep)

**A chunk is committed in two atomic steps**: its PNGs (each written to a
temporary file and renamed, ``images.save_png``), then its index file (the same
way). A unit is done exactly when its row is in an index file, so a process
killed at any instant leaves either a chunk with rows and PNGs, or PNGs without
rows (rendered again on resume, and overwritten), never a row without its PNG.

**Processes never write the same file.** An index file belongs to one chunk and
a chunk to one process (``featviz._sweep.partition.for_process``), so processes of
one sweep share ``DIR`` without locks; readers merge every index file.
Re-rendering part of a chunk (a resumed or widened sweep) rewrites that chunk's
index file with the old rows and the new ones.

The ``_index`` name cannot clash with a layer folder: layer folder names go
through ``images.safe_name``, which strips leading underscores.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import pathlib
from typing import Any, Iterable, Mapping

import jax
import numpy as np
from PIL import Image

from featviz import images

FORMAT = 1  # bump when the layout changes; part of the settings compared on resume
INDEX = "_index"
MANIFEST = "manifest.json"
SUMMARY = "summary.json"

# Manifest fields that must match for a store to be resumed (the rest is record only).
COMPARED = ("format", "model", "weights_sha256", "featviz_version", "settings", "dataset")


class SettingsMismatchError(ValueError):
  """The store was made with other settings; the message lists what differs."""


def weights_sha256(model) -> tuple[str, str]:
  """``(sha256, what it hashes)``: the weight file's from ``model.metadata``, else the arrays'.

  Zoo models carry their file's sha256 (``featviz.zoo``). A model built in code
  (tests) has none; its weights are hashed leaf by leaf, path, dtype, shape and
  bytes, in ``jax.tree`` order.
  """
  digest = dict(model.metadata).get("sha256")
  if digest:
    return str(digest), "weight file"
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(model.weights)[0]:
    arr = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}|".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
  return h.hexdigest(), "weight arrays"


def _json_bytes(obj: Any) -> bytes:
  return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def write_json(path: pathlib.Path, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (``images.atomic_write``)."""
  with images.atomic_write(path) as f:
    f.write(_json_bytes(obj))


def differences(stored: Mapping[str, Any], wanted: Mapping[str, Any],
                prefix: str = "") -> list[str]:
  """Lines ``"key: store has X, this run asks Y"`` for every compared field that differs."""
  out = []
  for key in sorted(set(stored) | set(wanted)):
    a, b = stored.get(key), wanted.get(key)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
      out.extend(differences(a, b, f"{prefix}{key}."))
    elif a != b:
      out.append(f"{prefix}{key}: store has {json.dumps(a)}, this run asks {json.dumps(b)}")
  return out


class Store:
  """A sweep folder: manifest, PNGs, per-chunk index files, atlases."""

  def __init__(self, root: str | os.PathLike):
    self.root = pathlib.Path(root)

  # ----- manifest
  def open(self, manifest: Mapping[str, Any], *, writer: bool = True) -> dict[str, Any]:
    """Creates the store, or checks that ``manifest`` matches the one it has.

    Args:
      manifest: this run's manifest; the :data:`COMPARED` fields must match.
      writer: this process records its layers in the manifest (process 0 does;
        the others only check, so they never race on the file).

    Returns:
      The manifest now on disk.

    Raises:
      SettingsMismatchError: listing every field that differs.
    """
    self.root.mkdir(parents=True, exist_ok=True)
    (self.root / INDEX).mkdir(exist_ok=True)
    path = self.root / MANIFEST
    if not path.exists():
      with contextlib.suppress(FileExistsError):  # another process made it first: check it
        tmp = self.root / f".{MANIFEST}.{os.getpid()}.new"
        tmp.write_bytes(_json_bytes(dict(manifest)))
        try:
          os.link(tmp, path)  # fails if it exists: first writer wins, atomically
        finally:
          tmp.unlink()
    stored = json.loads(path.read_text())
    diff = differences({k: stored.get(k) for k in COMPARED},
                       {k: manifest.get(k) for k in COMPARED})
    if diff:
      raise SettingsMismatchError(
          f"{self.root} holds a sweep made with other settings:\n  " + "\n  ".join(diff) +
          "\nuse another --out folder, or repeat the store's settings to resume it")
    layers = {**stored.get("layers", {}), **manifest.get("layers", {})}
    if writer and layers != stored.get("layers"):
      stored["layers"] = layers
      write_json(path, stored)
    return stored

  # ----- paths
  def layer_dir(self, layer: str) -> pathlib.Path:
    return self.root / images.safe_name(layer)

  def png(self, layer: str, unit: int) -> pathlib.Path:
    return self.layer_dir(layer) / f"{unit:04d}.png"

  def atlas(self, layer: str) -> pathlib.Path:
    return self.root / f"{images.safe_name(layer)}_atlas.png"

  def _index_file(self, layer: str, chunk: int) -> pathlib.Path:
    return self.root / INDEX / images.safe_name(layer) / f"{chunk:05d}.json"

  # ----- index
  def rows(self, layers: Iterable[str] | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Every committed row, ``{(layer, unit): row}``, merged over all index files."""
    folders = ([self.root / INDEX / images.safe_name(x) for x in layers] if layers is not None
               else sorted(p for p in (self.root / INDEX).glob("*") if p.is_dir()))
    out = {}
    for folder in folders:
      for file in sorted(folder.glob("*.json")):
        for row in json.loads(file.read_text())["rows"]:
          out[(row["layer"], int(row["unit"]))] = row
    return out

  def commit(self, layer: str, chunk: int, pictures: Mapping[int, np.ndarray],
             rows: Iterable[dict[str, Any]]) -> None:
    """Writes the chunk's PNGs, then its index file (old rows plus ``rows``), atomically."""
    self.layer_dir(layer).mkdir(exist_ok=True)
    for unit, picture in pictures.items():
      images.save_png(picture, self.png(layer, unit))
    file = self._index_file(layer, chunk)
    file.parent.mkdir(parents=True, exist_ok=True)
    merged = {}
    if file.exists():
      merged = {int(r["unit"]): r for r in json.loads(file.read_text())["rows"]}
    merged.update({int(r["unit"]): r for r in rows})
    write_json(file, {"layer": layer, "chunk": chunk,
                      "rows": [merged[u] for u in sorted(merged)]})

  # ----- atlas
  def write_atlas(self, layer: str, rows: Iterable[dict[str, Any]], size: int) -> pathlib.Path:
    """A labelled grid of the layer's rendered units (from their PNGs), ``<layer>_atlas.png``.

    Captions are ``unit`` or, with dataset scores, ``unit ratio``. Tiles under
    96 px are upscaled to about 96 px (nearest) so captions stay readable.
    """
    rows = sorted(rows, key=lambda r: int(r["unit"]))
    pictures = [np.asarray(Image.open(self.root / r["png"]), np.float32) / 255.0 for r in rows]
    captions = [f"{r['unit']}" + (f" {r['ratio']:.2f}" if r.get("ratio") is not None else "")
                for r in rows]
    title = f"{layer}: {len(rows)} units"
    grid = images.grid(pictures, captions, scale=max(1, 96 // size), title=title)
    return images.save_png(grid, self.atlas(layer))

  def remove_temporaries(self) -> int:
    """Deletes files a killed writer left half-written (``images.atomic_write``'s ``.*.tmp``).

    Call it only when no other process writes the store: a live writer's
    temporary file would vanish under it. Returns how many were removed.
    """
    stale = [p for p in self.root.rglob(".*.tmp") if p.is_file()]
    for p in stale:
      with contextlib.suppress(FileNotFoundError):
        p.unlink()
    return len(stale)

  # ----- consistency
  def check(self) -> list[str]:
    """Problems with the store: rows without a decodable PNG, PNGs without a row.

    An empty list means consistent. PNGs without rows appear after a crash
    between the two commit steps and vanish when the sweep resumes.
    """
    problems = []
    rows = self.rows()
    seen_files = set()
    for (layer, unit), row in sorted(rows.items()):
      path = self.root / row["png"]
      seen_files.add(path.resolve())
      try:
        with Image.open(path) as im:
          im.verify()
        with Image.open(path) as im:
          im.load()
      except Exception as e:  # noqa: BLE001 (any decoder failure is the finding)
        problems.append(f"{layer}:{unit}: {row['png']} does not decode ({e})")
    for folder in {self.layer_dir(layer) for layer, _ in rows}:
      for png in folder.glob("*.png"):
        if png.resolve() not in seen_files:
          problems.append(f"{png.relative_to(self.root)} has no index row")
    return problems


def now() -> str:
  """The time in ISO 8601, UTC, to the second."""
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
