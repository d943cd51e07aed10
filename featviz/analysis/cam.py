"""Where in the photo is the evidence for a class: CAM, Grad-CAM, guided backprop, deconvnet.

All methods explain one class logit ``y_c`` (before the softmax, as the papers do)
per image; images and their classes are batched, and each method is one jitted
program.

- **CAM** (Zhou et al. 2016): for a network whose logits are a linear layer on the
  global average of a layer ``A (h, w, C)``, ``M_c(y, x) = sum_k W[k, c] A[y, x, k]``.
  Needs that head: ``featviz.zoo.heads``.
- **Grad-CAM** (Selvaraju et al. 2017), at any spatial layer: ``alpha_k = mean_{y,x}
  d y_c / d A[y, x, k]``, ``M_c = ReLU(sum_k alpha_k A[..., k])``. For a GAP + linear
  head ``d y_c / d A[y, x, k] = W[k, c] / (h w)``, so Grad-CAM is ``ReLU(CAM) / (h w)``.
- **Guided backprop** (Springenberg et al. 2015): ``d y_c / d image`` where every ReLU
  passes gradient back only where its input was positive *and* the gradient is
  positive. Swapped in through ``ops`` (:data:`GUIDED`), the model untouched.
- **Guided Grad-CAM**: guided backprop times the Grad-CAM map upsampled (bilinear)
  to the image.
- **Deconvnet** (Zeiler & Fergus 2014): every ReLU's backward pass applies a ReLU to
  the gradient and ignores the forward input (:data:`DECONVNET`); max pools keep their
  switches (which is what autodiff of a max pool does).

ReLU6 (EfficientNet) gets the same rules, with "input positive" read as "inside
(0, 6)" for guided backprop, where ReLU6 has slope 1.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from featviz.analysis import figures
from featviz.analysis.layer_grad import logit_grad_at_layer
from featviz.model import Model, default_ops
from featviz.nonlin import DECONVNET, GUIDED, STANDARD_OPS, Ops

METHODS = ("cam", "gradcam", "guided", "guided-gradcam", "deconvnet")
RULES = {"plain": STANDARD_OPS, "guided": GUIDED, "deconvnet": DECONVNET}


def rule_ops(rule: str) -> Ops:
  """The backward rule's ReLUs, with the default CPU rewrites (``model.default_ops``)."""
  return RULES[rule]._replace(rewrites=default_ops().rewrites)


# ---- the jitted computations -----------------------------------------------------------------


class LinearHead(NamedTuple):
  """A GAP + linear classifier: ``logits = mean_{y,x} A[layer] @ kernel + bias``."""

  layer: str
  kernel: Any  # (C, K)
  bias: Any  # (K,)


def _weighted_sum(acts: jax.Array, per_channel: jax.Array) -> jax.Array:
  """``(B, h, w, C)`` and ``(B, C)`` -> ``(B, h, w)``: ``sum_k w[b, k] A[b, y, x, k]``."""
  return jnp.einsum("bhwc,bc->bhw", acts, per_channel)


@functools.partial(jax.jit, static_argnums=2)
def _cam(model: Model, images, layer: str, kernel, classes):
  acts = model.activations(images, (layer, "logits"))
  return _weighted_sum(acts[layer], kernel[:, classes].T), acts["logits"]


def _grad_cam_core(model: Model, images, layer: str, classes):
  acts, grads, logits = logit_grad_at_layer(model, images, layer, classes)
  if acts.ndim != 4:
    raise ValueError(
      f"Grad-CAM needs a spatial layer (B, h, w, C); {layer!r} of {model.spec.name} is {acts.shape}"
    )
  alpha = grads.mean(axis=(1, 2))  # (B, C): Grad-CAM's channel weights
  return jax.nn.relu(_weighted_sum(acts, alpha)), logits


def _input_grad_core(model: Model, images, classes, rule: str):
  def score(x):
    logits = model.activations(x, ("logits",), ops=rule_ops(rule))["logits"]
    return jnp.sum(jnp.take_along_axis(logits, classes[:, None], axis=1)), logits

  return jax.grad(score, has_aux=True)(images)


_grad_cam = jax.jit(_grad_cam_core, static_argnums=2)
_input_grad = jax.jit(_input_grad_core, static_argnums=3)


@functools.partial(jax.jit, static_argnums=2)
def _guided_grad_cam(model: Model, images, layer: str, classes):
  maps, logits = _grad_cam_core(model, images, layer, classes)
  guided, _ = _input_grad_core(model, images, classes, "guided")
  b, h, w, _ = images.shape
  up = jax.image.resize(maps, (b, h, w), "linear")  # bilinear, as the Grad-CAM paper
  return guided * up[..., None], maps, logits


def _prepare(model: Model, images, classes):
  model.check_images(images)
  images = jnp.asarray(images, jnp.float32)
  classes = np.broadcast_to(np.asarray(classes), (images.shape[0],))
  for c in classes:
    model.spec.label_index(int(c))  # range check with a clear message
  return images, jnp.asarray(classes, jnp.int32)


def cam(model: Model, images, classes, head: LinearHead | tuple) -> tuple[np.ndarray, np.ndarray]:
  """Class activation maps.

  Args:
    model: a network whose ``logits`` are ``head`` applied to the mean of ``head.layer``.
    images: ``(B, H, W, C)`` in ``[0, 1]``.
    classes: one class index, or ``(B,)``.
    head: ``(layer, kernel (C, K), bias (K,))``, e.g. ``featviz.zoo.heads.linear_head``.

  Returns:
    ``(maps (B, h, w), logits (B, K))``; maps are raw (signed, no bias, not normalized).
  """
  layer, kernel, _ = head
  images, classes = _prepare(model, images, classes)
  model.spec.check_layer(layer)
  maps, logits = _cam(model, images, layer, jnp.asarray(kernel), classes)
  return np.asarray(maps), np.asarray(logits)


def grad_cam(model: Model, images, classes, layer: str) -> tuple[np.ndarray, np.ndarray]:
  """Grad-CAM at ``layer``: ``(maps (B, h, w) >= 0, logits (B, K))``, maps not normalized."""
  images, classes = _prepare(model, images, classes)
  model.spec.check_layer(layer)
  maps, logits = _grad_cam(model, images, layer, classes)
  return np.asarray(maps), np.asarray(logits)


def input_gradient(
  model: Model, images, classes, rule: str = "guided"
) -> tuple[np.ndarray, np.ndarray]:
  """``d y_c / d image`` with the ReLU backward ``rule``: "plain", "guided" or "deconvnet".

  Returns ``(gradients (B, H, W, C), logits (B, K))``; the gradient is with respect to
  the image in ``[0, 1]``.
  """
  if rule not in RULES:
    raise ValueError(f"rule must be one of {tuple(RULES)}, got {rule!r}")
  images, classes = _prepare(model, images, classes)
  grads, logits = _input_grad(model, images, classes, rule)
  return np.asarray(grads), np.asarray(logits)


def guided_grad_cam(model: Model, images, classes, layer: str):
  """``(guided backprop * upsampled Grad-CAM (B, H, W, C), Grad-CAM (B, h, w), logits)``."""
  images, classes = _prepare(model, images, classes)
  model.spec.check_layer(layer)
  out = _guided_grad_cam(model, images, layer, classes)
  return tuple(np.asarray(x) for x in out)


# ---- for display -----------------------------------------------------------------------------


def heat_for_display(maps: np.ndarray, method: str) -> np.ndarray:
  """``(B, h, w)`` -> ``[0, 1]`` per image, as each paper's code does.

  CAM: min-max (Zhou et al.'s ``returnCAM``: ``cam - min``, then ``/ max``).
  Grad-CAM (already ReLU'd): divided by its max (Selvaraju et al.'s code); an
  all-zero map stays 0.
  """
  if method == "cam":
    return figures.minmax(maps, axis=(1, 2))
  top = maps.max(axis=(1, 2), keepdims=True)
  return np.where(top > 0, maps / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)


def gradient_for_display(grads: np.ndarray) -> np.ndarray:
  """``(B, H, W, C)`` gradients -> images in ``[0, 1]``, per image.

  The Grad-CAM authors' ``deprocess_image``: subtract the mean, divide by the
  standard deviation (+ 1e-5), multiply by 0.1 (so one standard deviation is 10%
  of the range), add 0.5, clip to ``[0, 1]``.
  """
  g = np.asarray(grads, np.float32)
  axes = tuple(range(1, g.ndim))
  g = g - g.mean(axis=axes, keepdims=True)
  g = g / (g.std(axis=axes, keepdims=True) + 1e-5)
  return np.clip(0.5 + 0.1 * g, 0.0, 1.0)


@dataclasses.dataclass
class Explanation:
  """What :func:`explain` returns, for one method on a batch.

  Attributes:
    method: one of :data:`METHODS`.
    layer: the layer of CAM / Grad-CAM (None for pure gradient methods).
    pictures: ``(B, H, W, 3)`` in ``[0, 1]``: the heat map blended on the photo
      (cam, gradcam) or the gradient image (guided, guided-gradcam, deconvnet).
    heat: ``(B, h, w)`` in ``[0, 1]``, the CAM or Grad-CAM map (None for guided,
      deconvnet).
    raw: the method's unnormalized output, ``(B, h, w)`` or ``(B, H, W, C)``.
    logits: ``(B, K)``.
  """

  method: str
  layer: str | None
  pictures: np.ndarray
  heat: np.ndarray | None
  raw: np.ndarray
  logits: np.ndarray


def explain(
  model: Model,
  images,
  classes,
  method: str = "gradcam",
  layer: str | None = None,
  head: LinearHead | tuple | None = None,
  alpha: float = 0.5,
) -> Explanation:
  """Runs one of :data:`METHODS` and makes its display pictures.

  ``layer`` is needed for gradcam and guided-gradcam; ``head`` for cam.
  ``alpha`` is the heat map's weight in the overlay.
  """
  images = np.asarray(images, np.float32)
  if method == "cam":
    if head is None:
      raise ValueError(
        f"CAM needs a GAP + linear head; {model.spec.name} has none known (use gradcam)"
      )
    raw, logits = cam(model, images, classes, head)
    heat = heat_for_display(raw, "cam")
  elif method == "gradcam":
    raw, logits = grad_cam(model, images, classes, layer)
    heat = heat_for_display(raw, "gradcam")
  elif method == "guided-gradcam":
    raw, maps, logits = guided_grad_cam(model, images, classes, layer)
    heat = heat_for_display(maps, "gradcam")
  elif method in ("guided", "deconvnet"):
    raw, logits = input_gradient(model, images, classes, method)
    heat = None
  else:
    raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
  if method in ("cam", "gradcam"):
    pictures = np.stack([figures.overlay(x, h, alpha) for x, h in zip(images, heat)])
  else:
    pictures = np.stack([figures.to_rgb(g) for g in gradient_for_display(raw)])
  return Explanation(method, layer if method != "cam" else head[0], pictures, heat, raw, logits)
