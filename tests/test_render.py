"""The render loop: determinism, one compile per structure, errors, dead units, pruning."""

import dataclasses
import re

import jax.numpy as jnp
import numpy as np
import pytest

import featviz
from featviz import objectives as O
from featviz import transforms
from featviz._loop import api as render
from featviz._loop import program
from featviz.model import Model
from featviz.nonlin import Ops

import tiny_cnn

MODEL = tiny_cnn.make()
# Jitter only: the standard preset's resampling takes seconds to compile on CPU.
FAST = dict(steps=12, size=16, progress_bar=False, transforms=transforms.jitter(2))


def test_same_seed_same_images_other_seed_other_images():
  kw = dict(FAST, transforms=transforms.standard())
  a = render.render(MODEL, O.channel("conv2", np.arange(3)), seed=4, **kw)
  b = render.render(MODEL, O.channel("conv2", np.arange(3)), seed=4, **kw)
  c = render.render(MODEL, O.channel("conv2", np.arange(3)), seed=5, **kw)
  np.testing.assert_array_equal(a.images, b.images)
  assert not np.array_equal(a.images, c.images)


def test_result_shapes_and_range():
  r = render.render(MODEL, O.channel("conv3", np.arange(4)), **FAST)
  assert r.images.shape == (4, 16, 16, 3) and r.history.shape == (12, 4)
  assert r.images.min() >= 0 and r.images.max() <= 1
  assert r.labels == [f"conv3:{i}" for i in range(4)]


def test_other_units_and_seeds_do_not_recompile():
  render.render(MODEL, O.channel("conv3", np.arange(8)), **FAST)
  before = program.trace_count()
  for seed, units in [(1, np.arange(8)[::-1]), (2, np.array([7, 7, 0, 1, 2, 3, 4, 5]))]:
    r = render.render(MODEL, O.channel("conv3", units), seed=seed, **FAST)
    assert r.compile_seconds == 0.0
  assert program.trace_count() == before


def test_batch_defaults_to_units_and_conflicts_are_refused():
  assert render.render(MODEL, O.channel("conv1", 2), batch=2, **FAST).images.shape[0] == 2
  with pytest.raises(ValueError, match="one per unit"):
    render.render(MODEL, O.channel("conv1", [0, 1, 2]), batch=2, **FAST)


def test_each_image_is_independent_of_the_others():
  """Image b of a batch equals a render of b alone when transforms draw the same values."""
  kw = dict(FAST, transforms=transforms.identity())
  both = render.render(MODEL, O.channel("conv2", np.array([1, 4])), **kw)
  other = render.render(MODEL, O.channel("conv2", np.array([1, 5])), **kw)
  np.testing.assert_allclose(both.images[0], other.images[0], atol=1e-6)


def _spy_model(seen):
  def forward(weights, x, layers, ops):
    seen.append(layers)
    return MODEL.forward(weights, x, layers, ops)

  return dataclasses.replace(MODEL, forward=forward)


def test_only_layers_the_objective_reads_are_requested():
  seen = []
  render.render(_spy_model(seen), O.channel("conv1", 0) - 0.1 * O.deepdream("conv1"), **FAST)
  assert seen and all(layers == ("conv1",) for layers in seen)


def test_forward_stops_at_the_deepest_layer():
  """Layers past the deepest one asked for are not computed: the traced program of
  ``activations`` holds one convolution per layer up to it, and no logits matmul."""
  import jax
  import jax.extend  # noqa: F401  (jaxpr_ops reads jax.extend.core without importing it)

  import jaxpr_ops

  images = np.full((1, 16, 16, 3), 0.5, np.float32)

  def ran(layers):
    jaxpr = jax.make_jaxpr(lambda x: MODEL.activations(x, layers))(images)
    counts = jaxpr_ops.primitive_counts(jaxpr)
    return counts["conv_general_dilated"], counts["dot_general"]

  assert ran(["conv1"]) == (1, 0)
  assert ran(["conv2"]) == (2, 0)  # conv3 and the logits never ran.
  assert ran(["conv1", "conv2"]) == (2, 0)
  assert ran(["conv3"]) == (3, 0)
  assert ran(["logits"]) == (3, 1)
  assert set(MODEL.activations(images, ["conv2"])) == {"conv2"}


@O.register()
class _NaNAfter(O.Objective):
  """Mean image intensity, with NaN once the image is bright enough (a real blow-up)."""

  def score(self, ctx):
    m = ctx.image.mean(axis=(1, 2, 3))
    return jnp.where(m > 0.6, jnp.nan, m)


def test_non_finite_error_names_step_and_objective():
  with pytest.raises(render.NonFiniteError, match=r"non-finite at step (\d+) of 200") as err:
    render.render(
      MODEL,
      _NaNAfter(),
      steps=200,
      size=16,
      param="pixel",
      progress_bar=False,
      transforms=transforms.identity(),
    )
  step = int(re.search(r"step (\d+)", str(err.value)).group(1))
  assert 0 < step < 200
  assert "_NaNAfter" in str(err.value)


def _dead_model():
  """conv2 unit 0 is off at the start image (grey) but can be turned on by some image.

  The bias is set from measured pre-activations (``relu`` replaced by identity):
  0.05 below the unit's largest pre-activation on grey, which random images exceed.
  """
  linear = Ops(relu=lambda x: x)
  grey = np.full((1, 16, 16, 3), 0.5, np.float32)
  noise = np.random.default_rng(0).uniform(size=(16, 16, 16, 3)).astype(np.float32)
  pre_grey = np.asarray(MODEL.activations(grey, ["conv2"], ops=linear)["conv2"][..., 0])
  pre_noise = np.asarray(MODEL.activations(noise, ["conv2"], ops=linear)["conv2"][..., 0])
  weights = {k: dict(v) for k, v in MODEL.weights.items()}
  bias = np.array(weights["conv2"]["b"])
  bias[0] -= pre_grey.max() + 0.05
  assert pre_noise.max() > pre_grey.max() + 0.05  # reachable
  weights["conv2"]["b"] = bias
  return Model(MODEL.spec, weights, MODEL.forward)


def test_redirected_relu_revives_a_dead_unit_and_plain_relu_does_not():
  model = _dead_model()
  kw = dict(steps=40, size=16, progress_bar=False, transforms=transforms.identity(), param="pixel")
  plain = render.render(model, O.channel("conv2", 0), redirect_relu_steps=0, **kw)
  redirected = render.render(model, O.channel("conv2", 0), redirect_relu_steps=40, **kw)
  assert plain.history[0, 0] == 0 and plain.history[-1, 0] == 0
  assert redirected.history[-1, 0] > 0


def test_render_without_a_config_is_the_lucid_preset_with_the_overrides():
  """The real claim behind the preset: a render given no config runs RenderConfig.lucid()."""
  plain = render.render(MODEL, O.channel("conv1", [1, 2]), steps=4, size=16, progress_bar=False)
  preset = featviz.RenderConfig.lucid(steps=4, size=16)
  given = render.render(MODEL, O.channel("conv1", [1, 2]), preset, progress_bar=False)
  assert plain.config == preset == given.config
  np.testing.assert_array_equal(plain.images, given.images)
  np.testing.assert_array_equal(plain.history, given.history)


def test_an_override_of_a_config_changes_that_field_only():
  base = featviz.RenderConfig(param="pixel", steps=4, size=16)
  result = render.render(MODEL, O.channel("conv1", 1), base, steps=6, progress_bar=False)
  assert result.config == dataclasses.replace(base, steps=6)
  assert result.history.shape == (6, 1)


def test_an_unknown_setting_is_refused_with_the_list_of_settings():
  with pytest.raises(featviz.ConfigError, match="unknown render setting.*stepz.*steps"):
    render.render(MODEL, O.channel("conv1", 1), stepz=4, progress_bar=False)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("steps", 0, "steps must be an integer from 1"),
    ("size", 10**6, "size must be an integer from 1 to 4096"),
    ("learning_rate", float("nan"), "learning_rate must be a finite number"),
    ("learning_rate", float("inf"), "learning_rate must be a finite number"),
    ("param", "fourir", "param 'fourir': choose one of fourier, pixel"),
    ("transforms", "all", "transforms 'all': choose one of standard, shared, none"),
    ("compute_dtype", "int8", "compute_dtype 'int8'"),
    ("rewrites", frozenset({"conv"}), "unknown rewrites"),
  ],
)
def test_a_bad_setting_is_refused_before_compiling(field, value, message):
  with pytest.raises(featviz.ConfigError, match=re.escape(message)):
    featviz.RenderConfig(**{field: value})


def test_score_images_matches_activations():
  images = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
  got = render.score_images(MODEL, O.channel("conv2", np.array([0, 3])), images)
  acts = np.asarray(MODEL.activations(images, ["conv2"])["conv2"]).mean(axis=(1, 2))
  np.testing.assert_allclose(got, acts[[0, 1], [0, 3]], rtol=1e-5)


def test_a_render_image_depends_on_its_unit_and_seed_not_on_its_batch():
  """Per-image keys: unit 3 rendered alone, first or last in a batch is the same image.

  The same up to float32 rounding: XLA:CPU's kernels may round otherwise at another batch size
  (an Intel Xeon with AVX-512 differed by 6e-8 here, an AMD EPYC not at all). A key that
  depended on the image's place in the batch would differ as another seed does (over 1e-3).
  """
  kw = dict(steps=6, size=16, progress_bar=False)
  alone = render.render(MODEL, O.channel("conv2", [3]), **kw).images[0]
  first = render.render(MODEL, O.channel("conv2", [3, 0, 1]), **kw).images[0]
  last = render.render(MODEL, O.channel("conv2", [0, 1, 2, 3]), **kw).images[3]
  np.testing.assert_allclose(alone, first, rtol=0, atol=1e-6)
  np.testing.assert_allclose(alone, last, rtol=0, atol=1e-6)
  other_seed = render.render(MODEL, O.channel("conv2", [3]), seed=1, **kw).images[0]
  other_unit = render.render(MODEL, O.channel("conv2", [2]), **kw).images[0]
  assert np.abs(alone - other_seed).max() > 1e-3 and np.abs(alone - other_unit).max() > 1e-3


def test_repeats_of_one_unit_draw_different_images_and_a_key_equals_its_seed():
  import jax

  kw = dict(steps=4, size=16, progress_bar=False)
  twice = render.render(MODEL, O.channel("conv2", 1), batch=2, **kw)
  assert np.abs(twice.images[0] - twice.images[1]).max() > 1e-3
  keyed = render.render(MODEL, O.channel("conv2", 1), batch=2, key=jax.random.key(0), **kw)
  np.testing.assert_array_equal(keyed.images, twice.images)
  assert twice.seed == 0 and keyed.seed is None


def test_a_neuron_outside_its_layers_map_is_refused_by_the_python_api_too():
  from featviz.model import UnitOutOfRangeError

  with pytest.raises(UnitOutOfRangeError, match="map is"):
    render.render(MODEL, O.neuron("conv1", 0, x=100, y=100), steps=2, size=16, progress_bar=False)
