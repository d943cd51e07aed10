"""Objectives and regularizers against their formulas, in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import model as model_lib
from featviz import objectives as O
from featviz import regularizers as R
from featviz.objectives import Context

import tiny_cnn

SPEC = tiny_cnn.make().spec
RNG = np.random.default_rng(0)
ACTS = {
  "conv2": RNG.normal(size=(3, 5, 7, 6)).astype(np.float32),
  "logits": RNG.normal(size=(3, 5)).astype(np.float32),
}
IMAGE = RNG.uniform(size=(3, 9, 8, 3)).astype(np.float32)
CTX = Context({k: jnp.asarray(v) for k, v in ACTS.items()}, jnp.asarray(IMAGE))


def score(objective, batch=3):
  return np.asarray(objective.bind(SPEC, batch)(CTX))


def test_channel_is_mean_over_positions_per_image_unit():
  units = np.array([0, 5, 2])
  want = ACTS["conv2"].mean(axis=(1, 2))[np.arange(3), units]
  np.testing.assert_allclose(score(O.channel("conv2", units)), want, rtol=1e-6)


def test_neuron_defaults_to_lucids_centre():
  a = ACTS["conv2"]
  np.testing.assert_allclose(score(O.neuron("conv2", 4)), a[:, 5 // 2, 7 // 2, 4], rtol=1e-6)
  np.testing.assert_allclose(score(O.neuron("conv2", 1, x=6, y=0)), a[:, 0, 6, 1], rtol=1e-6)


def test_direction_and_cossim_follow_lucids_dot_cossim():
  v = RNG.normal(size=6).astype(np.float32)
  a = ACTS["conv2"]
  dot = (a * v).sum(-1)
  np.testing.assert_allclose(score(O.direction("conv2", v)), dot.mean(axis=(1, 2)), rtol=1e-5)
  cos = dot / (1e-4 + np.linalg.norm(a, axis=-1) * np.linalg.norm(v))
  want = (dot * np.maximum(0.1, cos) ** 2).mean(axis=(1, 2))
  np.testing.assert_allclose(score(O.direction("conv2", v, cossim_pow=2)), want, rtol=1e-5)


def test_class_logit_by_index_and_by_name():
  np.testing.assert_allclose(score(O.class_logit(3)), ACTS["logits"][:, 3])
  np.testing.assert_allclose(score(O.class_logit("b")), ACTS["logits"][:, 1])


def test_deepdream_is_mean_square():
  np.testing.assert_allclose(
    score(O.deepdream("conv2")), (ACTS["conv2"] ** 2).mean(axis=(1, 2, 3)), rtol=1e-6
  )


def test_inversion_is_normalized_squared_error():
  target = RNG.normal(size=(1, 5, 7, 6)).astype(np.float32)
  want = -((ACTS["conv2"] - target) ** 2).sum(axis=(1, 2, 3)) / (target**2).sum()
  np.testing.assert_allclose(score(O.inversion("conv2", target)), want, rtol=1e-5)


def test_total_variation_matches_tf_formula():
  x = IMAGE
  want = np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).sum(
    axis=(1, 2, 3)
  )
  np.testing.assert_allclose(score(R.total_variation()), want, rtol=1e-5)


def test_l1_l2_match_lucid():
  np.testing.assert_allclose(
    score(R.l1(constant=0.5)), np.abs(IMAGE - 0.5).sum(axis=(1, 2, 3)), rtol=1e-5
  )
  np.testing.assert_allclose(
    score(R.l2(constant=0.5)), np.sqrt(1e-6 + ((IMAGE - 0.5) ** 2).sum(axis=(1, 2, 3))), rtol=1e-5
  )


def test_blur_penalty_and_its_blur():
  blurred = np.asarray(R.blur3x3(jnp.asarray(IMAGE)))
  # Interior pixel: the binomial 3x3 kernel [1,2,1]x[1,2,1]/16.
  k = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
  np.testing.assert_allclose(blurred[0, 4, 4, 0], (IMAGE[0, 3:6, 3:6, 0] * k).sum(), rtol=1e-5)
  # A constant image is its own blur, borders included.
  np.testing.assert_allclose(np.asarray(R.blur3x3(jnp.full((1, 5, 5, 1), 0.3))), 0.3, rtol=1e-6)
  want = 0.5 * ((IMAGE - blurred) ** 2).sum(axis=(1, 2, 3))
  np.testing.assert_allclose(score(R.blur()), want, rtol=1e-4)


def test_diversity_sums_to_lucids_batch_objective():
  a = ACTS["conv2"].reshape(3, -1, 6)
  grams = np.einsum("bpc,bpd->bcd", a, a).reshape(3, -1)
  grams /= np.linalg.norm(grams, axis=1, keepdims=True)
  lucid = -sum(grams[i] @ grams[j] for i in range(3) for j in range(3) if i != j) / 3
  np.testing.assert_allclose(score(R.diversity("conv2")).sum(), lucid, rtol=1e-5)
  assert R.diversity("conv2").couples_batch


def test_algebra():
  a, b = O.channel("conv2", 1), O.deepdream("conv2")
  sa, sb = score(a), score(b)
  np.testing.assert_allclose(score(a + b), sa + sb, rtol=1e-6)
  np.testing.assert_allclose(score(a - 2 * b), sa - 2 * sb, rtol=1e-6)
  np.testing.assert_allclose(score(b / 4), sb / 4, rtol=1e-6)
  np.testing.assert_allclose(score(-a), -sa, rtol=1e-6)
  np.testing.assert_allclose(score(a * b), sa * sb, rtol=1e-6)
  np.testing.assert_allclose(score(sum([a, b, a])), 2 * sa + sb, rtol=1e-6)
  np.testing.assert_allclose(score(O.sum_of([a, b])), sa + sb, rtol=1e-6)
  np.testing.assert_allclose(score(1 + a), 1 + sa, rtol=1e-6)
  with pytest.raises(TypeError):
    a / b


def test_stack_gives_each_objective_its_own_images():
  stacked = O.stack([O.channel("conv2", [0, 1]), O.class_logit(4)])
  assert stacked.batch == 3
  want = np.concatenate([ACTS["conv2"].mean(axis=(1, 2))[[0, 1], [0, 1]], ACTS["logits"][2:, 4]])
  np.testing.assert_allclose(score(stacked), want, rtol=1e-6)
  assert stacked.labels(3) == ["conv2:0", "conv2:1", "logit:4"]


def test_units_are_data_not_structure():
  a = O.channel("conv2", np.arange(3)).bind(SPEC, 3)
  b = O.channel("conv2", np.array([5, 4, 3])).bind(SPEC, 3)
  assert jax.tree.structure(a) == jax.tree.structure(b)


def test_unknown_layer_lists_layers():
  with pytest.raises(model_lib.UnknownLayerError, match="conv1, conv2, conv3, logits"):
    O.channel("conv9", 0).bind(SPEC, 1)


def test_unit_out_of_range_gives_range():
  with pytest.raises(model_lib.UnitOutOfRangeError, match="0-5"):
    O.channel("conv2", [0, 6]).bind(SPEC, 2)


def test_unknown_label_and_mismatched_batches():
  with pytest.raises(model_lib.UnknownLabelError, match="zebra"):
    O.class_logit("zebra").bind(SPEC, 1)
  with pytest.raises(ValueError, match="different batch sizes"):
    O.channel("conv2", [0, 1]) + O.channel("conv2", [0, 1, 2])
