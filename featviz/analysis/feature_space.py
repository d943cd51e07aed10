"""Feature space: photos as points in a layer's activation space; neighbours and PCA.

A layer maps each photo to a feature vector. Two questions about that space, both from
Krizhevsky, Sutskever and Hinton (2012, "ImageNet Classification with Deep Convolutional
Neural Networks", section 6.1 and figure 4, which showed the nearest neighbours of the last
hidden layer) and the embedding figures that followed:

* which photos does the layer put next to a query photo (L2 nearest neighbours), and
* what are the directions of largest variance (PCA), or which photos are neighbours (t-SNE,
  scikit-learn's), as a 2-D map of thumbnails.

**The feature vector** is, by default, the **spatial mean** of the layer's activations, one
number per channel, ``(C,)``: it does not depend on where in the photo a thing is, nor on
the input size, and is small (EfficientNet-Lite0 ``head``: 1280 numbers). ``pool="flat"``
keeps every position, ``(h * w * C,)``: neighbours then must match in layout too (the pixel
space's notion of similarity at ``stem``, and Krizhevsky et al.'s at their flat 4096-D
layer). Flat layers such as ``logits`` are their own vector either way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

from featviz import progress as progress_lib
from featviz.analysis import figures
from featviz.analysis.dataset_examples import fit_text
from featviz.model import Model, as_map

POOLS = ("mean", "flat")
# Images per compiled batch (the last is padded): see dataset_examples.BATCH.
BATCH = 16


class UnknownPoolError(ValueError):
  pass


@functools.partial(jax.jit, static_argnums=(2, 3))
def _features(model: Model, images, layer: str, pool: str):
  acts = model.activations(images, (layer,))[layer]
  if acts.ndim in (3, 4) and pool == "mean":  # a map's positions or a ViT's tokens
    return as_map(acts).mean(axis=(1, 2))
  return acts.reshape(acts.shape[0], -1)


def features(
  model: Model,
  images: np.ndarray,
  layer: str,
  pool: str = "mean",
  batch: int = BATCH,
  progress_bar: bool = True,
) -> np.ndarray:
  """Feature vectors ``(N, D)`` of ``images (N, H, W, C)`` in [0, 1] at ``layer``.

  ``D = C`` for ``pool="mean"`` (the spatial mean), ``h * w * C`` for ``"flat"``. Every
  image goes through the same compiled program with the same batch shape, so an image
  gets bit-identical features whichever batch it is in. ``progress_bar``: a bar of photos
  done / N and photos/s on stderr.
  """
  if pool not in POOLS:
    raise UnknownPoolError(f"unknown pooling {pool!r}; valid: {', '.join(POOLS)}")
  model.spec.check_layer(layer)
  images = np.asarray(images, np.float32)
  model.check_images(images)
  out = []
  desc = f"features {model.spec.name} {layer}"
  with progress_lib.bar(len(images), desc, "photo", enabled=progress_bar) as pbar:
    for start in range(0, len(images), batch):
      part = images[start : start + batch]
      padded = np.concatenate([part, np.zeros((batch - len(part),) + part.shape[1:], part.dtype)])
      feats = _features(model, padded, layer, pool)
      out.append(np.asarray(feats)[: len(part)])
      progress_lib.advance(pbar, start + len(part))
  return np.concatenate(out)


def l2_distances(queries: np.ndarray, feats: np.ndarray, chunk: int = 64) -> np.ndarray:
  """Euclidean distances ``(Q, N)`` between ``queries (Q, D)`` and ``feats (N, D)``.

  Computed from the differences, ``sqrt(sum((q - f)^2))``, not from the expansion
  ``|q|^2 + |f|^2 - 2 q.f``, which cancels catastrophically for near-identical vectors: a
  photo's distance to itself comes out exactly 0.
  """
  queries = np.asarray(queries, np.float32)
  feats = jnp.asarray(feats, jnp.float32)
  rows = []
  for start in range(0, len(queries), chunk):
    q = jnp.asarray(queries[start : start + chunk])
    rows.append(np.asarray(jnp.sqrt(jnp.sum((q[:, None, :] - feats[None]) ** 2, axis=-1))))
  return np.concatenate(rows) if rows else np.zeros((0, len(feats)), np.float32)


def nearest_neighbors(
  queries: np.ndarray, feats: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
  """The ``k`` nearest rows of ``feats`` to each query: ``(indices, distances)``, ``(Q, k)``.

  Nearest first; ties keep the lower index first (a stable sort).
  """
  dist = l2_distances(queries, feats)
  order = np.argsort(dist, axis=1, kind="stable")[:, :k]
  return order, np.take_along_axis(dist, order, axis=1)


@dataclasses.dataclass
class PCA:
  """Principal components of ``N`` vectors: ``x ~ mean + scores @ components``.

  Attributes:
    mean: ``(D,)`` the mean vector subtracted first.
    components: ``(k, D)`` orthonormal directions, largest variance first; each signed so
      that its largest-magnitude entry is positive (a fixed choice, so runs agree).
    explained_variance: ``(k,)`` variance along each, ``lambda_i / (N - 1)`` (non-increasing).
    explained_variance_ratio: ``(k,)`` each as a fraction of the total variance.
  """

  mean: np.ndarray
  components: np.ndarray
  explained_variance: np.ndarray
  explained_variance_ratio: np.ndarray

  def transform(self, x: np.ndarray) -> np.ndarray:
    """Coordinates ``(N, k)`` of ``x (N, D)`` along the components."""
    return (np.asarray(x, np.float64) - self.mean) @ self.components.T


def pca(x: np.ndarray, n_components: int = 2) -> PCA:
  """PCA of ``x (N, D)`` by an eigendecomposition of its smaller Gram matrix.

  With ``X`` the centred data, the principal directions are the eigenvectors of the
  covariance ``X^T X / (N - 1)`` (Pearson, 1901; Hotelling, 1933). When ``D > N`` we
  diagonalize the ``N x N`` Gram matrix ``X X^T = U diag(lambda) U^T`` instead and map
  back, ``v_i = X^T u_i / sqrt(lambda_i)``: the same directions for an ``N^3`` instead of a
  ``D^3`` cost (for 264 photos at EfficientNet's 1280-D ``head``: 264 x 264). Float64
  throughout. ``n_components`` is capped at ``min(N, D)``.
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"PCA needs at least 2 vectors as (N, D); got shape {x.shape}")
  n, d = x.shape
  k = int(min(n_components, n, d))
  if k < 1:
    raise ValueError(f"n_components must be at least 1, got {n_components}")
  mean = x.mean(axis=0)
  xc = x - mean
  if d <= n:
    lam, vecs = np.linalg.eigh(xc.T @ xc)  # ascending
    lam, comps = lam[::-1][:k], vecs[:, ::-1][:, :k].T
  else:
    lam, u = np.linalg.eigh(xc @ xc.T)
    lam, u = lam[::-1][:k], u[:, ::-1][:, :k]
    comps = (xc.T @ u / np.sqrt(np.maximum(lam, 1e-300))).T
    comps /= np.linalg.norm(comps, axis=1, keepdims=True)
  lam = np.maximum(lam, 0.0)
  signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
  comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
  total = np.sum(xc**2) / (n - 1)
  var = lam / (n - 1)
  return PCA(mean, comps, var, var / total if total > 0 else np.zeros_like(var))


# van der Maaten and Hinton (2008), section 4.2: PCA to 30 dimensions first, 1000 iterations,
# perplexity 30 (they suggest 5 to 50).
TSNE_PCA_DIMS = 30
TSNE_ITERATIONS = 1000
TSNE_PERPLEXITY = 30.0
# Up to this many points scikit-learn's exact t-SNE (every pair, each iteration) is used: it was
# 4 s against Barnes-Hut's 39 s for 36 points on this project's 2-core CI machine under load
# (Barnes-Hut's tree and OpenMP threads cost more than the N^2 pairs when N is small).
TSNE_EXACT_MAX = 100


def default_perplexity(n: int) -> float:
  """30, or ``(n - 1) / 3`` for fewer than 91 points (scikit-learn looks at ``3 * perplexity``
  neighbours of each point, and there are only ``n - 1``)."""
  return min(TSNE_PERPLEXITY, (n - 1) / 3)


@dataclasses.dataclass
class TSNEResult:
  """``embedding (N, 2)``, the final ``kl`` divergence KL(P || Q), the ``perplexity``."""

  embedding: np.ndarray
  kl: float
  perplexity: float


def tsne(
  x: np.ndarray,
  perplexity: float | None = None,
  iterations: int = TSNE_ITERATIONS,
  seed: int = 0,
  pca_dims: int | None = TSNE_PCA_DIMS,
) -> TSNEResult:
  """t-SNE of ``x (N, D)`` in 2-D: scikit-learn's, PCA initialization; Barnes-Hut, or exact
  up to :data:`TSNE_EXACT_MAX` points.

  Args:
    x: N points, N at least 4.
    perplexity: the effective number of neighbours, ``1 <= perplexity < N``; None:
      :func:`default_perplexity`.
    iterations: gradient steps (scikit-learn's ``max_iter``, at least 250).
    seed: seeds the optimization.
    pca_dims: reduce to this many principal components first when ``D`` is larger (the
      paper's section 4.2); None keeps ``x``.
  """
  from sklearn.manifold import TSNE  # scikit-learn is slow to import; only here

  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 4:
    raise ValueError(f"t-SNE needs at least 4 points as (N, D); got shape {x.shape}")
  perplexity = default_perplexity(len(x)) if perplexity is None else float(perplexity)
  if not 1.0 <= perplexity < len(x):
    raise ValueError(f"perplexity must be at least 1 and below N = {len(x)}; got {perplexity}")
  if iterations < 250:
    raise ValueError(f"t-SNE needs at least 250 iterations (scikit-learn); got {iterations}")
  if pca_dims and x.shape[1] > pca_dims:
    x = pca(x, pca_dims).transform(x)
  fit = TSNE(
    2,
    perplexity=perplexity,
    max_iter=int(iterations),
    init="pca",
    learning_rate="auto",
    method="exact" if len(x) <= TSNE_EXACT_MAX else "barnes_hut",
    random_state=seed,
  )
  y = fit.fit_transform(x)
  return TSNEResult(y, float(fit.kl_divergence_), perplexity)


def scatter(
  images: np.ndarray,
  coords: np.ndarray,
  size: int = 900,
  thumb: int = 48,
  title: str | None = None,
  axes: tuple[str, str] = ("", ""),
) -> Image.Image:
  """Thumbnails of ``images (N, H, W, C)`` placed at ``coords (N, 2)`` on a square canvas.

  ``coords[:, 0]`` runs left to right and ``coords[:, 1]`` bottom to top, each scaled to
  fill the canvas (one scale for both, so distances keep their ratio). Later images are
  drawn over earlier ones. ``axes`` names the horizontal and vertical axes.
  """
  coords = np.asarray(coords, np.float64)
  lh = figures.line_height()
  top = lh + 2 * figures.PAD if title else figures.PAD
  bottom = lh + 2 * figures.PAD
  canvas = Image.new("RGB", (size, top + size + bottom), "white")
  draw = ImageDraw.Draw(canvas)
  lo, hi = coords.min(axis=0), coords.max(axis=0)
  span = float(np.max(hi - lo)) or 1.0
  inner = size - thumb - 2 * figures.PAD
  centre = (lo + hi) / 2
  draw.rectangle((0, top, size - 1, top + size - 1), outline=(210, 210, 210))
  for image, (cx, cy) in zip(images, coords):
    x = figures.PAD + inner / 2 + (cx - centre[0]) / span * inner
    y = top + figures.PAD + inner / 2 - (cy - centre[1]) / span * inner
    pil = Image.fromarray(np.clip(np.rint(figures.to_rgb(image) * 255), 0, 255).astype(np.uint8))
    canvas.paste(pil.resize((thumb, thumb), Image.BICUBIC), (int(round(x)), int(round(y))))
  if title:
    draw.text((figures.PAD, figures.PAD), title, fill="black", font=figures.font())
  draw.text(
    (figures.PAD, top + size + figures.PAD),
    f"x: {axes[0]}   y: {axes[1]}",
    fill="black",
    font=figures.font(),
  )
  return canvas


def neighbors_figure(
  query: np.ndarray,
  query_name: str,
  images: np.ndarray,
  names: Sequence[str],
  indices: np.ndarray,
  distances: np.ndarray,
  title: str,
  tile: int = 128,
) -> Image.Image:
  """The query photo, then its neighbours in order, each captioned with name and distance."""

  def pil(image):
    arr = np.clip(np.rint(figures.to_rgb(image) * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(arr).resize((tile, tile), Image.BICUBIC)

  items = [(pil(query), ["query", fit_text(query_name, tile)])]
  items += [
    (pil(images[i]), [fit_text(names[i], tile), f"#{r + 1}  d = {d:.4g}"])
    for r, (i, d) in enumerate(zip(indices, distances))
  ]
  return figures.panels(items, title=title)
