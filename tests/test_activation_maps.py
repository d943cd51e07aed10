"""featviz.analysis.activation_maps: sparsity is a plain zero count; one tile per channel."""

import numpy as np
import pytest
from PIL import Image

from featviz import images as images_lib
from featviz.analysis import activation_maps as am
from featviz.cli import main

import tiny_cnn


def _mnist():
  from featviz import zoo

  try:
    return zoo.load("mnist_cnn")
  except zoo.WeightsUnavailableError as e:
    pytest.skip(f"mnist_cnn weights not available: {e}")


@pytest.mark.parametrize("channels", [1, 3])
def test_sparsity_matches_a_numpy_count(channels):
  model = tiny_cnn.make(channels)
  x = np.random.default_rng(0).uniform(size=(3, 20, 20, channels)).astype(np.float32)
  acts, sparsity = am.activations_and_sparsity(model, x, "conv2")
  reference = {n: float(np.mean(np.asarray(a) == 0)) for n, a in model.activations(x).items()}
  assert list(sparsity) == list(model.spec.layers)  # every layer, in forward order
  for name, value in reference.items():
    assert sparsity[name] == pytest.approx(value, abs=1e-7), name
  assert 0.0 < sparsity["conv1"] < 1.0  # ReLU layers really do have zeros
  assert sparsity["logits"] == 0.0
  np.testing.assert_allclose(acts, model.activations(x, ["conv2"])["conv2"], rtol=1e-6)


def test_one_tile_per_channel_each_min_max_scaled():
  acts = np.random.default_rng(1).normal(size=(5, 7, 6)).astype(np.float32)
  acts[..., 2] = 0.0  # a dead channel
  tiles = am.channel_tiles(acts)
  assert tiles.shape == (6, 5, 7, 1)
  for k in range(6):
    a = acts[..., k]
    expected = (a - a.min()) / (a.max() - a.min()) if a.max() > a.min() else np.zeros_like(a)
    np.testing.assert_allclose(tiles[k, ..., 0], expected, atol=1e-6)
  layer = am.channel_tiles(acts, "layer")
  np.testing.assert_allclose(
    layer[..., 0], np.moveaxis((acts - acts.min()) / (acts.max() - acts.min()), -1, 0), atol=1e-6
  )
  with pytest.raises(ValueError, match="spatial"):
    am.channel_tiles(np.zeros((4, 3)))


def test_the_figure_holds_the_grid_of_every_channel():
  model = tiny_cnn.make(3)
  x = np.random.default_rng(2).uniform(size=(1, 16, 16, 3)).astype(np.float32)
  acts, sparsity = am.activations_and_sparsity(model, x, "conv3")
  fig = am.figure(x[0], acts[0], sparsity, layer="conv3", model_name="tiny_cnn")
  c, h = acts.shape[-1], acts.shape[1]
  scale = am.tile_scale(h)
  expected = images_lib.grid(
    am.channel_tiles(acts[0]), [str(k) for k in range(c)], cols=am.grid_columns(c), scale=scale
  )
  # The grid is the figure's bottom-left block: exactly c tiles.
  bottom = np.asarray(fig)[-expected.height :, : expected.width]
  np.testing.assert_array_equal(bottom, np.asarray(expected))


def test_cli_on_mnist(tmp_path, capsys):
  _mnist()
  digit = np.zeros((28, 28), np.uint8)
  digit[6:22, 12:16] = 255  # a "1"
  path = tmp_path / "one.png"
  Image.fromarray(digit).save(path)
  out = tmp_path / "act.png"
  assert main(["activations", "mnist_cnn", str(path), "--layer", "conv2", "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "conv4" in printed and "wrote" in printed and out.exists()
  assert (
    main(["activations", "mnist_cnn", str(path), "--layer", "fc", "--out", str(tmp_path / "x.png")])
    == 2
  )
  assert (
    main(
      ["activations", "mnist_cnn", str(path), "--layer", "nope", "--out", str(tmp_path / "x.png")]
    )
    == 2
  )


def test_real_photo_on_mnist(shared):
  from featviz import photos

  model = _mnist()
  x = photos.load_image(shared / "images/imagenet-sample/n01443537_goldfish.JPEG", 28, 1)
  acts, sparsity = am.activations_and_sparsity(model, x[None], "conv1")
  reference = {n: float(np.mean(np.asarray(a) == 0)) for n, a in model.activations(x[None]).items()}
  assert sparsity == pytest.approx(reference, abs=1e-7)
  assert am.channel_tiles(acts[0]).shape[0] == model.spec.layers["conv1"]
