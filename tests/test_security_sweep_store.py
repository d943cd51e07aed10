"""The sweep store against damage and a second writer (red-team report, section 4; issue 17).

A deleted or garbage unit PNG must be rendered again on resume (it used to crash every later
resume), a lost ``manifest.json`` must not let a resume with other settings adopt the old rows,
a second sweep on the same folder must not delete the first one's temporary files, and no
``.manifest.json.<pid>.new`` may be left behind.
"""

import errno
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from featviz import images
from featviz._sweep import run as sweep
from featviz._sweep import store as S
from featviz.cli import errors as cli_errors

import tiny_cnn

MANIFEST = {
  "format": S.FORMAT,
  "model": "tiny_cnn",
  "weights_sha256": "ab" * 32,
  "featviz_version": "0.1.0",
  "dataset": None,
  "layers": {"conv1": 4},
  "settings": {"batch": 4, "steps": 8, "size": 16, "seed": 0},
}
FAST = dict(batch=4, steps=4, size=24, transforms="none", progress_bar=False)


def _image(value: float, size: int = 8) -> np.ndarray:
  return np.full((size, size, 3), value, np.float32)


def _row(layer, unit, **extra):
  return {
    "layer": layer,
    "unit": unit,
    "png": f"{layer}/{unit:04d}.png",
    "final": 1.0,
    "steps": 8,
    "seed": 0,
    "size": 16,
    **extra,
  }


def _store(tmp_path):
  store = S.Store(tmp_path / "s")
  store.open(MANIFEST)
  store.commit(
    "conv1", 0, {u: _image(0.1 * u) for u in range(4)}, [_row("conv1", u) for u in range(4)]
  )
  return store


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate"])
def test_a_damaged_unit_png_is_not_done(tmp_path, damage):
  store = _store(tmp_path)
  png = store.png("conv1", 3)
  if damage == "delete":
    png.unlink()
  elif damage == "garbage":
    png.write_bytes(b"not a png at all" * 10)
  else:
    png.write_bytes(png.read_bytes()[:-20])
  assert sorted(store.rows()) == [("conv1", 0), ("conv1", 1), ("conv1", 2)]
  assert len(store.rows(intact=False)) == 4  # the row itself stays until it is rendered again
  assert any("conv1:3" in p for p in store.check())


@pytest.mark.parametrize("damage", ["delete", "garbage"])
def test_a_sweep_resumes_past_a_damaged_png_and_renders_it_again(tmp_path, damage):
  model = tiny_cnn.make()
  sweep.sweep(model, ["conv2"], out=tmp_path, **FAST)
  png = tmp_path / "conv2" / "0003.png"
  good = png.read_bytes()
  if damage == "delete":
    png.unlink()
  else:
    png.write_bytes(b"garbage")
  summary = sweep.sweep(model, ["conv2"], out=tmp_path, **FAST)  # used to raise, every time
  assert summary["layers"]["conv2"]["done"] == 6 and sweep.check(tmp_path) == []
  assert png.read_bytes() == good  # the same image: each unit's render is deterministic


def test_a_png_that_does_not_decode_is_left_out_of_the_atlas_and_forgotten(tmp_path):
  store = _store(tmp_path)
  png = store.png("conv1", 2)
  data = bytearray(png.read_bytes())
  data[40:48] = b"\xff" * 8  # inside IDAT: signature and trailer intact, the pixels not
  png.write_bytes(bytes(data))
  assert ("conv1", 2) in store.rows()  # the cheap check cannot tell
  with pytest.warns(UserWarning, match="0002.png does not decode"):
    store.write_atlas("conv1", store.rows().values(), size=8)
  assert ("conv1", 2) not in store.rows(intact=False)  # the next resume renders it


def test_a_lost_manifest_does_not_let_other_settings_adopt_the_rows(tmp_path):
  store = _store(tmp_path)
  (store.root / S.MANIFEST).unlink()
  other = dict(MANIFEST, settings=dict(MANIFEST["settings"], steps=64, seed=5))
  error = None
  try:
    S.Store(store.root).open(other)
  except Exception as e:  # noqa: BLE001 - the harm is checked first, the refusal after
    error = e
  assert not (store.root / S.MANIFEST).exists()  # no manifest claiming 64 steps over 8-step rows
  assert isinstance(error, S.ManifestLostError) and isinstance(error, S.SettingsMismatchError)
  assert "steps: the rows have 8, this run asks 64" in str(error)
  assert "seed: the rows have 0, this run asks 5" in str(error)
  with pytest.raises(S.ManifestLostError, match="cannot be checked"):
    S.Store(store.root).open(MANIFEST)  # even the same visible settings: lr etc. are unknown


@pytest.mark.parametrize("text", ["{trunc", "", "[1, 2, 3]"])
def test_a_corrupt_manifest_names_the_file_and_exits_2(tmp_path, text):
  store = _store(tmp_path)
  (store.root / S.MANIFEST).write_text(text)
  with pytest.raises(S.CorruptStoreError, match="manifest.json") as e:
    S.Store(store.root).open(MANIFEST)
  assert isinstance(e.value, cli_errors.USAGE_ERRORS)


@pytest.mark.parametrize(
  "text",
  ["{trunc", "{}", '{"rows": [{"layer": "conv1", "unit": "zero", "png": "conv1/0000.png"}]}'],
)
def test_a_corrupt_index_file_names_the_file(tmp_path, text):
  store = _store(tmp_path)
  index = store.root / S.INDEX / "conv1" / "00000.json"
  index.write_text(text)
  with pytest.raises(S.CorruptStoreError, match="00000.json") as e:
    store.rows()
  assert isinstance(e.value, cli_errors.USAGE_ERRORS)


_HOLDER = textwrap.dedent("""
    import sys, time
    from featviz import images
    from featviz._sweep import store as S
    store = S.Store(sys.argv[1])
    store.open({"format": S.FORMAT, "model": "tiny_cnn", "weights_sha256": "ab" * 32,
                "featviz_version": "0.1.0", "dataset": None, "layers": {"conv1": 4},
                "settings": {"batch": 4, "steps": 8, "size": 16, "seed": 0}})
    store.remove_temporaries()  # alone on the store: the sweep CLI does this when count == 1
    with images.atomic_write(store.root / "conv1" / "0009.png") as f:  # a live writer
      f.write(b"x")
      print("writing", flush=True)
      sys.stdin.readline()
    print("done", flush=True)
""")


def test_a_second_sweep_cannot_delete_a_live_writers_temporaries(tmp_path):
  store = _store(tmp_path)
  del store
  holder = subprocess.Popen(
    [sys.executable, "-c", _HOLDER, str(tmp_path / "s")],
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
    cwd=tmp_path,  # not the checkout: its featviz/ folder would shadow the installed package
  )
  try:
    assert holder.stdout.readline().strip() == "writing"
    tmp = list((tmp_path / "s" / "conv1").glob(".0009.png.*.tmp"))
    assert len(tmp) == 1
    error, second = None, None
    try:
      second = S.Store(tmp_path / "s")
      second.open(MANIFEST)
      second.remove_temporaries()
    except Exception as e:  # noqa: BLE001 - the harm is checked first, the refusal after
      error = e
    assert tmp[0].exists()  # the live writer's file survived
    assert isinstance(error, S.StoreLockedError) and "another featviz sweep" in str(error)
    assert f"process {holder.pid}" in str(error) and isinstance(error, cli_errors.USAGE_ERRORS)
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "done"
  finally:
    holder.stdin.close()
    holder.wait(timeout=60)
  assert holder.returncode == 0 and (tmp_path / "s/conv1/0009.png").read_bytes() == b"x"
  del second  # this process's own lock goes with its last Store
  free = S.Store(tmp_path / "s")  # the holder is gone: the store is free again
  free.open(MANIFEST)
  free.remove_temporaries()


def test_processes_of_one_sweep_share_the_store(tmp_path):
  a, b = S.Store(tmp_path), S.Store(tmp_path)
  a.open(MANIFEST)
  b.open(MANIFEST, writer=False)  # in one process, or --share / --distributed across several
  a.remove_temporaries()


def test_a_failed_manifest_write_leaves_no_new_file(tmp_path, monkeypatch):
  real = pathlib.Path.write_bytes

  def disk_full(self, data):
    if self.name.endswith(".new"):
      real(self, data[:3])
      raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, data)

  monkeypatch.setattr(pathlib.Path, "write_bytes", disk_full)
  with pytest.raises(OSError):
    S.Store(tmp_path).open(MANIFEST)
  assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".new")] == []


def test_remove_temporaries_cleans_manifest_leftovers(tmp_path):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  (tmp_path / f".{S.MANIFEST}.12345.new").write_bytes(b"")
  images.save_png(_image(0.5), tmp_path / "x.png")
  store.remove_temporaries()
  assert not (tmp_path / f".{S.MANIFEST}.12345.new").exists()


@pytest.mark.parametrize("folder", [S.INDEX, "conv1"])
def test_a_file_where_a_store_folder_belongs_is_a_store_error(tmp_path, folder):
  """Red team, section 4: ``_index`` replaced by a file gave ``FileExistsError`` and a
  traceback; a layer folder replaced by a file the same on the next commit."""
  root = tmp_path / "S"
  root.mkdir()
  (root / folder).write_text("not a folder")
  with pytest.raises(S.StoreError, match=f"{folder} should be a folder of the sweep store") as e:
    sweep.sweep(tiny_cnn.make(), ["conv1"], out=root, units=(0, 2), **FAST)
  assert isinstance(e.value, cli_errors.USAGE_ERRORS)
  assert (root / folder).read_text() == "not a folder"  # nothing of the user's is touched


def test_a_photo_that_does_not_decode_leaves_no_store(tmp_path):
  """Red team, section 4: a truncated photo in --dataset exited 2 naming the file, but left
  ``manifest.json`` and ``_index/`` behind; the photos are now read before the store."""
  photos = tmp_path / "photos"
  photos.mkdir()
  images.save_png(_image(0.3, 24), photos / "good.png")
  (photos / "cut.png").write_bytes((photos / "good.png").read_bytes()[:60])
  root = tmp_path / "S"
  with pytest.raises(ValueError, match="cut.png"):
    sweep.sweep(tiny_cnn.make(), ["conv1"], out=root, units=(0, 2), dataset=photos, **FAST)
  assert not root.exists()
