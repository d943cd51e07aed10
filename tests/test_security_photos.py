"""Photos against the red team (report section 1, "Photos"; issue 17): 16-bit greyscale PNGs
read at their real depth, and a decompression bomb refused with a clear error (exit 2)."""

import numpy as np
import pytest
from PIL import Image

from featviz import photos
from featviz.cli import errors as cli_errors


def _gradient16(path, size=64):
  """A 16-bit greyscale PNG (PIL mode I;16): columns from 0 to 65535."""
  ramp = np.round(np.linspace(0, 65535, size)).astype(np.uint16)
  Image.fromarray(np.tile(ramp, (size, 1))).save(path)
  return path


@pytest.mark.parametrize("channels", [1, 3])
def test_a_16_bit_greyscale_png_is_read_at_its_depth(tmp_path, channels):
  path = _gradient16(tmp_path / "g16.png")
  with Image.open(path) as im:
    assert im.mode.startswith("I")
  image = photos.load_image(path, 28, channels)
  assert image.shape == (28, 28, channels) and image.dtype == np.float32
  assert abs(float(image.mean()) - 0.5) < 0.02, image.mean()  # it was 0.998 (clipped to L)
  assert image.min() >= 0.0 and image.max() <= 1.0
  assert image[:, 0].mean() < 0.05 and image[:, -1].mean() > 0.95
  if channels == 3:
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_an_8_bit_png_is_unchanged(tmp_path):
  ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
  Image.fromarray(ramp).save(tmp_path / "g8.png")
  image = photos.load_image(tmp_path / "g8.png", 64, 1)
  np.testing.assert_allclose(image[..., 0], ramp / 255.0, atol=1e-6)


def test_a_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
  Image.new("L", (200, 200)).save(tmp_path / "bomb.png")
  # PIL raises DecompressionBombError past twice MAX_IMAGE_PIXELS: a 20000 x 20000 PNG of
  # 389 kB in the report; here the limit is lowered instead of the photo made huge.
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)
  error = None
  try:
    photos.load_image(tmp_path / "bomb.png", 28, 1)
  except Exception as e:  # noqa: BLE001
    error = e
  assert isinstance(error, photos.UnreadableImageError), repr(error)
  assert isinstance(error, photos.ImageTooLargeError) and "too large" in str(error)
  assert "bomb.png" in str(error) and isinstance(error, cli_errors.USAGE_ERRORS)
