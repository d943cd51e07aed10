"""The gallery's file writes: atomic, and only where a file changed since the last run.

**Incremental.** Every page is generated in memory (cheap), and every file is written
only when it differs from what the last run wrote: ``site.json`` records a sha256 per
generated file and ``(inode, size, mtime)`` of the store PNG behind each copied image (a
sweep replaces a PNG by renaming a new file onto it, which changes the inode). So
re-running on an unchanged sweep writes nothing, and a grown sweep adds its new pages
plus the few that mention them (neighbours' next/previous links, the layer page). Files
that an earlier run wrote and this one does not are removed; nothing else in the folder
is touched. Pages carry no timestamps, or nothing would ever be unchanged.

Every write is atomic: ``images.atomic_write``, whose files get the mode ``open()`` would
give them (``0o666 & ~umask``), or a hard link made under a temporary name and renamed.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import uuid
from collections.abc import Iterable
from typing import Any

from featviz import images

SITE_MANIFEST = "site.json"
FORMAT = 1  # of site.json; a site of another format is rewritten whole


def _file_mode() -> int:
  """The mode a new file gets from ``open()`` and ``atomic_write`` (0o644 under umask 022)."""
  umask = os.umask(0)
  os.umask(umask)
  return 0o666 & ~umask


def _write(target: pathlib.Path, data: bytes | Iterable[bytes]) -> None:
  """Writes ``data`` (bytes, or an iterable of byte chunks) to ``target`` atomically."""
  with images.atomic_write(target) as f:
    for part in [data] if isinstance(data, bytes) else data:
      f.write(part)


def _copy(source: pathlib.Path, target: pathlib.Path, link_mode: int | None) -> None:
  """Makes ``target`` a hard link to ``source``, or a copy, atomically.

  A link shares its file's mode, and the store's files must not change; so a link is made
  only where ``link_mode`` is given and ``source`` already has it (the mode every written
  site file gets), and where the two folders share a file system. A private (0o600) store
  file, say, is copied: linked, it would be unreadable to a web server serving the site.
  """
  if link_mode is not None and (source.stat().st_mode & 0o777) == link_mode:
    if target.exists() and os.path.samefile(source, target):
      return  # rename() of two links to one file does nothing: it must not be tried
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
      os.link(source, tmp)
    except OSError:  # another file system, or links not allowed: copy
      pass
    else:
      try:
        os.replace(tmp, target)
      finally:
        if tmp.exists():
          tmp.unlink()
      return
  with open(source, "rb") as src:
    _write(target, iter(lambda: src.read(1 << 20), b""))


class Writer:
  """Writes site files that changed since the last run, and records what it wrote.

  ``link``: hard-link copied files (:meth:`copy`) where that is safe, else copy them.
  ``written`` lists the site-relative paths written this run; ``after`` records every file
  this run wrote or kept, which :meth:`finish` saves as ``site.json``.
  """

  def __init__(self, root: pathlib.Path, link: bool):
    self.root = root
    self.link_mode = _file_mode() if link else None
    self.before: dict[str, Any] = {}
    path = root / SITE_MANIFEST
    if path.is_file():
      try:
        stored = json.loads(path.read_text())
      except ValueError:
        stored = {}
      if stored.get("format") == FORMAT:
        self.before = dict(stored.get("files", {}))
    self.after: dict[str, Any] = {}
    self.written: list[str] = []
  def _unchanged(self, rel: str, record: Any) -> bool:
    if self.after.get(rel) == record:
      return True  # written (or kept) earlier in this run
    self.after[rel] = record
    return self.before.get(rel) == record and (self.root / rel).is_file()

  def _prepare(self, rel: str) -> pathlib.Path:
    path = self.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    self.written.append(rel)
    return path

  def data(self, rel: str, data: bytes | str) -> None:
    """Writes ``data`` to ``rel`` unless the last run wrote the same bytes there."""
    data = data.encode() if isinstance(data, str) else data
    if not self._unchanged(rel, {"sha256": hashlib.sha256(data).hexdigest()}):
      _write(self._prepare(rel), data)

  def copy(self, rel: str, source: pathlib.Path) -> None:
    """Links or copies ``source`` to ``rel`` unless it is the file the last run used."""
    st = source.stat()
    if not self._unchanged(rel, {"source": [st.st_ino, st.st_size, st.st_mtime_ns]}):
      _copy(source, self._prepare(rel), self.link_mode)

  def keep(self, rel: str) -> bool:
    """Keeps a file an earlier run wrote, as it is; False when there is none."""
    if rel in self.after:
      return True
    if rel in self.before and (self.root / rel).is_file():
      self.after[rel] = self.before[rel]
      return True
    return False

  def previous(self, rel: str) -> Any | None:
    """The JSON an earlier run wrote to ``rel``, or None."""
    if rel not in self.before or not (self.root / rel).is_file():
      return None
    try:
      return json.loads((self.root / rel).read_text())
    except ValueError:
      return None

  def finish(self) -> list[str]:
    """Removes what earlier runs wrote and this one did not; saves ``site.json``."""
    removed = []
    for rel in sorted(set(self.before) - set(self.after)):
      path = self.root / rel
      if path.is_file():
        path.unlink()
        removed.append(rel)
      for parent in path.parents:  # folders left empty
        if parent == self.root or not parent.is_dir() or any(parent.iterdir()):
          break
        parent.rmdir()
    data = json.dumps({"format": FORMAT, "files": self.after}, indent=0, sort_keys=True) + "\n"
    path = self.root / SITE_MANIFEST
    if not path.is_file() or path.read_text() != data:
      _write(path, data.encode())
    return removed
