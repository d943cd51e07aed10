"""MACO in the render loop: the transparency map is the accumulated |d objective / d image| of
an explicit loop, a batch of different units is one compiled program, and the CLI writes the
images with their maps."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

import featviz
from featviz import objectives as O
from featviz import param
from featviz._loop import program
from featviz.cli import main
from featviz.objectives import Context

import tiny_cnn

MODEL = tiny_cnn.make()
TINY = f"{pathlib.Path(__file__).with_name('tiny_cnn.py')}:make"
STEPS, SIZE, LR = 3, 16, 0.05
CONFIG = featviz.RenderConfig(
  param="maco", transforms="none", steps=STEPS, size=SIZE, redirect_relu_steps=0, chunk=STEPS
)
PHOTOS = np.random.default_rng(0).uniform(0.1, 0.9, (3, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def from_photos():
  return featviz.render(
    MODEL, O.channel("conv2", [0, 1, 2]), CONFIG, init=PHOTOS, progress_bar=False
  )


def test_transparency_is_the_accumulated_absolute_image_gradient(from_photos):
  """The same 3 steps by hand: Adam on the phase, and sum_t mean_c |d score / d image|."""
  p = param.maco(SIZE, 3)
  objective = from_photos.objective  # bound: unit i for image i

  def scores(image):
    acts = MODEL.activations(image, ["conv2"])
    return objective(Context(acts, image))

  adam = optax.adam(LR)

  @jax.jit
  def step(phase, state):
    image_grad = jax.grad(lambda x: jnp.sum(scores(x)))(p.to_image(phase))
    grads = jax.grad(lambda q: -jnp.sum(scores(p.to_image(q))))(phase)
    updates, state = adam.update(grads, state, phase)
    return optax.apply_updates(phase, updates), state, image_grad

  phase = p.from_image(PHOTOS)
  state = adam.init(phase)
  accumulated = np.zeros((3, SIZE, SIZE))
  for _ in range(STEPS):
    phase, state, image_grad = step(phase, state)
    accumulated += np.mean(np.abs(np.asarray(image_grad, np.float64)), axis=-1)
  assert from_photos.transparency.shape == (3, SIZE, SIZE)
  assert accumulated.min() >= 0 and accumulated.max() > 0
  np.testing.assert_allclose(from_photos.transparency, accumulated, rtol=2e-4, atol=1e-7)
  np.testing.assert_allclose(from_photos.images, p.to_image(phase), atol=2e-5)


def test_other_units_and_seed_reuse_the_compiled_loop(from_photos):
  before = program.trace_count()
  other = featviz.render(MODEL, O.channel("conv2", [3, 4, 5]), CONFIG, seed=7, progress_bar=False)
  assert program.trace_count() == before  # a batch of other units: the same compiled program
  assert other.transparency.shape == (3, SIZE, SIZE)
  assert not np.allclose(other.images, from_photos.images)
  fourier = featviz.render(
    MODEL, O.channel("conv2", [3, 4, 5]), CONFIG.replace(param="fourier"), progress_bar=False
  )
  assert fourier.transparency is None  # only maco keeps the map


def test_cli_param_maco_writes_images_and_transparency_maps(capsys, tmp_path, featviz_home):
  out = tmp_path / "maco.png"
  argv = ["render", TINY, "conv2:0-2", "--param", "maco", "--transforms", "none"]
  argv += ["--steps", str(STEPS), "--size", str(SIZE), "--redirect-relu-steps", "0"]
  argv += ["--chunk", str(STEPS), "--no-progress", "--out", str(out)]
  assert main(argv) == 0
  stdout = capsys.readouterr().out
  assert "3 images and their transparency maps" in stdout
  names = sorted(p.name for p in (tmp_path / "maco_images").iterdir())
  assert names == sorted(
    f"{i:04d}_conv2_{i}{kind}.png" for i in range(3) for kind in ("", "_transparency", "_overlay")
  )
  t = Image.open(tmp_path / "maco_images" / "0000_conv2_0_transparency.png")
  o = Image.open(tmp_path / "maco_images" / "0000_conv2_0_overlay.png")
  assert (t.mode, t.size, o.mode) == ("L", (SIZE, SIZE), "RGBA")
  assert np.asarray(t).max() == 255  # normalized: its 99th percentile is white
