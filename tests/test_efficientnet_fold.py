"""EfficientNet-Lite's batch norm folding and its depthwise convs' backward rewrite.

The zoo's forward pass folds every inference-mode BN into the conv before it
(``efficientnet_lite.fold_batch_norm``); the reference is the same Flax network with the
converted weights as the file has them, each conv followed by its BN (``EfficientNetLite``
with ``folded=False``, the formula ``tests/test_efficientnet_lite0.py`` holds to its
definition). Real weights, a real photo, with this machine's CPU rewrites as a render runs.
The rewrite's backward (``tf_layers.depthwise_flipped_backward``) against XLA's own.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import model as fv_model
from featviz import photos
from featviz.zoo import efficientnet_lite as effnet
from featviz.zoo import tf_layers as tfl

LAYERS = ("stem", "block3", "block10", "head", "logits")
PHOTO = "n01440764_tench.JPEG"
SIZE = 160  # Not the training 224: the folding must not depend on the input size.
NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.fixture(scope="module")
def weights(shared):
  """Lite0's packaged weights, converted (the .pth through the torch-free reader)."""
  from featviz.zoo import torch_pickle

  path = shared / "weights" / "efficientnet-lite0-57934424.pth"
  return effnet.lite0.convert(torch_pickle.load_state_dict(path))


def _unfolded(weights, x, layers, ops):
  return effnet.EfficientNetLite(effnet.LITE0).apply({"params": weights}, x, layers, ops)


def test_folded_forward_matches_the_unfolded_network(shared, weights):
  image = photos.load_image(shared / "images" / "imagenet-sample" / PHOTO, SIZE)[None]
  x = effnet.lite0.spec().to_input(jnp.asarray(image))
  ops = fv_model.default_ops()
  acts = jax.jit(lambda w, x: effnet.lite0.forward(w, x, LAYERS, ops))(weights, x)
  want = jax.jit(lambda w, x: _unfolded(w, x, LAYERS, ops))(weights, x)
  for layer in LAYERS:
    scale = float(jnp.abs(want[layer]).max())
    err = float(jnp.abs(acts[layer] - want[layer]).max()) / scale
    assert scale > 0 and err < 1e-5, f"{layer}: relative error {err:.2g}"
  # The folded weights are a conv with a bias where the file has a conv and a BN.
  folded = effnet.fold_batch_norm(weights)
  assert set(folded["block10"]) == {"expand", "depthwise", "project"}
  assert set(folded["block10"]["depthwise"]) == {"kernel", "bias"}
  np.testing.assert_array_equal(folded["fc"]["kernel"], weights["fc"]["kernel"])


@pytest.mark.parametrize("size,k,stride", [(11, 3, 1), (11, 3, 2), (10, 5, 2), (9, 5, 1)])
def test_depthwise_flipped_backward_has_the_grouped_convolutions_gradients(size, k, stride):
  """Values, input and kernel gradients against XLA's grouped conv, TF SAME pads (odd and
  even sizes: stride 2 pads unevenly)."""
  rng = np.random.default_rng(size * k + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, 1, 6)), jnp.float32)
  pads = tuple(tfl.same_padding(n, k, stride) for n in x.shape[1:3])

  def ours(x, kernel):
    return tfl.depthwise_flipped_backward(x, kernel, (stride, stride), pads)

  def ref(x, kernel):
    return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), pads, dimension_numbers=NHWC, feature_group_count=6
    )

  g = jnp.asarray(rng.normal(size=ref(x, kernel).shape), jnp.float32)

  @jax.jit
  def values_and_grads(x, kernel, g):
    (y, vjp), (want, ref_vjp) = jax.vjp(ours, x, kernel), jax.vjp(ref, x, kernel)
    return (y, *vjp(g)), (want, *ref_vjp(g))

  got, want = values_and_grads(x, kernel, g)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
  for ours_grad, ref_grad in zip(got[1:], want[1:]):
    np.testing.assert_allclose(ours_grad, ref_grad, rtol=1e-4, atol=1e-4)
