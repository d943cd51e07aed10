"""The CPU conv with a materialized transposed kernel: same values and gradients as lax's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.zoo import tf_layers

NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize("size,k,stride", [(17, 3, 1), (16, 3, 2), (15, 7, 2), (9, 1, 1),
                                           (14, 5, 1), (13, 1, 2)])
def test_forward_and_both_gradients_match_lax(size, k, stride):
  rng = np.random.default_rng(size * k + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 3, 5)), jnp.float32)
  pads = tuple(tuple(p) for p in tf_layers._same_pads(x.shape, (k, k), (stride, stride)))
  strides = (stride, stride)

  def ours(x, w):
    return tf_layers.conv_flipped_backward(x, w, strides, pads)

  def ref(x, w):
    return jax.lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC)

  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
  g = jnp.asarray(rng.normal(size=ref(x, w).shape), jnp.float32)
  dx, dw = jax.vjp(ours, x, w)[1](g)
  rx, rw = jax.vjp(ref, x, w)[1](g)
  np.testing.assert_allclose(dx, rx, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dw, rw, rtol=1e-4, atol=1e-4)
