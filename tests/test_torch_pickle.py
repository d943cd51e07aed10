"""featviz.zoo.torch_pickle: PyTorch state_dict files read without torch.

Small checkpoints are written here by hand in both layouts (see ``_write``), with stand-ins for
``torch.FloatStorage`` and ``torch._utils._rebuild_tensor_v2`` placed in fake ``torch`` modules,
so the reader is covered without torch or ../shared. The references are NumPy's own slicing of
the arrays the checkpoint was made from, and, for the real files, the ``.npz`` twin and the raw
storage records of the zip archive.
"""

import builtins
import collections
import io
import os
import pickle
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

from featviz.zoo import torch_pickle
from featviz.zoo.torch_pickle import CheckpointError, UnsafeCheckpointError

# Storage class name per dtype, as torch pickles them (torch/storage.py).
_STORAGE_NAMES = {
  np.dtype("float64"): "DoubleStorage",
  np.dtype("float32"): "FloatStorage",
  np.dtype("float16"): "HalfStorage",
  np.dtype("int64"): "LongStorage",
  np.dtype("int32"): "IntStorage",
  np.dtype("int16"): "ShortStorage",
  np.dtype("int8"): "CharStorage",
  np.dtype("uint8"): "ByteStorage",
  np.dtype("bool"): "BoolStorage",
}


@pytest.fixture()
def fake_torch(monkeypatch):
  """Fake ``torch`` and ``torch._utils`` modules, so pickle writes torch's global names."""
  torch = types.ModuleType("torch")
  utils = types.ModuleType("torch._utils")

  def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: only its name is pickled")

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  for name in _STORAGE_NAMES.values():
    setattr(torch, name, type(name, (), {"__module__": "torch"}))
  torch._utils = utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch


class _Storage:
  """A flat array that the writer pickles as a persistent id, as torch does."""

  def __init__(self, key: str, data: np.ndarray):
    self.key, self.data = key, np.array(data, order="C").ravel()


class _Tensor:
  """A strided view into a storage; pickles as ``_rebuild_tensor_v2(...)``."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def __reduce__(self):
    rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
    return rebuild, (
      self.storage,
      self.offset,
      tuple(self.size),
      tuple(self.stride),
      False,
      collections.OrderedDict(),
    )


def _tensor(storage: _Storage, view: np.ndarray, base: np.ndarray) -> _Tensor:
  """The _Tensor for ``view``, a NumPy view of ``base`` whose flat data ``storage`` holds."""
  item = base.itemsize
  offset = (view.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // item
  return _Tensor(storage, offset, view.shape, [s // item for s in view.strides])


def _main_pickle(state) -> tuple[bytes, list[_Storage]]:
  storages = []

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if not isinstance(obj, _Storage):
        return None
      if obj not in storages:
        storages.append(obj)
      kind = getattr(sys.modules["torch"], _STORAGE_NAMES[obj.data.dtype])
      return ("storage", kind, obj.key, "cpu", obj.data.size)

  out = io.BytesIO()
  Pickler(out, protocol=2).dump(state)
  return out.getvalue(), storages


def _write(path, state, layout: str, folder: str = "archive", big_endian: bool = False):
  """Writes ``state`` (name -> _Tensor, or anything picklable) as torch.save would."""
  data, storages = _main_pickle(state)
  order = ">" if big_endian else "<"
  raw = {s.key: s.data.astype(s.data.dtype.newbyteorder(order)).tobytes() for s in storages}
  if layout == "zip":
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr(f"{folder}/data.pkl", data)
      archive.writestr(f"{folder}/byteorder", "big" if big_endian else "little")
      for key, payload in raw.items():
        archive.writestr(f"{folder}/data/{key}", payload)
    return
  out = io.BytesIO()
  pickle.dump(0x1950A86A20F9469CFC6C, out, protocol=2)  # torch/serialization.py MAGIC_NUMBER
  pickle.dump(1001, out, protocol=2)  # PROTOCOL_VERSION
  pickle.dump(
    {
      "protocol_version": 1001,
      "little_endian": not big_endian,
      "type_sizes": {"short": 2, "int": 4, "long": 4},
    },
    out,
    protocol=2,
  )
  out.write(data)
  pickle.dump([s.key for s in storages], out, protocol=2)
  for s in storages:
    out.write(np.array(s.data.size, f"{order}i8").tobytes() + raw[s.key])
  path.write_bytes(out.getvalue())


def _plain(name: str, array: np.ndarray) -> _Tensor:
  array = np.array(array, order="C")  # A copy, 0-d kept 0-d.
  return _tensor(_Storage(name, array), array, array)


def _sample_state() -> tuple[dict, dict[str, np.ndarray]]:
  """A state dict of views and dtypes, and the arrays NumPy says each tensor holds."""
  rng = np.random.default_rng(0)
  base = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
  shared = _Storage("0", base)
  expected = {
    "weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
    "view": base[1:, 1:3, ::2],  # storage offset + strides
    "transposed": base.transpose(2, 0, 1),  # non-contiguous
    "base": base,  # three tensors share one storage
    "num_batches_tracked": np.array(7, np.int64),  # 0-d
    "half": rng.standard_normal(5).astype(np.float16),
    "double": rng.standard_normal((2, 2)),
    "mask": np.array([True, False, True]),
    "int8": np.array([-3, 4], np.int8),
    "uint8": np.array([200, 4], np.uint8),
    "int16": np.array([-300, 4], np.int16),
    "int32": np.array([-3, 70000], np.int32),
    "empty": np.zeros((0, 3), np.float32),
  }
  state = collections.OrderedDict()
  for name, array in expected.items():
    if name in ("view", "transposed", "base"):
      state[name] = _tensor(shared, array, base)
    else:
      state[name] = _plain(name, array)
  return state, expected


@pytest.mark.parametrize("layout", ["zip", "legacy"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_handmade_checkpoint_round_trip(fake_torch, tmp_path, layout, big_endian):
  state, expected = _sample_state()
  path = tmp_path / "sample.pth"
  _write(path, state, layout, big_endian=big_endian)
  got = torch_pickle.load_state_dict(path)
  assert list(got) == list(expected)
  for name, want in expected.items():
    assert got[name].dtype == want.dtype.newbyteorder("="), name
    assert got[name].shape == want.shape, name
    np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert got[name].flags.c_contiguous and got[name].flags.writeable, name


def test_zip_top_folder_name_may_vary(fake_torch, tmp_path):
  path = tmp_path / "x.pth"
  _write(path, {"w": _plain("0", np.ones(3, np.float32))}, "zip", folder="my_model_v2")
  np.testing.assert_array_equal(torch_pickle.load_state_dict(path)["w"], np.ones(3))


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_view_past_storage_end_is_refused(fake_torch, tmp_path, layout):
  storage = _Storage("0", np.zeros(6, np.float32))
  path = tmp_path / "x.pth"
  _write(path, {"w": _Tensor(storage, 2, (2, 3), (3, 1))}, layout)  # reaches element 7 of 6
  with pytest.raises(CheckpointError, match="reaches element 7"):
    torch_pickle.load_state_dict(path)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_non_tensor_content_is_refused(fake_torch, tmp_path, layout):
  path = tmp_path / "x.pth"
  _write(path, {"w": _plain("0", np.zeros(2, np.float32)), "epoch": 3}, layout)
  with pytest.raises(CheckpointError, match="'epoch' is a int, not a tensor"):
    torch_pickle.load_state_dict(path)


class _Evil:
  """Unpickling this runs ``func(*args)``: what a malicious checkpoint does."""

  def __init__(self, func, args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _attacks(sentinel):
  """name -> (object whose unpickling runs a command, the global it makes pickle look up)."""
  return {
    "os.system": (_Evil(os.system, (f"touch {sentinel}",)), f"{os.system.__module__}.system"),
    "builtins.eval": (_Evil(builtins.eval, (f"open({str(sentinel)!r}, 'w')",)), "builtins.eval"),
    "subprocess.Popen": (_Evil(subprocess.Popen, (["touch", str(sentinel)],)), "subprocess.Popen"),
  }


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "subprocess.Popen"])
@pytest.mark.parametrize("layout", ["zip", "legacy", "raw_pickle"])
def test_malicious_pickle_is_refused_and_never_run(fake_torch, tmp_path, attack, layout):
  sentinel = tmp_path / "SENTINEL"
  evil, qualified = _attacks(sentinel)[attack]
  path = tmp_path / "evil.pth"
  if layout == "raw_pickle":
    path.write_bytes(pickle.dumps(evil, protocol=4))
  else:
    _write(path, {"w": _plain("0", np.zeros(2, np.float32)), "x": evil}, layout)
  with pytest.raises(UnsafeCheckpointError) as err:
    torch_pickle.load_state_dict(path)
  message = str(err.value)
  assert str(path) in message
  # torch writes protocol 2, where pickle renames modules to their Python 2 names
  # (builtins -> __builtin__, subprocess -> commands); the message names what the file says.
  assert (qualified if layout == "raw_pickle" else qualified.split(".")[-1]) in message
  assert not sentinel.exists()


def test_storage_class_cannot_be_called(fake_torch, tmp_path):
  storage_class = fake_torch.FloatStorage
  path = tmp_path / "x.pth"
  _write(path, {"w": _Evil(storage_class, (1,))}, "zip")
  with pytest.raises(CheckpointError):
    torch_pickle.load_state_dict(path)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_truncated_handmade_file(fake_torch, tmp_path, layout):
  state, _ = _sample_state()
  good = tmp_path / "good.pth"
  _write(good, state, layout)
  data = good.read_bytes()
  for cut in (1, 20, len(data) // 2, len(data) - 1):
    bad = tmp_path / f"cut{cut}.pth"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=str(bad)):
      torch_pickle.load_state_dict(bad)


@pytest.mark.parametrize("content", [b"", b"hello world", b"PK\x03\x04garbage", bytes(1000)])
def test_empty_or_garbage_file(tmp_path, content):
  path = tmp_path / "bad.pth"
  path.write_bytes(content)
  with pytest.raises(CheckpointError, match=str(path)):
    torch_pickle.load_state_dict(path)


def test_error_classes():
  assert issubclass(UnsafeCheckpointError, CheckpointError)
  assert issubclass(CheckpointError, ValueError)


def test_legacy_real_file_matches_npz_twin(shared):
  pth = shared / "weights" / "efficientnet-lite0-57934424.pth"
  assert pth.read_bytes()[:2] != b"PK"  # The legacy layout, not a zip archive.
  got = torch_pickle.load_state_dict(pth)
  with np.load(shared / "weights" / "efficientnet-lite0-57934424.npz") as twin:
    assert list(got) == list(twin.files)
    for name in twin.files:
      assert got[name].dtype == twin[name].dtype, name
      np.testing.assert_array_equal(got[name], twin[name], err_msg=name)
  assert got["_bn0.num_batches_tracked"].shape == ()


def test_zip_real_file_matches_its_storage_records(shared):
  """Each tensor's bytes are one ``data/<key>`` record of the archive, read by zipfile alone."""
  path = shared / "reference" / "inceptionv1" / "random_inception5h.pth"
  got = torch_pickle.load_state_dict(path)
  assert len(got) == 116  # 58 modules x (weight, bias): ../shared/weights/PROVENANCE.md
  assert sum(a.size for a in got.values()) == 7066380
  assert got["conv2d0_pre_relu_conv.weight"].shape == (64, 3, 7, 7)
  assert got["softmax2_pre_activation_matmul.weight"].shape == (1008, 1024)
  with zipfile.ZipFile(path) as archive:
    records = sorted(archive.read(n) for n in archive.namelist() if "/data/" in n)
  assert sorted(a.astype("<f4").tobytes() for a in got.values()) == records


@pytest.mark.parametrize(
  "name",
  ["weights/efficientnet-lite0-57934424.pth", "reference/inceptionv1/random_inception5h.pth"],
)
def test_truncated_real_file(shared, tmp_path, name):
  data = (shared / name).read_bytes()
  for cut in (0, 100, len(data) // 3, len(data) - 10):
    bad = tmp_path / f"cut{cut}.pth"
    bad.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match=str(bad)):
      torch_pickle.load_state_dict(bad)


def test_reader_never_imports_torch(tmp_path):
  """The library runs where torch is absent: reading a file must not import it."""
  code = (
    "import sys, numpy as np; from featviz.zoo import torch_pickle as t\n"
    "try: t.load_state_dict(sys.argv[1])\nexcept t.CheckpointError: pass\n"
    "assert 'torch' not in sys.modules, 'torch was imported'"
  )
  path = tmp_path / "x.pth"
  path.write_bytes(b"junk")
  # cwd: `python -c` puts the working folder on sys.path; the repo root would shadow the
  # installed package with the source folders.
  subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=tmp_path)
