"""Objectives: ``context -> one score per image``, maximized, composable.

An objective is a pytree. Its *data* (unit indices, vectors, targets, weights of
a sum) are leaves, traced by ``jit``; its *structure* (which layer, which kind)
is static. So ``channel("block10", jnp.arange(64))`` renders 64 images, each
maximizing its own channel, in one compiled program, and another 64 units reuse
that program without recompiling.

Objectives compose as Lucid's do (``lucid/optvis/objectives.py``): ``+``, ``-``,
``*`` and ``/`` by scalars, objective times objective, and :func:`sum_of`.
:func:`stack` puts different objectives on different images of one batch.

Every objective returns ``(B,)``. The total the optimizer ascends is the sum over
the batch; since every image has its own parameters, image ``b``'s gradient is
that of its own score, except for terms that couple the batch
(:func:`featviz.regularizers.diversity`, flagged ``couples_batch``).

Activations of every rank read through one view, :func:`featviz.model.as_map`: NHWC maps as
they are, ``(B, T, C)`` tokens as a ``1 x T`` map (a channel is the mean over tokens, a neuron
one token: ``neuron(layer, unit, token=0)`` is a ViT's CLS token) and ``(B, C)`` vectors as
``1 x 1`` (a channel is the value; a neuron takes no position).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz.model import UnitOutOfRangeError, as_map, layer_kind
from featviz.objective_algebra import (
  Constant,
  Context,
  Objective,
  Product,
  Stack,
  Sum,
  register,
  stack,
  sum_of,
)

Array = jax.Array

__all__ = [
  "ClassLogit",
  "Channel",
  "Constant",
  "Context",
  "DeepDream",
  "Direction",
  "Inversion",
  "Neuron",
  "Objective",
  "Product",
  "Stack",
  "Sum",
  "channel",
  "class_logit",
  "deepdream",
  "direction",
  "inversion",
  "neuron",
  "register",
  "stack",
  "sum_of",
]


def _spatial(acts: Array) -> Array:
  """Any activation as a ``(B, h, w, C)`` map (:func:`featviz.model.as_map`)."""
  return as_map(acts)


def _per_image(units: Array | None, batch: int) -> Array:
  return jnp.broadcast_to(units, (batch,))


def _units_array(units: Any, what: str = "unit") -> Array | np.ndarray:
  """Integer indices as given, int64: ``bind`` checks them against the layer and only then
  casts them to the loop's int32, so ``2**32 + 3`` is refused rather than wrapped to 3."""
  if isinstance(units, jax.core.Tracer):
    return units
  if isinstance(units, (int, list, tuple)):  # Python ints may not fit any NumPy integer
    big = [
      v
      for v in np.ravel(np.asarray(units, object))
      if isinstance(v, int) and not -(2**63) <= v < 2**63
    ]
    if big:
      raise UnitOutOfRangeError(
        f"{what} {big[0]} is out of range: no layer has that many "
        "channels (indices fit in 64 bits, -2**63 to 2**63 - 1)"
      )
  u = np.asarray(units)
  if u.dtype == np.uint64 and u.size and u.max() >= 2**63:
    raise UnitOutOfRangeError(
      f"{what} {int(u.max())} is out of range: no layer has that many "
      "channels (indices fit in 64 bits, -2**63 to 2**63 - 1)"
    )
  if u.dtype.kind not in "iu":
    raise TypeError(f"{what} indices must be integers, got {u.dtype}")
  if u.ndim > 1:
    raise ValueError(f"{what}s must be a scalar or a 1-D array, got shape {u.shape}")
  return u.astype(np.int64)


def _bound_int32(u: Any, batch: int) -> np.ndarray:
  """Indices checked to be in range, as the compiled loop's int32, one per image."""
  return np.broadcast_to(np.asarray(u).astype(np.int32), (batch,))


def _implied_batch(units: Any) -> int | None:
  shape = np.shape(units)
  return shape[0] if len(shape) == 1 else None


# ----------------------------------------------------------------------------- units


class _UnitsOfLayer(Objective):
  """An objective on ``units`` of one ``layer``: one image per unit when units is an array."""

  layer: str
  units: Any

  @property
  def layers(self):
    return frozenset([self.layer])

  @property
  def batch(self):
    return _implied_batch(self.units)


@register(data=["units"], meta=["layer"])
class Channel(_UnitsOfLayer):
  """Mean activation of channel ``units[b]`` of ``layer`` over all positions."""

  layer: str
  units: Any

  def score(self, ctx):
    acts = _spatial(ctx.acts[self.layer])
    mean = acts.mean(axis=(1, 2))  # (B, C)
    units = _per_image(self.units, acts.shape[0])
    return jnp.take_along_axis(mean, units[:, None], axis=1)[:, 0]

  def bind(self, spec, batch):
    spec.check_units(self.layer, self.units)
    return Channel(self.layer, _bound_int32(self.units, batch))

  def labels(self, batch):
    u = np.broadcast_to(np.asarray(self.units), (batch,))
    return [f"{self.layer}:{int(i)}" for i in u]


@register(data=["units", "x", "y"], meta=["layer"])
class Neuron(_UnitsOfLayer):
  """Activation of channel ``units[b]`` at one position (default: the centre).

  On a map, ``x`` is the column and ``y`` the row, as in Lucid's ``neuron``; the default centre
  is ``(W // 2, H // 2)`` of the layer. On tokens ``(B, T, C)``, ``x`` is the token and ``y`` is
  None (:func:`neuron`'s ``token=``); the default is token ``T // 2``. A ``(B, C)`` vector has
  no position: the neuron is the channel's value.
  """

  layer: str
  units: Any
  x: Any = None
  y: Any = None

  def score(self, ctx):
    acts = _spatial(ctx.acts[self.layer])
    b, h, w, _ = acts.shape
    x = _per_image(w // 2 if self.x is None else self.x, b)
    y = _per_image(h // 2 if self.y is None else self.y, b)
    units = _per_image(self.units, b)
    # The clip only keeps a traced index in bounds: check_shapes refuses a position outside.
    return acts[jnp.arange(b), jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1), units]

  def bind(self, spec, batch):
    spec.check_units(self.layer, self.units)
    for what, v in (("column", self.x), ("row", self.y)):  # int32 below; check_shapes: the map
      if v is not None and not isinstance(v, jax.core.Tracer):
        bad = [int(i) for i in np.ravel(v) if not 0 <= int(i) < 2**31]
        if bad:
          raise UnitOutOfRangeError(
            f"neuron {what} {bad[0]} of layer {self.layer!r} is outside "
            "any activation map (0 to 2**31 - 1)"
          )

    def bcast(v):
      return None if v is None else _bound_int32(v, batch)

    return Neuron(self.layer, bcast(self.units), bcast(self.x), bcast(self.y))

  def check_shapes(self, shapes):
    """Refuses a position outside the layer's map, or of the wrong kind: ``shapes[layer]`` is
    ``(B, H, W, C)`` (a row and a column), ``(B, T, C)`` (a token) or ``(B, C)`` (none), at the
    render's size, after the transforms and any input resize."""
    if self.x is None or self.layer not in shapes:
      return
    shape = tuple(shapes[self.layer])
    kind = layer_kind(shape)
    if kind == "vector":
      raise UnitOutOfRangeError(
        f"layer {self.layer!r} is a (B, C) vector {shape}: a neuron of it has no position; "
        f"write {self.layer}:UNIT (no @)"
      )
    if kind == "tokens" and self.y is not None:
      raise UnitOutOfRangeError(
        f"layer {self.layer!r} is a sequence of {shape[1]} tokens {shape}: give a token, "
        f"{self.layer}:UNIT@T with T in 0-{shape[1] - 1} (0 is a ViT's CLS token), not @X,Y"
      )
    if kind == "map" and self.y is None:
      raise UnitOutOfRangeError(
        f"layer {self.layer!r} is a {shape[1]}x{shape[2]} map {shape}: give a position "
        "@X,Y (column, row), not a token"
      )
    if kind == "tokens":
      bad = [int(i) for i in np.ravel(self.x) if not 0 <= int(i) < shape[1]]
      if bad and not isinstance(self.x, jax.core.Tracer):
        raise UnitOutOfRangeError(
          f"neuron token {bad[0]} is outside layer {self.layer!r}, which has {shape[1]} "
          f"tokens: give tokens 0-{shape[1] - 1}"
        )
      return
    h, w = shape[1:3]
    for what, v, n in (("column", self.x, w), ("row", self.y, h)):
      if isinstance(v, jax.core.Tracer):
        continue
      bad = [int(i) for i in np.ravel(v) if not 0 <= int(i) < n]
      if bad:
        raise UnitOutOfRangeError(
          f"neuron {what} {bad[0]} is outside layer {self.layer!r}, whose map is {h}x{w} at "
          f"this size: give columns 0-{w - 1} and rows 0-{h - 1} (@X,Y is column, row)"
        )

  def labels(self, batch):
    u = np.broadcast_to(np.asarray(self.units), (batch,))
    where = ""
    if self.x is not None:
      coords = (self.x,) if self.y is None else (self.x, self.y)
      where = "@" + ",".join(str(int(np.ravel(v)[0])) for v in coords)
    return [f"{self.layer}:{int(i)}{where}" for i in u]


@register(data=["vector"], meta=["layer", "cossim_pow"])
class Direction(Objective):
  """Lucid's ``direction``: mean over positions of ``dot(acts, v)``, times ``cos^p``.

  With ``cossim_pow = p > 0`` each position's dot product is multiplied by
  ``max(0.1, cos(acts, v)) ** p`` (Lucid's ``_dot_cossim``, eps 1e-4).
  ``vector`` is ``(C,)`` or ``(B, C)``.
  """

  layer: str
  vector: Any
  cossim_pow: float = 0.0

  def score(self, ctx):
    acts = _spatial(ctx.acts[self.layer])
    v = jnp.broadcast_to(jnp.asarray(self.vector, acts.dtype), (acts.shape[0], acts.shape[-1]))
    v = v[:, None, None, :]
    dot = jnp.sum(acts * v, axis=-1)
    if self.cossim_pow:
      # Lucid's _dot_cossim: eps 1e-4 in the norm product, cosine floored at 0.1.
      norms = jnp.linalg.norm(acts, axis=-1) * jnp.linalg.norm(v, axis=-1)
      cos = dot / (1e-4 + norms)
      dot = dot * jnp.maximum(0.1, cos) ** self.cossim_pow
    return dot.mean(axis=(1, 2))

  @property
  def layers(self):
    return frozenset([self.layer])

  @property
  def batch(self):
    shape = np.shape(self.vector)
    return shape[0] if len(shape) == 2 else None

  def bind(self, spec, batch):
    spec.check_layer(self.layer)
    v = np.asarray(self.vector, np.float32)
    if v.shape[-1] != spec.layers[self.layer]:
      raise ValueError(
        f"direction vector has {v.shape[-1]} entries but layer {self.layer!r} has "
        f"{spec.layers[self.layer]} channels"
      )
    return Direction(self.layer, v, self.cossim_pow)

  def labels(self, batch):
    return [f"direction:{self.layer}"] * batch


@register(data=["index"], meta=["label"])
class ClassLogit(Objective):
  """The logit of a class, given by index or by name (resolved against the model)."""

  label: Any
  index: Any = None

  def score(self, ctx):
    logits = ctx.acts["logits"].reshape(ctx.batch, -1)
    index = _per_image(self.index, ctx.batch)
    return jnp.take_along_axis(logits, index[:, None], axis=1)[:, 0]

  @property
  def layers(self):
    return frozenset(["logits"])

  @property
  def batch(self):
    if self.index is not None:
      return _implied_batch(self.index)
    return None if isinstance(self.label, str) else _implied_batch(self.label)

  def bind(self, spec, batch):
    spec.check_layer("logits")
    scalar = isinstance(self.label, str) or np.ndim(self.label) == 0
    labels = [self.label] if isinstance(self.label, str) else np.ravel(self.label).tolist()
    index = np.asarray([spec.label_index(x) for x in labels], np.int32)
    index = index[0] if scalar else index
    label = self.label if isinstance(self.label, str) else tuple(labels)
    return ClassLogit(label, np.broadcast_to(index, (batch,)))

  def labels(self, batch):
    if self.index is None:  # not bound yet: show what the user wrote
      names = [self.label] if isinstance(self.label, str) else np.ravel(self.label).tolist()
      return [f"logit:{x}" for x in np.broadcast_to(np.asarray(names, object), (batch,))]
    return [f"logit:{int(i)}" for i in np.broadcast_to(np.asarray(self.index), (batch,))]


@register(data=[], meta=["layer"])
class DeepDream(Objective):
  """Mean squared activation of ``layer`` (Lucid's ``deepdream``)."""

  layer: str

  def score(self, ctx):
    acts = ctx.acts[self.layer]
    return jnp.mean(acts.reshape(acts.shape[0], -1) ** 2, axis=1)

  @property
  def layers(self):
    return frozenset([self.layer])

  def bind(self, spec, batch):
    spec.check_layer(self.layer)
    return self

  def labels(self, batch):
    return [f"deepdream:{self.layer}"] * batch


@register(data=["target"], meta=["layer"])
class Inversion(Objective):
  """Representation inversion (Mahendran and Vedaldi, 2015): match target activations.

  Score ``-||a - t||^2 / ||t||^2`` per image (their normalized loss), ``t`` the
  target activations ``(1 or B, h, w, C)``. When the transforms change the
  spatial size, ``t`` is resized bilinearly to the activations' size.
  """

  layer: str
  target: Any

  def score(self, ctx):
    acts = _spatial(ctx.acts[self.layer])
    t = _spatial(jnp.asarray(self.target, acts.dtype))
    if t.shape[1:3] != acts.shape[1:3]:
      t = jax.image.resize(t, t.shape[:1] + acts.shape[1:3] + t.shape[3:], "linear")
    t = jnp.broadcast_to(t, acts.shape)
    err = jnp.sum((acts - t) ** 2, axis=(1, 2, 3))
    return -err / (jnp.sum(t**2, axis=(1, 2, 3)) + 1e-12)

  @property
  def layers(self):
    return frozenset([self.layer])

  @property
  def batch(self):
    n = np.shape(self.target)[0]
    return n if n > 1 else None

  def bind(self, spec, batch):
    spec.check_layer(self.layer)
    t = np.asarray(self.target, np.float32)
    if t.shape[-1] != spec.layers[self.layer]:
      raise ValueError(
        f"inversion target has {t.shape[-1]} channels; layer {self.layer!r} "
        f"has {spec.layers[self.layer]}"
      )
    return Inversion(self.layer, t)

  def labels(self, batch):
    return [f"invert:{self.layer}"] * batch


# ----------------------------------------------------------------------------- constructors


def channel(layer: str, unit: Any) -> Channel:
  """Mean activation of channel ``unit`` (an int or a ``(B,)`` array, one per image)."""
  return Channel(layer, _units_array(unit))


def neuron(layer: str, unit: Any, x: Any = None, y: Any = None, *, token: Any = None) -> Neuron:
  """Activation of channel ``unit`` at column ``x``, row ``y`` of a map (default: the centre),
  or at ``token`` of a ``(B, T, C)`` sequence (0 is a ViT's CLS token; default ``T // 2``)."""
  if token is not None:
    if x is not None or y is not None:
      raise ValueError("give a neuron a token or a position x, y, not both")
    return Neuron(layer, _units_array(unit), _units_array(token, "token"), None)
  if (x is None) != (y is None):
    raise ValueError("give both x and y of a neuron, or neither (the centre)")
  if x is not None:
    x, y = _units_array(x, "position"), _units_array(y, "position")
  return Neuron(layer, _units_array(unit), x, y)


def direction(layer: str, vector: Any, cossim_pow: float = 0.0) -> Direction:
  """Activation along ``vector`` (``(C,)`` or one per image ``(B, C)``)."""
  return Direction(layer, np.asarray(vector, np.float32), float(cossim_pow))


def class_logit(label: int | str | Sequence[int]) -> ClassLogit:
  """The logit of a class given by index (or ``(B,)`` indices) or by name."""
  return ClassLogit(label if isinstance(label, str) else _units_array(label))


def deepdream(layer: str) -> DeepDream:
  """DeepDream: mean of the squared activations of ``layer``."""
  return DeepDream(layer)


def inversion(layer: str, target: Any) -> Inversion:
  """Match target activations ``(1 or B, h, w, C)`` of ``layer`` (feature inversion)."""
  return Inversion(layer, np.asarray(target, np.float32))
