"""The on-disk cache of converted weights: one orbax checkpoint per (model, source file).

Converting a PyTorch file (reading the pickle, re-laying every tensor) happens once; later loads
restore the converted pytree. The layout under the cache root (:func:`root`)::

  models/<name>-<sha256[:16]>/      one entry per model and source-file content
    metadata.json                   model, source, sha256, featviz version, created, shapes
    weights/                        an orbax checkpoint of the weights pytree
  models/.tmp-<name>-...            an entry being written (or left by a crash): never read
  downloads/                        downloaded source files (see ``catalogue``)

The key is the sha256 of the source file's bytes, so new weights under an old path never hit a
stale entry. Sixteen hex digits (64 bits) of it make the folder name unique in practice while
``metadata.json`` keeps the full digest, which :func:`restore` checks.

An entry appears atomically: it is built in a ``.tmp-`` folder beside its final place, with
``metadata.json`` written last, then ``os.rename``-d into place. A crash leaves only a ``.tmp-``
folder, which lookups ignore and :func:`save` deletes once it is an hour old (younger ones may be
another process still writing). An entry that exists but cannot be restored (a disk error, a hand
edit) raises :class:`CorruptCacheError` naming the folder; ``catalogue`` then discards and rebuilds
it from the source file.

Weights are a nested dict (string keys) of float32 arrays; they come back as NumPy arrays.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

import featviz

__all__ = ["CorruptCacheError", "discard", "entries", "entry_path", "lookup", "read_metadata",
           "restore", "root", "save"]

_METADATA = "metadata.json"
_WEIGHTS = "weights"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # A temp folder untouched for an hour is a crash's leftover, not a writer.
_KEY_DIGITS = 16  # Hex digits of the sha256 in a folder name: 64 bits.


class CorruptCacheError(RuntimeError):
  """A cache entry exists but is unreadable or disagrees with its metadata."""


def root() -> pathlib.Path:
  """The cache root: ``$FEATVIZ_HOME`` if set, else ``~/.cache/featviz``."""
  home = os.environ.get("FEATVIZ_HOME")
  return pathlib.Path(home) if home else pathlib.Path.home() / ".cache" / "featviz"


def entry_path(name: str, sha256: str) -> pathlib.Path:
  """Where the entry for model ``name`` converted from a file with digest ``sha256`` lives."""
  return root() / "models" / f"{name}-{sha256[:_KEY_DIGITS]}"


def lookup(name: str, sha256: str) -> pathlib.Path | None:
  """The entry's folder if it is complete (has its metadata), else ``None``."""
  path = entry_path(name, sha256)
  return path if (path / _METADATA).is_file() else None


def _shapes(tree: Mapping[str, Any], where: str = "") -> dict[str, Any]:
  """``{"conv1": {"kernel": [3, 3, 1, 32]}}`` for a nested dict of float32 arrays."""
  if not isinstance(tree, Mapping):
    raise TypeError(f"weights{where} is a {type(tree).__name__}; expected a nested dict")
  out = {}
  for key, value in tree.items():
    if not isinstance(key, str):
      raise TypeError(f"weights{where} has a non-string key {key!r}")
    if isinstance(value, Mapping):
      out[key] = _shapes(value, f"{where}[{key!r}]")
    elif np.asarray(value).dtype != np.float32:
      raise TypeError(f"weights{where}[{key!r}] is {np.asarray(value).dtype}, expected float32")
    else:
      out[key] = list(np.shape(value))
  return out


def _as_numpy(tree: Mapping[str, Any]) -> dict[str, Any]:
  return {k: _as_numpy(v) if isinstance(v, Mapping) else np.asarray(v) for k, v in tree.items()}


def _clean_stale_tmp(models: pathlib.Path) -> None:
  now = time.time()
  for tmp in models.glob(_TMP_PREFIX + "*"):
    try:
      if now - tmp.stat().st_mtime > _STALE_TMP_S:
        shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
      pass  # Another process removed or renamed it first.


def _save_weights(path: pathlib.Path, weights: Mapping[str, Any]) -> None:
  """Writes the orbax checkpoint (a function of its own so tests can interrupt it)."""
  import orbax.checkpoint as ocp  # Imported on first use: it is slow to import.
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path.absolute(), weights)
    checkpointer.wait_until_finished()


def save(name: str, sha256: str, source: str, weights: Mapping[str, Any],
         extra: Mapping[str, Any] | None = None) -> pathlib.Path:
  """Writes an entry atomically and returns its folder.

  Args:
    name: model name, e.g. ``"efficientnet_lite0"``.
    sha256: hex digest of the source file's bytes (the cache key).
    source: where the file came from, for people (a URL, a package, a path).
    weights: nested dict of float32 arrays (NumPy or JAX).
    extra: more JSON-able metadata to record (e.g. whether the file matched the catalogue).

  Returns:
    The entry's folder. If another process finished the same entry first, that one is kept.
  """
  shapes = _shapes(weights)
  models = root() / "models"
  models.mkdir(parents=True, exist_ok=True)
  _clean_stale_tmp(models)
  final = entry_path(name, sha256)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=models))
  try:
    _save_weights(tmp / _WEIGHTS, _as_numpy(weights))
    metadata = {
        "model": name, "source": source, "sha256": sha256,
        "featviz_version": featviz.__version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **(extra or {}), "shapes": shapes,
    }
    (tmp / _METADATA).write_text(json.dumps(metadata, indent=1) + "\n")
    try:
      os.rename(tmp, final)
    except OSError:
      if lookup(name, sha256) is not None:
        pass  # Another process wrote the same entry first; keep theirs.
      elif final.exists():
        discard(final)  # A folder without metadata.json: never a complete entry.
        os.rename(tmp, final)
      else:
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)  # Gone already after a successful rename.
  return final


def read_metadata(path: pathlib.Path) -> dict[str, Any]:
  """An entry's ``metadata.json``; :class:`CorruptCacheError` if unreadable."""
  try:
    metadata = json.loads((path / _METADATA).read_text())
  except (OSError, ValueError) as e:
    raise _corrupt(path, f"unreadable {_METADATA} ({e})") from e
  if not isinstance(metadata, dict):
    raise _corrupt(path, f"{_METADATA} is not a JSON object")
  return metadata


def _corrupt(path: pathlib.Path, what: str) -> CorruptCacheError:
  return CorruptCacheError(f"corrupt featviz cache entry {path}: {what}. It is safe to delete "
                           f"it (rm -r '{path}'); the next load converts the weights again")


def restore(path: pathlib.Path, name: str, sha256: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """Restores an entry's weights (NumPy float32) and metadata, checked against each other.

  Raises:
    CorruptCacheError: metadata missing or not for ``(name, sha256)``, the checkpoint
      unreadable, or its tree or shapes differ from the recorded ones.
  """
  metadata = read_metadata(path)
  if metadata.get("model") != name or metadata.get("sha256") != sha256:
    raise _corrupt(path, f"its metadata is for {metadata.get('model')!r} sha256 "
                   f"{metadata.get('sha256')!r}, expected {name!r} sha256 {sha256!r}")
  shapes = metadata.get("shapes")
  try:
    target = _target(shapes)
    import orbax.checkpoint as ocp
    with ocp.StandardCheckpointer() as checkpointer:
      weights = checkpointer.restore((path / _WEIGHTS).absolute(), target)
    restored = _shapes(weights)
  except Exception as e:  # Orbax and tensorstore raise many kinds; all mean a bad entry.
    raise _corrupt(path, f"cannot restore the checkpoint ({type(e).__name__}: {e})") from e
  if restored != shapes:
    raise _corrupt(path, "the restored weights' shapes differ from metadata.json")
  return weights, metadata


def _target(shapes: Any) -> Any:
  """An empty NumPy tree shaped like ``shapes``: tells orbax to restore NumPy float32."""
  if isinstance(shapes, dict):
    return {k: _target(v) for k, v in shapes.items()}
  if isinstance(shapes, list) and all(isinstance(n, int) for n in shapes):
    return np.empty(shapes, np.float32)
  raise ValueError(f"bad shape record {shapes!r:.80}")


def entries(name: str) -> list[tuple[pathlib.Path, dict[str, Any]]]:
  """Complete entries for model ``name`` with their metadata (unreadable ones skipped)."""
  found = []
  for path in sorted((root() / "models").glob(f"{name}-*")):
    if re.fullmatch(f"[0-9a-f]{{{_KEY_DIGITS}}}", path.name[len(name) + 1:]):
      try:
        found.append((path, read_metadata(path)))
      except CorruptCacheError:
        continue
  return found


def discard(path: pathlib.Path) -> None:
  """Removes an entry: renamed out of sight first, so no reader sees it half-deleted."""
  doomed = path.with_name(f"{_TMP_PREFIX}discard-{path.name}-{os.getpid()}")
  try:
    os.rename(path, doomed)
  except FileNotFoundError:
    return  # Another process discarded it first.
  shutil.rmtree(doomed, ignore_errors=True)
