"""featviz.zoo.cache: converted weights stored as orbax checkpoints, written atomically."""

import datetime
import json
import os
import time

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import featviz
from featviz.zoo import cache

SHA = "ab" * 32  # A sha256 hex digest: 64 hex digits.


def _tree(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  return {
    "conv1": {
      "kernel": rng.standard_normal((3, 3, 1, 8)).astype(np.float32),
      "bias": rng.standard_normal(8).astype(np.float32),
    },
    "blocks": {"0": {"scale": rng.standard_normal(8).astype(np.float32)}},
    "logits": {"kernel": rng.standard_normal((8, 10)).astype(np.float32)},
  }


def _assert_trees_equal(got, want):
  assert got.keys() == want.keys()
  for key, value in want.items():
    if isinstance(value, dict):
      _assert_trees_equal(got[key], value)
    else:
      assert isinstance(got[key], np.ndarray) and got[key].dtype == np.float32, key
      np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_root_is_featviz_home_or_user_cache(featviz_home, monkeypatch, tmp_path):
  assert cache.root() == featviz_home
  monkeypatch.delenv("FEATVIZ_HOME")
  monkeypatch.setenv("HOME", str(tmp_path))
  assert cache.root() == tmp_path / ".cache" / "featviz"


def test_round_trip_is_exact(featviz_home):
  tree = _tree()
  path = cache.save("toy", SHA, "a test", tree)
  assert path == featviz_home / "models" / f"toy-{SHA[:16]}"
  assert cache.lookup("toy", SHA) == path
  weights, metadata = cache.restore(path, "toy", SHA)
  _assert_trees_equal(weights, tree)
  assert metadata["model"] == "toy" and metadata["sha256"] == SHA
  assert metadata["source"] == "a test"
  assert metadata["featviz_version"] == featviz.__version__
  assert metadata["shapes"]["conv1"]["kernel"] == [3, 3, 1, 8]
  created = datetime.datetime.fromisoformat(metadata["created"])
  assert abs(datetime.datetime.now(datetime.UTC) - created).total_seconds() < 60


def test_jax_arrays_are_saved_as_numpy(featviz_home):
  tree = {"a": {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3)}}
  weights, _ = cache.restore(cache.save("toy", SHA, "jax", tree), "toy", SHA)
  np.testing.assert_array_equal(weights["a"]["w"], np.arange(6).reshape(2, 3))


def test_non_float32_leaf_is_refused(featviz_home):
  with pytest.raises(TypeError, match=r"\['a'\]\['w'\] is float64"):
    cache.save("toy", SHA, "bad", {"a": {"w": np.zeros(3)}})
  assert cache.lookup("toy", SHA) is None


def test_interrupted_write_leaves_no_entry(featviz_home, monkeypatch):
  original = ocp.StandardCheckpointer.save

  def save_then_crash(self, *args, **kwargs):
    original(self, *args, **kwargs)
    self.wait_until_finished()
    raise KeyboardInterrupt("simulated crash after the checkpoint files were written")

  monkeypatch.setattr(ocp.StandardCheckpointer, "save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    cache.save("toy", SHA, "crash", _tree())
  assert cache.lookup("toy", SHA) is None
  assert list((featviz_home / "models").iterdir()) == []  # The temp folder is gone too.
  monkeypatch.setattr(ocp.StandardCheckpointer, "save", original)
  path = cache.save("toy", SHA, "retry", _tree())
  _assert_trees_equal(cache.restore(path, "toy", SHA)[0], _tree())


def test_temp_folders_are_ignored_and_stale_ones_cleaned(featviz_home):
  models = featviz_home / "models"
  stale, young = models / f".tmp-toy-{SHA[:16]}-old", models / f".tmp-toy-{SHA[:16]}-new"
  for folder in (stale, young):
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text("{}")
  hours_ago = time.time() - 2 * 3600
  os.utime(stale, (hours_ago, hours_ago))
  assert cache.lookup("toy", SHA) is None and cache.entries("toy") == []
  cache.save("toy", SHA, "fresh", _tree())
  assert not stale.exists()
  assert young.exists()  # Perhaps another process still writing it.
  assert [p.name for p, _ in cache.entries("toy")] == [f"toy-{SHA[:16]}"]


def test_second_writer_keeps_the_first_entry(featviz_home):
  first = cache.save("toy", SHA, "first", _tree(0))
  second = cache.save("toy", SHA, "second", _tree(0))
  assert first == second
  assert cache.read_metadata(first)["source"] == "first"
  assert [p.name for p in (featviz_home / "models").iterdir()] == [first.name]


def _corrupt_checkpoint(path):
  for file in (path / "weights").rglob("*"):
    if file.is_file():
      file.write_bytes(b"garbage")


def _corrupt_shapes(path):
  metadata = json.loads((path / "metadata.json").read_text())
  metadata["shapes"]["conv1"]["kernel"] = [3, 3, 1, 9]
  (path / "metadata.json").write_text(json.dumps(metadata))


def _corrupt_metadata(path):
  (path / "metadata.json").write_text('{"model": "toy", "sha2')


def _wrong_key(path):
  metadata = json.loads((path / "metadata.json").read_text())
  metadata["sha256"] = "cd" * 32
  (path / "metadata.json").write_text(json.dumps(metadata))


@pytest.mark.parametrize(
  "damage", [_corrupt_checkpoint, _corrupt_shapes, _corrupt_metadata, _wrong_key]
)
def test_corrupt_entry_raises_naming_the_path(featviz_home, damage):
  path = cache.save("toy", SHA, "test", _tree())
  damage(path)
  with pytest.raises(cache.CorruptCacheError) as err:
    cache.restore(path, "toy", SHA)
  assert str(path) in str(err.value) and "delete" in str(err.value)


def test_discard_removes_an_entry(featviz_home):
  path = cache.save("toy", SHA, "test", _tree())
  cache.discard(path)
  assert not path.exists() and cache.lookup("toy", SHA) is None
  assert list((featviz_home / "models").iterdir()) == []


def test_folder_without_metadata_is_replaced(featviz_home):
  broken = cache.entry_path("toy", SHA)
  (broken / "weights").mkdir(parents=True)
  assert cache.lookup("toy", SHA) is None
  path = cache.save("toy", SHA, "test", _tree())
  _assert_trees_equal(cache.restore(path, "toy", SHA)[0], _tree())
