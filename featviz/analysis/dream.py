"""DeepDream on a photo: amplify whatever a layer already sees, at several scales.

The method of Mordvintsev, Olah and Tyka's DeepDream notebook (google/deepdream,
``dream.ipynb``, 2015), step for step:

* **Objective**: the layer's mean squared activation, :func:`featviz.objectives.deepdream`
  (the notebook's ``objective_L2``, whose gradient is the activations themselves).
* **Step** (``make_step``): roll the image by a random offset in ``[-jitter, jitter]``
  pixels on both axes (``np.roll``, so nothing is lost at the border), take the gradient,
  roll it back, and move by ``lr / mean(|g|) * g``: a *normalized* gradient step, so every
  step changes the pixels by ``lr`` on average whatever the layer's scale. Then clip to the
  valid range.
* **Octaves** (``deepdream``): a pyramid of the photo, each level ``octave_scale`` times
  smaller; start at the smallest, and at each larger level upsample the *detail* the
  previous levels added (the dreamed image minus that level's photo) and add it to the
  photo at that size, so large patterns grow first and finer ones on top.

The notebook's numbers are ``octave_n = 4``, ``octave_scale = 1.4``, ``iter_n = 10``,
``step_size = 1.5`` on a 0-255 scale (``1.5 / 255`` here, images in [0, 1]) and
``jitter = 32``. We default to 20 steps per octave instead of 10 (the ``featviz dream``
specification's default); everything else is the notebook's.

Each octave runs as one jitted ``lax.scan`` over its steps; the program depends on the
octave's shape, so a dream compiles once per octave size (4 programs for 4 octaves) and a
second dream at the same sizes compiles nothing (:func:`trace_count` counts, from jit's own
cache).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from featviz import objectives as obj_lib
from featviz import progress
from featviz.analysis import figures
from featviz.model import Model

# The DeepDream notebook's settings (see the module docstring), steps excepted.
OCTAVES = 4
OCTAVE_SCALE = 1.4
STEPS = 20
LEARNING_RATE = 1.5 / 255.0
JITTER = 32


def trace_count() -> int:
  """How many octave programs are compiled in this process (the size of jit's cache)."""
  return _octave._cache_size()


@dataclasses.dataclass
class DreamResult:
  """A dream: ``image (H, W, C)`` in [0, 1], the octave ``sizes`` used, smallest first."""

  image: np.ndarray
  sizes: list[tuple[int, int]]
  layer: str


def octave_sizes(
  size: tuple[int, int], octaves: int, scale: float, min_size: int = 1
) -> list[tuple[int, int]]:
  """The pyramid's ``(h, w)`` from smallest to ``size``; each level ``round(prev / scale)``.

  Levels smaller than ``min_size`` (the model's smallest input) are dropped, so a small
  photo gets fewer octaves rather than an error.
  """
  if octaves < 1:
    raise ValueError(f"octaves must be at least 1, got {octaves}")
  if scale <= 1.0:
    raise ValueError(f"octave scale must be above 1, got {scale}")
  sizes = [tuple(int(s) for s in size)]
  for _ in range(octaves - 1):
    h, w = sizes[-1]
    nxt = (max(1, round(h / scale)), max(1, round(w / scale)))
    if min(nxt) < min_size:
      break
    sizes.append(nxt)
  return sizes[::-1]


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _octave(
  model: Model, image: jax.Array, layer: str, steps: int, jitter: int, lr: jax.Array, key: jax.Array
):
  """``steps`` normalized, jittered gradient-ascent steps on ``image (1, h, w, C)``.

  Fixed-size networks see every octave resized to their input size (``Model.activations``).
  """
  objective = obj_lib.deepdream(layer)

  def score(x):
    acts = model.activations(x, (layer,))
    return objective(obj_lib.Context(acts, x))[0]

  def step(img, k):
    shift = jax.random.randint(k, (2,), -jitter, jitter + 1)
    g = jax.grad(score)(jnp.roll(img, shift, axis=(1, 2)))
    g = jnp.roll(g, -shift, axis=(1, 2))
    img = img + lr / (jnp.mean(jnp.abs(g)) + 1e-8) * g  # 1e-8: the notebook's guard
    return jnp.clip(img, 0.0, 1.0), None

  out, _ = jax.lax.scan(step, image, jax.random.split(key, steps))
  return out


def _resize(image: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Bilinear resize of ``(1, h, w, C)`` (the notebook's ``nd.zoom(order=1)``)."""
  return jax.image.resize(image, (1, *size, image.shape[-1]), "linear")


def dream(
  model: Model,
  image: np.ndarray,
  layer: str,
  octaves: int = OCTAVES,
  octave_scale: float = OCTAVE_SCALE,
  steps: int = STEPS,
  lr: float = LEARNING_RATE,
  jitter: int = JITTER,
  seed: int = 0,
  progress_bar: bool = False,
) -> DreamResult:
  """DeepDream of ``image (H, W, C)`` in [0, 1] on ``layer``.

  Args:
    model: any model; fixed-size models see each octave resized to their input size.
    image: the photo.
    layer: the layer whose mean squared activation is raised.
    octaves: pyramid levels (fewer when the photo is too small for the model).
    octave_scale: size ratio between levels.
    steps: gradient steps per octave.
    lr: mean pixel change per step, in [0, 1] units.
    jitter: largest random roll in pixels (at most a quarter of the octave's shorter side,
      so small octaves are not wrapped around more than that).
    seed: draws the rolls.
    progress_bar: show a bar advancing once per octave.

  Returns:
    :class:`DreamResult` with the dreamed image, the same size as ``image``.
  """
  model.spec.check_layer(layer)
  image = np.asarray(image, np.float32)
  model.check_images(image[None])
  if steps < 1:
    raise ValueError(f"steps must be at least 1, got {steps}")
  min_size = 1 if model.spec.fixed_size else model.spec.min_size
  sizes = octave_sizes(image.shape[:2], octaves, octave_scale, min_size)
  base = jnp.asarray(image[None])
  pyramid = {size: _resize(base, size) for size in sizes}
  detail = jnp.zeros_like(pyramid[sizes[0]])
  key = jax.random.key(seed)
  src = pyramid[sizes[0]]
  with progress.bar(
    len(sizes), f"dream {model.spec.name} {layer}", unit="octave", enabled=progress_bar
  ) as pbar:
    for i, size in enumerate(sizes):
      detail = _resize(detail, size)
      src = jnp.clip(pyramid[size] + detail, 0.0, 1.0)
      j = min(int(jitter), min(size) // 4)
      src = _octave(model, src, layer, int(steps), j, jnp.float32(lr), jax.random.fold_in(key, i))
      detail = src - pyramid[size]
      if pbar is not None:
        src.block_until_ready()
        pbar.update(1)
  return DreamResult(np.asarray(src[0]), list(sizes), layer)


@functools.partial(jax.jit, static_argnums=2)
def _scores(model: Model, images, layer: str):
  acts = model.activations(images, (layer,))
  return obj_lib.deepdream(layer)(obj_lib.Context(acts, images))


def scores(model: Model, images: np.ndarray, layer: str) -> np.ndarray:
  """The DeepDream objective ``(B,)`` of ``images (B, H, W, C)`` as they are (no jitter)."""
  model.spec.check_layer(layer)
  images = np.asarray(images, np.float32)
  model.check_images(images)
  return np.asarray(_scores(model, images, layer))


def figure(
  photo: np.ndarray, result: DreamResult, title: str, before: float, after: float, scale: int = 1
) -> Image.Image:
  """Photo and dream side by side, each captioned with its DeepDream objective."""
  octaves = " > ".join(f"{h}" for h, _ in result.sizes)
  return figures.panels(
    [
      (photo, ["photo", f"deepdream {before:.4g}"]),
      (result.image, [f"dream ({octaves} px)", f"deepdream {after:.4g}"]),
    ],
    scale=scale,
    title=title,
  )
