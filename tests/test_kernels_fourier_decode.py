"""fourier_decode: the reference against featviz.param, and the Pallas kernel (interpreted on CPU)
against the reference, forward and gradient."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import kernels, param
from featviz.kernels import fourier_decode as fd
from featviz.kernels.fourier_decode import api, pallas, reference


def spectrum(rng, batch, channels, h, w, sd):
  """Random spectra from NumPy (no threefry compile per shape)."""
  return rng.normal(0.0, sd, (batch, 2, channels, h, w // 2 + 1)).astype(np.float32)


@pytest.mark.parametrize(
  "h,w,channels,decorrelate",
  [(32, 32, 3, True), (24, 17, 3, True), (16, 16, 1, True), (16, 20, 3, False)],
)
def test_reference_is_featviz_param_fourier(h, w, channels, decorrelate):
  """``param.fourier``'s XLA path is this reference's maths (shared below); the two write only the
  colour mix differently, so ``implementation=`` never changes an image."""
  params = spectrum(np.random.default_rng(h + w), 2, channels, h, w, 0.05)
  want = param.fourier((h, w), 2, channels, decorrelate=decorrelate).to_image(params)
  got = reference.fourier_decode(params, decorrelate=decorrelate, width=w)
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_featviz_param_uses_the_reference_maths_and_constants():
  """One home: featviz.param re-exports the reference's constants and inverse DFT."""
  assert param.COLOR_CORRELATION_SVD_SQRT is reference.COLOR_CORRELATION_SVD_SQRT
  assert param.COLOR_MATRIX is reference.COLOR_MATRIX
  assert param.FOURIER_OUTPUT_DIVISOR is reference.FOURIER_OUTPUT_DIVISOR
  assert param.inverse_dft_matrices is reference.inverse_dft_matrices
  assert param.irfft2_by_matmul is reference.irfft2_by_matmul
  assert param.rfft2d_freqs is reference.rfft2d_freqs
  assert param.fourier_scale is reference.spectrum_scale


# (H, W, C, decorrelate, rows): several row blocks; a non-square image; grey; no decorrelation.
CASES = [(32, 32, 3, True, 16), (64, 32, 1, True, 32), (32, 64, 3, False, 32)]


@pytest.mark.parametrize("h,w,channels,decorrelate,rows", CASES)
def test_pallas_matches_reference_forward_and_gradient(h, w, channels, decorrelate, rows):
  rng = np.random.default_rng(h * w + channels)
  # sd 0.5 (50 x Lucid's 0.01) spreads the pre-sigmoid image over about +-2 to +-4: the
  # sigmoid's curved part is exercised, and its slope (the gradient) stays away from zero.
  params = spectrum(rng, 2, channels, h, w, 0.5)
  cotangent = rng.normal(size=(2, h, w, channels)).astype(np.float32)

  @functools.partial(jax.jit, static_argnums=0)
  def out_and_grad(impl, params, cotangent):
    fn = functools.partial(
      fd.fourier_decode, decorrelate=decorrelate, implementation=impl, interpret=True, rows=rows
    )
    out, vjp = jax.vjp(fn, params)
    return out, vjp(cotangent)[0]

  want, want_grad = out_and_grad("xla", params, cotangent)
  got, got_grad = out_and_grad("pallas", params, cotangent)
  assert float(want.min()) < 0.2 and float(want.max()) > 0.8
  # float32 sums in another order (the Nyquist bin apart, the 1/4 folded in): ~1e-7 per value.
  np.testing.assert_allclose(got, want, atol=2e-6)
  # Relative to the gradient's size: each value sums H x W products through two DFTs.
  scale = float(jnp.abs(want_grad).max())
  np.testing.assert_allclose(got_grad, want_grad, atol=2e-6 * scale)


def test_auto_picks_pallas_only_on_a_measured_device_kind_and_size(monkeypatch):
  """The dispatch rule on a made-up table: with this device kind listed, auto runs the kernel
  where the size allows it and falls back to XLA where not; explicit Pallas checks the size."""
  kind = jax.devices()[0].device_kind
  assert kernels.choose_implementation(None, frozenset({kind})) == "pallas"
  assert kernels.choose_implementation(None, frozenset({kind + " (another)"})) == "xla"
  supported = np.zeros((1, 2, 3, 32, 17), np.float32)  # 32 x 32: powers of two
  unsupported = np.zeros((1, 2, 3, 24, 13), np.float32)

  def uses_pallas(params, **kwargs):
    return "pallas_call" in str(jax.make_jaxpr(lambda p: fd.fourier_decode(p, **kwargs))(params))

  assert not uses_pallas(supported)  # today's table: XLA
  monkeypatch.setattr(api, "PALLAS_WINS_ON", frozenset({kind}))
  assert uses_pallas(supported)
  assert not uses_pallas(unsupported)  # auto falls back at sizes the kernel does not take
  assert not uses_pallas(supported, implementation="xla")
  with pytest.raises(ValueError, match="powers of two"):
    fd.fourier_decode(unsupported, implementation="pallas")
  assert fd.fourier_decode(unsupported).shape == (1, 24, 24, 3)


def test_pallas_kernels_lower_to_triton_without_a_gpu():
  """Cross-platform lowering runs the Pallas Triton lowering on CPU at the render loop's 128 px:
  shapes, dots and primitives Triton rejects fail here (PTX compilation is not covered)."""
  params = jax.ShapeDtypeStruct((2, 2, 3, 128, 65), jnp.float32)
  images = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  for fn, args in ((pallas.forward, (params,)), (pallas.backward, (images, images))):
    text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
    assert "xla.gpu.triton" in text
