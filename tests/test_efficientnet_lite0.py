"""EfficientNet-Lite0: ImageNet accuracy with the real weights, spec, converter, layers.

The independent reference is the task itself: with the preprocessing of the weights' source
(shorter side 256 bicubic, centre crop 224, ``(v - 127) / 128``), the network must classify
the 264 sample photos of ``shared/images/imagenet-sample/`` (one per class, labels from the
photos' wnids) at >= 88 % top-1; a plain NumPy forward pass measured 90.2 % (PROVENANCE-extra).
"""

import csv
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from featviz import model as fv_model
from featviz.zoo import efficientnet_lite0 as effnet
from featviz.zoo import inceptionv1
from featviz.zoo import state_dict as sd
from featviz.zoo import tf_layers as tfl

import jaxpr_ops

BATCH = 24  # 264 = 11 * 24: one compile, batches small enough for 2 cores.


@functools.partial(jax.jit, static_argnums=(2,))
def _forward(weights, x, layers):
  """The forward pass with this machine's default CPU rewrites, as a render here runs it."""
  return effnet.forward(weights, x, layers, fv_model.default_ops())


def _random_state(seed: int = 0) -> dict[str, np.ndarray]:
  """A lukemelas-layout float32 state dict with random values (positive BN variances)."""
  rng = np.random.default_rng(seed)
  state = {}
  for key, shape in effnet.expected_shapes().items():
    fan_in = np.prod(shape[1:]) if len(shape) > 1 else 1.0
    value = rng.normal(size=shape) / np.sqrt(fan_in)
    state[key] = (np.abs(value) + 0.5 if key.endswith("running_var") else value).astype(np.float32)
  return state


def _init_shapes():
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  params = jax.eval_shape(effnet.EfficientNetLite0().init, jax.random.key(0), x)["params"]
  return jax.tree.map(lambda a: tuple(a.shape), params)


# ---- tf_layers: the depthwise conv and BN against their definitions ----


@pytest.mark.parametrize("size,k,stride", [(9, 3, 1), (9, 3, 2), (8, 5, 2), (7, 5, 1)])
def test_depthwise_shifted_equals_the_grouped_convolution(size, k, stride):
  rng = np.random.default_rng(size * k + stride)
  x = jnp.asarray(rng.normal(size=(2, size, size + 1, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(k, k, 1, 6)), jnp.float32)
  pads = [tfl.same_padding(n, k, stride) for n in x.shape[1:3]]
  ref = jax.lax.conv_general_dilated(
    x,
    kernel,
    (stride, stride),
    pads,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=6,
  )
  out = tfl.depthwise_shifted(x, kernel, (stride, stride), pads)
  assert out.shape == ref.shape == (2, -(-size // stride), -(-(size + 1) // stride), 6)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_batch_norm_is_the_inference_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
  p = {
    "scale": rng.normal(size=4),
    "bias": rng.normal(size=4),
    "mean": rng.normal(size=4),
    "var": rng.uniform(0.1, 2.0, size=4),
  }
  y = tfl.BatchNorm(1e-3).apply({"params": jax.tree.map(jnp.float32, p)}, jnp.asarray(x))
  ref = (x - p["mean"]) / np.sqrt(p["var"] + 1e-3) * p["scale"] + p["bias"]
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


# ---- ImageNet accuracy with the real weights ----


def _load_photo(path) -> np.ndarray:
  """Shorter side to 256 (bicubic), centre crop 224, RGB, ``[0, 1]``: ``(224, 224, 3)``."""
  image = Image.open(path).convert("RGB")  # 5 of the photos are greyscale.
  w, h = image.size
  scale = 256 / min(w, h)
  image = image.resize(
    (max(256, round(w * scale)), max(256, round(h * scale))), Image.Resampling.BICUBIC
  )
  w, h = image.size
  left, top = (w - 224) // 2, (h - 224) // 2
  return np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255.0


@pytest.fixture(scope="module")
def real_weights(shared):
  """The packaged weights: the .pth through the torch-free reader, else the .npz twin."""
  folder = shared / "weights"
  try:
    from featviz.zoo import torch_pickle
  except ImportError:
    with np.load(folder / "efficientnet-lite0-57934424.npz") as f:
      return effnet.convert(dict(f))
  return effnet.convert(torch_pickle.load_state_dict(folder / "efficientnet-lite0-57934424.pth"))


def test_pth_and_npz_twin_convert_alike(shared, real_weights):
  with np.load(shared / "weights" / "efficientnet-lite0-57934424.npz") as f:
    from_npz = effnet.convert(dict(f))
  assert jax.tree.all(jax.tree.map(np.array_equal, from_npz, real_weights))


def test_imagenet_sample_accuracy(shared, real_weights):
  folder = shared / "images" / "imagenet-sample"
  with open(folder / "labels.tsv", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  assert len(rows) == 264
  images = np.stack([_load_photo(folder / r["file"]) for r in rows])
  truth = np.array([int(r["class_index"]) for r in rows])
  spec = effnet.spec()
  logits = np.concatenate(
    [
      np.asarray(
        _forward(real_weights, spec.to_input(jnp.asarray(images[i : i + BATCH])), ("logits",))[
          "logits"
        ]
      )
      for i in range(0, len(images), BATCH)
    ]
  )
  top5 = np.argsort(-logits, axis=1)[:, :5]
  top1_acc = float((top5[:, 0] == truth).mean())
  top5_acc = float((top5 == truth[:, None]).any(axis=1).mean())
  print(f"\nEfficientNet-Lite0 on 264 sample photos: top-1 {top1_acc:.1%}, top-5 {top5_acc:.1%}")
  assert top1_acc >= 0.88, f"top-1 {top1_acc:.1%} (top-5 {top5_acc:.1%}); expected ~90.2 %"
  assert top5_acc >= 0.95, f"top-5 {top5_acc:.1%}; expected ~98.1 %"


def test_labels_follow_the_sorted_wnid_order(shared):
  reference = (shared / "images" / "imagenet_classes.txt").read_text().split("\n")
  labels = effnet.spec().labels
  assert len(labels) == len(reference) == 1000
  differ = [(i, a, b) for i, (a, b) in enumerate(zip(labels, reference)) if a != b]
  print(f"\n{len(differ)} of 1000 names differ in wording from imagenet_classes.txt")
  assert len(differ) <= 20, differ[:20]  # Wording may vary; the order may not.
  assert labels[0] == "tench" and labels[999] == "toilet tissue"


# ---- spec, early stopping, nonlinearities, converter (no shared data needed) ----


def test_spec_facts():
  spec = effnet.spec()
  np.testing.assert_allclose(spec.to_input(jnp.array([0.0, 1.0])), [-127 / 128, 1.0])
  assert (spec.image_size, spec.channels) == (224, 3)
  assert list(spec.layers) == (
    ["stem_pre_act", "stem"] + [f"block{i}" for i in range(16)] + ["head_pre_act", "head", "logits"]
  )
  assert [b.stride for b in effnet.BLOCKS].count(2) == 4
  assert [i for i, b in enumerate(effnet.BLOCKS) if b.stride == 2] == [1, 3, 5, 11]


def test_spec_channels_match_activations():
  weights = effnet.convert(_random_state())
  spec = effnet.spec()
  out = _forward(weights, jnp.zeros((1, 64, 64, 3), jnp.float32), tuple(spec.layers))
  assert set(out) == set(spec.layers)
  for name, act in out.items():
    assert act.shape[-1] == spec.layers[name], name
    assert np.isfinite(np.asarray(act)).all(), name
  assert out["head"].shape == (1, 2, 2, 1280) and out["logits"].shape == (1, 1000)


def test_forward_stops_after_the_deepest_requested_layer():
  weights = effnet.convert(_random_state())
  x = jnp.zeros((1, 32, 32, 3), jnp.float32)

  def count(layers):
    jaxpr = jax.make_jaxpr(lambda w, x: effnet.forward(w, x, layers))(weights, x)
    return jaxpr_ops.primitive_counts(jaxpr)

  assert count(("stem",))["conv_general_dilated"] == 1
  assert count(("stem",))["dot_general"] == 0
  # Stem, block0's depthwise and project (Ops() has no CPU rewrites: the depthwise is a conv).
  assert count(("block0",))["conv_general_dilated"] == 3
  assert count(("logits",))["dot_general"] == 1
  assert set(_forward(weights, x, ("block2", "stem"))) == {"block2", "stem"}


def test_every_relu6_goes_through_nonlin():
  calls = []

  def counting_relu6(h):
    calls.append(h.shape[-1])
    return jax.nn.relu6(h)

  ops = fv_model.Ops(relu6=counting_relu6)
  weights = effnet.convert(_random_state())
  x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  jax.eval_shape(lambda w, x: effnet.forward(w, x, ("logits",), ops), weights, x)
  assert len(calls) == 1 + 1 + 15 * 2 + 1  # Stem; block0 has no expand; head.


def test_gradients_reach_the_input():
  weights = effnet.convert(_random_state())

  def score(x):
    return _forward(weights, x, ("logits",))["logits"][:, 1].sum()

  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 64, 64, 3)), jnp.float32)
  grad = np.asarray(jax.jit(jax.grad(score))(x))
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_convert_gives_the_module_layout():
  converted = effnet.convert(_random_state())
  assert jax.tree.map(lambda a: tuple(a.shape), converted) == _init_shapes()
  assert all(a.dtype == np.float32 for a in jax.tree.leaves(converted))
  state = _random_state()
  params = effnet.convert(state)
  np.testing.assert_array_equal(
    params["block3"]["depthwise"]["kernel"][:, :, 0, 7],
    state["_blocks.3._depthwise_conv.weight"][7, 0],
  )
  np.testing.assert_array_equal(
    params["block3"]["expand_bn"]["var"], state["_blocks.3._bn0.running_var"]
  )
  np.testing.assert_array_equal(params["fc"]["kernel"], state["_fc.weight"].T)


def test_num_batches_tracked_is_dropped_only_where_bn_has_it():
  state = _random_state()
  counters = {
    f"{k.rsplit('.', 1)[0]}.num_batches_tracked": np.array(0, np.int64)
    for k in state
    if k.endswith("running_var")
  }
  assert len(counters) == 49  # 296 entries in the file = 247 float tensors + 49 counters.
  effnet.convert({**state, **counters})
  with pytest.raises(sd.WeightMismatchError, match=r"1 unexpected keys: _fc.num_batches_tracked"):
    effnet.convert({**state, "_fc.num_batches_tracked": np.array(0, np.int64)})


def test_a_wrong_architecture_is_refused():
  state = {k: np.zeros(s, np.float32) for k, s in inceptionv1.expected_shapes().items()}
  with pytest.raises(sd.WeightMismatchError) as info:
    effnet.convert(state)
  msg = str(info.value)
  assert "EfficientNet-Lite0" in msg
  assert "247 missing keys: _conv_stem.weight (32, 3, 3, 3)" in msg
  assert "116 unexpected keys: conv2d0_pre_relu_conv.weight (64, 3, 7, 7)" in msg
