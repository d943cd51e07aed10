"""Neuron groups: NMF against exact low-rank products and the SVD bound; the render; the CLI."""

import numpy as np
import pytest

from featviz.analysis import neuron_groups as ng
from featviz.cli import main

import tiny_cnn


def _product(rng, n, k, c):
  """A non-negative rank-k matrix ``W H`` with sparse factors (NMF's unique case)."""
  w = rng.uniform(size=(n, k)) * (rng.uniform(size=(n, k)) < 0.5)
  h = rng.uniform(size=(k, c)) * (rng.uniform(size=(k, c)) < 0.5)
  return w @ h


def _svd_error(x, k):
  """The least relative Frobenius error of any rank-k matrix (Eckart and Young, 1936)."""
  s = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)
  return np.sqrt(np.sum(s[k:] ** 2) / np.sum(s**2))


def test_nmf_recovers_an_exact_product_and_error_falls_with_k():
  x = _product(np.random.default_rng(0), 100, 4, 30)
  errors = [ng.factorize(x, k).error for k in range(1, 6)]
  assert all(a > b for a, b in zip(errors[:3], errors[1:4])), errors  # falls until k = 4
  assert errors[3] < 1e-3 and errors[4] < 1e-3, errors  # rank 4 is reached
  for k, e in enumerate(errors[:3], start=1):
    assert e >= _svd_error(x, k) - 1e-9  # no rank-k factorization beats the SVD


def test_signed_layer_is_split_and_reconstructed():
  rng = np.random.default_rng(1)
  w = rng.uniform(size=(64, 3))
  h = rng.normal(size=(3, 12))
  x = w @ h  # signed, rank 3, non-negative spatial factor: [x+, x-] ~ w [h+, h-] is not exact
  fit = ng.factorize(x, 3)
  assert fit.signed and fit.spatial.min() >= 0
  np.testing.assert_allclose(np.linalg.norm(fit.directions, axis=1), 1.0, rtol=1e-6)
  # The reported error is that of the signed reconstruction, recomputed here.
  recon = np.linalg.norm(x - fit.spatial @ fit.directions) / np.linalg.norm(x)
  np.testing.assert_allclose(fit.error, recon, rtol=1e-9)
  assert _svd_error(x, 3) < 1e-12 and fit.error < 0.2
  with pytest.raises(ng.GroupsError, match="from 1 to min"):
    ng.factorize(x, 13)


def test_real_activations_error_falls_and_respects_the_svd_bound(shared):
  from featviz import zoo

  model = zoo.load("mnist_cnn")  # the committed, trained weights
  with np.load(shared / "data" / "mnist.npz") as f:
    digit = f["x_test"][0].astype(np.float32)[..., None] / 255.0
  acts = ng.layer_activations(model, digit, "conv4")  # after a ReLU: >= 0
  x = acts.reshape(-1, acts.shape[-1])
  ks = (1, 2, 4, 8)
  errors = [ng.factorize(x, k).error for k in ks]
  assert np.all(np.diff(errors) < 0), errors
  for k, e in zip(ks, errors):
    assert _svd_error(x, k) - 1e-6 <= e < 1.0  # K = 1 can reach the bound (Perron-Frobenius)


def test_groups_render_in_one_batch_and_the_figure():
  model = tiny_cnn.make()
  image = np.random.default_rng(2).uniform(size=(32, 32, 3)).astype(np.float32)
  fast = dict(param="pixel", transforms="none", redirect_relu_steps=0)  # a quick compile
  result = ng.neuron_groups(model, image, "conv2", 3, steps=32, size=32, **fast)
  assert result.maps.shape == (16, 16, 3) and result.directions.shape == (3, 6)
  assert result.renders.shape == (3, 32, 32, 3) and np.isfinite(result.renders).all()
  # Each group's direction scores highest on its own render, of the three.
  from featviz import objectives, score_images

  scores = np.stack(
    [
      score_images(model, objectives.direction("conv2", np.repeat(d[None], 3, 0)), result.renders)
      for d in result.directions
    ]
  )  # scores[j, i]: direction j on render i
  assert np.all(np.argmax(scores, axis=1) == np.arange(3)), scores
  fig = ng.figure(image, result, "tiny")
  assert fig.width >= 3 * 32 and fig.height > 3 * 32


def test_cli_refuses_bad_groups_and_writes_nothing(tmp_path, capsys):
  from PIL import Image

  photo = tmp_path / "digit.png"
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(photo)
  out = tmp_path / "out" / "groups.png"
  argv = ["groups", "mnist_cnn", str(photo), "--layer", "conv4", "--out", str(out)]
  assert main(argv + ["--groups", "65"]) == 2
  assert "--groups must be from 1 to 64" in capsys.readouterr().err
  assert main(argv[:4] + ["fc", "--out", str(out)]) == 2
  assert not out.parent.exists()
