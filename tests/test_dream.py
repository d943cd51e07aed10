"""DeepDream: the objective grows, the image stays a valid photo, one compile per octave."""

import numpy as np
import pytest

from featviz.analysis import dream
from featviz.cli import main

import tiny_cnn


def test_octave_sizes():
  # The notebook's pyramid: each level round(previous / 1.4), smallest first:
  # 224 / 1.4 = 160, 160 / 1.4 = 114.3, 114 / 1.4 = 81.4.
  assert dream.octave_sizes((224, 224), 4, 1.4) == [(81, 81), (114, 114), (160, 160), (224, 224)]
  # A level below the model's smallest input (25 x 15 < 20) ends the pyramid.
  assert dream.octave_sizes((100, 60), 4, 2.0, min_size=20) == [(50, 30), (100, 60)]
  with pytest.raises(ValueError):
    dream.octave_sizes((64, 64), 0, 1.4)


def test_tiny_cnn_dream_raises_the_objective_and_compiles_once_per_octave():
  model = tiny_cnn.make()
  photo = np.random.default_rng(0).uniform(0.2, 0.8, size=(40, 40, 3)).astype(np.float32)
  before = dream.trace_count()
  result = dream.dream(model, photo, "conv2", octaves=3, octave_scale=1.4, steps=5, jitter=4)
  assert dream.trace_count() - before == 3 == len(result.sizes)
  assert result.image.shape == photo.shape
  assert result.image.min() >= 0.0 and result.image.max() <= 1.0
  s_before, s_after = dream.scores(model, np.stack([photo, result.image]), "conv2")
  assert s_after > s_before
  dream.dream(model, photo, "conv2", octaves=3, octave_scale=1.4, steps=5, jitter=4, seed=1)
  assert dream.trace_count() - before == 3  # same sizes, another seed: nothing recompiled


def test_efficientnet_dream_on_a_photo(shared):
  from featviz import photos, zoo

  model = zoo.load("efficientnet_lite0")
  photo = photos.load_image(
    shared / "images" / "imagenet-sample" / "n01532829_house_finch.JPEG", 64
  )
  # 64 px, 2 octaves (46 and 64 px; EfficientNet takes 32 px and up), 4 steps each: fast.
  result = dream.dream(model, photo, "block5", octaves=2, steps=4)
  assert result.sizes == [(46, 46), (64, 64)]
  assert result.image.shape == (64, 64, 3)
  assert 0.0 <= result.image.min() and result.image.max() <= 1.0
  s_before, s_after = dream.scores(model, np.stack([photo, result.image]), "block5")
  assert s_after > 1.2 * s_before


@pytest.mark.parametrize(
  "args, message",
  [
    (["none.jpg", "--layer", "block5"], "no such image file"),
    (["none.jpg", "--layer", "nope"], "unknown layer 'nope'"),
    (["x.jpg", "--layer", "block5", "--octave-scale", "1.0"], "--octave-scale"),
  ],
)
def test_cli_dream_bad_input_exits_2(tmp_path, monkeypatch, capsys, args, message):
  monkeypatch.chdir(tmp_path)
  assert main(["dream", "efficientnet_lite0", *args, "--out", str(tmp_path / "d.png")]) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "d.png").exists()
