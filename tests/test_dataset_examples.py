"""Dataset examples: the one-pass scan against a direct recomputation, patches and CLI."""

import shutil

import numpy as np
import pytest

from featviz.analysis import dataset_examples as de
from featviz.analysis import receptive_field as rf
from featviz.cli import main

import tiny_cnn


def _check_against_direct(model, images, layer, units, k):
  """Top image = argmax of the direct channel means; patch values = direct activations."""
  scan, examples = de.dataset_examples(model, images, layer, units, k)
  direct = np.asarray(model.activations(images, [layer])[layer])  # (N, h, w, C), eager
  means = direct.mean(axis=(1, 2))
  for e in examples:
    np.testing.assert_allclose(e.image_values[0], means[:, e.unit].max(), rtol=1e-5, atol=1e-6)
    assert means[e.images[0], e.unit] == pytest.approx(means[:, e.unit].max(), rel=1e-5)
    np.testing.assert_allclose(np.sort(e.image_values)[::-1], e.image_values)
    for i, (row, col), value in zip(e.patches, e.patch_at, e.patch_values):
      np.testing.assert_allclose(direct[i, row, col, e.unit], value, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(direct[i, ..., e.unit].max(), value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(e.patch_values[0], direct[..., e.unit].max(), rtol=1e-5)
    queries = np.column_stack([e.patch_at, np.full(len(e.patches), e.unit)])
    np.testing.assert_array_equal(e.boxes, rf.receptive_fields(model, layer, queries))
  return scan, examples


def test_tiny_cnn_top_examples_match_direct_recomputation():
  model = tiny_cnn.make()
  images = np.random.default_rng(0).uniform(size=(21, 32, 32, 3)).astype(np.float32)
  scan, examples = _check_against_direct(model, images, "conv3", [0, 5, 7], k=4)
  assert scan.mean.shape == (21, 8) and scan.map_size == (8, 8)
  names = [f"img{i}" for i in range(21)]
  fig = de.figure(images, names, scan, examples, "tiny_cnn", tile=40)
  assert fig.width > 200 and fig.height > 3 * 40


def test_crop_patch_pads_the_clipped_side():
  image = np.arange(10 * 10, dtype=np.float32).reshape(10, 10, 1) / 100
  patch = de.crop_patch(image, (0, 6, 3, 10), (5, 5), fill=-1.0)
  assert patch.shape == (5, 5, 1)
  # Clipped at the top (rows 0-2 kept, 2 padded above) and at the right (cols 6-9 kept).
  np.testing.assert_array_equal(patch[2:, :4, 0], image[0:3, 6:10, 0])
  assert (patch[:2] == -1).all() and (patch[:, 4:] == -1).all()


def test_efficientnet_block3_on_photos(shared):
  from featviz import photos, zoo

  model = zoo.load("efficientnet_lite0")
  folder = shared / "images" / "imagenet-sample"
  paths = photos.image_files(folder)[:20]
  images = np.stack([photos.load_image(p, 224) for p in paths])
  _check_against_direct(model, images, "block3", [5], k=3)


def test_cli_examples(shared, tmp_path, capsys):
  folder = tmp_path / "photos"
  folder.mkdir()
  for path in sorted((shared / "images" / "imagenet-sample").glob("*.JPEG"))[:5]:
    shutil.copy(path, folder)
  out = tmp_path / "ex.png"
  assert (
    main(
      [
        "examples",
        "efficientnet_lite0",
        "block3:5-6",
        "--dataset",
        str(folder),
        "--top",
        "3",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  assert out.stat().st_size > 0
  printed = capsys.readouterr().out
  assert "block3:5  top image" in printed and "block3:6  top image" in printed
  # Bad input exits 2, before any work.
  assert (
    main(
      ["examples", "efficientnet_lite0", "block3:40", "--dataset", str(folder), "--out", str(out)]
    )
    == 2
  )
  assert (
    main(["examples", "efficientnet_lite0", "block3", "--dataset", str(folder), "--out", str(out)])
    == 2
  )
  assert (
    main(
      [
        "examples",
        "efficientnet_lite0",
        "block3:1",
        "--dataset",
        str(tmp_path / "no"),
        "--out",
        str(out),
      ]
    )
    == 2
  )
  assert (
    main(
      [
        "examples",
        "efficientnet_lite0",
        "block3:1",
        "--dataset",
        str(folder),
        "--out",
        str(tmp_path),
      ]
    )
    == 2
  )
