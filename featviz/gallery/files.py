"""The gallery's file writes: atomic, only where a file changed, and only inside the site.

**Incremental.** Every page is generated in memory (cheap), and every file is written
only when it differs from what the last run wrote: ``site.json`` records a sha256 per
generated file and ``(inode, size, mtime)`` of the store PNG behind each copied image (a
sweep replaces a PNG by renaming a new file onto it, which changes the inode). So
re-running on an unchanged sweep writes nothing, and a grown sweep adds its new pages
plus the few that mention them (neighbours' next/previous links, the layer page). Files
that an earlier run wrote and this one does not are removed; nothing else in the folder
is touched. Pages carry no timestamps, or nothing would ever be unchanged.

**Only the site's own files.** ``site.json`` is data anyone who can write the site folder
can edit, so nothing in it is trusted: every path it lists must be a plain relative path
inside the site (no ``..``, nothing absolute, no symlinked folder on the way), or
:class:`SiteFolderError` refuses the folder before anything is written or removed. Only
regular files are removed, and the walk up that removes emptied folders stops at the site
folder. A folder that holds files but no ``site.json`` is someone else's: it is refused too
(the gallery writes only into a new or empty folder, or one an earlier run wrote); an empty
folder is claimed at once by writing an empty ``site.json``, so that a run that fails half-way
leaves a folder the next run recognises.

Every write is atomic (``images.atomic_write``, whose files get the mode ``open()`` would give
them, ``0o666 & ~umask``). Store PNGs are always copied, never hard-linked: a link would share
the store file's mode and owner with the site, and a copy from a descriptor opened with
``O_NOFOLLOW`` cannot be redirected by a symlink.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import stat
from collections.abc import Iterable
from typing import Any

from featviz import images

SITE_MANIFEST = "site.json"
FORMAT = 1  # of site.json; a site of another format is rewritten whole
_SHOWN = 5  # how many foreign files an error message names


class SiteFolderError(ValueError):
  """A site folder the gallery refuses to write: someone else's, or a ``site.json`` naming
  paths outside the site. The message names the folder, the offending paths and the fix."""


def _is_regular(path: pathlib.Path) -> bool:
  """True for a regular file that is not a symlink (``Path.is_file`` follows links)."""
  try:
    return stat.S_ISREG(os.lstat(path).st_mode)
  except OSError:
    return False


def site_path(root: pathlib.Path, rel: Any) -> pathlib.Path:
  """``root / rel`` for a site-relative POSIX path that stays inside ``root``.

  Refuses (:class:`SiteFolderError`) anything but a plain relative path of non-empty parts:
  absolute paths, ``..`` or ``.`` parts, backslashes, NUL, and paths whose folders inside
  the site are symlinks (through which a write or a delete would leave the site).
  """
  why = None
  if not isinstance(rel, str) or not rel:
    why = "not a non-empty string"
  elif "\\" in rel or "\0" in rel:
    why = "it holds a backslash or NUL"
  elif rel.startswith("/"):
    why = "it is absolute"
  elif any(part in ("", ".", "..") for part in rel.split("/")):
    why = "it has an empty, '.' or '..' part"
  elif rel == SITE_MANIFEST:
    why = f"it is the record {SITE_MANIFEST} itself"
  if why is None:
    folder = root
    for part in rel.split("/")[:-1]:
      folder = folder / part
      if folder.is_symlink():
        why = f"its folder {folder.relative_to(root).as_posix()!r} is a symlink"
        break
  if why is not None:
    raise SiteFolderError(
      f"site folder {str(root)!r}: refusing the path {rel!r:.200} ({why}); the gallery only "
      "writes and removes plain relative paths inside the site folder"
    )
  return root / rel


def _write(target: pathlib.Path, data: bytes | Iterable[bytes]) -> None:
  """Writes ``data`` (bytes, or an iterable of byte chunks) to ``target`` atomically."""
  with images.atomic_write(target) as f:
    for part in [data] if isinstance(data, bytes) else data:
      f.write(part)


def _open_source(source: pathlib.Path) -> int:
  """A read-only descriptor of regular file ``source``, not followed through a symlink."""
  fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
  if not stat.S_ISREG(os.fstat(fd).st_mode):
    os.close(fd)
    raise SiteFolderError(
      f"{str(source)!r} is not a regular file; only regular files are copied into a site"
    )
  return fd


class Writer:
  """Writes site files that changed since the last run, and records what it wrote.

  ``written`` lists the site-relative paths written this run; ``after`` records every file
  this run wrote or kept, which :meth:`finish` saves as ``site.json``; ``owned`` are the
  paths an earlier run recorded (each checked by :func:`site_path`), the only ones
  :meth:`finish` may remove.

  Raises:
    SiteFolderError: ``root`` holds files but no ``site.json``, its ``site.json`` is not a
      gallery's, or it lists a path outside the site.
  """

  def __init__(self, root: pathlib.Path, link: bool = False):
    del link  # hard links are never made (see the module docstring); kept for callers
    self.root = root
    self.before: dict[str, Any] = {}
    self.owned: set[str] = set()
    path = root / SITE_MANIFEST
    fix = (
      "give --out a new or empty folder, or one an earlier `featviz gallery` wrote "
      f"(it has a {SITE_MANIFEST})"
    )
    if not path.exists() and not path.is_symlink():
      foreign = sorted(p.name for p in root.iterdir())
      if foreign:
        shown = ", ".join(repr(n) for n in foreign[:_SHOWN])
        more = f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else ""
        raise SiteFolderError(
          f"site folder {str(root)!r} holds files the gallery did not write ({shown}{more}) "
          f"and no {SITE_MANIFEST}; refusing to write into it: {fix}"
        )
      _write(path, _record({}))  # claim the empty folder before the first page
    elif not _is_regular(path):
      raise SiteFolderError(f"{path} is not a regular file; refusing the folder: {fix}")
    else:
      try:
        stored = json.loads(path.read_text())
      except (ValueError, UnicodeDecodeError) as e:
        raise SiteFolderError(
          f"{path} is not a gallery's record (not JSON: {e}); refusing to "
          f"write into {str(root)!r}: {fix}"
        ) from None
      if (
        not isinstance(stored, dict)
        or not isinstance(stored.get("format"), int)
        or not isinstance(stored.get("files"), dict)
      ):
        raise SiteFolderError(
          f"{path} is not a gallery's record (it needs an integer 'format' "
          f"and a 'files' object); refusing to write into {str(root)!r}: "
          f"{fix}"
        )
      for rel in stored["files"]:
        site_path(root, rel)  # raises for anything outside the site
      self.owned = set(stored["files"])
      if stored["format"] == FORMAT:
        self.before = dict(stored["files"])
    self.after: dict[str, Any] = {}
    self.written: list[str] = []

  def _unchanged(self, rel: str, record: Any) -> bool:
    if self.after.get(rel) == record:
      return True  # written (or kept) earlier in this run
    self.after[rel] = record
    return self.before.get(rel) == record and _is_regular(site_path(self.root, rel))

  def _prepare(self, rel: str) -> pathlib.Path:
    path = site_path(self.root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    site_path(self.root, rel)  # no folder on the way became a symlink meanwhile
    self.written.append(rel)
    return path

  def data(self, rel: str, data: bytes | str) -> None:
    """Writes ``data`` to ``rel`` unless the last run wrote the same bytes there."""
    data = data.encode() if isinstance(data, str) else data
    if not self._unchanged(rel, {"sha256": hashlib.sha256(data).hexdigest()}):
      _write(self._prepare(rel), data)

  def copy(self, rel: str, source: pathlib.Path) -> None:
    """Copies regular file ``source`` to ``rel`` unless it is the file the last run used.

    ``source`` is opened without following a symlink; a symlink or anything but a regular
    file raises :class:`SiteFolderError`.
    """
    fd = _open_source(source)
    with os.fdopen(fd, "rb") as src:
      st = os.fstat(src.fileno())
      if not self._unchanged(rel, {"source": [st.st_ino, st.st_size, st.st_mtime_ns]}):
        _write(self._prepare(rel), iter(lambda: src.read(1 << 20), b""))

  def keep(self, rel: str) -> bool:
    """Keeps a file an earlier run wrote, as it is; False when there is none."""
    if rel in self.after:
      return True
    if rel in self.before and _is_regular(site_path(self.root, rel)):
      self.after[rel] = self.before[rel]
      return True
    return False

  def previous(self, rel: str) -> Any | None:
    """The JSON an earlier run wrote to ``rel``, or None."""
    if rel not in self.before or not _is_regular(site_path(self.root, rel)):
      return None
    try:
      return json.loads(site_path(self.root, rel).read_text())
    except (ValueError, UnicodeDecodeError):
      return None

  def finish(self) -> list[str]:
    """Removes the files earlier runs wrote and this one did not; saves ``site.json``.

    Only paths ``site.json`` recorded (checked inside the site when it was read) are
    removed, only when they are regular files, and emptied folders only up to the site.
    """
    removed = []
    for rel in sorted(self.owned - set(self.after)):
      path = site_path(self.root, rel)
      if _is_regular(path):
        path.unlink()
        removed.append(rel)
      for parent in pathlib.PurePosixPath(rel).parents:  # folders left empty, inside the site
        folder = self.root / parent
        if parent == pathlib.PurePosixPath(".") or folder.is_symlink() or not folder.is_dir():
          break
        if any(folder.iterdir()):
          break
        folder.rmdir()
    data = _record(self.after)
    path = self.root / SITE_MANIFEST
    if not _is_regular(path) or path.read_bytes() != data:
      _write(path, data)
    return removed


def _record(files: dict[str, Any]) -> bytes:
  """The bytes of a ``site.json`` recording ``files``."""
  return (json.dumps({"format": FORMAT, "files": files}, indent=0, sort_keys=True) + "\n").encode()
