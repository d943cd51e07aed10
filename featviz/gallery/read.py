"""A sweep store as the gallery reads it: its manifest, and the index rows of done units.

:func:`read_sweep` turns a folder written by ``featviz.sweep`` (``featviz._sweep.store``)
into a :class:`Sweep` of :class:`Layer` s. Only units whose PNG is on disk become pages;
rows whose PNG is gone are listed in ``Sweep.missing``, so the site can say so instead
of linking to nothing. Every way a folder can fail to be a sweep raises
:class:`NotASweepError` with a message that names what is missing, for the command line
to print as it is.

A row's ``png`` is data from the folder, not a trusted path: :func:`unit_png` accepts only a
relative path inside the sweep folder, through no symlink, to a file that is not a symlink
(:class:`UnsafeSweepPathError` otherwise), so that a crafted store cannot copy
``/etc/shadow`` or ``~/.ssh/id_rsa`` into a site.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import pathlib
import re
from typing import Any

from featviz import images
from featviz._sweep import store as store_lib


class NotASweepError(ValueError):
  """A folder that is not a sweep store; the message says what is missing."""


class UnsafeSweepPathError(NotASweepError):
  """An index row's ``png`` leaves the sweep folder (absolute, ``..``, a symlink)."""


def unit_png(root: pathlib.Path, row: Any) -> pathlib.Path | None:
  """The store PNG of index row ``row``: a path inside ``root``, or None when it is missing.

  Raises:
    NotASweepError: the row has no ``png`` string.
    UnsafeSweepPathError: ``png`` is absolute, has ``..``, ``.`` or empty parts, or passes
      through (or is) a symlink; the message names the row and what is allowed.
  """
  rel = row.get("png") if isinstance(row, dict) else None
  where = (
    f"{str(root)!r}: the index row of {row.get('layer')}:{row.get('unit')}"
    if isinstance(row, dict)
    else f"{str(root)!r}: an index row"
  )
  if not isinstance(rel, str) or not rel:
    raise NotASweepError(f"{where} has no 'png' path")
  allowed = (
    "a unit's png must be a relative path inside the sweep folder, to a regular "
    "file, through no symlink"
  )
  parts = rel.split("/")
  if rel.startswith("/") or "\\" in rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
    raise UnsafeSweepPathError(f"{where} names the png {rel!r:.200}: {allowed}")
  path = root
  for part in parts:
    path = path / part
    if path.is_symlink():
      raise UnsafeSweepPathError(
        f"{where}: {path.relative_to(root).as_posix()!r} is a symlink: {allowed}"
      )
  try:
    path.resolve().relative_to(root.resolve())
  except ValueError:
    raise UnsafeSweepPathError(
      f"{where} names the png {rel!r:.200}, which resolves outside the sweep folder: {allowed}"
    ) from None
  return path if path.is_file() else None


# The numbers of an index row that pages format (``featviz._sweep.run`` and ``quality`` write
# them): each must be a finite number or null. The store checks a row's layer, unit and png.
# ``steps`` is the steps the unit took (``config.steps`` unless a stopping rule ended it early).
NUMERIC_FIELDS = ("final", "start", "last_step", "dataset_max", "ratio", "chunk_seconds", "steps")
# Why a unit stopped (``featviz.sweep(until_ratio=..., until_plateau=...)``); older stores have no
# ``stopped``. Pages print the reason as it is, with these words where they know it.
STOP_REASONS = {
  "ratio": "its ratio reached --until-ratio",
  "plateau": "its objective stopped rising (--until-plateau)",
  "max_steps": "it took the most steps allowed (--max-steps)",
  "non_finite": "its optimization went non-finite",
}


def check_row_numbers(root: pathlib.Path, row: dict[str, Any]) -> None:
  """Raises :class:`NotASweepError` naming the row and field when a number is not a number,
  or when ``stopped`` is there and not a short string."""
  stopped = row.get("stopped")
  if stopped is not None and not (isinstance(stopped, str) and 0 < len(stopped) <= 40):
    raise NotASweepError(
      f"{str(root)!r}: the index row of {row.get('layer')}:{row.get('unit')} has "
      f"stopped = {stopped!r:.80}, not a reason such as {', '.join(map(repr, STOP_REASONS))} "
      "(is the store hand-edited?)"
    )
  for key in NUMERIC_FIELDS:
    value = row.get(key)
    ok = value is None or (
      isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    )
    if not ok:
      raise NotASweepError(
        f"{str(root)!r}: the index row of {row.get('layer')}:{row.get('unit')} has "
        f"{key} = {value!r:.80}, not a finite number or null (is the store hand-edited?)"
      )


@dataclasses.dataclass
class Layer:
  """One swept layer: ``dir`` is its folder name (the store's and the site's)."""

  name: str
  dir: str
  channels: int
  rows: dict[int, dict[str, Any]]  # unit -> the store's index row, for done units only


@dataclasses.dataclass
class Sweep:
  """A sweep store as the gallery reads it; ``slug`` is its folder in the site."""

  root: pathlib.Path
  manifest: dict[str, Any]
  layers: list[Layer]
  missing: list[str]  # rows whose PNG is gone (left out of the site)
  slug: str = ""

  @property
  def model(self) -> str:
    return str(self.manifest["model"])


def natural_key(name: str) -> list[Any]:
  """Sort key that puts ``block2`` before ``block10`` (numbers compare as numbers)."""
  return [int(t) if i % 2 else t.lower() for i, t in enumerate(re.split(r"(\d+)", name))]


def read_sweep(path: str | os.PathLike) -> Sweep:
  """Reads a sweep store's manifest and index rows.

  Layers are in natural name order (a store does not record the forward order; for the zoo's
  ``block0 .. block15``, ``conv1 .. conv4`` and ``mixed3a .. mixed5b`` the two agree).

  Raises:
    NotASweepError: ``path`` is missing, or lacks ``manifest.json``, the ``_index/``
      folder or any index row; the message names what is missing.
    UnsafeSweepPathError: a row's ``png`` leaves the folder (:func:`unit_png`).
    NotASweepError: a row's number is not a number (:func:`check_row_numbers`).
  """
  root = pathlib.Path(path)
  if not root.exists():
    raise NotASweepError(f"sweep folder {str(root)!r} does not exist")
  if not root.is_dir():
    raise NotASweepError(f"{str(root)!r} is a file, not a sweep folder")
  hint = f"(`featviz sweep MODEL ... --out {root}` makes one)"
  manifest_path = root / store_lib.MANIFEST
  if not manifest_path.is_file():
    raise NotASweepError(f"{str(root)!r} is not a sweep: it has no {store_lib.MANIFEST} {hint}")
  try:
    manifest = json.loads(manifest_path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise NotASweepError(f"{manifest_path} is not valid JSON: {e}") from None
  lacking = [
    k
    for k in ("model", "layers", "settings")
    if not isinstance(manifest, dict) or k not in manifest
  ]
  if lacking:
    raise NotASweepError(
      f"{manifest_path} is not a sweep manifest: it lacks "
      f"{', '.join(repr(k) for k in lacking)} {hint}"
    )
  if not (root / store_lib.INDEX).is_dir():
    raise NotASweepError(
      f"{str(root)!r} is not a sweep: it has no {store_lib.INDEX}/ folder of index files {hint}"
    )
  try:
    rows = store_lib.Store(root).rows(intact=False)  # gone PNGs are listed as missing
  except (ValueError, KeyError) as e:
    raise NotASweepError(
      f"{str(root)!r}: an index file under {store_lib.INDEX}/ does not parse ({e})"
    ) from None
  if not rows:
    raise NotASweepError(
      f"{str(root)!r} has no rendered units yet: no rows in "
      f"{store_lib.INDEX}/ (a sweep commits them chunk by chunk)"
    )
  channels = dict(manifest["layers"])
  by_layer: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in channels}
  missing = []
  for (layer, unit), row in rows.items():
    check_row_numbers(root, row)
    if unit_png(root, row) is not None:
      by_layer.setdefault(layer, {})[unit] = row
    else:
      missing.append(f"{layer}:{unit} ({row['png']})")
  layers = [
    Layer(
      name, images.safe_name(name), int(channels.get(name, len(units))), dict(sorted(units.items()))
    )
    for name, units in sorted(by_layer.items(), key=lambda kv: natural_key(kv[0]))
  ]
  return Sweep(root, manifest, layers, sorted(missing))
