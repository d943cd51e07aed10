"""InceptionV1 (inception5h): the port against reference activations, plus its TF layers.

The reference (``shared/reference/inceptionv1/``) is lucent's PyTorch module with the LRN
corrected to the TF graph's, run on random weights in lucent's ``state_dict`` format; the port
loads the same file through the torch-free reader and the converter, and must reproduce every
array (``||out - ref|| / ||ref|| < 1e-4``, per image).
"""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import model as fv_model
from featviz.zoo import efficientnet_lite0, inceptionv1
from featviz.zoo import state_dict as sd
from featviz.zoo import tf_layers as tfl

import jaxpr_ops

TOLERANCE = 1e-4  # Relative L2 error; float32 reorderings give ~1e-6 over 20 layers.


def _init_shapes():
  """The params tree the module itself creates, as shapes (an abstract init, no compute)."""
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  params = jax.eval_shape(inceptionv1.InceptionV1().init, jax.random.key(0), x)["params"]
  return jax.tree.map(lambda a: tuple(a.shape), params)


@pytest.fixture(scope="module")
def random_weights():
  """Random weights for every layer, through the converter (fan-in scaled, like He init)."""
  rng = np.random.default_rng(0)
  state = {
    k: (rng.normal(size=s) / np.sqrt(np.prod(s[1:]) if len(s) > 1 else 1.0))
    for k, s in inceptionv1.expected_shapes().items()
  }
  return inceptionv1.convert(state)


@functools.partial(jax.jit, static_argnums=(2,))
def _forward(weights, x, layers):
  """The forward pass with this machine's default CPU rewrites, as a render here runs it."""
  return inceptionv1.forward(weights, x, layers, fv_model.default_ops())


def _zeros_state(shapes):
  return {k: np.zeros(s, np.float32) for k, s in shapes.items()}


# ---- tf_layers: padding, pooling and LRN against their definitions ----


@pytest.mark.parametrize(
  "size,kernel,stride,pads",
  [
    (224, 7, 2, (2, 3)),  # conv2d0 at 224 (design note, section 6).
    (112, 3, 2, (0, 1)),  # A stride-2 max pool at an even size.
    (113, 3, 2, (1, 1)),  # ... at an odd size pads evenly.
    (56, 3, 1, (1, 1)),
    (56, 5, 1, (2, 2)),
    (7, 1, 1, (0, 0)),
  ],
)
def test_same_padding(size, kernel, stride, pads):
  assert tfl.same_padding(size, kernel, stride) == pads
  out = (size + sum(pads) - kernel) // stride + 1
  assert out == -(-size // stride)  # SAME keeps ceil(size / stride) outputs.


def test_max_pool_pads_with_minus_infinity():
  x = -1.0 - jnp.arange(2 * 5 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 5, 1)
  y = np.asarray(tfl.max_pool_same(x, 3, 2))
  xn = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
  ref = np.array(
    [
      [[xn[b, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, 0].max() for j in range(3)] for i in range(3)]
      for b in range(2)
    ]
  )[..., None]
  assert y.shape == (2, 3, 3, 1)
  np.testing.assert_array_equal(y, ref)  # Zero padding would put 0 on the border.


def test_lrn_matches_the_tf_formula():
  rng = np.random.default_rng(0)
  x = (rng.normal(size=(2, 3, 3, 16)) * 40).astype(np.float32)  # Large enough to matter.
  ref = np.empty_like(x, dtype=np.float64)
  for c in range(16):
    window = x[..., max(c - 5, 0) : c + 6].astype(np.float64)
    ref[..., c] = x[..., c] / (2.0 + 1e-4 * (window**2).sum(-1)) ** 0.5
  np.testing.assert_allclose(np.asarray(tfl.lrn(jnp.asarray(x))), ref, rtol=1e-5)


def test_avg_pool_valid():
  x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
  y = np.asarray(tfl.avg_pool_valid(x, 7))
  ref = np.stack(
    [np.asarray(x)[:, i : i + 7, j : j + 7].mean((1, 2)) for i in range(2) for j in range(2)], 1
  ).reshape(2, 2, 2, 3)
  np.testing.assert_allclose(y, ref, rtol=1e-6)


# ---- the reference activations ----


@pytest.fixture(scope="module")
def reference(shared):
  torch_pickle = pytest.importorskip("featviz.zoo.torch_pickle")
  folder = shared / "reference" / "inceptionv1"
  weights = inceptionv1.convert(torch_pickle.load_state_dict(folder / "random_inception5h.pth"))
  with np.load(folder / "activations.npz") as f:
    arrays = dict(f)
  spec = inceptionv1.spec()
  forward = jax.jit(inceptionv1.forward, static_argnums=2)
  outputs = {}
  for size in (224, 128):
    layers = tuple(n for n in spec.layers if n != "logits" or size >= 193)
    x = spec.to_input(jnp.asarray(arrays[f"{size}/input"]))
    outputs[size] = {k: np.asarray(v) for k, v in forward(weights, x, layers).items()}
  return arrays, outputs


def test_reproduces_reference_activations(reference):
  arrays, outputs = reference
  worst = collections.defaultdict(float)
  for key in arrays:
    size, layer = key.split("/")
    if layer == "input":
      continue
    ref, out = arrays[key], outputs[int(size)][layer]
    assert out.shape == ref.shape, key
    for o, r in zip(out, ref):  # Per image: the noise image must not hide the photo's error.
      worst[layer] = max(worst[layer], float(np.linalg.norm(o - r) / np.linalg.norm(r)))
  assert "logits" in worst and "mixed4a_pre_relu" in worst and len(worst) == 15
  table = "\n".join(f"  {layer:18s} {err:.2e}" for layer, err in worst.items())
  print(f"\nInceptionV1 worst relative error per layer (sizes 224 and 128):\n{table}")
  assert max(worst.values()) < TOLERANCE, f"relative error over {TOLERANCE}:\n{table}"


def test_spec_channels_match_activations(reference):
  _, outputs = reference
  spec = inceptionv1.spec()
  assert set(outputs[224]) == set(spec.layers)
  for name, act in outputs[224].items():
    assert act.shape[-1] == spec.layers[name], name
  assert outputs[224]["logits"].shape == (2, 1008)
  assert outputs[224]["mixed5b"].shape == (2, 7, 7, 1024)


# ---- spec, early stopping, sizes, nonlinearities, converter (no shared data needed) ----


def test_spec_facts():
  spec = inceptionv1.spec()
  assert spec.value_range == (-117.0, 138.0)  # Lucid: (-117, 255 - 117).
  np.testing.assert_allclose(spec.to_input(jnp.array([0.0, 1.0])), [-117.0, 138.0])
  assert (spec.image_size, spec.channels, spec.labels, spec.min_size) == (224, 3, (), 64)
  assert list(spec.layers)[:3] == ["conv2d0_pre_relu", "conv2d0", "conv2d1_pre_relu"]
  assert list(spec.layers)[-1] == "logits"
  assert spec.layers["mixed4a"] == 508 and spec.layers["mixed5b_pre_relu"] == 1024


def test_forward_stops_after_the_deepest_requested_layer(random_weights):
  weights = random_weights
  x = jnp.zeros((1, 64, 64, 3), jnp.float32)

  def convs(layers):
    jaxpr = jax.make_jaxpr(lambda w, x: inceptionv1.forward(w, x, layers))(weights, x)
    return jaxpr_ops.primitive_counts(jaxpr)["conv_general_dilated"]

  assert convs(("conv2d0",)) == 1
  assert convs(("conv2d0_pre_relu", "conv2d2")) == 3
  assert convs(("mixed3a",)) == 3 + 6  # Three stem convs, six in a mixed block.
  out = _forward(weights, x, ("conv2d0",))
  assert set(out) == {"conv2d0"} and out["conv2d0"].shape == (1, 32, 32, 64)
  assert _forward(weights, x, ()) == {}


def test_every_conv_layer_works_at_the_minimum_size(random_weights):
  spec = inceptionv1.spec()
  x = jnp.zeros((1, spec.min_size, spec.min_size, 3), jnp.float32)
  layers = tuple(n for n in spec.layers if n != "logits")
  out = _forward(random_weights, x, layers)
  assert out["mixed5b"].shape == (1, 2, 2, 1024)  # 64 / 32, five stride-2 stages.
  assert all(out[n].shape[-1] == spec.layers[n] for n in layers)


def test_logits_need_a_7x7_final_map(random_weights):
  def logits_shape(size, batch=1):
    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    return jax.eval_shape(_forward, random_weights, x, ("logits",))["logits"].shape

  with pytest.raises(ValueError, match="at least 193 px"):
    logits_shape(192)  # ceil(192 / 32) = 6: a 6x6 map.
  assert logits_shape(193) == (1, 1008)
  assert logits_shape(256, 2) == (2, 1008)  # An 8x8 map: the 2x2 pooled positions averaged.


def test_every_relu_goes_through_nonlin(random_weights):
  calls = []

  def counting_relu(h):
    calls.append(h.shape[-1])
    return jax.nn.relu(h)

  ops = fv_model.Ops(relu=counting_relu)
  x = jnp.zeros((1, 224, 224, 3), jnp.float32)
  jax.eval_shape(lambda w: inceptionv1.forward(w, x, ("logits",), ops), random_weights)
  assert len(calls) == 3 + 9 * 6  # Stem convs; per block 4 branch + 2 bottleneck ReLUs.


def test_gradients_reach_the_input(random_weights):
  """The render loop differentiates through every pool and LRN to the image."""

  def score(x):
    return _forward(random_weights, x, ("mixed4a",))["mixed4a"][..., 7].mean()

  x = jnp.asarray(np.random.default_rng(0).uniform(-117, 138, (1, 64, 64, 3)), jnp.float32)
  grad = np.asarray(jax.jit(jax.grad(score))(x))
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_convert_gives_the_module_layout():
  converted = inceptionv1.convert(_zeros_state(inceptionv1.expected_shapes()))
  assert jax.tree.map(lambda a: tuple(a.shape), converted) == _init_shapes()
  assert all(a.dtype == np.float32 for a in jax.tree.leaves(converted))
  assert len(inceptionv1.expected_shapes()) == 116  # 58 modules, weight + bias.


def test_convert_puts_each_tensor_in_its_place():
  state = _zeros_state(inceptionv1.expected_shapes())
  w = np.random.default_rng(0).normal(size=(204, 96, 3, 3)).astype(np.float32)
  state["mixed4a_3x3_pre_relu_conv.weight"] = w
  state["softmax2_pre_activation_matmul.bias"] = np.arange(1008, dtype=np.float32)
  params = inceptionv1.convert(state)
  np.testing.assert_array_equal(params["mixed4a"]["3x3"]["kernel"], w.transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["softmax2_pre_activation"]["bias"], np.arange(1008))


def test_a_wrong_architecture_is_refused():
  state = _zeros_state(efficientnet_lite0.expected_shapes())
  with pytest.raises(sd.WeightMismatchError) as info:
    inceptionv1.convert(state)
  msg = str(info.value)
  assert "InceptionV1" in msg
  assert "116 missing keys: conv2d0_pre_relu_conv.weight (64, 3, 7, 7)" in msg
  assert "247 unexpected keys: _conv_stem.weight (32, 3, 3, 3)" in msg


def test_a_partial_file_is_refused():
  state = _zeros_state(inceptionv1.expected_shapes())
  del state["mixed5b_pool_reduce_pre_relu_conv.bias"]
  state["mixed3a_1x1_pre_relu_conv.weight"] = np.zeros((64, 192, 3, 3), np.float32)
  with pytest.raises(
    sd.WeightMismatchError,
    match=(
      r"1 missing keys: mixed5b_pool_reduce_pre_relu_conv.bias \(128,\).*"
      r"mixed3a_1x1_pre_relu_conv.weight is \(64, 192, 3, 3\), expected \(64, 192, 1, 1\)"
    ),
  ):
    inceptionv1.convert(state)
