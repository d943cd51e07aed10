"""The conv's CPU rewrites: with each rewrite on or off, the same values and gradients as lax's."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.nonlin import CPU_REWRITES
from featviz.zoo import tf_layers

import jaxpr_ops

NHWC = ("NHWC", "HWIO", "NHWC")
# Every subset that reaches a conv: none, each conv rewrite alone, and all three.
REWRITE_SETS = [
  frozenset(),
  frozenset({"conv_flipped_backward"}),
  frozenset({"depthwise_shifted"}),
  CPU_REWRITES,
]


@pytest.mark.parametrize(
  "size,k,stride", [(17, 3, 1), (16, 3, 2), (15, 7, 2), (9, 1, 1), (14, 5, 1), (13, 1, 2)]
)
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


@pytest.mark.parametrize("rewrites", REWRITE_SETS, ids=lambda r: "+".join(sorted(r)) or "none")
@pytest.mark.parametrize("groups,k,stride", [(1, 3, 2), (1, 5, 1), (6, 3, 2), (6, 5, 1)])
def test_conv_layer_matches_lax_with_each_rewrite_set(rewrites, groups, k, stride):
  """``Conv(rewrites=...)``: values and the input, kernel and bias gradients of XLA's conv, with
  TF SAME pads (an odd-sized input, so stride 2 pads unevenly)."""
  rng = np.random.default_rng(groups * k + stride)
  x = jnp.asarray(rng.normal(size=(2, 11, 10, 6)), jnp.float32)
  params = {
    "kernel": jnp.asarray(rng.normal(size=(k, k, 6 // groups, 6)), jnp.float32),
    "bias": jnp.asarray(rng.normal(size=(6,)), jnp.float32),
  }
  layer = tf_layers.Conv(6, (k, k), (stride, stride), groups=groups, rewrites=rewrites)
  pads = [tf_layers.same_padding(n, k, stride) for n in x.shape[1:3]]

  def ours(params, x):
    return layer.apply({"params": params}, x)

  def ref(params, x):
    return (
      jax.lax.conv_general_dilated(
        x,
        params["kernel"],
        (stride, stride),
        pads,
        dimension_numbers=NHWC,
        feature_group_count=groups,
      )
      + params["bias"]
    )

  want, ref_vjp = jax.vjp(ref, params, x)
  got, our_vjp = jax.vjp(ours, params, x)
  assert got.shape == want.shape == ((2, 6, 5, 6) if stride == 2 else (2, 11, 10, 6))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  g = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
  for ours_grad, ref_grad in zip(jax.tree.leaves(our_vjp(g)), jax.tree.leaves(ref_vjp(g))):
    np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rewrite", ["conv_flipped_backward", "depthwise_flipped_backward"])
def test_the_input_gradient_alone_traces_no_kernel_gradient(rewrite):
  """A render differentiates the image, not the weights: the rewrite's backward then traces the
  input gradient only (custom_vjp's symbolic zeros), and that gradient is bitwise the one it
  gives beside the kernel's (whose values the tests above hold to lax's)."""
  rng = np.random.default_rng(3)
  depthwise = rewrite.startswith("depthwise")
  x = jnp.asarray(rng.normal(size=(2, 11, 10, 6)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 1 if depthwise else 6, 6)), jnp.float32)
  pads = tuple(tuple(p) for p in tf_layers._same_pads(x.shape, (3, 3), (2, 2)))
  g = jnp.asarray(rng.normal(size=(2, 6, 5, 6)), jnp.float32)

  def loss(x, w):
    return jnp.sum(getattr(tf_layers, rewrite)(x, w, (2, 2), pads) * g)

  alone = jaxpr_ops.primitive_counts(jax.make_jaxpr(jax.grad(loss))(x, w))
  both = jaxpr_ops.primitive_counts(jax.make_jaxpr(jax.grad(loss, (0, 1)))(x, w))
  if depthwise:  # the kernel gradient: one reduce-sum per tap, beside the loss's own sum
    assert (alone["reduce_sum"], both["reduce_sum"]) == (1, 1 + 9)
  else:  # the forward and the input gradient; the kernel's VJP adds its forward and transpose
    assert (alone["conv_general_dilated"], both["conv_general_dilated"]) == (2, 4)
  dx = jax.jit(jax.grad(loss))(x, w)
  dx_both, dw = jax.jit(jax.grad(loss, (0, 1)))(x, w)
  assert dw.shape == w.shape
  np.testing.assert_array_equal(dx, dx_both)


def test_a_pointwise_conv_and_its_input_gradient_read_the_kernel_as_stored():
  """A 1x1 conv of stride 1 is a product over channels: its forward and input gradient are
  ``dot_general``s on the kernel as stored, so the compiled gradient copies no transposed kernel
  (XLA:CPU kept such a copy inside the render loop, on every step), and its values are lax's."""
  rng = np.random.default_rng(5)
  x = jnp.asarray(rng.normal(size=(2, 7, 6, 12)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(1, 1, 12, 20)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(2, 7, 6, 20)), jnp.float32)
  pads = ((0, 0), (0, 0))

  def loss(x, w):
    return jnp.sum(tf_layers.conv_flipped_backward(x, w, (1, 1), pads) * g)

  counts = jaxpr_ops.primitive_counts(jax.make_jaxpr(jax.grad(loss))(x, w))
  assert (counts["dot_general"], counts["conv_general_dilated"]) == (2, 0)
  compiled = jax.jit(jax.grad(loss)).lower(x, w).compile().as_text()
  assert not re.search(r"= \S+ transpose\(", compiled)  # no transpose op (metadata aside)
  want = jax.grad(
    lambda x: jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC) * g)
  )(x)
  np.testing.assert_allclose(jax.jit(jax.grad(loss))(x, w), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_torchvision_depthwise_conv_takes_the_flipped_backward(stride):
  """MobileNet's depthwise convs (``torchvision_layers.conv2d``, torch's symmetric padding) run
  as ``depthwise_flipped_backward`` with the rewrite on: one custom VJP, and the values and input
  gradient of lax's grouped conv."""
  from featviz.zoo import torchvision_layers

  rng = np.random.default_rng(stride)
  x = jnp.asarray(rng.normal(size=(2, 9, 8, 6)), jnp.float32)
  p = {"kernel": jnp.asarray(rng.normal(size=(3, 3, 1, 6)), jnp.float32)}

  def ours(x):
    return torchvision_layers.conv2d(x, p, stride, 1, groups=6, rewrites=CPU_REWRITES)

  def ref(x):
    return jax.lax.conv_general_dilated(
      x,
      p["kernel"],
      (stride, stride),
      ((1, 1), (1, 1)),
      dimension_numbers=NHWC,
      feature_group_count=6,
    )

  assert jaxpr_ops.primitive_counts(jax.make_jaxpr(ours)(x))["custom_vjp_call"] == 1
  np.testing.assert_allclose(ours(x), ref(x), rtol=1e-5, atol=1e-5)
  g = jnp.asarray(rng.normal(size=ref(x).shape), jnp.float32)
  np.testing.assert_allclose(
    jax.vjp(ours, x)[1](g)[0], jax.vjp(ref, x)[1](g)[0], rtol=1e-4, atol=1e-4
  )
