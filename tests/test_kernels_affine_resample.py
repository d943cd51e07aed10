"""affine_resample: the Pallas kernel (interpreted on CPU) against its jnp reference, forward and
gradient; the fused Lucid transforms against featviz.transforms applied step by step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import kernels
from featviz import transforms as tf_lib
from featviz.kernels import affine_resample as ar
from featviz.kernels.affine_resample import api, pallas, reference

# Small shapes with partial last blocks (17 * 15 = 255 pixels, 13 * 11 = 143: blocks of 64).
IMAGE = (13, 11)
OUT = (17, 15)
CANVAS = (15, 12)
BLOCK = 64


def random_maps(rng, batch, max_angle=0.3, zooms=(0.75, 1.1), shear=0.03):
  """Matrices (B, 2, 3) near a rotation-zoom with a little shear, and offsets that put part of
  every output outside the image (so fill and clamping are exercised)."""
  angle = rng.uniform(-max_angle, max_angle, batch)
  zoom = rng.uniform(*zooms, batch)
  cos, sin = np.cos(angle), np.sin(angle)
  rot = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
  lin = rot / zoom[:, None, None] + shear * rng.normal(size=(batch, 2, 2))
  offset = rng.uniform(-3.0, 2.0, (batch, 2))
  return np.concatenate([lin, offset[:, :, None]], -1).astype(np.float32)


def uniform(rng, shape):
  """Test inputs from NumPy (threefry draws of many shapes would each compile, seconds on CPU)."""
  return rng.uniform(size=shape).astype(np.float32)


def normal(rng, shape):
  return rng.normal(size=shape).astype(np.float32)


def reach(matrices):
  """The backward's window bound max(|B00| + |B01|, |B10| + |B11|), B = inverse linear part."""
  inv = np.abs(np.linalg.inv(np.asarray(matrices[:, :, :2], np.float64)))
  return np.maximum(inv[:, 0].sum(-1), inv[:, 1].sum(-1))


def op(images, matrices, canvas, implementation):
  return ar.affine_resample(
    images,
    matrices,
    OUT,
    fill=0.5,
    canvas=canvas,
    canvas_size=None if canvas is None else CANVAS,
    canvas_fill=0.0,
    implementation=implementation,
    interpret=True,
    block=BLOCK,
  )


@pytest.mark.parametrize("use_canvas,channels", [(False, 3), (True, 3), (True, 1)])
def test_pallas_matches_reference_forward_and_gradient(use_canvas, channels):
  rng = np.random.default_rng(channels + 10 * use_canvas)
  images = uniform(rng, (3,) + IMAGE + (channels,))
  matrices = random_maps(rng, 3)
  assert reach(matrices).max() < pallas.RADIUS + 0.5  # the draws the exact backward covers
  canvas = random_maps(rng, 3) if use_canvas else None
  cotangent = normal(rng, (3,) + OUT + (channels,))

  @functools.partial(jax.jit, static_argnums=0)
  def out_and_grad(impl, images, matrices, canvas, cotangent):
    out, vjp = jax.vjp(lambda x: op(x, matrices, canvas, impl), images)
    return out, vjp(cotangent)[0]

  want, want_grad = out_and_grad("xla", images, matrices, canvas, cotangent)
  got, got_grad = out_and_grad("pallas", images, matrices, canvas, cotangent)
  # One bilinear formula on both sides: float32 rounding only (values in [0, 1]).
  np.testing.assert_allclose(got, want, atol=2e-6)
  # Each input pixel sums at most 9 weighted cotangents of size ~1.
  np.testing.assert_allclose(got_grad, want_grad, atol=1e-5)
  assert float(jnp.abs(want_grad).max()) > 0.5  # not a vacuous comparison


def test_transpose_reference_is_the_vjp_of_the_reference():
  rng = np.random.default_rng(7)
  images = uniform(rng, (2,) + IMAGE + (3,))
  matrices, canvas = random_maps(rng, 2), random_maps(rng, 2)
  cotangent = normal(rng, (2,) + OUT + (3,))

  @jax.jit
  def both(images, cotangent):
    def fn(x):
      return reference.affine_resample(x, matrices, OUT, 0.5, canvas, CANVAS, 0.0)

    want = jax.vjp(fn, images)[1](cotangent)[0]
    return want, reference.affine_resample_transpose(cotangent, matrices, IMAGE, canvas, CANVAS)

  want, got = both(images, cotangent)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_pallas_gradient_is_nan_where_the_window_is_too_small():
  """A 2x zoom-out needs a 5 x 5 window: radius 1 would drop terms, so those images get NaN."""
  images = uniform(np.random.default_rng(8), (2,) + IMAGE + (3,))
  matrices = np.asarray([[[1.0, 0, 0], [0, 1.0, 0]], [[0.5, 0, 0], [0, 0.5, 0]]], np.float32)
  grad = jax.jit(jax.grad(lambda x: op(x, matrices, None, "pallas").sum()))(images)
  assert np.isfinite(grad[0]).all() and np.isnan(grad[1]).all()


def test_matrices_get_no_gradient():
  images = np.ones((1,) + IMAGE + (3,), np.float32)
  matrices = random_maps(np.random.default_rng(9), 1)
  grad = jax.jit(jax.grad(lambda m: op(images, m, None, "xla").sum()))(matrices)
  assert float(jnp.abs(grad).max()) == 0.0


def test_auto_picks_pallas_only_on_a_measured_device_kind(monkeypatch):
  """The dispatch rule on a made-up table: auto is Pallas on a listed device kind, XLA elsewhere,
  and an explicit choice wins either way."""
  kind = jax.devices()[0].device_kind
  assert kernels.choose_implementation(None, frozenset({kind})) == "pallas"
  assert kernels.choose_implementation(None, frozenset({kind + " (another)"})) == "xla"
  assert kernels.choose_implementation(None, frozenset()) == "xla"
  assert kernels.choose_implementation("xla", frozenset({kind})) == "xla"
  assert kernels.choose_implementation("pallas", frozenset()) == "pallas"
  # The op reads its table: listing this device makes auto run the (interpreted) kernel.
  images = uniform(np.random.default_rng(4), (2,) + IMAGE + (3,))
  matrices = random_maps(np.random.default_rng(5), 2)
  monkeypatch.setattr(api, "PALLAS_WINS_ON", frozenset({kind}))
  traced = jax.make_jaxpr(lambda x: op(x, matrices, None, None))(images)
  assert "pallas_call" in str(traced)
  monkeypatch.setattr(api, "PALLAS_WINS_ON", frozenset())
  assert "pallas_call" not in str(jax.make_jaxpr(lambda x: op(x, matrices, None, None))(images))
  with pytest.raises(ValueError, match="implementation must be one of"):
    ar.affine_resample(
      np.ones((1, 4, 4, 1), np.float32),
      np.zeros((1, 2, 3), np.float32),
      (4, 4),
      implementation="cuda",
    )


def test_featviz_transforms_uses_the_reference_sampler_and_tables():
  """One home: featviz.transforms re-exports the reference's sampler and api's Lucid tables."""
  assert tf_lib.bilinear_resample is reference.bilinear_sample
  assert tf_lib.STANDARD_SCALES is api.STANDARD_SCALES
  assert tf_lib.STANDARD_ANGLES is api.STANDARD_ANGLES


def test_pallas_kernels_lower_to_triton_without_a_gpu():
  """Cross-platform lowering runs the Pallas Triton lowering on CPU: block shapes, primitives
  and indexing Triton rejects fail here, before any GPU run (PTX compilation is not covered)."""
  coef = jax.ShapeDtypeStruct((2, pallas.N_COEFFICIENTS), jnp.float32)
  images = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  cotangent = jax.ShapeDtypeStruct((2, 140, 140, 3), jnp.float32)
  fwd = functools.partial(
    pallas.forward, out_size=(140, 140), fill=0.5, canvas_size=(144, 144), canvas_fill=0.0
  )
  bwd = functools.partial(pallas.backward, image_size=(128, 128))
  for fn, args in ((fwd, (coef, images)), (bwd, (coef, cotangent))):
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert "xla.gpu.triton" in text


# ----------------------------------------------------------------------------- Lucid's transforms


def step_by_step(images, draws, pad_value=0.5, scale_fill=0.5, rotate_fill=0.0):
  """featviz.transforms' five steps with given draws (what ``standard()`` does with its own)."""
  _, h, w, c = images.shape
  p = api.PAD
  padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=pad_value)
  h1, w1 = h + 2 * p - api.JITTER_BEFORE, w + 2 * p - api.JITTER_BEFORE

  def crop(x, offsets, size):
    return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), size + (c,)))(
      x, offsets
    )

  x = crop(padded, draws.offset_before, (h1, w1))
  x = tf_lib.affine_about_center(x, draws.scale, jnp.zeros_like(draws.scale), scale_fill)
  x = tf_lib.affine_about_center(x, jnp.ones_like(draws.angle), draws.angle, rotate_fill)
  return crop(x, draws.offset_after, (h1 - api.JITTER_AFTER, w1 - api.JITTER_AFTER))


def smooth_images(batch, h, w, amplitude, k):
  """0.5 + amplitude * sin(k . (y, x) + phase): second derivatives at most amplitude * k_i^2."""
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  phases = np.arange(batch * 3).reshape(batch, 1, 1, 3)
  return jnp.asarray(
    0.5 + amplitude * np.sin(k[0] * yy[..., None] + k[1] * xx[..., None] + phases), jnp.float32
  )


draws_of = jax.jit(ar.standard_draws, static_argnums=1)


def test_standard_draws_are_featviz_standard_draws():
  images = uniform(np.random.default_rng(1), (4, 20, 20, 3))
  key = jax.random.key(11)
  want = jax.jit(tf_lib.standard(one_pass=False))(key, images)
  got = jax.jit(step_by_step)(images, draws_of(key, 4))
  np.testing.assert_array_equal(got, want)


def test_translation_only_draws_match_exactly():
  """Zoom 1 and angle 0 leave integer shifts: both paths copy pixels, fill included."""
  images = uniform(np.random.default_rng(2), (3, 20, 18, 3))
  draws = draws_of(jax.random.key(12), 3)
  draws = draws._replace(scale=jnp.ones(3), angle=jnp.zeros(3))

  @jax.jit
  def fused(images, draws):
    comp = ar.compose_standard(draws, (20, 18))
    return ar.affine_resample(
      images,
      comp.matrices,
      comp.out_size,
      fill=0.5,
      canvas=comp.canvas,
      canvas_size=comp.canvas_size,
      implementation="xla",
    )

  np.testing.assert_array_equal(fused(images, draws), jax.jit(step_by_step)(images, draws))


def test_one_pass_differs_from_two_passes_by_interpolation_only():
  """The bound: bilinear interpolation of a C2 function on a unit grid errs by at most
  E(f) = (max|f_yy| + max|f_xx|) / 8. Step by step, the zoom errs by E(f); the rotation by
  E(f o zoom) = E(f) / s^2, plus the zoom's error carried through (bilinear weights are convex);
  the fused pass errs by E(f). So |fused - steps| <= E(f) (2 + 1 / s^2) where every tap of both
  paths reads the image. Where every tap reads the grey pad both give 0.5 times the same canvas
  coverage. Only the band of about a pixel around the image's edge, where a content-to-grey
  step is blurred once or twice, is bounded by neither (and not tested)."""
  batch, h, w = 8, 32, 32
  amplitude, k = 0.2, (0.3, 0.2)
  images = smooth_images(batch, h, w, amplitude, k)
  draws = draws_of(jax.random.key(5), batch)

  @jax.jit
  def both_paths(images, draws):
    comp = ar.compose_standard(draws, (h, w))
    fused_op = functools.partial(
      ar.affine_resample,
      matrices=comp.matrices,
      out_size=comp.out_size,
      canvas=comp.canvas,
      canvas_size=comp.canvas_size,
      implementation="xla",
    )
    # Where the taps read: both paths on an all-ones image with every fill 0.
    ones = jnp.ones_like(images)
    return (
      fused_op(images, fill=0.5, canvas_fill=0.0),
      step_by_step(images, draws),
      fused_op(ones, fill=0.0, canvas_fill=0.0),
      step_by_step(ones, draws, 0.0, 0.0, 0.0),
    )

  fused, steps, reads_fused, reads_steps = both_paths(images, draws)
  content = (reads_fused > 1 - 1e-6) & (reads_steps > 1 - 1e-6)
  grey = (reads_fused < 1e-6) & (reads_steps < 1e-6)

  e_f = amplitude * (k[0] ** 2 + k[1] ** 2) / 8
  # The fused map's coefficients are rounded to multiples of 2**-12 (api.on_exact_grid): a
  # source point moves by at most q = 2**-13 (|y| + |x| + 1) px per axis, which moves the
  # image's value by at most amplitude (k0 + k1) q and the canvas coverage (a product of two
  # 1-Lipschitz ramps) by at most 2 q.
  out_h, out_w = fused.shape[1:3]
  q = ar.api.MAP_QUANTUM / 2 * (out_h + out_w - 1)
  bound = (
    e_f * (2 + 1 / np.asarray(draws.scale)[:, None, None, None] ** 2)
    + amplitude * (k[0] + k[1]) * q
  )
  diff = np.abs(np.asarray(fused) - np.asarray(steps))
  slack = 1e-5  # float32 coordinates (~1e-5 px) times the image's slope (amplitude |k| < 0.08)
  assert content.mean() > 0.3 and grey.mean() > 0.05
  assert np.all(np.where(content, diff - bound, 0) <= slack), diff[content].max()
  assert np.all(np.where(grey, diff, 0) <= slack + 0.5 * 2 * q), diff[grey].max()
  print(
    f"content {content.mean():.2f} grey {grey.mean():.2f} max diff {diff[content].max():.4f} "
    f"bound {bound.max():.4f} band max {diff[~content & ~grey].max():.3f}"
  )
  assert diff[content].max() > 0.05 * bound.max()  # the interpolations do differ: bound is real


def test_standard_pallas_matches_xla():
  images = uniform(np.random.default_rng(3), (2, 16, 16, 3))
  key = jax.random.key(13)
  run = jax.jit(ar.standard, static_argnames=("implementation", "interpret"))
  want = run(key, images, implementation="xla")
  got = run(key, images, implementation="pallas", interpret=True)
  assert got.shape == (2, 28, 28, 3)
  np.testing.assert_allclose(got, want, atol=2e-6)
