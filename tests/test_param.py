"""Parameterizations against independent NumPy references (Lucid's formula, anchors.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import param


def lucid_fourier_numpy(spectrum: np.ndarray, h: int, w: int, decay_power: float = 1.0):
  """Lucid's fft_image + to_valid_rgb in NumPy: spectrum (B, 2, C, h, w//2+1) -> (B, h, w, C)."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.fftfreq(w)[: w // 2 + 1][None, :]  # Lucid's rfft2d_freqs (only fx^2 matters)
  freqs = np.sqrt(fx**2 + fy**2)
  scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power * np.sqrt(w * h)
  complex_spec = (spectrum[:, 0] + 1j * spectrum[:, 1]) * scale
  image = np.fft.irfft2(complex_spec, s=(h, w)).transpose(0, 2, 3, 1) / 4.0
  m = np.asarray([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
  m = m / np.max(np.linalg.norm(m, axis=0))
  if image.shape[-1] == 3:
    image = image @ m.T
  return 1.0 / (1.0 + np.exp(-image))


@pytest.mark.parametrize("h,w", [(32, 32), (24, 17), (128, 128)])
def test_fourier_matches_numpy_irfft2(h, w):
  p = param.fourier((h, w), batch=2, channels=3)
  spectrum = np.asarray(p.init(jax.random.key(0))) * 50.0  # larger than sd 0.01 to test the maths
  got = np.asarray(p.to_image(jnp.asarray(spectrum)))
  want = lucid_fourier_numpy(spectrum.astype(np.float64), h, w)
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_irfft2_by_matmul_matches_numpy():
  rng = np.random.default_rng(0)
  for h, w in [(8, 8), (9, 7), (16, 33)]:
    re, im = rng.normal(size=(2, 3, h, w // 2 + 1)).astype(np.float32)
    want = np.fft.irfft2(re + 1j * im, s=(h, w))
    got = np.asarray(param.irfft2_by_matmul(jnp.asarray(re), jnp.asarray(im), h, w))
    np.testing.assert_allclose(got, want, atol=1e-5 * np.abs(want).max())


def test_color_matrix_is_lucids_normalized_by_largest_column_norm():
  # anchors.md: max_norm_svd_sqrt ~ 0.46195
  norms = np.linalg.norm(param.COLOR_CORRELATION_SVD_SQRT, axis=0)
  assert abs(norms.max() - 0.46195) < 1e-4
  np.testing.assert_allclose(np.linalg.norm(param.COLOR_MATRIX, axis=0).max(), 1.0, rtol=1e-6)


def test_pixel_matches_sigmoid_of_decorrelated_pixels():
  p = param.pixel(8, batch=3)
  x = np.asarray(p.init(jax.random.key(1))) * 100
  want = 1 / (1 + np.exp(-(x @ param.COLOR_MATRIX.T)))
  np.testing.assert_allclose(np.asarray(p.to_image(jnp.asarray(x))), want, atol=1e-6)


@pytest.mark.parametrize("factory", [param.fourier, param.pixel])
def test_init_draws_sd_and_each_image_its_own(factory):
  p = factory(32, batch=4, channels=3)
  x = np.asarray(p.init(jax.random.key(0)))
  assert x.shape[0] == 4
  assert abs(x.std() - param.DEFAULT_SD) < 0.1 * param.DEFAULT_SD
  assert not np.allclose(x[0], x[1])


@pytest.mark.parametrize("factory", [param.fourier, param.pixel])
def test_greyscale_models_get_one_channel(factory):
  p = factory(28, batch=2, channels=1)
  image = p.to_image(p.init(jax.random.key(0)))
  assert image.shape == (2, 28, 28, 1)
  assert float(image.min()) > 0 and float(image.max()) < 1


def test_decay_power_shapes_the_spectrum():
  scale = param.fourier_scale(16, 16, decay_power=2.0)
  freqs = param.rfft2d_freqs(16, 16)
  np.testing.assert_allclose(scale[1, 1], 16 / freqs[1, 1] ** 2, rtol=1e-5)
  np.testing.assert_allclose(scale[0, 0], 16 / (1 / 16) ** 2, rtol=1e-5)  # DC floored at 1/max(h,w)


def test_unknown_parameterization_lists_choices():
  with pytest.raises(ValueError, match="fourier, pixel, maco, cppn, laplacian, lowres"):
    param.factory("gan")


def test_fourier_pallas_switch_gives_the_same_image_and_gradient():
  """``implementation="pallas"`` (interpreted on CPU) against the XLA path; auto is XLA here."""
  xla = param.fourier(32, 2, implementation="xla")
  kernel = param.fourier(32, 2, implementation="pallas")
  auto = param.fourier(32, 2)
  params = xla.init(jax.random.key(0)) * 50  # large enough that the sigmoid bends
  np.testing.assert_array_equal(auto.to_image(params), xla.to_image(params))
  np.testing.assert_allclose(kernel.to_image(params), xla.to_image(params), atol=1e-6)
  weights = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  grads = [jax.grad(lambda p, f=f: jnp.sum(f.to_image(p) * weights))(params) for f in (xla, kernel)]
  np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6)
