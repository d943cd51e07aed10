"""The sweep store: manifest checks, two-step atomic commits, merged index, consistency."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from featviz import images
from featviz._sweep import store as S

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


def _image(value: float, size: int = 8) -> np.ndarray:
  return np.full((size, size, 3), value, np.float32)


def _row(layer: str, unit: int, **extra) -> dict:
  return {"layer": layer, "unit": unit, "png": f"{layer}/{unit:04d}.png", "final": 1.0, **extra}


def test_open_creates_then_accepts_the_same_settings(tmp_path):
  store = S.Store(tmp_path / "s")
  store.open(MANIFEST)
  stored = json.loads((tmp_path / "s" / S.MANIFEST).read_text())
  assert stored["settings"] == MANIFEST["settings"]
  later = dict(MANIFEST, layers={"conv3": 8}, created="later")  # more layers: fine
  assert store.open(later)["layers"] == {"conv1": 4, "conv3": 8}


def test_other_settings_are_refused_with_each_difference_named(tmp_path):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  other = dict(
    MANIFEST, weights_sha256="cd" * 32, settings=dict(MANIFEST["settings"], steps=16, seed=3)
  )
  with pytest.raises(S.SettingsMismatchError) as err:
    store.open(other)
  message = str(err.value)
  assert "settings.steps: store has 8, this run asks 16" in message
  assert "settings.seed: store has 0, this run asks 3" in message
  assert "weights_sha256" in message and "batch" not in message and "size" not in message


def test_only_the_writer_records_layers(tmp_path):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  store.open(dict(MANIFEST, layers={"conv2": 6}), writer=False)
  assert json.loads((tmp_path / S.MANIFEST).read_text())["layers"] == {"conv1": 4}


def test_commit_writes_pngs_and_merges_the_chunk_index(tmp_path):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  store.commit("conv1", 0, {0: _image(0.2), 2: _image(0.4)}, [_row("conv1", 0), _row("conv1", 2)])
  store.commit("conv1", 0, {1: _image(0.6)}, [_row("conv1", 1)])
  store.commit("conv1", 1, {4: _image(0.8)}, [_row("conv1", 4)])
  assert sorted(store.rows()) == [("conv1", 0), ("conv1", 1), ("conv1", 2), ("conv1", 4)]
  assert sorted(store.rows(["conv1"])) == sorted(store.rows())
  assert store.rows(["conv3"]) == {}
  chunk0 = json.loads((tmp_path / S.INDEX / "conv1" / "00000.json").read_text())
  assert [r["unit"] for r in chunk0["rows"]] == [0, 1, 2]
  assert np.asarray(Image.open(store.png("conv1", 1)))[0, 0, 0] == round(0.6 * 255)
  assert store.check() == []


def test_a_crash_between_pngs_and_index_leaves_no_row_without_its_png(tmp_path, monkeypatch):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  calls = []
  real_save = images.save_png

  def dying_save(image, path):
    if calls:
      raise KeyboardInterrupt("killed")  # dies after the first PNG of the chunk
    calls.append(path)
    return real_save(image, path)

  monkeypatch.setattr(images, "save_png", dying_save)
  with pytest.raises(KeyboardInterrupt):
    store.commit("conv1", 0, {0: _image(0.1), 1: _image(0.2)}, [_row("conv1", 0), _row("conv1", 1)])
  assert store.rows() == {}  # nothing is done: the chunk renders again on resume
  assert not list(tmp_path.rglob("*.tmp"))  # atomic_write removed its temporary file
  monkeypatch.setattr(images, "save_png", real_save)
  store.commit("conv1", 0, {0: _image(0.1), 1: _image(0.2)}, [_row("conv1", 0), _row("conv1", 1)])
  assert store.check() == []


def test_check_finds_orphans_and_broken_pngs(tmp_path):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  store.commit("conv1", 0, {0: _image(0.1), 1: _image(0.2)}, [_row("conv1", 0), _row("conv1", 1)])
  images.save_png(_image(0.3), store.png("conv1", 3))  # a PNG whose chunk never committed
  store.png("conv1", 1).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  problems = store.check()
  assert any("conv1/0003.png has no index row" in p for p in problems)
  assert any(p.startswith("conv1:1: conv1/0001.png does not decode") for p in problems)
  assert len(problems) == 2


def test_atlas_is_a_labelled_grid_of_the_rows(tmp_path):
  store = S.Store(tmp_path)
  store.open(MANIFEST)
  rows = [_row("conv1", u, ratio=0.5 * u) for u in range(3)]
  store.commit("conv1", 0, {u: _image(0.3 * u, 16) for u in range(3)}, rows)
  path = store.write_atlas("conv1", store.rows().values(), size=16)
  assert path == tmp_path / "conv1_atlas.png"
  with Image.open(path) as im:
    # 2 x 2 tiles of 16 px upscaled by 96 // 16 = 6, plus captions and title.
    assert im.size[0] >= 2 * 96 and im.size[1] >= 2 * 96


def test_weights_hash_prefers_the_file_digest_and_else_hashes_the_arrays():
  model = tiny_cnn.make()
  digest, what = S.weights_sha256(model)
  assert what == "weight arrays" and len(digest) == 64
  assert S.weights_sha256(tiny_cnn.make())[0] == digest
  assert S.weights_sha256(tiny_cnn.make(seed=1))[0] != digest
  pinned = dataclasses.replace(model, metadata={"sha256": "f" * 64})
  assert S.weights_sha256(pinned) == ("f" * 64, "weight file")
