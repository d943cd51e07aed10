"""Attribution between layers: how much each position or channel of layer A feeds a target.

Olah et al., "The Building Blocks of Interpretability", Distill 2018, section "What Does the
Network See?" / "How Are Concepts Assembled?": for one photo, the attribution of layer A's
activations ``A (h, w, C)`` to a target ``y`` (a class logit, or the mean of a channel of a
later layer B) is gradient x activation,

    attr[p, c] = dy/dA[p, c] * A[p, c],

read as a **spatial map** (summed over channels, ``(h, w)``), per **channel** (summed over
positions, ``(C,)``) or per **neuron group** (:mod:`featviz.analysis.neuron_groups`: with
``A ~ sum_k m_k h_k``, a map ``m_k (h, w)`` times a direction ``h_k (C,)``, group ``k`` gets
``sum_p dy/dA[p] . m_k[p] h_k``; the groups sum to the attribution of the reconstruction).

The total ``sum_{p,c} attr[p, c]`` is the first-order change of ``y`` when A is scaled by
``1 + eps``: ``y(A (1 + eps)) - y(A) ~ eps * sum(attr)`` (Taylor; exact for a network that is
linear above A). The gradient comes from :mod:`featviz.analysis.layer_grad`'s tap on A, so the
layers above A see the changed activations exactly as the model computes them.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from featviz.analysis import figures
from featviz.analysis.layer_grad import tapped_activations
from featviz.model import Model, as_map


class TargetError(ValueError):
  """A target that is not above the attributed layer, or not of the right kind."""


@dataclasses.dataclass(frozen=True)
class Target:
  """What is explained: ``Target("logits", k)`` a class logit, or the spatial mean of channel
  ``k`` of a later layer ``Target(layer, k)``."""

  layer: str
  index: int

  def describe(self, model: Model) -> str:
    if self.layer == "logits":
      return f"logit {self.index} ({model.spec.labels[self.index]})"
    return f"{self.layer}:{self.index} (channel mean)"


def parse_unit(text: str) -> Target:
  """``"block15:7"`` -> ``Target("block15", 7)``."""
  match = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*:\s*(\d+)\s*", text)
  if not match:
    raise TargetError(f"a unit is LAYER:CHANNEL, e.g. block15:7; got {text!r}")
  return Target(match.group(1), int(match.group(2)))


def _score(out, layer: str, index):
  return as_map(out[layer]).mean(axis=(1, 2))[:, index]  # a map's, tokens' or vector's channel


@functools.partial(jax.jit, static_argnums=(2, 3))
def _attribute(model: Model, images, layer: str, target_layer: str, index):
  f, shape = tapped_activations(model, images, layer, (layer, target_layer))

  def score(delta):
    out = f(delta)
    y = _score(out, target_layer, index)
    return jnp.sum(y), (out[layer], y)

  grads, (acts, y) = jax.grad(score, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
  return acts, grads, y


@functools.partial(jax.jit, static_argnums=(2, 3))
def _scaled_target(model: Model, images, layer: str, target_layer: str, index, eps):
  """``y`` with layer A's activations replaced by ``A * (1 + eps)``, through the model."""
  f, shape = tapped_activations(model, images, layer, (layer, target_layer))
  acts = f(jnp.zeros(shape.shape, shape.dtype))[layer]
  return _score(f(eps * acts), target_layer, index)


def _check(model: Model, image, layer: str, target: Target) -> np.ndarray:
  image = np.asarray(image, np.float32)
  model.check_images(image[None])
  spec = model.spec
  spec.check_layer(layer)
  spec.check_layer(target.layer)
  order = list(spec.layers)
  if order.index(target.layer) <= order.index(layer):
    raise TargetError(
      f"the target's layer {target.layer!r} must come after {layer!r} in the network; later "
      f"layers: {', '.join(order[order.index(layer) + 1 :]) or 'none'}"
    )
  spec.check_units(target.layer, [target.index])
  return image


@dataclasses.dataclass
class Attribution:
  """What :func:`attribute` returns, for one photo.

  Attributes:
    layer, target: layer A and what is explained.
    acts, grads: ``(h, w, C)`` A and ``dy/dA`` (or ``(C,)`` for a flat layer).
    value: the target ``y`` on the photo.
  """

  layer: str
  target: Target
  acts: np.ndarray
  grads: np.ndarray
  value: float

  @property
  def attr(self) -> np.ndarray:
    """gradient x activation, shaped like ``acts``."""
    return self.grads * self.acts

  @property
  def spatial(self) -> np.ndarray:
    """``(h, w)``: summed over channels."""
    return self.attr.sum(axis=-1)

  @property
  def channels(self) -> np.ndarray:
    """``(C,)``: summed over positions."""
    return self.attr.reshape(-1, self.attr.shape[-1]).sum(axis=0)

  @property
  def total(self) -> float:
    return float(self.attr.sum())

  def groups(self, maps: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``(K,)``: each neuron group's share, ``sum_p grads[p] . maps[p, k] directions[k]``."""
    g = self.grads.reshape(-1, self.grads.shape[-1]).astype(np.float64)
    m = np.asarray(maps, np.float64).reshape(-1, maps.shape[-1])
    return np.einsum("pc,pk,kc->k", g, m, np.asarray(directions, np.float64))


def attribute(model: Model, image: np.ndarray, layer: str, target: Target) -> Attribution:
  """Gradient x activation of ``layer`` for ``target`` on one photo ``(H, W, C)`` in [0, 1]."""
  image = _check(model, image, layer, target)
  acts, grads, y = _attribute(model, image[None], layer, target.layer, jnp.int32(target.index))
  return Attribution(layer, target, np.asarray(acts[0]), np.asarray(grads[0]), float(y[0]))


def scaled_target(model: Model, image: np.ndarray, layer: str, target: Target, eps: float):
  """The target with ``layer``'s activations scaled by ``1 + eps`` (the finite difference)."""
  image = _check(model, image, layer, target)
  y = _scaled_target(
    model, image[None], layer, target.layer, jnp.int32(target.index), jnp.float32(eps)
  )
  return float(y[0])


def figure(
  photo: np.ndarray,
  result: Attribution,
  title: str,
  target_text: str,
  top: int = 10,
  group_values: np.ndarray | None = None,
  group_tiles: np.ndarray | None = None,
) -> Image.Image:
  """The photo, where the attribution is positive and negative on it, and bar charts.

  ``target_text`` names the target (:meth:`Target.describe`).
  The maps are each scaled by the largest ``|spatial|``, so their brightness compares. The
  bars are the ``top`` channels by ``|attribution|`` (and every group, when given), each as a
  fraction of the largest, its signed value printed beside its name.
  """
  s = result.spatial
  scale = float(np.abs(s).max()) or 1.0
  items = [
    (photo, ["photo"]),
    (figures.overlay(photo, np.maximum(s, 0) / scale), ["positive (for)"]),
    (figures.overlay(photo, np.maximum(-s, 0) / scale), ["negative (against)"]),
  ]
  ch = result.channels
  order = np.argsort(-np.abs(ch), kind="stable")[:top]
  big = float(np.abs(ch[order]).max()) or 1.0
  charts = [
    figures.bar_chart(
      [f"ch {i} ({ch[i]:+.3g})" for i in order],
      [abs(ch[i]) / big for i in order],
      title=f"top {len(order)} channels by |attribution| (of the largest)",
      fmt="{:.0%}",
    )
  ]
  if group_values is not None:
    gbig = float(np.abs(group_values).max()) or 1.0
    charts.append(
      figures.bar_chart(
        [f"group {k} ({v:+.3g})" for k, v in enumerate(group_values)],
        [abs(v) / gbig for v in group_values],
        title="neuron groups by |attribution|",
        fmt="{:.0%}",
      )
    )
  parts = [
    figures.text_block(
      [
        f"gradient x activation of {result.layer} {result.acts.shape} for "
        f"{target_text}: value {result.value:.4g}, attribution total "
        f"{result.total:.4g}",
      ],
      0,
      title=title,
    ),
    figures.panels(items),
    figures.panels([(c, []) for c in charts]),
  ]
  if group_tiles is not None:
    parts.append(figures.panels([(t, [f"group {k}"]) for k, t in enumerate(group_tiles)]))
  return figures.stack(parts)
