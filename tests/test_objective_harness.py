"""One harness for every objective: jit-able, finite gradient, vmap over units, compiles once,
and gradient ascent raises it on a tiny random CNN (Lucid's assert_gradient_ascent)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import objectives as O
from featviz import photo_objectives as P
from featviz import regularizers as R
from featviz import transforms
from featviz._loop import api as render
from featviz._loop import program
from featviz.objectives import Context

import tiny_cnn

MODEL = tiny_cnn.make()
B = 3
TARGET = np.abs(np.random.default_rng(0).normal(size=(1, 16, 16, 4))).astype(np.float32)

# name -> (objective, sign): sign +1 objectives rise under ascent; penalties (-1) fall when
# subtracted.
CASES = {
  "channel": (O.channel("conv2", np.arange(B)), 1),
  "channel_scalar": (O.channel("conv3", 5), 1),
  "neuron": (O.neuron("conv2", np.arange(B)), 1),
  "neuron_xy": (O.neuron("conv1", 1, x=3, y=4), 1),
  "direction": (O.direction("conv3", np.linspace(-1, 1, 8)), 1),
  "direction_cossim": (O.direction("conv3", np.linspace(0, 1, 8), cossim_pow=2.0), 1),
  "class_logit": (O.class_logit(2), 1),
  "class_logit_name": (O.class_logit("d"), 1),
  "deepdream": (O.deepdream("conv2"), 1),
  "inversion": (O.inversion("conv1", TARGET), 1),
  "diversity": (R.diversity("conv2"), 1),
  "tv": (R.total_variation(), -1),
  "l1": (R.l1(constant=0.5), -1),
  "l2": (R.l2(constant=0.5), -1),
  "blur": (R.blur(), -1),
  "sum": (O.channel("conv2", 1) - 0.01 * R.total_variation() + 0.5 * O.class_logit(0), 1),
  "product": (O.channel("conv1", 0) * O.channel("conv1", 1), 1),
  "scaled_div": (O.channel("conv2", 3) / 4.0, 1),
  "stack": (O.stack([O.channel("conv2", [0, 1]), O.deepdream("conv3")]), 1),
  "caricature": (P.Caricature("conv1", TARGET, 1.0), 1),
  "photo_distance": (P.PhotoDistance(np.full((1, 16, 16, 3), 0.2, np.float32)), -1),
}


def _context(objective, images):
  layers = MODEL.layers_in_order(sorted(objective.layers))
  acts = MODEL.forward(MODEL.weights, MODEL.spec.to_input(images), layers, tiny_cnn.Ops())
  return Context(acts, images)


def _images(batch, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch, 16, 16, 3), minval=0.2, maxval=0.8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jittable_finite_gradient_one_score_per_image(name):
  objective, _ = CASES[name]
  bound = objective.bind(MODEL.spec, B)

  @jax.jit
  def f(obj, images):
    return obj(_context(obj, images))

  images = _images(B)
  scores = f(bound, images)
  assert scores.shape == (B,)
  grad = jax.grad(lambda x: f(bound, x).sum())(images)
  assert np.isfinite(np.asarray(grad)).all()
  if name != "inversion":  # inversion of conv1 can start at its optimum pixelwise; skip
    assert float(jnp.abs(grad).sum()) > 0


# name -> three objectives of one structure with different units: stacked, their data is a batch
# of unit sets.
UNIT_SETS = {
  "channel": [O.channel("conv2", np.array(u)) for u in ([0, 1, 2], [5, 3, 1], [4, 4, 0])],
  "neuron": [O.neuron("conv2", np.array(u)) for u in ([0, 1, 2], [5, 3, 1], [4, 4, 0])],
  "class_logit": [O.class_logit(i) for i in (0, 2, 4)],
  "direction": [O.direction("conv3", np.linspace(a, b, 8)) for a, b in ((-1, 1), (1, 0), (0, 2))],
}


@pytest.mark.parametrize("name", sorted(UNIT_SETS))
def test_vmap_over_units(name):
  """vmap over a leading axis of unit data: row ``k`` is the score of unit set ``k`` alone."""
  bound = [objective.bind(MODEL.spec, B) for objective in UNIT_SETS[name]]
  images = _images(B)
  # The unit data are the leaves; the structure is the first set's. (A bound ClassLogit also
  # keeps its label in the structure, as metadata for labels(); the score reads the leaves.)
  treedef = jax.tree.structure(bound[0])
  leaves = [jax.tree.leaves(obj) for obj in bound]
  assert all([np.shape(a) for a in ls] == [np.shape(a) for a in leaves[0]] for ls in leaves)
  stacked = [jnp.stack(column) for column in zip(*leaves)]

  def score(*ls):
    obj = jax.tree.unflatten(treedef, ls)
    return obj(_context(obj, images))

  out = jax.vmap(score)(*stacked)
  assert out.shape == (len(bound), B)
  for k, obj in enumerate(bound):
    np.testing.assert_allclose(out[k], obj(_context(obj, images)), rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])  # sets differ


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_ascent_raises_objective_and_compiles_once(name):
  objective, sign = CASES[name]
  start = program.trace_count()
  kwargs = dict(
    steps=30,
    size=16,
    transforms=transforms.identity(),
    progress_bar=False,
    batch=None if objective.batch else B,
    param="pixel",
    redirect_relu_steps=8,
    learning_rate=0.05,
  )
  first = render.render(MODEL, objective if sign > 0 else -objective, seed=0, **kwargs)
  history = first.history * (1 if sign > 0 else -1)
  assert np.all(history[-1] * sign > history[0] * sign - 1e-6), history[[0, -1]]
  assert np.mean(history[-1] * sign) > np.mean(history[0] * sign)
  # Another seed (and, for unit objectives, the same structure) reuses the program.
  render.render(MODEL, objective if sign > 0 else -objective, seed=1, **kwargs)
  assert program.trace_count() - start <= 1
