"""Each parameterization's decode against a NumPy reference written here, and its inverse
(``from_image``) against the decode: lowres, laplacian, cppn, maco, alpha; fourier and pixel
inverses. No render runs here."""

import hashlib
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz import param
from featviz.param import alpha
from featviz.param import lowres_image as lowres
from featviz.param import maco_image as maco

M = np.asarray(param.COLOR_MATRIX, np.float64)


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def valid_rgb(t):
  """Lucid's to_valid_rgb in NumPy: decorrelate the first 3 channels, sigmoid all."""
  t = np.array(t, np.float64)
  t[..., :3] = t[..., :3] @ M.T
  return sigmoid(t)


def tf1_resize_bilinear(x, out_h, out_w):
  """TF1's resize_bilinear(align_corners=False, half_pixel_centers=False), pixel by pixel."""
  b, h, w, c = x.shape
  out = np.zeros((b, out_h, out_w, c))
  for i in range(out_h):
    sy = i * h / out_h
    y0 = int(np.floor(sy))
    y1, fy = min(y0 + 1, h - 1), sy - y0
    for j in range(out_w):
      sx = j * w / out_w
      x0 = int(np.floor(sx))
      x1, fx = min(x0 + 1, w - 1), sx - x0
      top = x[:, y0, x0] * (1 - fx) + x[:, y0, x1] * fx
      bottom = x[:, y1, x0] * (1 - fx) + x[:, y1, x1] * fx
      out[:, i, j] = top * (1 - fy) + bottom * fy
  return out


def draw(p, seed=0):
  return jax.tree.map(np.asarray, p.init(jax.random.key(seed)))


@pytest.mark.parametrize("size, factor", [((16, 12), 4), ((10, 10), 3)])
def test_lowres_is_lucids_bilinear_upsampling_then_colour(size, factor):
  p = param.lowres(size, batch=2, factor=factor)
  low = draw(p) * 50  # well away from the sigmoid's linear middle
  assert low.shape == (2, size[0] // factor, size[1] // factor, 3)
  want = valid_rgb(tf1_resize_bilinear(low, *size))
  np.testing.assert_allclose(p.to_image(jnp.asarray(low)), want, atol=2e-6)


def test_laplacian_is_the_sum_of_upsampled_levels():
  p = param.laplacian(16, batch=2, channels=3)
  levels = [x * 50 for x in draw(p)]
  assert [x.shape[1] for x in levels] == [16, 8, 4, 2]  # Lucid's 4 levels, scales 1, 2, 4, 8
  want = valid_rgb(sum(tf1_resize_bilinear(x, 16, 16) for x in levels))
  got = p.to_image(tuple(jnp.asarray(x) for x in levels))
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_cppn_is_lucids_network_of_the_coordinates_with_weights_per_image():
  p = param.cppn((12, 10), batch=2, channels=3)
  params = draw(p)
  assert len(params) == 9 and params[0][0].shape == (2, 2, 24) and params[1][0].shape == (2, 48, 24)
  assert not np.any(params[-1][0])  # Lucid's output layer starts at zero weights
  np.testing.assert_allclose(np.std(params[1][0]), (1 / 48) ** 0.5, rtol=0.1)  # variance scaling
  assert not np.allclose(params[0][0][0], params[0][0][1])  # every image has its own network
  params = [(w + 0.1 * np.cos(np.arange(w.size)).reshape(w.shape), b) for w, b in params]
  r = 3**0.5
  ys, xs = np.meshgrid(np.linspace(-r, r, 12), np.linspace(-r, r, 10), indexing="ij")
  want = []
  for i in range(2):
    net = np.stack([xs, ys], -1)
    for w, b in params[:-1]:
      z = np.arctan(net @ w[i] + b[i])
      net = np.concatenate([z / 0.67, z * z / 0.6], -1)
    want.append(sigmoid(net @ params[-1][0][i] + params[-1][1][i]))
  got = p.to_image([(jnp.asarray(w), jnp.asarray(b)) for w, b in params])
  np.testing.assert_allclose(got, np.stack(want), atol=2e-5)


def test_maco_is_the_fixed_magnitude_with_the_phase_then_the_papers_normalisation():
  h, w = 16, 14
  p = param.maco((h, w), batch=2)
  phase = draw(p)
  assert phase.shape == (2, 3, h, w // 2 + 1)
  mag = maco.magnitude(h, w)
  image = np.fft.irfft2(mag * np.exp(1j * phase), s=(h, w))  # (B, 3, H, W)
  image = np.moveaxis(image, 1, -1)
  image = (image - image.mean(axis=(1, 2, 3), keepdims=True)) / (
    image.std(axis=(1, 2, 3), keepdims=True) + 1e-5
  )
  np.testing.assert_allclose(p.to_image(jnp.asarray(phase)), valid_rgb(image), atol=2e-5)


def half_pixel_resize(x, out_h, out_w):
  """Bilinear resize with half-pixel centres (tf.image.resize, torch align_corners=False), by
  index arithmetic: source (i + 0.5) * n_in / n_out - 0.5, clamped to the image."""
  c, h, w = x.shape
  sy = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
  sx = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
  y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  fy, fx = (sy - y0)[:, None], (sx - x0)[None, :]
  top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
  bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
  return top * (1 - fy) + bottom * fy


def test_maco_spectrum_resamples_bilinearly_from_the_shipped_one():
  stored, meta = maco.stored_spectrum()
  assert stored.shape == (3, 256, 129) and meta["size"] == 256
  assert np.all(stored[:, 1:8, 1:8] > stored[:, 60:64, 60:64].max())  # natural: falls with f
  np.testing.assert_allclose(maco.magnitude(256, 256), stored, rtol=1e-6)
  want = half_pixel_resize(stored.astype(np.float64), 96, 80 // 2 + 1)
  np.testing.assert_allclose(maco.magnitude(96, 80), want, rtol=1e-5)


@pytest.mark.parametrize(
  "factory, size, channels",
  [
    (param.fourier, (16, 16), 3),
    (param.fourier, (9, 11), 3),  # odd sides: irfft2(s=(h, w)) inverts rfft2 exactly
    (param.fourier, (8, 8), 1),
    (param.pixel, (8, 6), 3),
    (param.laplacian, (16, 16), 3),
    (alpha.WithAlpha(param.fourier), (12, 12), 3),
  ],
)
def test_from_image_inverts_the_decode(factory, size, channels):
  p = factory(size, 2, channels)
  images = p.to_image(jax.tree.map(lambda x: 30 * x, p.init(jax.random.key(1))))
  assert 0.02 < float(jnp.std(images))  # not a flat start: the inverse has work to do
  back = p.to_image(p.from_image(images))
  np.testing.assert_allclose(back, images, atol=2e-5)


def test_lowres_from_image_is_the_least_squares_fit():
  p = param.lowres(16, 1)
  photo = np.random.default_rng(0).uniform(0.1, 0.9, (1, 16, 16, 3)).astype(np.float32)
  fit = np.asarray(p.from_image(photo))
  t = np.asarray(param.from_valid_rgb(photo), np.float64)  # the pre-sigmoid target
  u = np.asarray(lowres.resize_matrix(16, 4), np.float64)
  want, *_ = np.linalg.lstsq(np.kron(u, u), t[0].reshape(256, 3), rcond=None)
  np.testing.assert_allclose(fit[0].reshape(16, 3), want, atol=1e-4)


def test_maco_from_image_takes_the_phase_of_the_photos_spectrum():
  photo = np.random.default_rng(1).uniform(0.05, 0.95, (1, 12, 12, 3)).astype(np.float32)
  t = np.log(photo / (1 - photo)) @ np.linalg.inv(M.T)
  want = np.angle(np.fft.rfft2(np.moveaxis(t, -1, 1)))
  got = np.asarray(param.maco(12, 1).from_image(photo))
  np.testing.assert_allclose(np.cos(got - want), 1.0, atol=1e-4)  # equal as angles


def test_cppn_cannot_start_from_a_photo():
  with pytest.raises(param.ParamError, match="cannot start from a photo"):
    param.cppn(8, 1).from_image(np.full((1, 8, 8, 3), 0.5))


def test_alpha_composite_and_weight_are_lucids_formulas():
  rgba = np.random.default_rng(2).uniform(0, 1, (2, 4, 4, 4)).astype(np.float32)
  back = np.random.default_rng(3).uniform(0, 1, (2, 4, 4, 3)).astype(np.float32)
  a = rgba[..., 3:]
  np.testing.assert_allclose(alpha.composite(rgba, back), rgba[..., :3] * a + back * (1 - a))
  crop = a[:, 1:3, 1:3]
  want = (1 - crop.mean(axis=(1, 2, 3))) + 0.5 * (1 - a.mean(axis=(1, 2, 3)))
  np.testing.assert_allclose(alpha.objective_weight(crop, a), want, rtol=1e-6)
  bg = alpha.background(jax.random.key(0), 2, (16, 16))
  assert bg.shape == (2, 16, 16, 3) and 0 < float(bg.min()) and float(bg.max()) < 1


def test_alpha_refuses_maco():
  with pytest.raises(param.ParamError, match="maco has no alpha channel"):
    alpha.WithAlpha(param.maco)(16, 1, 3)


def test_maco_crops_without_noise_at_full_size_are_the_identity():
  images = jax.random.uniform(jax.random.key(0), (3, 16, 16, 3))
  same = maco.MacoCrops(box=1.0, box_sd=0.0, noise=0.0)(jax.random.key(1), images)
  np.testing.assert_allclose(same, images, atol=1e-5)
  crops = maco.MacoCrops(noise=0.0)(jax.random.key(1), images)
  assert crops.shape == images.shape and not np.allclose(crops[0], images[0], atol=1e-3)
  assert 0 <= float(crops.min()) and float(crops.max()) <= 1  # inside the image: no fill


@pytest.mark.shared
def test_shipped_spectrum_is_what_the_script_computes_from_the_photos(shared, tmp_path):
  folder = shared / "images" / "imagenet-sample"
  out = tmp_path / "spectrum.npz"
  script = pathlib_script()
  subprocess.run([sys.executable, str(script), str(folder), str(out)], check=True, cwd=tmp_path)
  with np.load(out) as f:
    fresh, meta = f["magnitude"], json.loads(str(f["meta"]))
  stored, stored_meta = maco.stored_spectrum()
  np.testing.assert_array_equal(fresh.astype(np.float32), stored)
  assert meta == stored_meta and meta["files"] == 264 and len(meta["sha256"]) == 64
  files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
  h = hashlib.sha256()
  for p in files:
    h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
  assert meta["sha256"] == h.hexdigest()


def pathlib_script():
  import pathlib

  return pathlib.Path(__file__).resolve().parents[1] / "scripts" / "maco_spectrum.py"
