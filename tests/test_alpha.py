"""RGBA renders (RenderConfig(alpha=True)), their PNGs and checkerboard, starting from a photo,
and the new settings' validation and manifest round trip."""

import pathlib

import numpy as np
import pytest
from PIL import Image

import featviz
from featviz import images
from featviz import objectives as O
from featviz.cli import main

import tiny_cnn

MODEL = tiny_cnn.make()
TINY = f"{pathlib.Path(__file__).with_name('tiny_cnn.py')}:make"
PHOTO = np.random.default_rng(0).uniform(0.2, 0.8, (16, 16, 3)).astype(np.float32)


def test_alpha_render_from_a_photo_is_rgba_and_starts_at_the_photo():
  config = featviz.RenderConfig(
    param="pixel", alpha=True, steps=2, size=16, learning_rate=1e-4, redirect_relu_steps=0
  )
  result = featviz.render(MODEL, O.channel("conv2", [0, 1]), config, init=PHOTO, progress_bar=False)
  assert result.images.shape == (2, 16, 16, 4)
  assert np.isfinite(result.history).all()
  # Two Adam steps of 1e-4 on the logits: the photo, opaque (alpha 1 - 1/510).
  np.testing.assert_allclose(
    result.images[..., :3], np.broadcast_to(PHOTO, (2, 16, 16, 3)), atol=2e-3
  )
  np.testing.assert_allclose(result.images[..., 3], 1 - 1 / 510, atol=2e-3)


def test_rgba_png_round_trip_and_checkerboard(tmp_path):
  rgba = np.random.default_rng(1).uniform(0, 1, (8, 8, 4)).astype(np.float32)
  rgba[0, 0, 3] = 0.0
  path = images.save_png(rgba, tmp_path / "a.png")
  back = Image.open(path)
  assert back.mode == "RGBA"
  np.testing.assert_array_equal(np.asarray(back), images.to_uint8(rgba))
  clear = np.zeros((16, 16, 4), np.float32)  # fully transparent: the grid shows the board
  tile = np.asarray(images.grid([clear], pad=0)) / 255.0
  np.testing.assert_allclose(tile[:8, :8], 0.8, atol=1 / 255)
  np.testing.assert_allclose(tile[:8, 8:], 0.6, atol=1 / 255)


def test_cli_alpha_writes_rgba_pngs(capsys, tmp_path, featviz_home):
  out = tmp_path / "alpha.png"
  argv = ["render", TINY, "conv2:0-1", "--alpha", "--param", "laplacian", "--steps", "2"]
  argv += ["--size", "16", "--transforms", "none", "--no-progress", "--out", str(out)]
  assert main(argv) == 0, capsys.readouterr()
  single = Image.open(tmp_path / "alpha_images" / "0000_conv2_0.png")
  assert single.mode == "RGBA" and Image.open(out).mode == "RGB"


def test_cli_init_refuses_cppn_and_writes_nothing(capsys, tmp_path, featviz_home):
  photo = tmp_path / "photo.png"
  images.save_png(PHOTO, photo)
  out = tmp_path / "out" / "x.png"
  argv = ["render", TINY, "conv2:0", "--param", "cppn", "--init", str(photo), "--out", str(out)]
  assert main(argv) == 2
  assert "cppn cannot start from a photo" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_new_settings_are_checked_and_round_trip():
  config = featviz.RenderConfig(param="laplacian", alpha=True, transforms="maco")
  assert featviz.RenderConfig.from_dict(config.to_dict()) == config
  assert featviz.RenderConfig.maco().to_dict()["transforms"] == "maco"
  with pytest.raises(featviz.ConfigError, match="maco has no alpha channel"):
    featviz.RenderConfig(param="maco", alpha=True)
  with pytest.raises(featviz.ConfigError, match="fourier, pixel, maco, cppn, laplacian, lowres"):
    featviz.RenderConfig(param="gan")
  with pytest.raises(featviz.ConfigError, match="alpha must be True or False"):
    featviz.RenderConfig(alpha="yes")
  with pytest.raises(featviz.ConfigError, match="cannot start from a photo"):
    featviz.render(MODEL, O.channel("conv2", 0), param="cppn", init=PHOTO, steps=1, size=16)
