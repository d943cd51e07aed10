"""Reads PyTorch ``state_dict`` files with NumPy and the standard library alone (no torch).

A ``.pth`` file is a pickle whose tensors point, through pickle "persistent ids", at raw storages
(flat arrays of one dtype) kept outside the pickle. Two layouts exist:

* **zip** (``torch.save`` since PyTorch 1.6): a zip archive with one top folder, whose name varies
  (``archive/`` or the file's stem), holding ``data.pkl`` (the pickle), ``byteorder`` (``little`` or
  ``big``; absent in old files, which were little-endian) and ``data/<key>`` (one storage's raw
  bytes per file).
* **legacy** (before 1.6, or ``_use_new_zipfile_serialization=False``): five things one after the
  other in one stream: the pickled magic number ``0x1950a86a20f9469cfc6c``, the pickled protocol
  version ``1001``, a pickled ``sys_info`` dict (``little_endian``, type sizes), the main pickle,
  a pickled list of storage keys, then for each key in that order an int64 element count followed
  by the storage's raw bytes.

In both, a tensor is pickled as ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
stride, requires_grad, backward_hooks)``, and a storage as the persistent id
``("storage", torch.FloatStorage, key, location, numel)`` (legacy adds a sixth item,
``view_metadata``: ``None`` or ``(view_key, offset, numel)`` for a storage that is a slice of
another). Offsets, sizes and strides count elements, not bytes.

Unpickling runs code named by the file, so :class:`_Unpickler` resolves globals from an allow-list
of what a tensor checkpoint needs and maps each to a harmless stand-in of our own; anything else
raises :class:`UnsafeCheckpointError` before it is called. Tensors come back as C-contiguous NumPy
arrays in native byte order, copied out of their storage (views and strides resolved).

Example::

  state = load_state_dict("efficientnet-lite0-57934424.pth")
  state["_conv_stem.weight"].shape  # (32, 3, 3, 3), float32, OIHW as PyTorch stores it
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import zipfile
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "UnsafeCheckpointError", "load_state_dict"]

# torch/serialization.py: MAGIC_NUMBER and PROTOCOL_VERSION of the legacy layout.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"  # A zip local file header; torch's _is_zipfile tests the same bytes.


class CheckpointError(ValueError):
  """A file that is not a readable PyTorch ``state_dict`` (empty, truncated, corrupt, other)."""


class UnsafeCheckpointError(CheckpointError):
  """The pickle asked for a global outside the allow-list; nothing it named was run."""


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
  """Stand-in for ``torch.FloatStorage`` and kin: only names a dtype, cannot be called."""

  name: str
  dtype: str  # little-endian NumPy type code; the file's byte order is applied later


# The storage classes torch pickles (torch/storage.py, `_LegacyStorage` subclasses).
_STORAGE_TYPES = {
    name: _StorageType(name, dtype) for name, dtype in [
        ("DoubleStorage", "<f8"), ("FloatStorage", "<f4"), ("HalfStorage", "<f2"),
        ("BFloat16Storage", "bfloat16"), ("LongStorage", "<i8"), ("IntStorage", "<i4"),
        ("ShortStorage", "<i2"), ("CharStorage", "i1"), ("ByteStorage", "u1"),
        ("BoolStorage", "?"),
    ]
}


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageRef:
  """A persistent id resolved: ``numel`` elements of root storage ``key`` from ``offset`` on."""

  key: str
  type: _StorageType
  offset: int
  numel: int


@dataclasses.dataclass(frozen=True, slots=True)
class _TensorRef:
  """A tensor before its storage is read: a strided view into ``storage`` (element units)."""

  storage: _StorageRef
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor(storage, storage_offset, size, stride):
  """Stand-in for ``torch._utils._rebuild_tensor``; checks types, reads nothing yet."""
  if not isinstance(storage, _StorageRef):
    raise CheckpointError(f"a tensor's storage is a {type(storage).__name__}, not a storage")
  ints = [storage_offset, *size, *stride]
  if not all(type(v) is int for v in ints) or len(size) != len(stride):
    raise CheckpointError(f"bad tensor geometry: offset {storage_offset!r}, size {size!r}, "
                          f"stride {stride!r}")
  return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  """Stand-in for ``torch._utils._rebuild_tensor_v2``; autograd fields are dropped."""
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  """Stand-in for ``torch._utils._rebuild_parameter``: a Parameter is its tensor here."""
  del requires_grad, backward_hooks
  return data


# Every global a tensor checkpoint may name, and what we hand back instead.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): kind for name, kind in _STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
  """An unpickler that resolves globals from :data:`_ALLOWED` and storages to references.

  ``storages`` collects ``root key -> (storage type, numel)`` for every storage seen, so that
  the caller knows what raw bytes to read afterwards.
  """

  def __init__(self, file, where: str, storages: dict[str, tuple[_StorageType, int]]):
    super().__init__(file)
    self._where = where
    self._storages = storages

  def find_class(self, module: str, name: str):
    try:
      return _ALLOWED[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f"{self._where}: refusing to load global {module}.{name}: a tensor state_dict "
          f"never needs it, and unpickling it could run code (nothing was executed). Allowed: "
          f"{', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED))}") from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) in (5, 6)):
      raise CheckpointError(f"{self._where}: unsupported persistent id {pid!r:.200} "
                            "(only tensor storages are supported: is this a pickled module?)")
    kind, key, numel = pid[1], pid[2], pid[4]
    view = pid[5] if len(pid) == 6 else None
    if not isinstance(kind, _StorageType) or type(key) is not str or type(numel) is not int:
      raise CheckpointError(f"{self._where}: malformed storage id {pid!r:.200}")
    if self._storages.setdefault(key, (kind, numel)) != (kind, numel):
      raise CheckpointError(f"{self._where}: storage {key!r} is declared twice, differently")
    if view is None:
      return _StorageRef(key, kind, 0, numel)
    _, offset, view_numel = view  # Legacy storage slices: (view_key, offset, numel).
    if type(offset) is not int or type(view_numel) is not int:
      raise CheckpointError(f"{self._where}: malformed storage view {view!r:.200}")
    return _StorageRef(key, kind, offset, view_numel)


def _unpickle(stream: io.BytesIO, where: str, storages: dict) -> Any:
  return _Unpickler(stream, where, storages).load()


def _dtype(kind: _StorageType, little_endian: bool) -> np.dtype:
  if kind.dtype == "bfloat16":
    import ml_dtypes  # A jax dependency; NumPy itself has no bfloat16.
    return np.dtype(ml_dtypes.bfloat16)
  dtype = np.dtype(kind.dtype)
  return dtype if little_endian else dtype.newbyteorder(">")


def _read_zip(data: bytes, where: str):
  """Returns (pickled object, {root key: 1-D array}) from a zip-layout checkpoint."""
  archive = zipfile.ZipFile(io.BytesIO(data))
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
  if len(pickles) != 1:
    raise CheckpointError(f"{where}: a zip archive but not a PyTorch checkpoint: expected one "
                          f"<folder>/data.pkl, found {pickles or 'none'}")
  top = pickles[0][:-len("data.pkl")]
  names = set(archive.namelist())
  little = True
  if top + "byteorder" in names:
    order = archive.read(top + "byteorder").decode("ascii", "replace").strip()
    if order not in ("little", "big"):
      raise CheckpointError(f"{where}: unknown byteorder record {order!r}")
    little = order == "little"
  storages: dict[str, tuple[_StorageType, int]] = {}
  obj = _unpickle(io.BytesIO(archive.read(pickles[0])), where, storages)
  roots = {}
  for key, (kind, numel) in storages.items():
    record = f"{top}data/{key}"
    if record not in names:
      raise CheckpointError(f"{where}: storage record {record!r} is missing")
    dtype = _dtype(kind, little)
    raw = archive.read(record)
    if len(raw) < numel * dtype.itemsize:
      raise CheckpointError(f"{where}: storage {record!r} holds {len(raw)} bytes, "
                            f"expected {numel} x {dtype.itemsize}")
    roots[key] = np.frombuffer(raw, dtype, count=numel)
  return obj, roots


def _read_legacy(data: bytes, where: str):
  """Returns (pickled object, {root key: 1-D array}) from a legacy-layout checkpoint."""
  stream = io.BytesIO(data)
  unused: dict = {}
  try:
    magic = _unpickle(stream, where, unused)
  except CheckpointError:
    raise
  except Exception:  # noqa: BLE001 - any failure to read it means "no magic number".
    magic = None
  if magic != _LEGACY_MAGIC:
    raise CheckpointError(f"{where}: not a PyTorch checkpoint: neither a zip archive nor the "
                          "legacy layout (its magic number is missing)")
  protocol = _unpickle(stream, where, unused)
  if protocol != _LEGACY_PROTOCOL:
    raise CheckpointError(f"{where}: legacy protocol version {protocol!r}, expected "
                          f"{_LEGACY_PROTOCOL}")
  sys_info = _unpickle(stream, where, unused)
  if not isinstance(sys_info, dict):
    raise CheckpointError(f"{where}: legacy sys_info is a {type(sys_info).__name__}, not a dict")
  little = bool(sys_info.get("little_endian", True))
  storages: dict[str, tuple[_StorageType, int]] = {}
  obj = _unpickle(stream, where, storages)
  keys = _unpickle(stream, where, unused)
  if not isinstance(keys, list) or set(keys) != set(storages):
    raise CheckpointError(f"{where}: the legacy storage key list does not match the storages "
                          "the tensors use")
  roots = {}
  for key in keys:
    kind, numel = storages[key]
    dtype = _dtype(kind, little)
    start = stream.tell()
    header = stream.read(8)  # The element count, an int64 in the file's byte order.
    count = int.from_bytes(header, "little" if little else "big", signed=True)
    end = start + 8 + numel * dtype.itemsize
    if len(header) < 8 or end > len(data):
      raise CheckpointError(f"{where}: truncated: storage {key!r} needs bytes {start}-{end}, "
                            f"the file has {len(data)}")
    if count != numel:
      raise CheckpointError(f"{where}: storage {key!r} holds {count} elements, its tensors "
                            f"declare {numel}")
    roots[key] = np.frombuffer(data, dtype, count=numel, offset=start + 8)
    stream.seek(end)
  return obj, roots


def _materialize(ref: _TensorRef, roots: dict[str, np.ndarray], where: str, name: str):
  """Copies the strided view ``ref`` out of its storage, after checking it stays inside."""
  storage = ref.storage
  root = roots[storage.key]
  if (min((storage.offset, storage.numel, ref.offset, *ref.size, *ref.stride), default=0) < 0
      or storage.offset + storage.numel > root.size):
    raise CheckpointError(f"{where}: tensor {name!r} has a negative size, stride or offset, "
                          "or a storage view past its storage's end")
  if 0 in ref.size:
    return np.zeros(ref.size, root.dtype.newbyteorder("="))
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
  if last >= storage.numel:
    raise CheckpointError(f"{where}: tensor {name!r} (offset {ref.offset}, size {ref.size}, "
                          f"stride {ref.stride}) reaches element {last} of a storage of "
                          f"{storage.numel}")
  base = root[storage.offset + ref.offset:]
  itemsize = root.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      base, shape=ref.size, strides=[s * itemsize for s in ref.stride], writeable=False)
  return np.array(view, dtype=root.dtype.newbyteorder("="), order="C")  # A copy: owned, writable.


def _parse(data: bytes, where: str) -> dict[str, np.ndarray]:
  if not data:
    raise CheckpointError(f"{where}: the file is empty")
  if data.startswith(_ZIP_MAGIC):
    obj, roots = _read_zip(data, where)
  else:
    obj, roots = _read_legacy(data, where)
  if not isinstance(obj, dict):
    raise CheckpointError(f"{where}: holds a {type(obj).__name__}, not a state_dict "
                          "(a dict of tensors)")
  state = {}
  for name, value in obj.items():
    if type(name) is not str or not isinstance(value, _TensorRef):
      raise CheckpointError(f"{where}: entry {name!r:.100} is a {type(value).__name__}, not a "
                            "tensor; expected a state_dict (a dict of name -> tensor)")
    state[name] = _materialize(value, roots, where, name)
  return state


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a PyTorch ``state_dict`` file (zip or legacy layout) into NumPy arrays.

  Args:
    path: a file written by ``torch.save(module.state_dict(), path)``.

  Returns:
    ``{name: array}`` in the file's order; arrays keep PyTorch's shapes (convolutions OIHW) and
    dtypes (``num_batches_tracked`` is a 0-d int64), C-contiguous, native byte order.

  Raises:
    UnsafeCheckpointError: the pickle names a global outside the allow-list (never run).
    CheckpointError: the file is empty, truncated, corrupt, or holds something other than a
      dict of tensors.
    OSError: the file cannot be read.
  """
  where = os.fspath(path)
  with open(path, "rb") as f:
    data = f.read()
  try:
    return _parse(data, where)
  except CheckpointError:
    raise
  except Exception as e:  # Any failure to parse arbitrary bytes means a damaged file.
    raise CheckpointError(f"{where}: truncated or corrupt PyTorch checkpoint "
                          f"({type(e).__name__}: {e})") from e
