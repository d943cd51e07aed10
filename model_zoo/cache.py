"""The on-disk cache of converted weights: one orbax checkpoint per (model, source file).

Converting a PyTorch file (reading the pickle, re-laying every tensor) happens once; later loads
restore the converted pytree. The layout under the cache root (:func:`root`)::

  models/<name>-<sha256[:16]>/      one entry per model and source-file content
    metadata.json                   model, source, sha256, featviz version, created, shapes,
                                    weights_sha256 (of the converted arrays)
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

**Checked on every restore.** Orbax checks the tree and the shapes, not the bytes: one flipped
bit in a data file used to load a wrong weight, silently, on every later load (red-team report,
section 3). So ``metadata.json`` records ``weights_sha256``, a sha256 of the converted arrays
(:func:`weights_digest`: each leaf's path, shape and bytes, in sorted path order; about 1 ms for
mnist_cnn, tens of ms for EfficientNet), and :func:`restore` recomputes it: a mismatch, or an
entry without one, raises :class:`CorruptCacheError` naming the entry, and ``catalogue`` rebuilds
it. Leftover ``.tmp-discard-*`` of :func:`discard` (a folder or, where an entry was replaced by
a file, a file) are removed on the next :func:`save`.

Weights are a nested dict (string keys) of float32 arrays; they come back as NumPy arrays.
"""

from __future__ import annotations

import datetime
import hashlib
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

from featviz import home

__all__ = [
  "CorruptCacheError",
  "discard",
  "entries",
  "entry_path",
  "lookup",
  "read_metadata",
  "restore",
  "root",
  "save",
  "weights_digest",
]

_METADATA = "metadata.json"
_WEIGHTS = "weights"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # A temp folder untouched for an hour is a crash's leftover, not a writer.
_KEY_DIGITS = 16  # Hex digits of the sha256 in a folder name: 64 bits.


class CorruptCacheError(RuntimeError):
  """A cache entry exists but is unreadable or disagrees with its metadata."""


def root() -> pathlib.Path:
  """The cache root: ``$FEATVIZ_HOME`` if set, else ``~/.cache/featviz``."""
  return home.root()


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


def weights_digest(tree: Mapping[str, Any]) -> str:
  """sha256 over every leaf of a nested dict of arrays: ``path|dtype|shape|`` then its bytes,
  leaves in sorted path order (so the digest does not depend on dict order)."""
  leaves: list[tuple[str, np.ndarray]] = []

  def walk(node: Mapping[str, Any], prefix: str) -> None:
    for key, value in node.items():
      if isinstance(value, Mapping):
        walk(value, f"{prefix}{key}/")
      else:
        leaves.append((f"{prefix}{key}", np.asarray(value)))

  walk(tree, "")
  h = hashlib.sha256()
  for path, array in sorted(leaves, key=lambda kv: kv[0]):
    h.update(f"{path}|{array.dtype.str}|{list(array.shape)}|".encode())
    h.update(np.ascontiguousarray(array).tobytes())
  return h.hexdigest()


def _as_numpy(tree: Mapping[str, Any]) -> dict[str, Any]:
  return {k: _as_numpy(v) if isinstance(v, Mapping) else np.asarray(v) for k, v in tree.items()}


def _remove(path: pathlib.Path) -> None:
  """Removes a folder tree, or a file or symlink (``rmtree`` cannot), ignoring races."""
  try:
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path, ignore_errors=True)
    else:
      path.unlink()
  except FileNotFoundError:
    pass  # Another process removed it first.


def _clean_stale_tmp(models: pathlib.Path) -> None:
  now = time.time()
  for tmp in models.glob(_TMP_PREFIX + "*"):
    try:
      # A discarded entry is never read again, whatever its age; a build may still be written.
      if tmp.name.startswith(f"{_TMP_PREFIX}discard-") or (
        now - tmp.lstat().st_mtime > _STALE_TMP_S
      ):
        _remove(tmp)
    except OSError:
      pass  # Another process removed or renamed it first.


def _save_weights(path: pathlib.Path, weights: Mapping[str, Any]) -> None:
  """Writes the orbax checkpoint (a function of its own so tests can interrupt it)."""
  import orbax.checkpoint as ocp  # Imported on first use: it is slow to import.

  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(path.absolute(), weights)
    checkpointer.wait_until_finished()


def save(
  name: str,
  sha256: str,
  source: str,
  weights: Mapping[str, Any],
  extra: Mapping[str, Any] | None = None,
) -> pathlib.Path:
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
    arrays = _as_numpy(weights)
    _save_weights(tmp / _WEIGHTS, arrays)
    metadata = {
      "model": name,
      "source": source,
      "sha256": sha256,
      "featviz_version": home.VERSION,
      "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
      **(extra or {}),
      "shapes": shapes,
      "weights_sha256": weights_digest(arrays),
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
  return CorruptCacheError(
    f"corrupt featviz cache entry {path}: {what}. It is safe to delete "
    f"it (rm -r '{path}'); the next load converts the weights again"
  )


def restore(path: pathlib.Path, name: str, sha256: str) -> tuple[dict[str, Any], dict[str, Any]]:
  """Restores an entry's weights (NumPy float32) and metadata, checked against each other.

  Raises:
    CorruptCacheError: metadata missing or not for ``(name, sha256)``, the checkpoint
      unreadable, its tree or shapes differ from the recorded ones, or its arrays' digest
      differs from the recorded ``weights_sha256`` (or none was recorded).
  """
  metadata = read_metadata(path)
  if metadata.get("model") != name or metadata.get("sha256") != sha256:
    raise _corrupt(
      path,
      f"its metadata is for {metadata.get('model')!r} sha256 "
      f"{metadata.get('sha256')!r}, expected {name!r} sha256 {sha256!r}",
    )
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
  recorded = metadata.get("weights_sha256")
  if not isinstance(recorded, str):
    raise _corrupt(
      path,
      f"its {_METADATA} records no weights_sha256 (written by an older "
      "featviz), so its weights cannot be checked",
    )
  digest = weights_digest(weights)
  if digest != recorded:
    raise _corrupt(
      path,
      f"its weights do not match the digest recorded when they were "
      f"converted (weights_sha256 {recorded[:16]}..., restored {digest[:16]}...): "
      "the data files are damaged",
    )
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
    if re.fullmatch(f"[0-9a-f]{{{_KEY_DIGITS}}}", path.name[len(name) + 1 :]):
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
  _remove(doomed)
