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

**Damage is repaired, never served.** A row counts as done only while its PNG is intact
(a regular file with the PNG signature and the ``IEND`` trailer, a cheap check of 20 bytes),
so a deleted, truncated or garbage PNG is rendered again on resume; one that still fails to
decode when an atlas is drawn is dropped from its index file (:meth:`Store.forget`) and
rendered on the next resume. A store whose ``manifest.json`` is lost while index rows remain
is refused (:class:`ManifestLostError`): the rows cannot say every setting that made them.
A damaged manifest or index file raises :class:`CorruptStoreError` naming the file.

**One sweep at a time, or the processes of one sweep.** :meth:`Store.open` takes a shared
``fcntl.flock`` on ``.featviz-sweep.lock`` (the processes of one sweep, ``--share`` or
``--distributed``, share it), and :meth:`Store.remove_temporaries`, which only a process
alone on the store may call, makes it exclusive first: a second sweep on the same folder then
gets :class:`StoreLockedError` instead of deleting the first one's temporary files.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import pathlib
import stat
import warnings
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np
from PIL import Image

from featviz import images

FORMAT = 1  # bump when the layout changes; part of the settings compared on resume
INDEX = "_index"
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
LOCK = ".featviz-sweep.lock"

# A PNG starts with this signature and ends with the empty IEND chunk (PNG spec, 5.2 and 11.2.5).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"

# Manifest fields that must match for a store to be resumed (the rest is record only).
COMPARED = (
  "format",
  "model",
  "model_source",
  "weights_sha256",
  "featviz_version",
  "settings",
  "dataset",
)


class SettingsMismatchError(ValueError):
  """The store was made with other settings; the message lists what differs."""


class ManifestLostError(SettingsMismatchError):
  """The store has index rows but no ``manifest.json``: the rows' settings are unknown."""


class StoreError(ValueError):
  """A store folder that cannot be used as it is; the message names the file and the fix."""


def make_folder(path: pathlib.Path, parents: bool = False) -> None:
  """``mkdir`` for a folder of the store; :class:`StoreError` when a file is in its place (the
  red team replaced ``_index/`` by a file: ``FileExistsError`` and a traceback)."""
  if path.exists() and not path.is_dir():
    raise StoreError(
      f"{path} should be a folder of the sweep store, but it is a file; move it away, or give "
      "the sweep another --out folder"
    )
  path.mkdir(parents=parents, exist_ok=True)


class CorruptStoreError(StoreError):
  """A ``manifest.json`` or index file of the store does not parse as what it should be."""


class StoreLockedError(StoreError):
  """Another sweep (another process) is writing the store."""


# This process's lock on each store: {lock file: [fd, exclusive, Store objects using it]}.
# flock conflicts between two descriptors even in one process, so Store objects share one.
_HELD: dict[str, list[Any]] = {}


def _release(key: str) -> None:
  held = _HELD.get(key)
  if held is None:
    return
  held[2] -= 1
  if held[2] <= 0:
    del _HELD[key]
    os.close(held[0])  # closing the last descriptor releases the flock


def _png_intact(path: pathlib.Path) -> bool:
  """A regular file (not a symlink) with the PNG signature and the IEND trailer."""
  try:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
  except OSError:
    return False
  try:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size < len(_PNG_SIGNATURE) + len(_PNG_END):
      return False
    head = os.pread(fd, len(_PNG_SIGNATURE), 0)
    tail = os.pread(fd, len(_PNG_END), st.st_size - len(_PNG_END))
    return head == _PNG_SIGNATURE and tail == _PNG_END
  except OSError:
    return False
  finally:
    os.close(fd)


def _read_json(path: pathlib.Path, what: str, fix: str) -> Any:
  """``path`` parsed as JSON; :class:`CorruptStoreError` naming the file otherwise."""
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError, UnicodeDecodeError) as e:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    raise CorruptStoreError(
      f"{path}: unreadable {what} ({type(e).__name__}: {reason}); {fix}"
    ) from None


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


def model_source(model) -> str:
  """Where the model came from, as the manifest records it: ``metadata["source"]`` (the CLI
  sets ``zoo:NAME``, ``file:/abs/path.py:FUNCTION`` or ``module:pkg.mod:FUNCTION``), else
  ``zoo:NAME`` for a zoo model (it carries its weight file's sha256), else ``python:NAME``."""
  metadata = dict(model.metadata)
  if metadata.get("source"):
    return str(metadata["source"])
  return f"{'zoo' if metadata.get('sha256') else 'python'}:{model.spec.name}"


def _json_bytes(obj: Any) -> bytes:
  return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def write_json(path: pathlib.Path, obj: Any) -> None:
  """Writes ``obj`` as JSON atomically (``images.atomic_write``)."""
  with images.atomic_write(path) as f:
    f.write(_json_bytes(obj))


def differences(
  stored: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = ""
) -> list[str]:
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
    self._lock_key: str | None = None

  # ----- lock
  def _locked_message(self, fd: int) -> str:
    try:
      pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
      pid = ""
    by = f" by process {pid}" if pid.isdigit() else ""
    return (
      f"another featviz sweep is writing {self.root} (its lock {LOCK} is held{by}); "
      "wait for it to finish, or give this sweep another --out folder. The processes "
      "of one sweep share a folder with --share I/N or --distributed"
    )

  def lock(self, exclusive: bool = False) -> None:
    """Takes this process's ``flock`` on the store: shared, or exclusive when alone on it.

    Raises:
      StoreLockedError: another process holds it (exclusively, or at all for ``exclusive``).
    """
    key = os.path.realpath(self.root / LOCK)
    held = _HELD.get(key)
    if held is None:
      fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o666)
      try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
      except BlockingIOError:
        message = self._locked_message(fd)
        os.close(fd)
        raise StoreLockedError(message) from None
      held = _HELD[key] = [fd, False, 0]
    if self._lock_key is None:  # the root never changes: one use of the lock per Store
      held[2] += 1
      self._lock_key = key
      weakref.finalize(self, _release, key)
    if exclusive and not held[1]:
      try:
        fcntl.flock(held[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        message = self._locked_message(held[0])
        try:  # flock may have dropped the shared lock while trying: take it back
          fcntl.flock(held[0], fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
          pass
        raise StoreLockedError(message) from None
      held[1] = True
      os.ftruncate(held[0], 0)
      os.pwrite(held[0], f"{os.getpid()}\n".encode(), 0)

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
      ManifestLostError: index rows exist but ``manifest.json`` does not.
      CorruptStoreError: ``manifest.json`` does not parse as a JSON object.
      StoreLockedError: another sweep is writing the store (:meth:`lock`).
    """
    make_folder(self.root, parents=True)
    self.lock()
    make_folder(self.root / INDEX)
    path = self.root / MANIFEST
    if not path.exists():
      self._refuse_orphan_rows(manifest)
      tmp = self.root / f".{MANIFEST}.{os.getpid()}.new"
      try:
        tmp.write_bytes(_json_bytes(dict(manifest)))
        os.link(tmp, path)  # fails if it exists: first writer wins, atomically
      except FileExistsError:
        pass  # another process made it first: check it
      finally:
        with contextlib.suppress(FileNotFoundError):
          tmp.unlink()
    fix = (
      "restore it, or move the folder aside to start the sweep over (or give another --out folder)"
    )
    stored = _read_json(path, "sweep manifest", fix)
    if not isinstance(stored, dict):
      raise CorruptStoreError(
        f"{path}: the sweep manifest is a {type(stored).__name__}, not a JSON object; {fix}"
      )
    # A store made before the manifest had model_source is compared without it.
    compared = [k for k in COMPARED if k in stored or k != "model_source"]
    diff = differences({k: stored.get(k) for k in compared}, {k: manifest.get(k) for k in compared})
    if diff:
      raise SettingsMismatchError(
        f"{self.root} holds a sweep made with other settings:\n  "
        + "\n  ".join(diff)
        + "\nuse another --out folder, or repeat the store's settings to resume it"
      )
    layers = {**(stored.get("layers") or {}), **manifest.get("layers", {})}
    if writer and layers != stored.get("layers"):
      stored["layers"] = layers
      write_json(path, stored)
    return stored

  def _refuse_orphan_rows(self, manifest: Mapping[str, Any]) -> None:
    """Raises :class:`ManifestLostError` when index rows exist without a manifest."""
    rows = self.rows(intact=False)
    if not rows:
      return
    settings = manifest.get("settings") or {}
    diff = []
    for key in ("steps", "seed", "size"):
      seen = sorted({json.dumps(r.get(key)) for r in rows.values() if key in r})
      if key in settings and seen and seen != [json.dumps(settings[key])]:
        diff.append(
          f"{key}: the rows have {', '.join(seen)}, this run asks {json.dumps(settings[key])}"
        )
    said = (
      ("; they differ from this run: " + "; ".join(diff))
      if diff
      else ("; the model, weights, learning rate and other settings of the rows cannot be checked")
    )
    raise ManifestLostError(
      f"{self.root} has {len(rows)} index rows under {INDEX}/ but no {MANIFEST}, so the "
      f"settings that made them are lost{said}. Restore {MANIFEST}, or move the folder aside "
      f"(or delete {INDEX}/ and the layer folders) to start over, or give another --out folder"
    )

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
  def _index_rows(self, file: pathlib.Path) -> list[dict[str, Any]]:
    """The rows of one index file; :class:`CorruptStoreError` naming it if malformed."""
    fix = "delete it: the units it lists are rendered again on resume"
    data = _read_json(file, "index file", fix)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(
      isinstance(r, dict)
      and isinstance(r.get("layer"), str)
      and isinstance(r.get("png"), str)
      and type(r.get("unit")) is int
      for r in rows
    ):
      raise CorruptStoreError(
        f"{file}: not a sweep index file (it needs 'rows', a list of "
        f"objects with a string 'layer' and 'png' and an integer 'unit'); "
        f"{fix}"
      )
    return rows

  def rows(
    self, layers: Iterable[str] | None = None, *, intact: bool = True
  ) -> dict[tuple[str, int], dict[str, Any]]:
    """Every committed row, ``{(layer, unit): row}``, merged over all index files.

    Args:
      layers: only these layers' rows; None: every layer's.
      intact: only rows whose PNG is intact (:func:`_png_intact`): the done units. A row
        whose PNG was deleted or damaged is then not done, and a resume renders it again.
        False: every row (for :meth:`check` and readers that report missing PNGs).

    Raises:
      CorruptStoreError: an index file does not parse; the message names it.
    """
    folders = (
      [self.root / INDEX / images.safe_name(x) for x in layers]
      if layers is not None
      else sorted(p for p in (self.root / INDEX).glob("*") if p.is_dir())
    )
    out = {}
    for folder in folders:
      for file in sorted(folder.glob("*.json")):
        for row in self._index_rows(file):
          if not intact or _png_intact(self.root / row["png"]):
            out[(row["layer"], int(row["unit"]))] = row
    return out

  def forget(self, layer: str, unit: int) -> None:
    """Drops ``unit``'s row from its index file, so that the next resume renders it again."""
    for file in sorted((self.root / INDEX / images.safe_name(layer)).glob("*.json")):
      rows = self._index_rows(file)
      kept = [r for r in rows if int(r["unit"]) != unit]
      if len(kept) != len(rows):
        data = json.loads(file.read_text())
        data["rows"] = kept
        write_json(file, data)

  def commit(
    self, layer: str, chunk: int, pictures: Mapping[int, np.ndarray], rows: Iterable[dict[str, Any]]
  ) -> None:
    """Writes the chunk's PNGs, then its index file (old rows plus ``rows``), atomically."""
    make_folder(self.layer_dir(layer))
    for unit, picture in pictures.items():
      images.save_png(picture, self.png(layer, unit))
    file = self._index_file(layer, chunk)
    make_folder(file.parent, parents=True)
    merged = {}
    if file.exists():
      merged = {int(r["unit"]): r for r in self._index_rows(file)}
    merged.update({int(r["unit"]): r for r in rows})
    write_json(file, {"layer": layer, "chunk": chunk, "rows": [merged[u] for u in sorted(merged)]})

  # ----- atlas
  def write_atlas(self, layer: str, rows: Iterable[dict[str, Any]], size: int) -> pathlib.Path:
    """A labelled grid of the layer's rendered units (from their PNGs), ``<layer>_atlas.png``.

    Captions are ``unit`` or, with dataset scores, ``unit ratio``. Tiles under
    96 px are upscaled to about 96 px (nearest) so captions stay readable. A PNG that
    does not decode is left out with a warning, and its row is dropped (:meth:`forget`):
    the next resume renders the unit again.
    """
    pictures, kept = [], []
    for r in sorted(rows, key=lambda r: int(r["unit"])):
      try:
        with Image.open(self.root / r["png"]) as im:
          pictures.append(np.asarray(im, np.float32) / 255.0)
      except (OSError, ValueError, SyntaxError) as e:  # PIL's decoder errors
        warnings.warn(
          f"{self.root / r['png']} does not decode ({e}); left out of the atlas, "
          f"and {layer}:{r['unit']} will be rendered again on resume",
          stacklevel=2,
        )
        self.forget(layer, int(r["unit"]))
        continue
      kept.append(r)
    rows = kept
    captions = [
      f"{r['unit']}" + (f" {r['ratio']:.2f}" if r.get("ratio") is not None else "") for r in rows
    ]
    title = f"{layer}: {len(rows)} unit{'' if len(rows) == 1 else 's'}"
    grid = images.grid(pictures, captions, scale=max(1, 96 // size), title=title)
    return images.save_png(grid, self.atlas(layer))

  def remove_temporaries(self) -> int:
    """Deletes what a killed writer left: ``images.atomic_write``'s ``.*.tmp`` files and
    :meth:`open`'s ``.manifest.json.<pid>.new``.

    Call it only when no other process of this sweep writes the store: it first makes
    this process's lock exclusive (:meth:`lock`), so another sweep's live temporary
    files are never deleted. Returns how many were removed.

    Raises:
      StoreLockedError: another process has the store open.
    """
    self.lock(exclusive=True)
    stale = [p for p in self.root.rglob(".*.tmp") if p.is_file()]
    stale += [p for p in self.root.glob(f".{MANIFEST}.*.new") if p.is_file()]
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
    rows = self.rows(intact=False)
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
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
