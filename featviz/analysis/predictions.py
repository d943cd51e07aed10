"""What the model says: softmax probabilities, the top-k classes and their names."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from featviz.model import Model, ModelSpec


def label_name(spec: ModelSpec, index: int) -> str:
  """Class ``index``'s name from the spec, or ``"class 123"`` when the spec has no names."""
  index = int(index)
  if 0 <= index < len(spec.labels):
    return spec.labels[index]
  return f"class {index}"


@functools.partial(jax.jit, static_argnums=2)
def _top(model: Model, images: jax.Array, k: int):
  logits = model.activations(images, ("logits",))["logits"]
  probs = jax.nn.softmax(logits, axis=-1)
  top_p, top_i = jax.lax.top_k(probs, k)
  return probs, top_p, top_i


def probabilities(model: Model, images) -> np.ndarray:
  """Softmax of the logits: ``(B, K)`` for images ``(B, H, W, C)`` in ``[0, 1]``."""
  model.check_images(images)
  return np.asarray(_top(model, jnp.asarray(images, jnp.float32), 1)[0])


def top_classes(model: Model, images, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """The ``k`` most probable classes per image: ``(probs (B, k), indices (B, k))``, best first."""
  model.check_images(images)
  n = model.spec.layers["logits"]
  k = max(1, min(int(k), n))
  _, top_p, top_i = _top(model, jnp.asarray(images, jnp.float32), k)
  return np.asarray(top_p), np.asarray(top_i)


def class_text(spec: ModelSpec, index: int) -> str:
  """``"1 goldfish"``; just ``"7"`` when the name is the index itself (mnist's digits)."""
  name = label_name(spec, index)
  return str(int(index)) if name == str(int(index)) else f"{int(index)} {name}"


def describe(spec: ModelSpec, probs: Sequence[float], indices: Sequence[int]) -> list[str]:
  """One line per class: ``"1 goldfish 0.912"`` (index, name, probability)."""
  return [f"{class_text(spec, i)} {float(p):.3f}" for p, i in zip(probs, indices)]


def resolve_class(spec: ModelSpec, text: str | int) -> int:
  """A class given as an index (``"1"``, ``1``) or a label name (``"goldfish"``) -> index.

  Raises ``UnitOutOfRangeError`` / ``UnknownLabelError`` (both ``ValueError``s) with the
  valid choices.
  """
  if isinstance(text, str) and text.strip().lstrip("-").isdigit():
    return spec.label_index(int(text))
  return spec.label_index(text)
