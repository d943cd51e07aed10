"""Neuron groups: a photo's activations factorized into a few directions, each rendered.

Olah et al., "The Building Blocks of Interpretability", Distill 2018, section "Making Sense of
Combinations": a layer's activations for one photo, ``A (h, w, C)``, read as ``h * w`` vectors
of ``C`` channels, are factorized by non-negative matrix factorization (NMF),

    A.reshape(h * w, C) ~ W @ H,   W (h * w, K) >= 0,   H (K, C) >= 0,

so that each of the ``K`` *groups* is a direction in channel space (a row of ``H``) and a map of
where in the photo it is present (a column of ``W``, reshaped to ``h x w``). Each direction is
then rendered with Lucid's ``direction`` objective, all ``K`` in one batch of one compiled
:func:`featviz.render` call (Lucid's notebook renders ``direction(layer, H[i], batch=i)``).

NMF needs non-negative data. A ReLU layer is; EfficientNet's block outputs are linear (signed).
For a signed layer the positive and negative parts are factorized side by side,
``[max(A, 0), max(-A, 0)] ~ W @ [H+, H-]`` (``2C`` non-negative columns), and a group's direction
is ``H+ - H-``: its map stays non-negative and ``A ~ W @ (H+ - H-)``.

The NMF is scikit-learn's (coordinate descent, NNDSVDa initialization: deterministic).
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools

import jax
import numpy as np
from PIL import Image

from featviz import objectives
from featviz._loop import api as render_api
from featviz._loop.config import RenderConfig
from featviz.analysis import figures
from featviz.model import Model

# scikit-learn's NMF stops at this relative change of its loss or after NMF_ITERATIONS sweeps;
# its defaults are 1e-4 and 200, and 200 sweeps leave a 14 x 14 x 112 layer short of converged.
NMF_TOLERANCE = 1e-4
NMF_ITERATIONS = 1000
# Lucid's notebook renders its groups at 80 px; 112 px shows a little more of each.
RENDER_SIZE = 112


class GroupsError(ValueError):
  """A number of groups the activations cannot have (the message names the valid range)."""


@dataclasses.dataclass
class Factorization:
  """``acts (N, C) ~ spatial @ directions``.

  Attributes:
    spatial: ``(N, K)`` non-negative: how much of each group is at each row (position).
    directions: ``(K, C)``: each group's direction in channel space, unit length (signed for a
      signed layer). Groups are sorted by their total spatial weight, largest first.
    error: the relative reconstruction error ``|acts - spatial @ directions|_F / |acts|_F``.
    signed: whether the positive and negative parts were factorized side by side.
    iterations: the NMF's coordinate-descent sweeps.
  """

  spatial: np.ndarray
  directions: np.ndarray
  error: float
  signed: bool
  iterations: int


def factorize(
  acts: np.ndarray, groups: int, seed: int = 0, iterations: int = NMF_ITERATIONS
) -> Factorization:
  """NMF of ``acts (N, C)`` into ``groups`` non-negative factors (see the module docstring).

  Raises:
    GroupsError: ``groups`` outside ``1 .. min(N, C)``.
  """
  from sklearn.decomposition import NMF  # scikit-learn is heavy to import; only here

  x = np.asarray(acts, np.float64)
  if x.ndim != 2:
    raise ValueError(f"factorize takes activations as (positions, channels); got {x.shape}")
  n, c = x.shape
  if not 1 <= groups <= min(n, c):
    raise GroupsError(
      f"groups must be from 1 to min(positions, channels) = {min(n, c)}; got {groups}"
    )
  signed = bool(np.any(x < 0))
  data = np.concatenate([np.maximum(x, 0), np.maximum(-x, 0)], 1) if signed else x
  nmf = NMF(
    n_components=groups,
    init="nndsvda",
    max_iter=iterations,
    tol=NMF_TOLERANCE,
    random_state=seed,
  )
  w = nmf.fit_transform(data)
  h = nmf.components_
  h = h[:, :c] - h[:, c:] if signed else h
  norms = np.linalg.norm(h, axis=1)
  norms = np.where(norms > 0, norms, 1.0)
  w, h = w * norms, h / norms[:, None]  # unit directions; the product is unchanged
  order = np.argsort(-w.sum(axis=0), kind="stable")
  w, h = w[:, order], h[order]
  total = np.linalg.norm(x)
  error = float(np.linalg.norm(x - w @ h) / total) if total > 0 else 0.0
  return Factorization(w, h, error, signed, int(nmf.n_iter_))


@functools.partial(jax.jit, static_argnums=2)
def _layer(model: Model, images, layer: str):
  return model.activations(images, (layer,))[layer]


def layer_activations(model: Model, image: np.ndarray, layer: str) -> np.ndarray:
  """A spatial layer's activations ``(h, w, C)`` for one photo ``(H, W, 3)`` in [0, 1]."""
  image = np.asarray(image, np.float32)
  model.check_images(image[None])
  model.spec.check_layer(layer)
  acts = np.asarray(_layer(model, image[None], layer))[0]
  if acts.ndim != 3:
    raise ValueError(
      f"neuron groups need a spatial layer (h, w, C); {layer!r} of {model.spec.name} is flat "
      f"{acts.shape}"
    )
  return acts


@dataclasses.dataclass
class NeuronGroups:
  """What :func:`neuron_groups` returns.

  Attributes:
    layer: the layer factorized.
    acts: ``(h, w, C)`` the photo's activations there.
    maps: ``(h, w, K)`` each group's spatial factor (non-negative).
    directions: ``(K, C)`` each group's unit direction.
    error: relative reconstruction error of the NMF.
    signed: the layer had negative values (see the module docstring).
    renders: ``(K, S, S, 3)`` each direction rendered, in [0, 1].
    scores: ``(K,)`` each render's final direction objective.
    seconds: render time, compile included.
  """

  layer: str
  acts: np.ndarray
  maps: np.ndarray
  directions: np.ndarray
  error: float
  signed: bool
  renders: np.ndarray
  scores: np.ndarray
  seconds: float


def neuron_groups(
  model: Model,
  image: np.ndarray,
  layer: str,
  groups: int = 6,
  config: RenderConfig | None = None,
  *,
  seed: int = 0,
  progress_bar: bool = False,
  **overrides,
) -> NeuronGroups:
  """Factorizes ``image``'s activations at ``layer`` into ``groups`` and renders each.

  Args:
    model: the network.
    image: one photo ``(H, W, C)`` in [0, 1] (``featviz.photos.load_image``).
    layer: a spatial layer.
    groups: the number of NMF factors ``K`` (Lucid's notebook: 6).
    config: the render settings (None: Lucid's, at :data:`RENDER_SIZE` px).
    seed: the render's seed (the NMF is deterministic).
    progress_bar: show the render's progress bar.
    **overrides: fields of :class:`featviz.RenderConfig` (``steps=``, ``size=``, ...).

  All ``K`` directions are one batch of one compiled render: another photo with the same
  ``K`` reuses the program.
  """
  acts = layer_activations(model, image, layer)
  h, w, c = acts.shape
  fact = factorize(acts.reshape(h * w, c), groups)
  if config is None:
    config = RenderConfig(size=RENDER_SIZE)
  result = render_api.render(
    model,
    objectives.direction(layer, fact.directions.astype(np.float32)),
    config,
    seed=seed,
    progress_bar=progress_bar,
    **overrides,
  )
  history = np.asarray(result.history)
  return NeuronGroups(
    layer,
    acts,
    fact.spatial.reshape(h, w, groups),
    fact.directions,
    fact.error,
    fact.signed,
    np.asarray(result.images),
    history[-1] if len(history) else np.zeros(groups),
    result.compile_seconds + result.run_seconds,
  )


# ---- the figure ------------------------------------------------------------------------------


def colours(k: int) -> np.ndarray:
  """``k`` colours ``(k, 3)`` in [0, 1]: hues evenly around the colour wheel, full saturation."""
  return np.array([colorsys.hsv_to_rgb(i / k, 0.85, 1.0) for i in range(k)], np.float32)


def _resize(image: np.ndarray, side: int) -> np.ndarray:
  pil = Image.fromarray(np.clip(np.rint(figures.to_rgb(image) * 255), 0, 255).astype(np.uint8))
  return np.asarray(pil.resize((side, side), Image.BICUBIC), np.float32) / 255.0


def tint(photo: np.ndarray, heat: np.ndarray, colour: np.ndarray) -> np.ndarray:
  """The photo, dimmed to 25% where ``heat (h, w)`` in [0, 1] is 0, ``colour`` where it is 1."""
  rgb = figures.to_rgb(photo)
  a = figures.resize_map(heat, rgb.shape[:2])[..., None]
  return (1.0 - a) * 0.25 * rgb + a * (0.35 * rgb + 0.65 * colour)


def combined(photo: np.ndarray, maps: np.ndarray) -> np.ndarray:
  """Every group at once: each position takes the colours of the groups there, by weight."""
  k = maps.shape[-1]
  top = float(maps.max()) or 1.0
  weights = maps / top  # (h, w, K) in [0, 1]
  total = weights.sum(axis=-1, keepdims=True)
  colour = weights @ colours(k) / np.where(total > 0, total, 1.0)
  alpha = weights.max(axis=-1)
  rgb = figures.to_rgb(photo)
  size = rgb.shape[:2]
  colour = np.stack([figures.resize_map(colour[..., i], size) for i in range(3)], -1)
  a = figures.resize_map(alpha, size)[..., None]
  return (1.0 - a) * 0.25 * rgb + a * (0.35 * rgb + 0.65 * colour)


def figure(
  photo: np.ndarray, result: NeuronGroups, title: str, photo_name: str = "photo"
) -> Image.Image:
  """The photo and all groups' maps, then per group: its map on the photo over its render.

  Each group's map is scaled by its own maximum; its caption gives its share of the total
  spatial weight.
  """
  k = result.maps.shape[-1]
  side = result.renders.shape[1]
  cols = colours(k)
  share = result.maps.sum(axis=(0, 1)) / max(float(result.maps.sum()), 1e-12)
  top = figures.panels(
    [
      (_resize(photo, 2 * side), [photo_name]),
      (_resize(combined(photo, result.maps), 2 * side), ["all groups, by colour"]),
    ]
  )
  maps = []
  for i in range(k):
    m = result.maps[..., i]
    heat = m / (float(m.max()) or 1.0)
    maps.append((_resize(tint(photo, heat, cols[i]), side), [f"group {i}: {share[i]:.0%}"]))
  renders = [(r, [f"render {i}"]) for i, r in enumerate(result.renders)]
  heading = figures.text_block(
    [
      f"NMF of {result.layer} ({result.acts.shape[0]} x {result.acts.shape[1]} positions, "
      f"{result.acts.shape[2]} channels{', signed: [A+, A-]' if result.signed else ''}) into "
      f"{k} groups, reconstruction error {result.error:.1%}",
      "each group's direction rendered (Lucid's direction objective), all in one batch",
    ],
    0,
    title=title,
  )
  return figures.stack([heading, top, figures.panels(maps), figures.panels(renders)])
