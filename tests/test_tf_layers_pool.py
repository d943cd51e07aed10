"""The shifted-slice max pool: TF SAME values, and the first-maximum gradient with ties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.zoo import tf_layers

REWRITE_SETS = [frozenset(), frozenset({"max_pool_shifted"})]


def numpy_pool_and_grad(x, g, window, stride):
  """TF SAME max pool (``-inf`` pads) and its gradient to the first row-major maximum."""
  n, h, w, c = x.shape
  (top, _), (left, _) = tf_layers._same_pads(x.shape, (window, window), (stride, stride))
  oh, ow = -(-h // stride), -(-w // stride)
  y = np.empty((n, oh, ow, c), x.dtype)
  dx = np.zeros_like(x)
  for b in range(n):
    for i in range(oh):
      for j in range(ow):
        for ch in range(c):
          best, where = -np.inf, None
          for u in range(window):
            for v in range(window):
              r, s = i * stride + u - top, j * stride + v - left
              if 0 <= r < h and 0 <= s < w and (where is None or x[b, r, s, ch] > best):
                best, where = x[b, r, s, ch], (r, s)
          y[b, i, j, ch] = best
          dx[b, where[0], where[1], ch] += g[b, i, j, ch]
  return y, dx


@pytest.mark.parametrize("rewrites", REWRITE_SETS, ids=lambda r: "+".join(sorted(r)) or "none")
@pytest.mark.parametrize(
  "size,window,stride", [(9, 3, 2), (10, 3, 2), (7, 3, 1), (8, 2, 2), (6, 3, 3)]
)
def test_values_and_gradient_match_numpy_with_ties(size, window, stride, rewrites):
  """``max_pool_same`` with the rewrite on and off (XLA's ``reduce_window``)."""
  rng = np.random.default_rng(size * 10 + stride)
  # Rounded and ReLU'd: many windows hold tied maxima, at 0 and elsewhere.
  x = np.maximum(np.round(rng.normal(size=(2, size, size, 3)) * 2), 0).astype(np.float32)
  y, pullback = jax.vjp(
    lambda x: tf_layers.max_pool_same(x, window, stride, rewrites), jnp.asarray(x)
  )
  g = rng.normal(size=y.shape).astype(np.float32)
  want_y, want_dx = numpy_pool_and_grad(x, g, window, stride)
  np.testing.assert_array_equal(np.asarray(y), want_y)
  np.testing.assert_allclose(np.asarray(pullback(jnp.asarray(g))[0]), want_dx, rtol=1e-6, atol=1e-6)


def test_gradient_equals_reduce_window_gradient_under_jit():
  rng = np.random.default_rng(1)
  x = jnp.asarray(np.maximum(rng.normal(size=(2, 15, 15, 4)), 0), jnp.float32)
  g = jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32)

  def grad(rewrites):
    def pool(x):
      return tf_layers.max_pool_same(x, 3, 2, rewrites)

    return jax.jit(jax.grad(lambda x: jnp.sum(pool(x) * g)))(x)

  pads = [(0, 0), *tf_layers._same_pads(x.shape, (3, 3), (2, 2)), (0, 0)]
  ref = jax.jit(
    jax.grad(
      lambda x: jnp.sum(
        jax.lax.reduce_window(
          x, np.array(-np.inf, np.float32), jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), pads
        )
        * g
      )
    )
  )(x)
  np.testing.assert_array_equal(np.asarray(grad(frozenset())), np.asarray(ref))
  np.testing.assert_allclose(
    np.asarray(grad(frozenset({"max_pool_shifted"}))), np.asarray(ref), rtol=1e-6, atol=1e-6
  )
