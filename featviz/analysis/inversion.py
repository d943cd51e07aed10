"""Feature inversion: which image has the same activations as this photo at layer L?

Mahendran and Vedaldi (2015, "Understanding Deep Image Representations by Inverting
Them") reconstruct a photo ``x0`` from its representation ``Phi(x0)`` at one layer by
minimizing ``|Phi(x) - Phi(x0)|^2 / |Phi(x0)|^2 + lambda R(x)`` over images ``x``, with
``R`` a total-variation prior. Early layers keep nearly everything (the reconstruction is
the photo); later layers keep what the network needs for the task and discard the rest
(exact colours, textures, positions), which the reconstructions show.

Here every layer is inverted at once, each from its own image in one batch of one
:func:`featviz.render` call: the objective for image ``i`` is
``inversion(layer_i, target_i) - tv_weight / (H W C) * total_variation()``
(:func:`featviz.objectives.stack`), i.e. the normalized loss above plus ``tv_weight`` times
the total variation per value (``sum |dx| + |dy|`` over ``H W C``), so ``tv_weight`` does
not depend on the image size. The images use Lucid's Fourier parameterization and Adam
(learning rate 0.05), without random transforms: the target is a spatial map, and a
jittered image would be compared with it at the wrong place.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import numpy as np
from PIL import Image

from featviz import objectives as obj_lib
from featviz import regularizers, transforms
from featviz._loop import api as render_lib
from featviz.analysis import figures
from featviz.model import Model

# Weight of the total variation per value, sum(|dx| + |dy|) / (H W C). Measured on the 264
# imagenet-sample photos at 224 px: median 0.072 (10th-90th percentile 0.038-0.138), so 0.5
# charges a photo's own texture about 0.036, small against a normalized loss that starts at
# 1 (chosen by eye on a few reconstructions; no sweep of the weight was made).
TV_WEIGHT = 0.5
STEPS = 256  # half of Lucid's 512; 4 layers at 224 px took 2 CPU-minutes (2 cores, jax CPU)
LEARNING_RATE = 0.05  # Lucid's Adam learning rate


@dataclasses.dataclass
class InversionResult:
  """Reconstructions of one photo, one per layer.

  Attributes:
    images: ``(L, H, W, C)`` in [0, 1], ``images[i]`` from ``layers[i]``.
    layers: the layers inverted.
    mse: ``(L,)`` mean squared pixel error against the photo.
    psnr: ``(L,)`` peak signal-to-noise ratio in dB, ``10 log10(1 / mse)`` (peak 1).
    loss: ``(L,)`` final normalized feature error ``|Phi(x) - Phi(x0)|^2 / |Phi(x0)|^2``.
    seconds: time spent rendering (compile included).
    history: ``(steps, L)`` each reconstruction's objective before every step: minus its
      normalized feature error, minus ``tv_weight`` times its total variation per value (with
      ``tv_weight=0``, ``-history[0]`` is the starting feature error).
  """

  images: np.ndarray
  layers: list[str]
  mse: np.ndarray
  psnr: np.ndarray
  loss: np.ndarray
  seconds: float
  history: np.ndarray


@functools.partial(jax.jit, static_argnums=2)
def _activations(model: Model, images, layers: tuple[str, ...]):
  """The jitted forward pass to ``layers`` for ``images`` in [0, 1] (targets and checks)."""
  return model.activations(images, layers)


def pixel_errors(images: np.ndarray, photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean squared error ``(L,)`` of each image against ``photo`` and its PSNR in dB."""
  mse = np.mean(
    (np.asarray(images, np.float64) - np.asarray(photo, np.float64)) ** 2, axis=(1, 2, 3)
  )
  return mse, 10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))


def invert(
  model: Model,
  photo: np.ndarray,
  layers: Sequence[str],
  steps: int = STEPS,
  tv_weight: float = TV_WEIGHT,
  lr: float = LEARNING_RATE,
  param: str = "fourier",
  seed: int = 0,
  progress_bar: bool = False,
) -> InversionResult:
  """Reconstructs ``photo (S, S, C)`` in [0, 1] from its activations at each of ``layers``.

  Args:
    model: any model.
    photo: a square photo (``featviz.photos.load_image`` gives one).
    layers: layer names; one reconstruction each, all in one batch.
    steps: Adam steps.
    tv_weight: weight of the total variation per value (see :data:`TV_WEIGHT`).
    lr: Adam's learning rate.
    param: "fourier" (Lucid's default) or "pixel".
    seed: draws the initial images.
    progress_bar: show the render's progress bar.
  """
  photo = np.asarray(photo, np.float32)
  model.check_images(photo[None])
  h, w, c = photo.shape
  if h != w:
    raise ValueError(f"inversion renders square images; the photo is {h}x{w}")
  layers = list(layers)
  if not layers:
    raise ValueError("give at least one layer to invert")
  if tv_weight < 0:
    raise ValueError(f"tv_weight is subtracted: give it as a positive number, got {tv_weight}")
  for layer in layers:
    model.spec.check_layer(layer)
  ordered = model.layers_in_order(layers)
  # The photo repeated to the batch of the final check below: one compiled forward for both.
  batch = np.repeat(photo[None], len(layers), axis=0)
  targets = _activations(model, batch, ordered)
  targets = {layer: np.asarray(t[:1]) for layer, t in targets.items()}
  tv = regularizers.total_variation()
  parts = [
    obj_lib.inversion(layer, targets[layer]) - (tv_weight / (h * w * c)) * tv for layer in layers
  ]
  objective = obj_lib.stack(parts, [1] * len(layers))
  result = render_lib.render(
    model,
    objective,
    param=param,
    transforms=transforms.identity(),
    learning_rate=lr,
    steps=steps,
    size=h,
    batch=len(layers),
    seed=seed,
    redirect_relu_steps=0,
    progress_bar=progress_bar,
  )
  images = result.images
  mse, psnr = pixel_errors(images, photo)
  final = _activations(model, images, ordered)
  loss = np.array(
    [
      float(
        np.sum((np.asarray(final[layer][i]) - np.asarray(targets[layer][0])) ** 2)
        / max(float(np.sum(np.asarray(targets[layer][0]) ** 2)), 1e-12)
      )
      for i, layer in enumerate(layers)
    ]
  )
  return InversionResult(
    images,
    layers,
    mse,
    psnr,
    loss,
    result.compile_seconds + result.run_seconds,
    np.asarray(result.history),
  )


def figure(photo: np.ndarray, result: InversionResult, title: str, scale: int = 1) -> Image.Image:
  """The photo, then each layer's reconstruction captioned with its PSNR and feature loss."""
  items = [(photo, ["photo", ""])]
  items += [
    (image, [layer, f"{psnr:.1f} dB, loss {loss:.3f}"])
    for image, layer, psnr, loss in zip(result.images, result.layers, result.psnr, result.loss)
  ]
  return figures.panels(items, scale=scale, title=title)
