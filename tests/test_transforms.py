"""Transforms: shapes, identity at zero strength, determinism per key, per-image draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import transforms as T


@pytest.fixture(scope="module")
def images():
  return jax.random.uniform(jax.random.key(0), (4, 21, 21, 3))


def test_pad_constant_and_reflect_match_numpy(images):
  x = np.asarray(images)
  got = np.asarray(T.pad(3, mode="constant", value=0.5)(jax.random.key(0), images))
  np.testing.assert_array_equal(
    got, np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), constant_values=0.5)
  )
  got = np.asarray(T.pad(3, mode="reflect")(jax.random.key(0), images))
  np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect"))


def test_pad_uniform_draws_one_value_per_image(images):
  out = np.asarray(T.pad(2, mode="constant", value="uniform")(jax.random.key(3), images))
  corners = out[:, 0, 0, 0]
  assert len(set(corners.tolist())) == 4
  np.testing.assert_array_equal(out[:, 2:-2, 2:-2], np.asarray(images))
  shared = np.asarray(T.pad(2, "constant", "uniform", shared=True)(jax.random.key(3), images))
  assert len(set(shared[:, 0, 0, 0].tolist())) == 1


def test_jitter_crops_to_size_with_offsets_in_range(images):
  out = np.asarray(T.jitter(4)(jax.random.key(1), images))
  assert out.shape == (4, 17, 17, 3)
  x = np.asarray(images)
  for b in range(4):  # each crop is a window of its own image at some offset in 0..4
    hits = [
      (i, j)
      for i in range(5)
      for j in range(5)
      if np.array_equal(out[b], x[b, i : i + 17, j : j + 17])
    ]
    assert hits


def test_each_image_draws_its_own_offset_and_shared_draws_one(images):
  same = jnp.broadcast_to(images[:1], images.shape)
  per_image = np.asarray(T.jitter(6)(jax.random.key(5), same))
  assert any(not np.array_equal(per_image[0], per_image[b]) for b in range(1, 4))
  shared = np.asarray(T.jitter(6, shared=True)(jax.random.key(5), same))
  for b in range(1, 4):
    np.testing.assert_array_equal(shared[0], shared[b])


@pytest.mark.parametrize(
  "transform",
  [
    T.jitter(0),
    T.random_scale([1.0]),
    T.random_rotate([0.0]),
    T.pad(0, "constant"),
    T.identity(),
    T.compose([T.random_scale([1.0]), T.random_rotate([0.0])]),
  ],
)
def test_identity_at_zero_strength(images, transform):
  np.testing.assert_allclose(
    np.asarray(transform(jax.random.key(2), images)), np.asarray(images), atol=1e-6
  )


def test_rotate_90_degrees_equals_rot90_with_exact_pi(images):
  # Lucid converts degrees with 3.14; with the exact pi a quarter turn lands on the grid.
  out = np.asarray(T.random_rotate([90.0])(jax.random.key(0), images))
  want = np.rot90(np.asarray(images), k=1, axes=(1, 2))
  np.testing.assert_allclose(out, want, atol=1e-5)


def test_scale_two_samples_the_centre(images):
  out = np.asarray(T.random_scale([2.0])(jax.random.key(0), images))
  # Zooming 2x about the centre pixel (10, 10) keeps it in place.
  np.testing.assert_allclose(out[:, 10, 10], np.asarray(images)[:, 10, 10], atol=1e-6)
  # Pixel (12, 12) samples source (11, 11).
  np.testing.assert_allclose(out[:, 12, 12], np.asarray(images)[:, 11, 11], atol=1e-6)


@pytest.mark.parametrize(
  "transform",
  [
    T.standard(),
    T.standard(shared=True),
    T.standard(one_pass=False),
    T.jitter(3),
    T.random_rotate([-10, 10]),
    T.random_scale([0.9, 1.1]),
    T.pad(4, "constant", "uniform"),
  ],
)
def test_deterministic_per_key_and_jittable(images, transform):
  f = jax.jit(transform)
  a = np.asarray(f(jax.random.key(7), images))
  b = np.asarray(f(jax.random.key(7), images))
  c = np.asarray(f(jax.random.key(8), images))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_transforms_have_finite_gradients(images):
  g = jax.grad(lambda x: T.standard()(jax.random.key(0), x).sum())(images)
  assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0


def test_standard_is_lucids_preset():
  pad, jit8, scale, rotate, jit4 = T.standard(one_pass=False).transforms
  assert (pad.width, pad.mode, pad.value) == (12, "constant", 0.5)
  assert (jit8.d, jit4.d) == (8, 4)
  np.testing.assert_allclose(
    scale.scales, [0.9, 0.92, 0.94, 0.96, 0.98, 1.0, 1.02, 1.04, 1.06, 1.08, 1.1]
  )
  assert sorted(rotate.angles) == sorted(list(range(-10, 11)) + [0] * 5)
  assert rotate.units == "degrees"


def test_standard_output_size_for_lucids_128():
  out = T.standard()(jax.random.key(0), jnp.zeros((2, 128, 128, 3)))
  assert out.shape == (2, 128 + 24 - 8 - 4, 128 + 24 - 8 - 4, 3)


def test_standard_is_one_pass_unless_shared_or_asked_step_by_step(images):
  assert isinstance(T.standard(), T.StandardOnePass)
  assert isinstance(T.standard(shared=True), T.Compose)  # one draw per batch: step by step
  # Same key, same draws, same output size: with a smooth image the two differ only by
  # interpolation (one bilinear pass against two), a few hundredths at most.
  smooth = jax.image.resize(images, (images.shape[0], 96, 96, 3), "cubic")
  one = np.asarray(T.standard()(jax.random.key(5), smooth))
  steps = np.asarray(T.standard(one_pass=False)(jax.random.key(5), smooth))
  assert one.shape == steps.shape
  inner = (slice(None), slice(20, -20), slice(20, -20))
  assert np.abs(one - steps)[inner].mean() < 0.02


def test_equal_settings_are_equal_transforms():
  assert T.standard() == T.standard() and hash(T.standard()) == hash(T.standard())
  assert T.standard() != T.standard(shared=True)
