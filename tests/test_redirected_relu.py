"""The redirected ReLU gradients against Lucid's rule written out in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.nonlin import redirected_relu, redirected_relu6


def lucid_rule(x, g, lo, hi, active):
  """lucid/optvis/overrides/redirected_relu_grad.py, per batch item, in NumPy."""
  plain = np.where((x > lo) & (x < hi), g, 0.0)
  if not active:
    return plain
  blocked = (x < lo) & (g > 0)
  if np.isfinite(hi):
    blocked |= (x > hi) & (g < 0)
  redirected = np.where(blocked, 0.0, g)
  out = plain.copy()
  for i in range(x.shape[0]):
    if not np.any(plain[i] != 0):
      out[i] = redirected[i]
  return out


def inputs():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 4, 2)).astype(np.float32) * 4
  x[1] = -np.abs(x[1]) - 0.1  # batch item 1 is dead: its plain gradient is all zero
  g = rng.normal(size=x.shape).astype(np.float32)
  return x, g


@pytest.mark.parametrize("active", [True, False])
@pytest.mark.parametrize("fn,lo,hi", [(redirected_relu, 0, np.inf), (redirected_relu6, 0, 6)])
def test_gradient_matches_lucid_rule_under_a_traced_switch(fn, lo, hi, active):
  x, g = inputs()

  @jax.jit
  def vjp(x, g, active):
    _, pullback = jax.vjp(lambda x: fn(x, active), x)
    return pullback(g)[0]

  got = np.asarray(vjp(x, g, jnp.asarray(active)))
  want = lucid_rule(x, g, lo, hi, active)
  np.testing.assert_array_equal(got, want)
  # The dead item is the one the rule changes: it gets gradient only while active.
  assert np.any(got[1] != 0) == active


def test_forward_is_the_plain_nonlinearity():
  x, _ = inputs()
  np.testing.assert_array_equal(np.asarray(redirected_relu(x, True)), np.maximum(x, 0))
  np.testing.assert_array_equal(np.asarray(redirected_relu6(x, False)), np.clip(x, 0, 6))
