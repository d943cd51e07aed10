"""mnist_cnn: the committed weights, the model contract, and the training script."""

import hashlib
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS
from featviz.zoo import mnist_cnn, train_mnist

WEIGHTS = pathlib.Path(mnist_cnn.__file__).parent / "weights" / "mnist_cnn.npz"
MIN_TEST_ACCURACY = 0.985  # The bar set for the committed weights on MNIST's 10k test set.


@pytest.fixture(scope="module")
def random_weights():
  return train_mnist.init_params(jax.random.key(0))


def _images(batch: int, seed: int = 1) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), (batch, 28, 28, 1), jnp.float32)


# (a) The committed weights, on the real test set.


def test_committed_weights_reach_test_accuracy(shared):
  with np.load(shared / "data" / "mnist.npz") as f:
    pixels, labels = f["x_test"], f["y_test"].astype(np.int32)
  with np.load(WEIGHTS) as f:
    weights = mnist_cnn.convert(dict(f))
  predict = jax.jit(
    lambda w, x: jnp.argmax(mnist_cnn.forward(w, x, ("logits",), STANDARD_OPS)["logits"], -1)
  )
  batch = 1000  # Divides the 10,000 test images: one compile.
  correct = sum(
    int(
      np.sum(
        np.asarray(predict(weights, pixels[i : i + batch, ..., None] / np.float32(255)))
        == labels[i : i + batch]
      )
    )
    for i in range(0, len(labels), batch)
  )
  accuracy = correct / len(labels)
  assert accuracy >= MIN_TEST_ACCURACY
  record = json.loads(WEIGHTS.with_suffix(".json").read_text())
  assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-3)
  data_sha = hashlib.sha256((shared / "data" / "mnist.npz").read_bytes()).hexdigest()
  assert record["data"]["sha256"] == data_sha


# (b) The model contract, on random inputs.


def test_committed_weights_file_is_small_float32_and_matches_record():
  assert WEIGHTS.stat().st_size < 1_000_000  # The budget for weights committed to the repo.
  with np.load(WEIGHTS) as f:
    state = dict(f)
  assert all(v.dtype == np.float32 for v in state.values())
  mnist_cnn.convert(state)  # Every key and shape fits.
  record = json.loads(WEIGHTS.with_suffix(".json").read_text())
  assert record["weights"]["sha256"] == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()


def test_spec_channels_match_activations(random_weights):
  spec = mnist_cnn.spec()
  assert (spec.name, spec.value_range, spec.image_size, spec.channels) == (
    "mnist_cnn",
    (0.0, 1.0),
    28,
    1,
  )
  assert spec.fixed_size and spec.labels == tuple("0123456789")
  layers = tuple(spec.layers)
  out = mnist_cnn.forward(random_weights, _images(2), layers, STANDARD_OPS)
  assert tuple(out) == layers
  for name, act in out.items():
    assert act.shape[0] == 2 and act.shape[-1] == spec.layers[name], name
    assert act.ndim == (4 if name.startswith("conv") else 2), name


def test_forward_stops_after_deepest_requested_layer(random_weights):
  x = _images(2)
  out = mnist_cnn.forward(random_weights, x, ("conv1",), STANDARD_OPS)
  assert set(out) == {"conv1"} and out["conv1"].shape == (2, 26, 26, 32)
  jaxpr = str(
    jax.make_jaxpr(lambda w, x: mnist_cnn.forward(w, x, ("conv1",), STANDARD_OPS))(
      random_weights, x
    )
  )
  assert jaxpr.count("conv_general_dilated") == 1
  assert "dot_general" not in jaxpr  # Neither fc nor logits ran.
  out = mnist_cnn.forward(random_weights, x, ("conv3", "conv1"), STANDARD_OPS)
  assert set(out) == {"conv1", "conv3"}


def test_every_relu_goes_through_nonlin(random_weights):
  calls = []

  def counting_relu(x):
    calls.append(x.shape)
    return jax.nn.relu(x)

  ops = fv_model.Ops(relu=counting_relu)
  out = mnist_cnn.forward(random_weights, _images(2), ("logits",), ops)
  assert len(calls) == 5  # conv1-conv4 and fc.
  standard = mnist_cnn.forward(random_weights, _images(2), ("logits",), STANDARD_OPS)
  np.testing.assert_array_equal(out["logits"], standard["logits"])


def test_unknown_layer_raises(random_weights):
  with pytest.raises(fv_model.UnknownLayerError, match="conv9"):
    mnist_cnn.forward(random_weights, _images(1), ("conv9",), STANDARD_OPS)


def test_convert_round_trips_the_saved_layout(random_weights):
  state = train_mnist.state_dict(random_weights)
  assert "conv1.kernel" in state and state["conv1.kernel"].shape == (3, 3, 1, 32)
  back = mnist_cnn.convert(state)
  jax.tree.map(np.testing.assert_array_equal, back, random_weights)


def test_convert_names_missing_and_unexpected_keys(random_weights):
  state = train_mnist.state_dict(random_weights)
  del state["fc.bias"]
  state["fc.scale"] = np.ones(128, np.float32)
  with pytest.raises(ValueError, match=r"missing keys: fc\.bias.*unexpected keys: fc\.scale"):
    mnist_cnn.convert(state)


def test_convert_names_shape_mismatch(random_weights):
  state = train_mnist.state_dict(random_weights)
  state["conv2.kernel"] = np.zeros((5, 5, 32, 32), np.float32)
  with pytest.raises(ValueError, match=r"conv2\.kernel: expected \(3, 3, 32, 32\), got \(5, 5"):
    mnist_cnn.convert(state)


# (c) The training script's pieces.


def test_two_train_steps_lower_the_loss(random_weights):
  key_x, key_y = jax.random.split(jax.random.key(2))
  pixels = jax.random.randint(key_x, (8, 28, 28, 1), 0, 256).astype(jnp.uint8)
  labels = jax.random.randint(key_y, (8,), 0, 10)
  optimizer = train_mnist.make_optimizer(train_mnist.TrainConfig(), total_steps=10)
  step = train_mnist.make_train_step(optimizer, max_shift=0)  # No shift: same inputs each step.
  params, opt_state = random_weights, optimizer.init(random_weights)
  before = train_mnist.loss_and_logits(params, train_mnist.to_input(pixels), labels)[0]
  for i in range(2):
    params, opt_state, loss, _ = step(params, opt_state, jax.random.key(i), pixels, labels)
    assert np.isfinite(loss)
  after = train_mnist.loss_and_logits(params, train_mnist.to_input(pixels), labels)[0]
  assert after < before


def test_shift_images_moves_each_image_by_at_most_max_shift():
  x = jnp.zeros((16, 28, 28, 1), jnp.float32).at[:, 14, 14, 0].set(1.0)
  shifted = train_mnist.shift_images(jax.random.key(3), x, max_shift=2)
  assert shifted.shape == x.shape
  np.testing.assert_array_equal(shifted.sum(axis=(1, 2, 3)), np.ones(16, np.float32))
  rows, cols = np.nonzero(np.asarray(shifted[..., 0]).max(axis=0))
  assert np.abs(rows - 14).max() <= 2 and np.abs(cols - 14).max() <= 2
  assert len(set(zip(rows, cols))) > 1  # The images did not all move the same way.
