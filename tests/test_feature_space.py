"""Feature space: features, exact nearest neighbours, PCA against NumPy's SVD, the CLIs."""

import shutil

import numpy as np
import pytest

from featviz.analysis import feature_space as fs
from featviz.cli import main

import tiny_cnn


def test_features_shapes_and_batch_independence():
  model = tiny_cnn.make()
  images = np.random.default_rng(0).uniform(size=(19, 32, 32, 3)).astype(np.float32)
  mean = fs.features(model, images, "conv3")
  flat = fs.features(model, images, "conv3", pool="flat")
  assert mean.shape == (19, 8) and flat.shape == (19, 8 * 8 * 8)
  np.testing.assert_allclose(mean, flat.reshape(19, 64, 8).mean(axis=1), rtol=1e-5, atol=1e-6)
  assert fs.features(model, images, "logits").shape == (19, 5)
  # An image alone gets bit-identical features to the same image inside a folder batch.
  np.testing.assert_array_equal(fs.features(model, images[17:18], "conv3"), mean[17:18])
  with pytest.raises(ValueError, match="valid: mean, flat"):
    fs.features(model, images, "conv3", pool="max")


def test_nearest_neighbour_of_a_folder_image_is_itself():
  model = tiny_cnn.make()
  images = np.random.default_rng(1).uniform(size=(12, 32, 32, 3)).astype(np.float32)
  for pool in ("mean", "flat"):
    feats = fs.features(model, images, "conv2", pool)
    query = fs.features(model, images[5:6], "conv2", pool)
    index, dist = fs.nearest_neighbors(query, feats, 3)
    assert index[0, 0] == 5 and dist[0, 0] == 0.0
    assert dist[0, 1] > 0 and np.all(np.diff(dist[0]) >= 0)
    np.testing.assert_allclose(dist[0, 1], np.linalg.norm(feats[index[0, 1]] - query[0]), rtol=1e-5)


@pytest.mark.parametrize("n, d", [(60, 7), (15, 40)])  # covariance and Gram branches
def test_pca_matches_numpy_svd(n, d):
  rng = np.random.default_rng(n)
  x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0
  fit = fs.pca(x, 5)
  xc = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(xc, full_matrices=False)
  np.testing.assert_allclose(fit.explained_variance, s[:5] ** 2 / (n - 1), rtol=1e-9)
  np.testing.assert_allclose(fit.explained_variance_ratio, s[:5] ** 2 / np.sum(s**2), rtol=1e-9)
  assert np.all(np.diff(fit.explained_variance) <= 0)
  np.testing.assert_allclose(fit.components @ fit.components.T, np.eye(5), atol=1e-10)
  signs = np.sign(np.sum(fit.components * vt[:5], axis=1))  # SVD's signs are arbitrary
  np.testing.assert_allclose(fit.components, signs[:, None] * vt[:5], atol=1e-8)
  np.testing.assert_allclose(fit.transform(x), xc @ fit.components.T, atol=1e-9)


def test_tsne_separates_two_far_clusters_deterministically():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(size=(30, 40)), rng.normal(size=(30, 40)) + 10.0])
  labels = np.repeat([0, 1], 30)
  result = fs.tsne(x, perplexity=10.0, seed=0)  # 40-D: PCA to 30 first
  y = result.embedding
  assert y.shape == (60, 2) and np.isfinite(y).all() and result.kl > 0
  d = np.sum((y[:, None] - y[None]) ** 2, axis=-1)
  np.fill_diagonal(d, np.inf)
  nearest = np.argsort(d, axis=1)[:, :5]
  assert (labels[nearest] == labels[:, None]).mean() == 1.0  # 5-NN purity
  np.testing.assert_array_equal(fs.tsne(x, perplexity=10.0, seed=0).embedding, y)
  with pytest.raises(ValueError, match="below N = 60"):
    fs.tsne(x, perplexity=60.0)


def test_scatter_draws_every_thumbnail():
  images = np.zeros((3, 8, 8, 3), np.float32)
  images[:, :, :, 0] = 1.0  # red thumbnails on a white canvas
  canvas = np.asarray(fs.scatter(images, [[0, 0], [1, 0], [0, 1]], size=100, thumb=10))
  red = (canvas[..., 0] > 200) & (canvas[..., 1] < 50)
  assert red.sum() == 3 * 10 * 10


def test_cli_neighbors_and_embed(shared, tmp_path, capsys):
  folder = tmp_path / "photos"
  folder.mkdir()
  photos = sorted((shared / "images" / "imagenet-sample").glob("*.JPEG"))[:6]
  for path in photos:
    shutil.copy(path, folder)
  out = tmp_path / "nn.png"
  assert (
    main(
      [
        "neighbors",
        "efficientnet_lite0",
        str(photos[2]),
        "--dataset",
        str(folder),
        "--layer",
        "block15",
        "--k",
        "3",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  lines = capsys.readouterr().out.splitlines()
  first = next(line for line in lines if line.strip().startswith("1 "))
  assert photos[2].name in first and "0.0000" in first
  assert out.stat().st_size > 0
  for method in ("pca", "tsne"):
    out = tmp_path / f"{method}.png"
    assert (
      main(
        [
          "embed",
          "efficientnet_lite0",
          "--dataset",
          str(folder),
          "--layer",
          "block15",
          "--method",
          method,
          "--iterations",
          "250",
          "--out",
          str(out),
        ]
      )
      == 0
    )
    assert out.stat().st_size > 0
  assert (
    main(
      [
        "embed",
        "efficientnet_lite0",
        "--dataset",
        str(folder),
        "--layer",
        "block15",
        "--method",
        "tsne",
        "--perplexity",
        "9",
        "--out",
        str(out),
      ]
    )
    == 2
  )
  assert (
    main(
      [
        "neighbors",
        "efficientnet_lite0",
        str(photos[0]),
        "--dataset",
        str(folder),
        "--layer",
        "nope",
        "--out",
        str(out),
      ]
    )
    == 2
  )
