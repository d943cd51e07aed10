"""Exact t-SNE (van der Maaten and Hinton, 2008), for a few hundred points.

L. van der Maaten and G. Hinton, "Visualizing Data using t-SNE", JMLR 9:2579-2605, 2008.
Equation numbers below are theirs.

1. **Affinities in the data** (section 2, eq. 1): a Gaussian around each point ``x_i``,
   ``p_{j|i} = exp(-|x_i - x_j|^2 beta_i) / sum_{k != i} exp(-|x_i - x_k|^2 beta_i)`` with
   ``beta_i = 1 / (2 sigma_i^2)`` chosen by binary search so that the row's perplexity
   ``2^{H(P_i)}``, ``H(P_i) = -sum_j p_{j|i} log2 p_{j|i}``, equals the one asked for (a
   smooth count of neighbours; they suggest 5 to 50). Then symmetrized (section 3.1):
   ``p_ij = (p_{j|i} + p_{i|j}) / (2 N)``.
2. **Affinities in the map** (section 3.2, eq. 4): a Student t with one degree of
   freedom, ``q_ij = (1 + |y_i - y_j|^2)^-1 / sum_{k != l} (1 + |y_k - y_l|^2)^-1``.
3. **Descent on KL(P || Q)** with the gradient of eq. 5,
   ``dC/dy_i = 4 sum_j (p_ij - q_ij)(y_i - y_j)(1 + |y_i - y_j|^2)^-1``, and the settings of
   their section 4.2 (also section 3.4): ``T = 1000`` iterations, momentum 0.5 for the first
   250 and 0.8 after, learning rate 100 adapted per coordinate by Jacobs' (1988) gains
   (``+0.2`` when the gradient's sign flips, ``x0.8`` when it stays; floor 0.01, as in the
   authors' reference ``tsne.py``), all ``p_ij`` multiplied by 4 for the first 50 iterations
   ("early exaggeration"), and an initial map drawn from ``N(0, 1e-4 I)``. The data are
   first reduced to 30 dimensions by PCA (their section 4.2).

"Exact" means every one of the ``N^2`` pairs, each iteration: fine up to a few thousand
points; the whole descent is one jitted ``lax.scan``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from featviz.analysis.feature_space import pca

# Section 4.2 of the paper.
ITERATIONS = 1000
LEARNING_RATE = 100.0
MOMENTUM_EARLY, MOMENTUM_LATE, MOMENTUM_SWITCH = 0.5, 0.8, 250
EXAGGERATION, EXAGGERATION_STEPS = 4.0, 50
INIT_STD = 1e-2  # N(0, 1e-4 I): standard deviation 1e-2.
PCA_DIMS = 30
# Jacobs (1988) gains, with the constants of the authors' reference tsne.py.
GAIN_UP, GAIN_DOWN, MIN_GAIN = 0.2, 0.8, 0.01
# Binary search: the reference tsne.py's tolerance on the entropy (nats), more tries.
ENTROPY_TOL, SEARCH_STEPS = 1e-5, 200


def squared_distances(x: np.ndarray) -> np.ndarray:
  """``(N, D)`` -> ``(N, N)`` squared Euclidean distances, float64, exact zeros on the diagonal."""
  x = np.asarray(x, np.float64)
  sq = np.sum(x * x, axis=1)
  d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
  np.fill_diagonal(d, 0.0)
  return d


def _row_probabilities(d: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``p_{j|i}`` for every row and its entropy in nats, for the given ``beta (N,)``.

  ``d`` has the diagonal excluded by the caller (``+inf``). Each row is shifted by its
  smallest distance first; ``p_{j|i}`` does not change, and ``exp`` cannot underflow to 0
  for the nearest neighbour.
  """
  shifted = d - np.min(d, axis=1, keepdims=True)
  logits = -shifted * beta[:, None]
  w = np.exp(logits)
  total = np.sum(w, axis=1, keepdims=True)
  p = w / total
  # H = -sum p log p = log(total) - sum p * logits, without log(0) for vanished terms.
  entropy = np.log(total[:, 0]) - np.sum(p * np.where(w > 0, logits, 0.0), axis=1)
  return p, entropy


def conditional_probabilities(
  sq_dist: np.ndarray, perplexity: float
) -> tuple[np.ndarray, np.ndarray]:
  """``p_{j|i}`` ``(N, N)`` (rows sum to 1, zero diagonal) and the ``beta_i (N,)`` found.

  Bisection on each ``beta_i`` (all rows at once): double or halve until the target
  entropy ``log(perplexity)`` nats is bracketed, then halve the bracket, until every row is
  within :data:`ENTROPY_TOL` nats. Raises ValueError unless ``1 <= perplexity < N - 1``
  (the largest possible perplexity, a uniform row, is ``N - 1``).
  """
  d = np.array(sq_dist, np.float64)
  n = len(d)
  if not 1.0 <= perplexity < n - 1:
    raise ValueError(
      f"perplexity must be at least 1 and below N - 1 = {n - 1} for {n} points; got {perplexity}"
    )
  np.fill_diagonal(d, np.inf)
  target = np.log(perplexity)
  scale = np.median(d[np.isfinite(d)]) or 1.0
  beta = np.full(n, 1.0 / scale)  # start near the typical distance's scale
  lo, hi = np.zeros(n), np.full(n, np.inf)
  for _ in range(SEARCH_STEPS):
    p, entropy = _row_probabilities(d, beta)
    diff = entropy - target
    if np.all(np.abs(diff) < ENTROPY_TOL):
      break
    flat = diff > 0  # too many neighbours: sharpen (raise beta)
    lo = np.where(flat, beta, lo)
    hi = np.where(flat, hi, beta)
    beta = np.where(np.isinf(hi), beta * 2.0, (lo + hi) / 2.0)
  p, _ = _row_probabilities(d, beta)
  np.fill_diagonal(p, 0.0)
  return p, beta


def joint_probabilities(x: np.ndarray, perplexity: float) -> np.ndarray:
  """Symmetric ``p_ij = (p_{j|i} + p_{i|j}) / (2 N)`` ``(N, N)``, summing to 1."""
  p, _ = conditional_probabilities(squared_distances(x), perplexity)
  return (p + p.T) / (2.0 * len(p))


def row_perplexities(p_conditional: np.ndarray) -> np.ndarray:
  """``2^{H(P_i)}`` of each row of ``p_{j|i}`` (the quantity the search targets)."""
  p = np.asarray(p_conditional, np.float64)
  h = -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0), axis=1)
  return 2.0**h


def _gradient(y: jax.Array, p: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eq. 5 and the map affinities: ``(dC/dY (N, 2), Q (N, N))``."""
  sq = jnp.sum(y * y, axis=1)
  d = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * y @ y.T, 0.0)
  num = 1.0 / (1.0 + d)
  num = num * (1.0 - jnp.eye(len(y), dtype=y.dtype))
  q = num / jnp.sum(num)
  w = (p - q) * num
  # sum_j w_ij (y_i - y_j) = (diag(sum_j w_ij) - W) y
  grad = 4.0 * (jnp.sum(w, axis=1, keepdims=True) * y - w @ y)
  return grad, q


@functools.partial(jax.jit, static_argnums=(2,))
def _descend(p: jax.Array, y0: jax.Array, iterations: int):
  def step(carry, t):
    y, velocity, gains = carry
    exaggerate = jnp.where(t < EXAGGERATION_STEPS, EXAGGERATION, 1.0).astype(p.dtype)
    grad, _ = _gradient(y, p * exaggerate)
    momentum = jnp.where(t < MOMENTUM_SWITCH, MOMENTUM_EARLY, MOMENTUM_LATE).astype(y.dtype)
    same = (grad > 0) == (velocity > 0)
    gains = jnp.maximum(jnp.where(same, gains * GAIN_DOWN, gains + GAIN_UP), MIN_GAIN)
    velocity = momentum * velocity - LEARNING_RATE * gains * grad
    y = y + velocity
    y = y - jnp.mean(y, axis=0)
    return (y, velocity, gains), None

  init = (y0, jnp.zeros_like(y0), jnp.ones_like(y0))
  (y, _, _), _ = jax.lax.scan(step, init, jnp.arange(iterations))
  _, q = _gradient(y, p)
  kl = jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-12) / jnp.maximum(q, 1e-12)), 0.0))
  return y, kl


@dataclasses.dataclass
class TSNEResult:
  """``embedding (N, dims)``, the final ``kl`` divergence KL(P || Q), the ``perplexity``."""

  embedding: np.ndarray
  kl: float
  perplexity: float


def tsne(
  x: np.ndarray,
  dims: int = 2,
  perplexity: float = 30.0,
  iterations: int = ITERATIONS,
  seed: int = 0,
  pca_dims: int | None = PCA_DIMS,
) -> TSNEResult:
  """Embeds ``x (N, D)`` in ``dims`` dimensions with exact t-SNE.

  Args:
    x: N points (N at least 3).
    dims: embedding dimensions (2 for a map).
    perplexity: the effective number of neighbours; ``1 <= perplexity < N - 1`` (the paper
      uses 30 for 6,000 points, and suggests 5 to 50).
    iterations: gradient steps (paper: 1000).
    seed: draws the initial map.
    pca_dims: reduce to this many PCA dimensions first when ``D`` is larger (paper: 30);
      None keeps ``x``.
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 3:
    raise ValueError(f"t-SNE needs at least 3 points as (N, D); got shape {x.shape}")
  if pca_dims and x.shape[1] > pca_dims:
    x = pca(x, pca_dims).transform(x)
  p = joint_probabilities(x, perplexity)
  p = np.maximum(p, 1e-12)  # the reference tsne.py's floor, keeps log(p) finite
  np.fill_diagonal(p, 0.0)
  key = jax.random.key(seed)
  y0 = INIT_STD * jax.random.normal(key, (len(x) * dims,), jnp.float32).reshape(len(x), dims)
  y, kl = _descend(jnp.asarray(p, jnp.float32), y0, int(iterations))
  return TSNEResult(np.asarray(y), float(kl), float(perplexity))
