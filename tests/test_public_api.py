"""The public surface: a literal __all__, pinned here (as optax pins its own), plain functions."""

import ast
import inspect
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import featviz

import tiny_cnn

PUBLIC = [
  "ConfigError",
  "ImageShapeError",
  "Model",
  "ModelSpec",
  "NonFiniteError",
  "Ops",
  "RenderConfig",
  "RenderResult",
  "SettingsMismatchError",
  "UnitOutOfRangeError",
  "UnknownLabelError",
  "UnknownLayerError",
  "__version__",
  "analysis",
  "gallery",
  "images",
  "lower",
  "nonlin",
  "objectives",
  "param",
  "photos",
  "regularizers",
  "render",
  "score_images",
  "sweep",
  "transforms",
  "zoo",
]


def test_all_is_literal_and_pinned():
  source = pathlib.Path(featviz.__file__).read_text()
  assigned = [
    node.value
    for node in ast.walk(ast.parse(source))
    if isinstance(node, ast.Assign)
    and any(getattr(t, "id", None) == "__all__" for t in node.targets)
  ]
  assert len(assigned) == 1 and isinstance(assigned[0], ast.List)
  assert ast.literal_eval(assigned[0]) == PUBLIC
  for name in PUBLIC:
    assert hasattr(featviz, name), name


def test_render_and_sweep_are_plain_functions_with_their_signatures():
  for fn in (featviz.render, featviz.sweep, featviz.lower):
    assert inspect.isfunction(fn)
  render = inspect.signature(featviz.render).parameters
  assert list(render)[:3] == ["model", "objective", "config"]
  assert render["key"].kind is inspect.Parameter.KEYWORD_ONLY
  assert "overrides" in render and render["overrides"].kind is inspect.Parameter.VAR_KEYWORD
  sweep = inspect.signature(featviz.sweep).parameters
  assert list(sweep)[:3] == ["model", "layers", "config"]


def test_a_model_passes_through_jit_as_one_argument_and_reuses_the_program():
  model = tiny_cnn.make()
  traces = []

  @jax.jit
  def mean_conv2(m, x):
    traces.append(1)
    return m.activations(x, ["conv2"])["conv2"].mean()

  x = jnp.full((1, 16, 16, 3), 0.5)
  got = mean_conv2(model, x)
  np.testing.assert_allclose(
    got, np.asarray(model.activations(x, ["conv2"])["conv2"]).mean(), rtol=1e-6
  )
  other = model.replace(weights=jax.tree.map(lambda w: w * 1.5, model.weights))
  assert float(mean_conv2(other, x)) != float(got)  # the weights are data ...
  assert len(traces) == 1  # ... so other weights of the same architecture reuse the program
  leaves, treedef = jax.tree.flatten(model)
  assert len(leaves) == len(jax.tree.leaves(model.weights))
  assert jax.tree.unflatten(treedef, leaves).spec == model.spec


def test_per_channel_normalisation_is_applied_as_torchvision_does():
  """(x - mean) / std after the value range: the zoo's torchvision models need it."""
  import dataclasses

  base = tiny_cnn.make()
  mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet numbers
  spec = dataclasses.replace(base.spec, value_range=(0.0, 1.0), mean=mean, std=std)
  model = base.replace(spec=spec)
  x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  expected = base.forward(
    base.weights, (x - np.asarray(mean)) / np.asarray(std), ("conv1",), featviz.Ops()
  )["conv1"]
  got = model.activations(x, ["conv1"], ops=featviz.Ops())["conv1"]
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_activations_is_one_compiled_program_whether_called_eagerly_or_traced():
  """Called eagerly, ``Model.activations`` runs the network as one compiled program (a single
  jit call), not op by op, which compiled each new op shape of a real network on its own (tens
  of seconds for every layer of EfficientNet-Lite0); its values are the forward's."""
  model = tiny_cnn.make()
  x = np.random.default_rng(0).uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
  jaxpr = jax.make_jaxpr(lambda x: model.activations(x, ["conv2", "logits"]))(x)
  assert [eqn.primitive.name for eqn in jaxpr.eqns] == ["jit"]
  got = model.activations(x, ["conv2", "logits"])
  want = model.forward(
    model.weights, model.spec.to_input(jnp.asarray(x)), ("conv2", "logits"), featviz.Ops()
  )
  for name in ("conv2", "logits"):
    np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
