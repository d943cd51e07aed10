"""featviz.photos: shorter side resized, centre crop, RGB or greyscale, clear errors."""

import numpy as np
import pytest
from PIL import Image

from featviz import photos
from featviz.model import ImageShapeError


def _save(path, array, mode=None):
  Image.fromarray(array, mode).save(path)
  return path


def test_centre_crop_keeps_the_middle_of_a_wide_photo(tmp_path):
  # 40 x 20 (W x H): left half black, right half white, a red column band in the middle.
  array = np.zeros((20, 40, 3), np.uint8)
  array[:, 20:] = 255
  path = _save(tmp_path / "wide.png", array)
  image = photos.load_image(path, 20, 3)
  assert image.shape == (20, 20, 3) and image.dtype == np.float32
  # Shorter side is already 20: no resize, the crop is columns 10..29, half black, half white.
  np.testing.assert_allclose(image[:, :10], 0.0)
  np.testing.assert_allclose(image[:, 10:], 1.0)


def test_resize_shorter_side_then_crop(tmp_path):
  rng = np.random.default_rng(0)
  array = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
  path = _save(tmp_path / "r.png", array)
  image = photos.load_image(path, 12, 3)
  # Reference with PIL directly: 50 x 30 -> 20 x 12 (shorter side 12), crop columns 4..15.
  ref = Image.fromarray(array).resize((20, 12), Image.BICUBIC).crop((4, 0, 16, 12))
  np.testing.assert_allclose(image, np.asarray(ref, np.float32) / 255.0)


def test_greyscale_and_rgb_from_the_same_file(tmp_path):
  array = np.full((8, 8, 3), (255, 0, 0), np.uint8)
  path = _save(tmp_path / "red.png", array)
  grey = photos.load_image(path, 8, 1)
  assert grey.shape == (8, 8, 1)
  # PIL "L" is ITU-R 601 luma: 299/1000 * 255 = 76.2 -> 76.
  np.testing.assert_allclose(grey, 76 / 255.0)
  assert photos.load_image(path, 8, 3).shape == (8, 8, 3)


def test_a_greyscale_file_for_an_rgb_model(tmp_path):
  path = _save(tmp_path / "g.png", np.full((6, 6), 128, np.uint8), "L")
  image = photos.load_image(path, 6, 3)
  np.testing.assert_allclose(image, 128 / 255.0)


def test_load_folder_sorted_and_skips_other_files(tmp_path):
  for name, value in [("b.png", 200), ("a.PNG", 100)]:
    _save(tmp_path / name, np.full((10, 10, 3), value, np.uint8))
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / ".hidden.png").write_bytes(b"")
  images, paths = photos.load_folder(tmp_path, 5, 3)
  assert [p.name for p in paths] == ["a.PNG", "b.png"]
  assert images.shape == (2, 5, 5, 3)
  np.testing.assert_allclose(images[:, 0, 0, 0], [100 / 255.0, 200 / 255.0])


def test_errors(tmp_path):
  with pytest.raises(photos.EmptyFolderError, match="no photos"):
    photos.load_folder(tmp_path, 8)
  bad = tmp_path / "bad.jpg"
  bad.write_bytes(b"not a jpeg")
  with pytest.raises(photos.UnreadableImageError, match="bad.jpg"):
    photos.load_image(bad, 8)
  with pytest.raises(photos.UnreadableImageError, match="bad.jpg"):
    photos.load_folder(tmp_path, 8)  # names the file that failed
  with pytest.raises(ImageShapeError, match="no such image"):
    photos.load_image(tmp_path / "missing.png", 8)
  with pytest.raises(ValueError, match="channels"):
    photos.load_image(bad, 8, channels=2)


def test_real_photo(shared):
  path = shared / "images" / "imagenet-sample" / "n01443537_goldfish.JPEG"
  image = photos.load_image(path, 224, 3)
  assert image.shape == (224, 224, 3) and 0.0 <= image.min() and image.max() <= 1.0
  images, paths = photos.load_images(path, 28, 1)
  assert images.shape == (1, 28, 28, 1) and paths == [path]


def test_load_files_keeps_the_order_and_names_the_first_bad_file(tmp_path):
  """The threaded batch loader: each image is load_image's, in the order given, and of several
  bad files the error names the first in that order, as a loop would."""
  rng = np.random.default_rng(1)
  paths = [
    _save(tmp_path / f"{i}.png", rng.integers(0, 256, (9 + i, 13, 3), dtype=np.uint8))
    for i in range(7)
  ]
  order = paths[::-1]
  batch = photos.load_files(order, 6, 3)
  np.testing.assert_array_equal(batch, np.stack([photos.load_image(p, 6, 3) for p in order]))
  assert photos.load_files([], 6, 3).shape == (0, 6, 6, 3)
  for name in ("b_bad.jpg", "c_bad.jpg"):
    (tmp_path / name).write_bytes(b"not a jpeg")
  files = [paths[0], tmp_path / "c_bad.jpg", paths[1], tmp_path / "b_bad.jpg"]
  with pytest.raises(photos.UnreadableImageError, match="c_bad.jpg"):
    photos.load_files(files, 6, 3)
