"""Weight files and the weight cache against the red team (report sections 2 and 3; issue 17).

Tiny files that claim huge tensors (stride-0 views, one storage under many keys, zip and
``.npz`` bombs) must be refused before the memory is taken: each test measures the peak of
NumPy's allocations with ``tracemalloc`` (NumPy reports its buffers to it). The payloads are
written byte by byte, as in the report's ``mkevil.py``, sized at 128 to 256 MiB so that the
unfixed reader's allocation is harmless on a shared machine. Then: NaN weights are refused at
conversion, casts are reported, and a flipped bit in the cache is detected and repaired.
"""

import importlib.resources
import io
import shutil
import struct
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

from featviz import zoo
from featviz.cli import errors as cli_errors
from featviz.zoo import torch_pickle

MIB = 1 << 20


def _global(module, name):
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text):
  data = text.encode()
  return b"X" + struct.pack("<I", len(data)) + data


def _int(n):
  return b"J" + struct.pack("<i", n)


def _storage(key, numel):
  return (
    b"("
    + _str("storage")
    + _global("torch", "FloatStorage")
    + _str(key)
    + _str("cpu")
    + _int(numel)
    + b"tQ"
  )


def _tensor(key, numel, size, stride, offset=0):
  return (
    _global("torch._utils", "_rebuild_tensor_v2")
    + b"("
    + _storage(key, numel)
    + _int(offset)
    + b"("
    + b"".join(map(_int, size))
    + b"t("
    + b"".join(map(_int, stride))
    + b"t\x89"
    + _global("collections", "OrderedDict")
    + b")RtR"
  )


def _write(path, entries, storages, deflate=False):
  """A zip-layout checkpoint: ``entries`` {name: tensor pickle}, ``storages`` {key: bytes}."""
  pkl = (
    b"\x80\x02"
    + _global("collections", "OrderedDict")
    + b")R("
    + b"".join(_str(k) + t for k, t in entries.items())
    + b"u."
  )
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", pkl)
    z.writestr("archive/byteorder", "little")
    for key, data in storages.items():
      z.writestr(f"archive/data/{key}", data)
  return path


def _bomb_checkpoint(path, numel):
  """One storage of ``numel`` zero floats, deflated (about 1000:1), viewed by one tensor."""
  pkl = (
    b"\x80\x02"
    + _global("collections", "OrderedDict")
    + b")R("
    + _str("w")
    + _tensor("0", numel, (numel,), (1,))
    + b"u."
  )
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pkl)
    z.writestr("archive/byteorder", "little")
    info = zipfile.ZipInfo("archive/data/0")
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as f:
      zeros = bytes(MIB)
      for _ in range(numel * 4 // MIB):
        f.write(zeros)
  return path


def _peak(fn):
  """(exception or None, peak MiB NumPy and Python allocated while ``fn`` ran)."""
  tracemalloc.start()
  try:
    try:
      fn()
      error = None
    except Exception as e:  # noqa: BLE001 - the memory is checked first, the refusal after
      error = e
    return error, tracemalloc.get_traced_memory()[1] / MIB
  finally:
    tracemalloc.stop()


def test_a_stride_0_view_of_4_bytes_is_refused_before_the_copy(tmp_path):
  path = tmp_path / "bomb.pth"
  _write(path, {"w": _tensor("0", 1, (8192, 8192), (0, 0))}, {"0": b"\0" * 4})
  assert path.stat().st_size < 1000
  error, peak = _peak(lambda: torch_pickle.load_state_dict(path))
  assert peak < 32, f"{peak:.0f} MiB allocated for a {path.stat().st_size}-byte file"
  assert isinstance(error, torch_pickle.ExpansionError) and "stride-0" in str(error)
  assert isinstance(error, cli_errors.USAGE_ERRORS)


def test_one_storage_under_many_keys_is_refused(tmp_path):
  path = tmp_path / "alias.pth"
  numel = 1 << 20  # 4 MiB, deflated to a few kB
  storage = np.zeros(numel, np.float32).tobytes()
  _write(
    path,
    {f"k{j}": _tensor("0", numel, (1024, 1024), (1024, 1)) for j in range(64)},
    {"0": storage},
    deflate=True,
  )
  error, peak = _peak(lambda: torch_pickle.load_state_dict(path))
  assert peak < 64, f"{peak:.0f} MiB allocated"
  assert isinstance(error, torch_pickle.ExpansionError)


def test_a_zip_bomb_storage_is_not_inflated(tmp_path):
  path = _bomb_checkpoint(tmp_path / "zipbomb.pth", 32 * MIB)  # 128 MiB of zeros
  assert path.stat().st_size < 2 * MIB
  error, peak = _peak(lambda: torch_pickle.load_state_dict(path))
  assert peak < 64, f"{peak:.0f} MiB allocated"
  assert isinstance(error, torch_pickle.ExpansionError) and "zip bomb" in str(error)


def test_a_zip_bomb_pickle_is_not_inflated(tmp_path):
  payload = 96 * MIB
  pkl = b"\x80\x04\x8e" + struct.pack("<Q", payload)  # BINBYTES8: a 96 MiB bytes object
  path = tmp_path / "pklbomb.pth"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    with z.open("archive/data.pkl", "w", force_zip64=True) as f:
      f.write(pkl)
      zeros = bytes(MIB)
      for _ in range(payload // MIB):
        f.write(zeros)
      f.write(b".")
  error, peak = _peak(lambda: torch_pickle.load_state_dict(path))
  assert peak < 64, f"{peak:.0f} MiB allocated"
  assert isinstance(error, torch_pickle.ExpansionError)


def _mnist_state():
  ref = importlib.resources.files("featviz.zoo").joinpath("weights/mnist_cnn.npz")
  with np.load(str(ref)) as npz:
    return {k: npz[k] for k in npz.files}


def _npz_bomb(path, extra_bytes):
  """The real mnist_cnn weights plus a member ``bomb`` of zeros, deflated."""
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
    for key, value in _mnist_state().items():
      buf = io.BytesIO()
      np.lib.format.write_array(buf, value)
      z.writestr(f"{key}.npy", buf.getvalue())
    with z.open("bomb.npy", "w", force_zip64=True) as f:
      np.lib.format.write_array_header_1_0(
        f, {"descr": "<f4", "fortran_order": False, "shape": (extra_bytes // 4,)}
      )
      zeros = bytes(MIB)
      for _ in range(extra_bytes // MIB):
        f.write(zeros)
  return path


def test_an_npz_bomb_is_refused_by_name_before_it_is_read(tmp_path, featviz_home):
  path = _npz_bomb(tmp_path / "bomb.npz", 128 * MIB)
  error, peak = _peak(lambda: zoo.convert("mnist_cnn", weights=path))
  assert peak < 64, f"{peak:.0f} MiB allocated"
  assert isinstance(error, cli_errors.USAGE_ERRORS) and "bomb" in str(error)
  error, peak = _peak(lambda: torch_pickle.load_npz(path))  # no architecture: the budget holds
  assert peak < 64 and isinstance(error, torch_pickle.ExpansionError)


def test_the_stride_0_bomb_through_the_zoo_is_refused_by_name(tmp_path, featviz_home):
  path = tmp_path / "bomb.pth"
  _write(path, {f"k{j}": _tensor("0", 1, (4096, 4096), (0, 0)) for j in range(4)}, {"0": b"\0" * 4})
  error, peak = _peak(lambda: zoo.convert("mnist_cnn", weights=path))
  assert peak < 32, f"{peak:.0f} MiB allocated"
  assert isinstance(error, cli_errors.USAGE_ERRORS)


def test_lazy_npz_reads_exactly_what_np_load_reads(tmp_path):
  want = _mnist_state()
  for compressed in (False, True):
    path = tmp_path / f"w{compressed}.npz"
    (np.savez_compressed if compressed else np.savez)(
      path, **want, fortran=np.asfortranarray(np.arange(6.0).reshape(2, 3))
    )
    got = torch_pickle.load_npz(path)
    assert sorted(got) == sorted([*want, "fortran"])
    for key, value in want.items():
      np.testing.assert_array_equal(got[key], value)
      assert got[key].dtype == value.dtype
    np.testing.assert_array_equal(got["fortran"], np.arange(6.0).reshape(2, 3))
    lazy = torch_pickle.load_npz(path, lazy=True)
    assert np.shape(lazy["fc.kernel"]) == want["fc.kernel"].shape
    assert not lazy["fc.kernel"].materialized


def _npz(path, **changes):
  state = _mnist_state()
  state.update(changes)
  np.savez(path, **state)
  return path


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_weights_are_refused_and_not_cached(tmp_path, featviz_home, value):
  state = _mnist_state()
  kernel = state["fc.kernel"].copy()
  kernel[3, 5] = value
  path = _npz(tmp_path / "nan.npz", **{"fc.kernel": kernel})
  error = None
  try:
    zoo.convert("mnist_cnn", weights=path)
  except Exception as e:  # noqa: BLE001
    error = e
  assert not list((featviz_home / "models").glob("mnist_cnn-*"))  # nothing cached
  assert isinstance(error, zoo.WeightMismatchError) and "NaN or inf" in str(error)
  assert "fc.kernel (1 of" in str(error) and isinstance(error, cli_errors.USAGE_ERRORS)


def test_a_cast_is_reported_and_complex_is_refused(tmp_path, featviz_home):
  state = _mnist_state()
  path = _npz(tmp_path / "f64.npz", **{"fc.kernel": state["fc.kernel"].astype(np.float64)})
  with pytest.warns(UserWarning, match=r"fc.kernel \(float64\).*cast to float32"):
    zoo.convert("mnist_cnn", weights=path)
  path = _npz(tmp_path / "c64.npz", **{"fc.kernel": state["fc.kernel"].astype(np.complex64)})
  with pytest.raises(torch_pickle.WeightDtypeError, match="complex64"):
    zoo.convert("mnist_cnn", weights=path)


def _largest_data_file(entry):
  return max((p for p in entry.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


@pytest.mark.parametrize("offset", [350000, 200])
def test_a_flipped_bit_in_the_cache_is_found_and_repaired(featviz_home, offset):
  reference = _mnist_state()
  entry = zoo.convert("mnist_cnn")
  data_file = _largest_data_file(entry)
  data = bytearray(data_file.read_bytes())
  data[offset] ^= 1
  data_file.write_bytes(bytes(data))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model = zoo.load("mnist_cnn")
  for layer, leaves in model.weights.items():
    for leaf, value in leaves.items():
      np.testing.assert_array_equal(np.asarray(value), reference[f"{layer}.{leaf}"])
  assert any("do not match the digest" in str(w.message) for w in caught)
  assert str(entry) in " ".join(str(w.message) for w in caught)


def test_an_entry_replaced_by_a_file_leaves_no_discard_leftover(featviz_home):
  entry = zoo.convert("mnist_cnn")
  shutil.rmtree(entry)
  entry.write_text("not a folder")
  zoo.convert("mnist_cnn")
  assert (entry / "metadata.json").is_file()
  assert [p.name for p in (featviz_home / "models").iterdir() if p.name.startswith(".tmp-")] == []
