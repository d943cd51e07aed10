"""Attribution between layers: totals against a finite difference through the network written
out by hand, against the exact identity of a linear head, and on real weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.analysis import attribution as at
from featviz.cli import main

import tiny_cnn

EPS = 1e-3


def _above_conv2(weights, a):
  """tiny_cnn from conv2's activations ``(1, 16, 16, 6)`` up: conv3 and the logits."""
  w = weights["conv3"]
  conv3 = jax.nn.relu(tiny_cnn._conv(a, jnp.asarray(w["w"]), jnp.asarray(w["b"]), stride=2))
  logits = conv3.mean(axis=(1, 2)) @ weights["logits"]["w"] + weights["logits"]["b"]
  return conv3, logits


@pytest.fixture(scope="module")
def tiny():
  model = tiny_cnn.make()
  image = np.random.default_rng(3).uniform(size=(32, 32, 3)).astype(np.float32)
  return model, image


@pytest.mark.parametrize("target", [at.Target("logits", 2), at.Target("conv3", 5)])
def test_total_matches_a_finite_difference_through_the_hand_written_network(tiny, target):
  model, image = tiny
  result = at.attribute(model, image, "conv2", target)
  assert result.spatial.shape == (16, 16) and result.channels.shape == (6,)
  np.testing.assert_allclose(result.spatial.sum(), result.total, rtol=1e-5)
  np.testing.assert_allclose(result.channels.sum(), result.total, rtol=1e-5)

  def y(a):
    conv3, logits = _above_conv2(model.weights, a)
    return float(logits[0, 2] if target.layer == "logits" else conv3[0, ..., 5].mean())

  a = jnp.asarray(result.acts[None], jnp.float64 if jax.config.x64_enabled else jnp.float32)
  np.testing.assert_allclose(y(a), result.value, rtol=1e-5)
  change = (y(a * (1 + EPS)) - y(a * (1 - EPS))) / 2  # central: the ReLU's kinks aside, linear
  np.testing.assert_allclose(change, EPS * result.total, rtol=2e-2)
  # The library's own finite difference (through the model's tap) agrees.
  tapped = (
    at.scaled_target(model, image, "conv2", target, EPS)
    - at.scaled_target(model, image, "conv2", target, -EPS)
  ) / 2
  np.testing.assert_allclose(tapped, change, rtol=2e-2)


def test_a_linear_head_attributes_the_logit_less_its_bias_exactly(tiny):
  model, image = tiny
  result = at.attribute(model, image, "conv3", at.Target("logits", 1))
  bias = float(model.weights["logits"]["b"][1])
  np.testing.assert_allclose(result.total, result.value - bias, rtol=1e-5, atol=1e-6)


def test_groups_sum_to_the_attribution_of_the_reconstruction(tiny):
  from featviz.analysis import neuron_groups as ng

  model, image = tiny
  result = at.attribute(model, image, "conv2", at.Target("logits", 0))
  acts = result.acts.reshape(-1, 6)
  fit = ng.factorize(acts, 3)
  groups = result.groups(fit.spatial.reshape(16, 16, 3), fit.directions)
  recon = (fit.spatial @ fit.directions).reshape(result.acts.shape)
  np.testing.assert_allclose(groups.sum(), np.sum(result.grads * recon), rtol=1e-6)


def test_targets_below_the_layer_are_refused(tiny):
  model, image = tiny
  with pytest.raises(at.TargetError, match="must come after 'conv2'"):
    at.attribute(model, image, "conv2", at.Target("conv1", 0))
  with pytest.raises(at.TargetError, match="LAYER:CHANNEL"):
    at.parse_unit("conv3")


def test_real_weights_total_matches_the_finite_difference(shared, tmp_path, capsys):
  from PIL import Image

  from featviz import zoo

  model = zoo.load("mnist_cnn")  # the committed, trained weights
  with np.load(shared / "data" / "mnist.npz") as f:
    pixels, label = f["x_test"][0], int(f["y_test"][0])
  image = pixels.astype(np.float32)[..., None] / 255.0
  target = at.Target("logits", label)
  result = at.attribute(model, image, "conv2", target)
  change = (
    at.scaled_target(model, image, "conv2", target, EPS)
    - at.scaled_target(model, image, "conv2", target, -EPS)
  ) / 2
  np.testing.assert_allclose(change, EPS * result.total, rtol=2e-2)
  assert result.total > 1.0  # the digit's own class: a real, positive attribution
  photo = tmp_path / "digit.png"
  Image.fromarray(pixels).save(photo)
  out = tmp_path / "attr.png"
  argv = ["attribution", "mnist_cnn", str(photo), "--layer", "conv2", "--out", str(out)]
  assert main(argv + ["--groups", "3", "--html", str(tmp_path / "a.html")]) == 0
  printed = capsys.readouterr().out
  assert f"{label}: value" in printed and out.stat().st_size > 0
  assert '<img src="data:image/png;base64,' in (tmp_path / "a.html").read_text()
  assert main(argv + ["--unit", "conv1:0"]) == 2
  assert "must come after 'conv2'" in capsys.readouterr().err
  assert main(argv[:4] + ["fc", "--out", str(tmp_path / "no" / "a.png")]) == 2
  assert "give a spatial layer" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_recipe_page_escapes_its_text():
  from featviz.cli import recipe_page

  html = recipe_page.page("<b>t</b>", np.zeros((2, 2, 3), np.float32), [("a<", "b&c")])
  assert "<b>t</b>" not in html and "&lt;b&gt;t&lt;/b&gt;" in html
  assert "<th>a&lt;</th><td>b&amp;c</td>" in html and "data:image/png;base64," in html
