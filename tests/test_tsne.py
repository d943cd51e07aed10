"""Exact t-SNE: perplexity calibration of P, and separation of two far-apart clusters."""

import numpy as np
import pytest

from featviz.analysis import tsne


def _clusters(n=30, d=10, gap=10.0, seed=0):
  rng = np.random.default_rng(seed)
  x = np.concatenate([rng.normal(size=(n, d)), rng.normal(size=(n, d)) + gap])
  return x, np.repeat([0, 1], n)


@pytest.mark.parametrize("perplexity", [5.0, 20.0])
def test_rows_reach_the_requested_perplexity(perplexity):
  x, _ = _clusters()
  p, beta = tsne.conditional_probabilities(tsne.squared_distances(x), perplexity)
  # The search stops within 1e-5 nats of log(perplexity): a relative error below 2e-5.
  np.testing.assert_allclose(tsne.row_perplexities(p), perplexity, rtol=2e-5)
  np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
  assert np.all(np.diag(p) == 0) and np.all(beta > 0)
  joint = tsne.joint_probabilities(x, perplexity)
  np.testing.assert_allclose(joint, joint.T)
  assert joint.sum() == pytest.approx(1.0)


def test_two_clusters_separate():
  x, labels = _clusters()
  result = tsne.tsne(x, perplexity=10.0, seed=0)
  y = result.embedding
  assert y.shape == (60, 2) and np.isfinite(y).all() and result.kl > 0
  d = tsne.squared_distances(y)
  np.fill_diagonal(d, np.inf)
  nearest = np.argsort(d, axis=1)[:, :5]
  assert (labels[nearest] == labels[:, None]).mean() == 1.0  # 5-NN purity
  # Deterministic given the seed.
  np.testing.assert_array_equal(tsne.tsne(x, perplexity=10.0, seed=0).embedding, y)


def test_bad_perplexity_raises():
  x, _ = _clusters(n=5)
  with pytest.raises(ValueError, match="below N - 1"):
    tsne.conditional_probabilities(tsne.squared_distances(x), 9.0)
