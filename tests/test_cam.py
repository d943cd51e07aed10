"""featviz.analysis.cam: CAM = Grad-CAM on a GAP head, guided / deconvnet rules, top-5."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from featviz import nonlin, photos
from featviz.analysis import cam, layer_grad, predictions
from featviz.cli import main

import tiny_cnn

INCEPTION_WEIGHTS = "reference/inceptionv1/random_inception5h.pth"


@functools.cache
def _efficientnet():
  from featviz import zoo

  return zoo.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def goldfish(shared):
  return photos.load_image(shared / "images/imagenet-sample/n01443537_goldfish.JPEG", 224, 3)


# ---- the ReLU rules themselves -----------------------------------------------------------------


def _vjp(fn, x, g):
  return jax.vjp(fn, jnp.asarray(x))[1](jnp.asarray(g))[0]


def test_guided_relu_blocks_negative_inputs_and_negative_gradients():
  x = np.array([-1.0, 2.0, 3.0, -4.0, 0.0, 7.0], np.float32)
  g = np.array([1.0, 1.0, -1.0, -1.0, 1.0, 1.0], np.float32)
  np.testing.assert_array_equal(_vjp(nonlin.guided_relu, x, g), [0, 1, 0, 0, 0, 1])
  # ReLU6: also nothing back where x >= 6 (flat there).
  np.testing.assert_array_equal(_vjp(nonlin.guided_relu6, x, g), [0, 1, 0, 0, 0, 0])
  # Deconvnet: the gradient's own ReLU, whatever the input was.
  np.testing.assert_array_equal(_vjp(nonlin.deconv_relu, x, g), [1, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(_vjp(nonlin.deconv_relu6, x, g), [1, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(nonlin.guided_relu6(jnp.asarray(x)), np.clip(x, 0, 6))


def _conv(w, stride):
  return lambda h: tiny_cnn._conv(h, w, 0.0, stride)


def _reference_input_gradient(model, x, classes, rule):
  """Hand-written backward pass through tiny_cnn with the ReLU rule spelled out.

  Convolutions are linear, so their backward is their exact VJP (a transposed
  convolution); every ReLU's backward is written here: ``plain`` masks by z > 0,
  ``guided`` by z > 0 and g > 0, ``deconvnet`` by g > 0 only.
  """
  w = model.weights
  h = -1.0 + 2.0 * jnp.asarray(x)  # tiny_cnn's value range (-1, 1)
  convs, pre = [], []
  for name, stride in (("conv1", 1), ("conv2", 2), ("conv3", 2)):
    conv = _conv(w[name]["w"], stride)
    z = conv(h) + w[name]["b"]
    convs.append((conv, h))
    pre.append(z)
    h = jnp.maximum(z, 0)
  b, hh, ww, _ = h.shape
  g = (jnp.asarray(w["logits"]["w"])[:, classes].T / (hh * ww))[:, None, None, :]
  g = jnp.broadcast_to(g, h.shape)
  for (conv, inp), z in reversed(list(zip(convs, pre))):
    mask = {"plain": z > 0, "guided": (z > 0) & (g > 0), "deconvnet": g > 0}[rule]
    g = jnp.where(mask, g, 0.0)
    g = jax.vjp(conv, inp)[1](g)[0]
  return np.asarray(2.0 * g)  # d input / d image = hi - lo = 2


@pytest.mark.parametrize("rule", ["plain", "guided", "deconvnet"])
def test_input_gradient_matches_a_hand_written_backward_pass(rule):
  model = tiny_cnn.make(3, seed=3)
  x = np.random.default_rng(0).uniform(size=(3, 16, 16, 3)).astype(np.float32)
  classes = np.array([0, 2, 4])
  grads, logits = cam.input_gradient(model, x, classes, rule)
  ref = _reference_input_gradient(model, x, classes, rule)
  scale = np.abs(ref).max()
  assert scale > 0
  np.testing.assert_allclose(grads, ref, atol=1e-5 * scale)
  np.testing.assert_allclose(logits, model.activations(x, ["logits"])["logits"], atol=1e-5)
  if rule == "plain":
    auto = jax.jit(
      jax.grad(
        lambda im: jnp.sum(
          jnp.take_along_axis(
            model.activations(im, ["logits"])["logits"], jnp.asarray(classes)[:, None], 1
          )
        )
      )
    )(x)
    np.testing.assert_allclose(grads, auto, atol=1e-5 * scale)


def test_guided_differs_from_plain():
  model = tiny_cnn.make(3, seed=3)
  x = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype(np.float32)
  plain, _ = cam.input_gradient(model, x, 1, "plain")
  guided, _ = cam.input_gradient(model, x, 1, "guided")
  assert not np.allclose(plain, guided)


# ---- the layer tap and Grad-CAM ----------------------------------------------------------------


def test_layer_tap_gradient_matches_the_split_network():
  model = tiny_cnn.make(3, seed=4)
  x = np.random.default_rng(1).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  classes = jnp.asarray([1, 3])
  acts, grads, logits = jax.jit(  # the model goes through jit as one (pytree) argument
    lambda m, x: layer_grad.logit_grad_at_layer(m, x, "conv2", classes)
  )(model, jnp.asarray(x))
  w = model.weights

  def top(h2):  # tiny_cnn above conv2, written out
    h3 = jnp.maximum(_conv(w["conv3"]["w"], 2)(h2) + w["conv3"]["b"], 0)
    out = h3.mean(axis=(1, 2)) @ w["logits"]["w"] + w["logits"]["b"]
    return jnp.sum(jnp.take_along_axis(out, classes[:, None], 1))

  h2 = model.activations(x, ["conv2"])["conv2"]
  np.testing.assert_allclose(acts, h2, atol=1e-6)
  np.testing.assert_allclose(grads, jax.grad(top)(h2), atol=1e-6)
  assert layer_grad.last_spatial_layer(model) == "conv3"


def test_grad_cam_on_tiny_is_relu_of_alpha_weighted_maps():
  model = tiny_cnn.make(3, seed=5)
  x = np.random.default_rng(2).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  maps, _ = cam.grad_cam(model, x, [0, 1], "conv3")
  # conv3 feeds a GAP + linear head, so alpha = W[:, c] / (h * w) and Grad-CAM = ReLU(CAM)/hw.
  a = np.asarray(model.activations(x, ["conv3"])["conv3"])
  kernel = np.asarray(model.weights["logits"]["w"])
  ref = np.maximum(np.einsum("bhwc,cb->bhw", a, kernel[:, [0, 1]]), 0) / (a.shape[1] * a.shape[2])
  np.testing.assert_allclose(maps, ref, atol=1e-6)


def _check_head_by_cam(model, images, cls, cams, logits, head):
  """CAM's mean over positions plus the bias is the logit: ``mean_{y,x} sum_k W[k, c] A_k =
  sum_k W[k, c] mean A_k``, the GAP + linear head itself."""
  _, kernel, bias = head
  assert np.shape(kernel) == (model.spec.layers[head[0]], model.spec.layers["logits"])
  mine = cams.mean(axis=(1, 2)) + np.asarray(bias)[cls]
  np.testing.assert_allclose(mine, logits[:, cls], atol=1e-5 * np.abs(logits).max())


def test_inception_head_matches_its_logits(shared):
  from featviz import zoo
  from featviz.zoo import heads

  path = shared / INCEPTION_WEIGHTS
  if not path.exists():
    pytest.skip(f"{path} not found")
  model = zoo.load("inceptionv1", weights=str(path))
  head = heads.linear_head(model.spec.name, model.weights)
  assert head[0] == "mixed5b"
  x = np.random.default_rng(0).uniform(size=(1, 224, 224, 3)).astype(np.float32)
  cams, logits = cam.cam(model, x, 7, head)
  assert cams.shape == (1, 7, 7)  # 224 px: the 7 x 7 average pool is global
  _check_head_by_cam(model, x, 7, cams, logits, head)
  assert heads.linear_head("mnist_cnn", {}) is None


def test_grad_cam_equals_cam_on_the_efficientnet_head(goldfish):
  """Grad-CAM(head) * (7 * 7) == ReLU(CAM): the 1/(h w) of the average pool, nothing else.

  Tolerance 1e-5 of max |CAM|: both sum 1280 float32 products per position, whose
  rounding differs by about 1e-7 of the result (measured 1e-7 on this photo).
  """
  from featviz.zoo import heads

  model = _efficientnet()
  head = heads.linear_head(model.spec.name, model.weights)
  assert head[0] == "head"
  cams, logits = cam.cam(model, goldfish[None], 1, head)
  grads, logits2 = cam.grad_cam(model, goldfish[None], 1, "head")
  assert cams.shape == grads.shape == (1, 7, 7)
  _check_head_by_cam(model, goldfish[None], 1, cams, logits, head)
  tol = 1e-5 * np.abs(cams).max()
  np.testing.assert_allclose(grads * 49, np.maximum(cams, 0), atol=tol)
  np.testing.assert_allclose(logits, logits2, atol=1e-4)
  # The displayed maps agree too where CAM is positive (CAM min-max vs Grad-CAM / max).
  assert cams.min() < 0 < cams.max()
  # The goldfish's evidence is on the fish: the centre 3 x 3 beats the border ring.
  assert (
    cams[0, 2:5, 2:5].mean()
    > np.concatenate([cams[0, 0], cams[0, -1], cams[0, 1:-1, 0], cams[0, 1:-1, -1]]).mean()
  )


def test_top5_includes_the_true_class_of_real_photos(shared):
  """Goldfish, tench and hen. On all 264 photos of the sample, this pipeline (shorter side
  224, centre crop) measured top-1 89.8% and top-5 98.1%; the hammerhead (row 3) is one of
  the 5 top-5 misses, so it is left out here."""
  rows = [
    line.split("\t")
    for line in (shared / "images/imagenet-sample/labels.tsv").read_text().splitlines()[1:]
  ]
  picked = [r for r in rows if r[0].endswith(("goldfish.JPEG", "tench.JPEG", "hen.JPEG"))]
  assert len(picked) == 3
  x = np.stack(
    [photos.load_image(shared / "images/imagenet-sample" / r[0], 224, 3) for r in picked]
  )
  model = _efficientnet()
  probs, idx = predictions.top_classes(model, x, 5)
  assert probs.shape == idx.shape == (3, 5)
  assert np.all(np.diff(probs, axis=1) <= 0) and np.all(probs.sum(axis=1) <= 1.0 + 1e-5)
  for row, top in zip(picked, idx):
    assert int(row[1]) in top, (row[0], top)
  goldfish = [i for i, r in enumerate(picked) if r[0].endswith("goldfish.JPEG")][0]
  assert idx[goldfish, 0] == 1
  lines = predictions.describe(model.spec, probs[goldfish], idx[goldfish])
  assert lines[0].startswith("1 goldfish ")


def test_cli_on_mnist(tmp_path, capsys):
  from featviz import zoo

  try:
    zoo.load("mnist_cnn")
  except zoo.WeightsUnavailableError as e:
    pytest.skip(f"mnist_cnn weights not available: {e}")
  digit = np.zeros((28, 28), np.uint8)
  digit[6:22, 12:16] = 255
  path = tmp_path / "one.png"
  Image.fromarray(digit).save(path)
  out = tmp_path / "c.png"
  # guided-gradcam runs Grad-CAM (default layer: the last spatial one), guided backprop and
  # their product, on a greyscale model without a GAP head.
  assert main(["cam", "mnist_cnn", str(path), "--method", "guided-gradcam", "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "top-5" in printed and out.exists()
  assert main(["cam", "mnist_cnn", str(path), "--method", "cam", "--out", str(out)]) == 2
  assert main(["cam", "mnist_cnn", str(path), "--class", "10", "--out", str(out)]) == 2
  assert main(["cam", "mnist_cnn", str(path), "--layer", "fc", "--out", str(out)]) == 2
  assert main(["cam", "mnist_cnn", str(tmp_path / "missing.png"), "--out", str(out)]) == 2
