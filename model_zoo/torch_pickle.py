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

**Bounded.** A tiny file must not allocate gigabytes (red-team report, section 2: a 531-byte
stride-0 view copied out to 1.3 GB, 64 such keys in 10 kB to 4.4 GB, a 1 MB zip bomb to 2.3 GB).
So nothing is inflated or copied before it is bounded:

* the tensors of a file together may hold at most :data:`ALIAS_FACTOR` times the bytes of the
  storages they view, plus :data:`ALIAS_SLACK` (tied weights share a storage, twice; stride-0
  "expanded" views and hundreds of keys on one storage are refused before the copy);
* zip members (the pickle, each storage, each ``.npy``) are read in :data:`CHUNK` pieces, and
  all of them together may inflate to at most :data:`EXPANSION_FACTOR` times the file's size
  plus :data:`EXPANSION_SLACK`; ``data.pkl`` alone to at most :data:`MAX_PICKLE`.

**Lazy.** With ``lazy=True`` (:func:`load_state_dict`, :func:`load_npz`) the values are
:class:`LazyTensor` s: shape and dtype known, bytes read only when NumPy asks for the array.
An architecture's converter checks every name and shape first (``np.shape`` reads nothing), so
a file for another model, or with extra huge entries, is refused having read only its pickle.

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

__all__ = [
  "CheckpointError",
  "ExpansionError",
  "LazyTensor",
  "UnsafeCheckpointError",
  "WeightDtypeError",
  "load_npz",
  "load_state_dict",
]

# torch/serialization.py: MAGIC_NUMBER and PROTOCOL_VERSION of the legacy layout.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_MAGIC = b"PK\x03\x04"  # A zip local file header; torch's _is_zipfile tests the same bytes.

# Tied weights (an embedding and its output layer) make two tensors of one storage; more sharing
# than that, or a stride-0 view, is how a small file claims a huge tensor.
ALIAS_FACTOR = 2
ALIAS_SLACK = 1 << 20  # 1 MiB: scalars and counters of tiny files are never refused.
# torch.save and np.savez store members uncompressed (ZIP_STORED: 1:1); savez_compressed float
# weights deflate to about 0.9 of their size (mantissas are near random), mostly-zero (pruned)
# ones further. 32x covers those; a zip bomb inflates 1000:1.
EXPANSION_FACTOR = 32
EXPANSION_SLACK = 16 << 20  # 16 MiB, for tiny files with a few real tensors.
MAX_PICKLE = 64 << 20  # data.pkl of a 100k-tensor model is a few MB.
CHUNK = 1 << 20  # zip members are inflated 1 MiB at a time.


class CheckpointError(ValueError):
  """A file that is not a readable PyTorch ``state_dict`` (empty, truncated, corrupt, other)."""


class UnsafeCheckpointError(CheckpointError):
  """The pickle asked for a global outside the allow-list; nothing it named was run."""


class ExpansionError(CheckpointError):
  """A file that would expand past its bounds (a zip bomb, a stride-0 or aliased tensor bomb)."""


class WeightDtypeError(CheckpointError):
  """A tensor whose dtype is no real number (complex, string, object): it cannot be a weight."""


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
  """Stand-in for ``torch.FloatStorage`` and kin: only names a dtype, cannot be called."""

  name: str
  dtype: str  # little-endian NumPy type code; the file's byte order is applied later


# The storage classes torch pickles (torch/storage.py, `_LegacyStorage` subclasses).
_STORAGE_TYPES = {
  name: _StorageType(name, dtype)
  for name, dtype in [
    ("DoubleStorage", "<f8"),
    ("FloatStorage", "<f4"),
    ("HalfStorage", "<f2"),
    ("BFloat16Storage", "bfloat16"),
    ("LongStorage", "<i8"),
    ("IntStorage", "<i4"),
    ("ShortStorage", "<i2"),
    ("CharStorage", "i1"),
    ("ByteStorage", "u1"),
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
    raise CheckpointError(
      f"bad tensor geometry: offset {storage_offset!r}, size {size!r}, stride {stride!r}"
    )
  return _TensorRef(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor_v2(
  storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
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
        f"{', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED))}"
      ) from None

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and len(pid) in (5, 6)):
      raise CheckpointError(
        f"{self._where}: unsupported persistent id {pid!r:.200} "
        "(only tensor storages are supported: is this a pickled module?)"
      )
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


class _Budget:
  """What one file may still expand to: inflated zip bytes, and tensor bytes over storages."""

  def __init__(self, where: str, file_size: int):
    self.where = where
    self.inflate_left = EXPANSION_FACTOR * file_size + EXPANSION_SLACK
    self.file_size = file_size
    self.storage_bytes = 0  # of every storage the tensors view (set once they are known)
    self.tensor_bytes = 0

  def inflate(self, nbytes: int, what: str) -> None:
    if nbytes > self.inflate_left:
      raise ExpansionError(
        f"{self.where}: {what} would inflate to {nbytes} bytes, past what a file of "
        f"{self.file_size} bytes may expand to ({EXPANSION_FACTOR}x its size + "
        f"{EXPANSION_SLACK >> 20} MiB in all): refusing a zip bomb"
      )
    self.inflate_left -= nbytes

  def tensor(self, nbytes: int, name: str, shape: tuple[int, ...]) -> None:
    limit = ALIAS_FACTOR * self.storage_bytes + ALIAS_SLACK
    if self.tensor_bytes + nbytes > limit:
      raise ExpansionError(
        f"{self.where}: tensor {name!r} {shape} would take the tensors to "
        f"{self.tensor_bytes + nbytes} bytes, but their storages hold {self.storage_bytes}: "
        f"tensors may hold at most {ALIAS_FACTOR}x their storages' bytes + "
        f"{ALIAS_SLACK >> 20} MiB, so stride-0 views and many tensors on one storage are "
        "refused"
      )
    self.tensor_bytes += nbytes


def _read_member(
  archive: zipfile.ZipFile, name: str, nbytes: int, budget: _Budget, skip: int = 0
) -> memoryview:
  """Bytes ``skip .. skip + nbytes`` of member ``name``, inflated :data:`CHUNK` at a time."""
  info = archive.getinfo(name)
  if skip + nbytes > info.file_size:
    raise CheckpointError(
      f"{budget.where}: member {name!r} holds {info.file_size} bytes, {skip + nbytes} needed"
    )
  budget.inflate(skip + nbytes, f"member {name!r}")
  out = bytearray(nbytes)
  view = memoryview(out)
  with archive.open(info) as f:
    while skip > 0:  # an .npy header, before the array's bytes
      got = len(f.read(min(skip, CHUNK)))
      skip = skip - got if got else 0
    done = 0
    while done < nbytes:
      got = f.readinto(view[done : done + CHUNK])
      if not got:
        raise CheckpointError(f"{budget.where}: member {name!r} ends after {done} bytes")
      done += got
  return view


def _size(shape: tuple[int, ...]) -> int:
  n = 1
  for d in shape:
    n *= d
  return n


class LazyTensor:
  """A tensor of a weight file whose bytes are read only when NumPy asks for the array.

  ``shape`` and ``dtype`` (native byte order) are known without reading; ``np.shape`` and
  ``np.ndim`` read nothing, ``np.asarray(t, dtype)`` reads (once) and casts. ``cast`` is the
  dtype it was last cast to (None: never cast), so that a converter's casts can be reported.
  """

  __slots__ = ("name", "shape", "dtype", "cast", "_read", "_array")

  def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype, read):
    self.name, self.shape, self.dtype = name, tuple(shape), np.dtype(dtype).newbyteorder("=")
    self.cast: np.dtype | None = None
    self._read, self._array = read, None

  @property
  def ndim(self) -> int:
    return len(self.shape)

  @property
  def materialized(self) -> bool:
    return self._array is not None

  def __repr__(self) -> str:
    return f"LazyTensor({self.name!r}, {self.shape}, {self.dtype})"

  def __array__(self, dtype=None, copy=None):
    del copy  # the array is always this object's own
    if self._array is None:
      self._array = self._read()
    if dtype is None or np.dtype(dtype) == self._array.dtype:
      return self._array
    dtype = np.dtype(dtype)
    if self.dtype.kind not in "fiub" or (self.dtype.kind == "c") != (dtype.kind == "c"):
      raise WeightDtypeError(
        f"tensor {self.name!r} is {self.dtype}, which cannot be a weight cast to {dtype}: "
        "weights are real numbers (float16, bfloat16, float32, float64, or integers)"
      )
    self.cast = dtype
    return self._array.astype(dtype)


def _read_zip(data: bytes, where: str, budget: _Budget):
  """Returns (pickled object, {root key: read() -> 1-D array}) from a zip-layout checkpoint."""
  archive = zipfile.ZipFile(io.BytesIO(data))
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
  if len(pickles) != 1:
    raise CheckpointError(
      f"{where}: a zip archive but not a PyTorch checkpoint: expected one "
      f"<folder>/data.pkl, found {pickles or 'none'}"
    )
  top = pickles[0][: -len("data.pkl")]
  names = set(archive.namelist())
  little = True
  if top + "byteorder" in names:
    size = min(archive.getinfo(top + "byteorder").file_size, 16)
    order = (
      bytes(_read_member(archive, top + "byteorder", size, budget))
      .decode("ascii", "replace")
      .strip()
    )
    if order not in ("little", "big"):
      raise CheckpointError(f"{where}: unknown byteorder record {order!r}")
    little = order == "little"
  info = archive.getinfo(pickles[0])
  if info.file_size > MAX_PICKLE:
    raise ExpansionError(
      f"{where}: {pickles[0]} inflates to {info.file_size} bytes; a "
      f"state_dict's pickle is at most {MAX_PICKLE >> 20} MiB"
    )
  storages: dict[str, tuple[_StorageType, int]] = {}
  pickled = _read_member(archive, pickles[0], info.file_size, budget)
  obj = _unpickle(io.BytesIO(pickled), where, storages)
  del pickled
  roots = {}
  for key, (kind, numel) in storages.items():
    record = f"{top}data/{key}"
    if record not in names:
      raise CheckpointError(f"{where}: storage record {record!r} is missing")
    dtype = _dtype(kind, little)
    held = archive.getinfo(record).file_size
    if numel < 0 or held < numel * dtype.itemsize:
      raise CheckpointError(
        f"{where}: storage {record!r} holds {held} bytes, expected {numel} x {dtype.itemsize}"
      )
    budget.storage_bytes += numel * dtype.itemsize

    def read(record=record, dtype=dtype, numel=numel):
      raw = _read_member(archive, record, numel * dtype.itemsize, budget)
      return np.frombuffer(raw, dtype, count=numel)

    roots[key] = read
  return obj, roots


def _read_legacy(data: bytes, where: str, budget: _Budget):
  """Returns (pickled object, {root key: read() -> 1-D array}) from a legacy-layout checkpoint."""
  stream = io.BytesIO(data)
  unused: dict = {}
  try:
    magic = _unpickle(stream, where, unused)
  except CheckpointError:
    raise
  except Exception:  # noqa: BLE001 - any failure to read it means "no magic number".
    magic = None
  if magic != _LEGACY_MAGIC:
    raise CheckpointError(
      f"{where}: not a PyTorch checkpoint: neither a zip archive nor the "
      "legacy layout (its magic number is missing)"
    )
  protocol = _unpickle(stream, where, unused)
  if protocol != _LEGACY_PROTOCOL:
    raise CheckpointError(
      f"{where}: legacy protocol version {protocol!r}, expected {_LEGACY_PROTOCOL}"
    )
  sys_info = _unpickle(stream, where, unused)
  if not isinstance(sys_info, dict):
    raise CheckpointError(f"{where}: legacy sys_info is a {type(sys_info).__name__}, not a dict")
  little = bool(sys_info.get("little_endian", True))
  storages: dict[str, tuple[_StorageType, int]] = {}
  obj = _unpickle(stream, where, storages)
  keys = _unpickle(stream, where, unused)
  if not isinstance(keys, list) or set(keys) != set(storages):
    raise CheckpointError(
      f"{where}: the legacy storage key list does not match the storages the tensors use"
    )
  roots = {}
  for key in keys:
    kind, numel = storages[key]
    dtype = _dtype(kind, little)
    start = stream.tell()
    header = stream.read(8)  # The element count, an int64 in the file's byte order.
    count = int.from_bytes(header, "little" if little else "big", signed=True)
    end = start + 8 + numel * dtype.itemsize
    if len(header) < 8 or numel < 0 or end > len(data):
      raise CheckpointError(
        f"{where}: truncated: storage {key!r} needs bytes {start}-{end}, the file has {len(data)}"
      )
    if count != numel:
      raise CheckpointError(
        f"{where}: storage {key!r} holds {count} elements, its tensors declare {numel}"
      )
    budget.storage_bytes += numel * dtype.itemsize
    array = np.frombuffer(data, dtype, count=numel, offset=start + 8)  # a view: no expansion
    roots[key] = lambda array=array: array
    stream.seek(end)
  return obj, roots


def _materialize(ref: _TensorRef, roots: dict, cache: dict, budget: _Budget, name: str):
  """Copies the strided view ``ref`` out of its storage, after checking it stays inside and
  within the file's budget (:class:`_Budget`)."""
  where = budget.where
  storage = ref.storage
  bad = (
    f"{where}: tensor {name!r} has a negative size, stride or offset, or a storage view "
    "past its storage's end"
  )
  if min((storage.offset, storage.numel, ref.offset, *ref.size, *ref.stride), default=0) < 0:
    raise CheckpointError(bad)
  if 0 not in ref.size:
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= storage.numel:
      raise CheckpointError(
        f"{where}: tensor {name!r} (offset {ref.offset}, size {ref.size}, "
        f"stride {ref.stride}) reaches element {last} of a storage of "
        f"{storage.numel}"
      )
    # Bounded before anything is inflated or copied.
    budget.tensor(_size(ref.size) * _dtype(storage.type, True).itemsize, name, ref.size)
  if storage.key not in cache:
    cache[storage.key] = roots[storage.key]()
  root = cache[storage.key]
  if storage.offset + storage.numel > root.size:
    raise CheckpointError(bad)
  if 0 in ref.size:
    return np.zeros(ref.size, root.dtype.newbyteorder("="))
  base = root[storage.offset + ref.offset :]
  itemsize = root.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
    base, shape=ref.size, strides=[s * itemsize for s in ref.stride], writeable=False
  )
  return np.array(view, dtype=root.dtype.newbyteorder("="), order="C")  # A copy: owned, writable.


def _guarded(where: str, what: str, read):
  """``read`` with every failure but ours turned into a :class:`CheckpointError`."""

  def call():
    try:
      return read()
    except CheckpointError:
      raise
    except Exception as e:  # Any failure to parse arbitrary bytes means a damaged file.
      raise CheckpointError(
        f"{where}: truncated or corrupt {what} ({type(e).__name__}: {e})"
      ) from e

  return call


def _parse(data: bytes, where: str) -> dict[str, LazyTensor]:
  if not data:
    raise CheckpointError(f"{where}: the file is empty")
  budget = _Budget(where, len(data))
  if data.startswith(_ZIP_MAGIC):
    obj, roots = _read_zip(data, where, budget)
  else:
    obj, roots = _read_legacy(data, where, budget)
  if not isinstance(obj, dict):
    raise CheckpointError(
      f"{where}: holds a {type(obj).__name__}, not a state_dict (a dict of tensors)"
    )
  state, cache = {}, {}
  for name, value in obj.items():
    if type(name) is not str or not isinstance(value, _TensorRef):
      raise CheckpointError(
        f"{where}: entry {name!r:.100} is a {type(value).__name__}, not a "
        "tensor; expected a state_dict (a dict of name -> tensor)"
      )
    if value.storage.key not in roots:
      raise CheckpointError(f"{where}: tensor {name!r} views an unknown storage")
    dtype = _dtype(value.storage.type, True)  # LazyTensor reports native byte order
    read = _guarded(
      where,
      "PyTorch checkpoint",
      lambda ref=value, name=name: _materialize(ref, roots, cache, budget, name),
    )
    state[name] = LazyTensor(name, value.size, dtype, read)
  return state


def _read_file(path: str | os.PathLike) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def load_state_dict(
  path: str | os.PathLike, *, lazy: bool = False
) -> dict[str, np.ndarray] | dict[str, LazyTensor]:
  """Reads a PyTorch ``state_dict`` file (zip or legacy layout) into NumPy arrays.

  Args:
    path: a file written by ``torch.save(module.state_dict(), path)``.
    lazy: return :class:`LazyTensor` s, read when used (after a converter checked names and
      shapes); False: read every tensor now.

  Returns:
    ``{name: array}`` in the file's order; arrays keep PyTorch's shapes (convolutions OIHW) and
    dtypes (``num_batches_tracked`` is a 0-d int64), C-contiguous, native byte order.

  Raises:
    UnsafeCheckpointError: the pickle names a global outside the allow-list (never run).
    ExpansionError: the file would expand past its bounds (module docstring).
    CheckpointError: the file is empty, truncated, corrupt, or holds something other than a
      dict of tensors.
    OSError: the file cannot be read.
  """
  where = os.fspath(path)
  state = _guarded(where, "PyTorch checkpoint", lambda: _parse(_read_file(path), where))()
  return state if lazy else {name: np.asarray(t) for name, t in state.items()}


def load_npz(
  path: str | os.PathLike, *, lazy: bool = False
) -> dict[str, np.ndarray] | dict[str, LazyTensor]:
  """Reads an ``np.savez`` file like ``np.load(path, allow_pickle=False)``, bounded.

  Only the ``.npy`` headers are read up front; each array's bytes are inflated in
  :data:`CHUNK` pieces when it is used, within the file's expansion budget (a 1.8 MB file of a
  1 GiB zero member is refused, not inflated).

  Raises:
    CheckpointError: a damaged file, or an object array (never unpickled).
    ExpansionError: an array past the file's expansion budget.
  """
  where = os.fspath(path)

  def parse():
    data = _read_file(path)
    budget = _Budget(where, len(data))
    archive = zipfile.ZipFile(io.BytesIO(data))
    state = {}
    for info in archive.infolist():
      if not info.filename.endswith(".npy"):
        raise CheckpointError(f"{where}: member {info.filename!r} is not an .npy array")
      with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        header = (
          np.lib.format.read_array_header_1_0
          if version == (1, 0)
          else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(f, max_header_size=10_000)
        offset = f.tell()
      if dtype.hasobject:
        raise CheckpointError(
          f"{where}: {info.filename!r} is an object array; object arrays "
          "cannot be loaded when allow_pickle=False (they would unpickle)"
        )
      nbytes = _size(shape) * dtype.itemsize
      if offset + nbytes > info.file_size:
        raise CheckpointError(
          f"{where}: {info.filename!r} declares {shape} {dtype} "
          f"({nbytes} bytes) but holds {info.file_size - offset}"
        )
      budget.storage_bytes += nbytes

      def read(info=info, shape=shape, fortran=fortran, dtype=dtype, offset=offset, nbytes=nbytes):
        raw = _read_member(archive, info.filename, nbytes, budget, skip=offset)
        array = np.frombuffer(raw, dtype, count=_size(shape)).reshape(
          shape, order="F" if fortran else "C"
        )
        return np.ascontiguousarray(array, dtype.newbyteorder("="))

      name = info.filename[: -len(".npy")]
      state[name] = LazyTensor(name, shape, dtype, _guarded(where, ".npz", read))
    return state

  state = _guarded(where, ".npz", parse)()
  return state if lazy else {name: np.asarray(t) for name, t in state.items()}
