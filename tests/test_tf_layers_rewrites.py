"""``ops.rewrites`` reaches the TF layers: it changes the traced program, not the numbers.

The architectures pass ``ops.rewrites`` to every :class:`Conv` and ``max_pool_same``; the
default ``Ops()`` has none, so a forward is XLA's ops unless its caller asks.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.nonlin import CPU_REWRITES, Ops
from featviz.zoo import efficientnet_lite0 as effnet
from featviz.zoo import inceptionv1

import jaxpr_ops

# (module, network, layers, input size): InceptionV1 to mixed3a (3 stem convs, 6 in the block,
# maxpool0, maxpool1 and the block's pool branch); EfficientNet-Lite0 to block1 (stem, block0's
# depthwise and project, block1's expand, depthwise and project).
NETWORKS = {
  "inceptionv1": (
    inceptionv1,
    inceptionv1.InceptionV1,
    ("mixed3a",),
    64,
    {"plain": 9, "depthwise": 0, "pools": 3},
  ),
  "efficientnet_lite0": (
    effnet,
    effnet.EfficientNetLite0,
    ("block1",),
    64,
    {"plain": 4, "depthwise": 2, "pools": 0},
  ),
}


def _setup(name, abstract=False):
  """The network's module, layers, an input and random weights (shapes only if ``abstract``)."""
  module, network, layers, size, parts = NETWORKS[name]
  x = jax.random.uniform(jax.random.key(0), (2, size, size, 3))

  def init(x):
    return network().init(jax.random.key(1), x, layers)["params"]

  if abstract:
    x = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return module, layers, x, jax.eval_shape(init, x), parts
  return module, layers, x, jax.jit(init)(x), parts


def _counts(forward, weights, x):
  return jaxpr_ops.primitive_counts(jax.make_jaxpr(forward)(weights, x))


def _grouped_convs(forward, weights, x):
  """``conv_general_dilated`` equations with ``feature_group_count > 1``, nested ones included."""

  def walk(jaxpr):
    n = 0
    for eqn in jaxpr.eqns:
      n += eqn.primitive.name == "conv_general_dilated" and eqn.params["feature_group_count"] > 1
      n += sum(walk(sub) for sub in jaxpr_ops._subjaxprs(eqn))
    return n

  return walk(jax.make_jaxpr(forward)(weights, x).jaxpr)


@pytest.mark.parametrize("name", NETWORKS)
def test_rewrites_change_the_traced_forward(name):
  module, layers, x, weights, parts = _setup(name, abstract=True)

  def forward(rewrites):
    return lambda w, x: module.forward(w, x, layers, Ops(rewrites=rewrites))

  plain, rewritten = forward(frozenset()), forward(CPU_REWRITES)
  off, on = _counts(plain, weights, x), _counts(rewritten, weights, x)
  # Off: XLA's ops only. A plain conv, a grouped conv, a reduce-window per pool.
  assert off["custom_vjp_call"] == 0
  assert off["conv_general_dilated"] == parts["plain"] + parts["depthwise"]
  assert _grouped_convs(plain, weights, x) == parts["depthwise"]
  assert off["reduce_window_max"] == parts["pools"]
  # On: each plain conv, depthwise conv (its input gradient a shifted sum on the flipped
  # kernel, tf_layers.depthwise_flipped_backward) and pool is a custom VJP; depthwise convs are
  # slices, not convs.
  assert on["custom_vjp_call"] == parts["plain"] + parts["depthwise"] + parts["pools"]
  # Inside conv_flipped_backward: a conv, or for a 1x1 kernel of stride 1 a dot_general.
  pointwise = on["dot_general"] - off["dot_general"]
  assert on["conv_general_dilated"] + pointwise == parts["plain"]
  assert pointwise > 0
  assert _grouped_convs(rewritten, weights, x) == 0
  assert on["reduce_window_max"] == 0
  # The default Ops is the plain program.
  assert _counts(lambda w, x: module.forward(w, x, layers), weights, x) == off
  assert Ops().rewrites == frozenset()


@pytest.mark.parametrize("name", NETWORKS)
def test_rewrites_give_the_same_activations_and_input_gradient(name):
  """The whole forward and its gradient, all rewrites against none (each rewrite alone is held
  to XLA's op in test_tf_layers_conv.py and test_tf_layers_pool.py)."""
  module, layers, x, weights, _ = _setup(name)

  def run(rewrites):
    ops = Ops(rewrites=rewrites)

    def score(x):
      acts = module.forward(weights, x, layers, ops)
      return sum(jnp.sum(jnp.sin(a)) for a in acts.values()), acts

    return jax.jit(jax.grad(score, has_aux=True))(x)

  want_grad, want = run(frozenset())
  grad, acts = run(CPU_REWRITES)
  for layer in layers:
    np.testing.assert_allclose(acts[layer], want[layer], rtol=1e-5, atol=1e-5)
  scale = float(jnp.abs(want_grad).max())
  assert scale > 0
  np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-5 * scale)
