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

Spatial activations are NHWC; flat ones ``(B, C)`` are treated as ``1 x 1``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from featviz.model import ModelSpec

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Context:
  """What an objective sees: activations of the transformed image, and the image.

  Attributes:
    acts: ``{layer: activations}`` of the network on the transformed images.
    image: the parameterized images ``(B, H, W, C)`` in ``[0, 1]`` before the
      transforms (Lucid's ``T("input")``), for regularizers.
  """

  acts: dict[str, Array]
  image: Array

  @property
  def batch(self) -> int:
    return self.image.shape[0]

  def slice(self, start: int, stop: int) -> "Context":
    return Context({k: v[start:stop] for k, v in self.acts.items()}, self.image[start:stop])


def _spatial(acts: Array) -> Array:
  """``(B, C)`` -> ``(B, 1, 1, C)``; NHWC unchanged."""
  return acts[:, None, None, :] if acts.ndim == 2 else acts


def _per_image(units: Array | None, batch: int) -> Array:
  return jnp.broadcast_to(units, (batch,))


class Objective:
  """Base class. Subclasses are pytree dataclasses implementing ``score``."""

  def score(self, ctx: Context) -> Array:
    raise NotImplementedError

  def __call__(self, ctx: Context) -> Array:
    return self.score(ctx)

  @property
  def layers(self) -> frozenset[str]:
    """Network layers this objective reads ("input" is the image, not a layer)."""
    return frozenset()

  @property
  def batch(self) -> int | None:
    """The batch size the objective's units imply, or None for any."""
    return None

  @property
  def couples_batch(self) -> bool:
    return False

  def bind(self, spec: ModelSpec, batch: int) -> "Objective":
    """Checks layers and units against ``spec`` and broadcasts unit data to ``batch``."""
    return self

  def labels(self, batch: int) -> list[str]:
    """A short label per image, e.g. ``"block10:5"``."""
    return [self.name] * batch

  @property
  def name(self) -> str:
    return type(self).__name__

  # ----- algebra -----
  def __add__(self, other: Any) -> "Objective":
    return sum_of([self, _as_objective(other)])

  def __radd__(self, other: Any) -> "Objective":
    if isinstance(other, (int, float)) and other == 0:  # builtin sum() starts at 0
      return self
    return sum_of([_as_objective(other), self])

  def __neg__(self) -> "Objective":
    return Sum((self,), (-1.0,))

  def __sub__(self, other: Any) -> "Objective":
    return self + (-_as_objective(other))

  def __rsub__(self, other: Any) -> "Objective":
    return _as_objective(other) + (-self)

  def __mul__(self, other: Any) -> "Objective":
    if isinstance(other, Objective):
      return Product(self, other)
    return Sum((self,), (_scalar(other),))

  __rmul__ = __mul__

  def __truediv__(self, other: Any) -> "Objective":
    if isinstance(other, Objective):
      raise TypeError("an objective can be divided by a scalar only")
    return Sum((self,), (1.0 / _scalar(other),))


def _scalar(x: Any) -> float:
  if isinstance(x, (int, float, np.floating, np.integer)):
    return float(x)
  raise TypeError(f"objectives combine with scalars and objectives, not {type(x).__name__}")


def _as_objective(x: Any) -> Objective:
  if isinstance(x, Objective):
    return x
  return Constant(_scalar(x))


def register(*, data: Sequence[str] = (), meta: Sequence[str] = ()):
  """Makes an :class:`Objective` subclass a frozen dataclass and a pytree.

  ``data`` fields (unit indices, vectors, targets) are traced, so new values reuse
  the compiled loop; ``meta`` fields (layer names) are static. A custom objective::

    @objectives.register(meta=["layer"])
    class MeanSquare(objectives.Objective):
      layer: str
      def score(self, ctx):
        return (ctx.acts[self.layer] ** 2).mean(axis=(1, 2, 3))
      @property
      def layers(self):
        return frozenset([self.layer])
  """

  def wrap(cls):
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)
    return jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=list(meta))

  return wrap


def _units_array(units: Any) -> Array | np.ndarray:
  if isinstance(units, jax.core.Tracer):
    return units
  u = np.asarray(units)
  if u.dtype.kind not in "iu":
    raise TypeError(f"unit indices must be integers, got {u.dtype}")
  if u.ndim > 1:
    raise ValueError(f"units must be a scalar or a 1-D array, got shape {u.shape}")
  return u.astype(np.int32)


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
    return Channel(self.layer, np.broadcast_to(np.asarray(self.units, np.int32), (batch,)))

  def labels(self, batch):
    u = np.broadcast_to(np.asarray(self.units), (batch,))
    return [f"{self.layer}:{int(i)}" for i in u]


@register(data=["units", "x", "y"], meta=["layer"])
class Neuron(_UnitsOfLayer):
  """Activation of channel ``units[b]`` at one position ``(x, y)`` (default: the centre).

  ``x`` is the column and ``y`` the row, as in Lucid's ``neuron``; the default
  centre is ``(W // 2, H // 2)`` of the layer.
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
    return acts[jnp.arange(b), jnp.clip(y, 0, h - 1), jnp.clip(x, 0, w - 1), units]

  def bind(self, spec, batch):
    spec.check_units(self.layer, self.units)

    def bcast(v):
      return None if v is None else np.broadcast_to(np.asarray(v, np.int32), (batch,))

    return Neuron(self.layer, bcast(self.units), bcast(self.x), bcast(self.y))

  def labels(self, batch):
    u = np.broadcast_to(np.asarray(self.units), (batch,))
    where = "" if self.x is None else "@" + ",".join(
        str(int(np.ravel(v)[0])) for v in (self.x, self.y))
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
          f"{spec.layers[self.layer]} channels")
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
    return -err / (jnp.sum(t ** 2, axis=(1, 2, 3)) + 1e-12)

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
      raise ValueError(f"inversion target has {t.shape[-1]} channels; layer {self.layer!r} "
                       f"has {spec.layers[self.layer]}")
    return Inversion(self.layer, t)

  def labels(self, batch):
    return [f"invert:{self.layer}"] * batch


# ----------------------------------------------------------------------------- algebra


@register(data=["value"])
class Constant(Objective):
  value: Any

  def score(self, ctx):
    return jnp.full((ctx.batch,), self.value, jnp.float32)

  def labels(self, batch):
    return [f"{self.value:g}"] * batch


@register(data=["terms", "weights"])
class Sum(Objective):
  """``sum_i weights[i] * terms[i]``. Terms are static, weights are data."""

  terms: tuple
  weights: tuple

  def __post_init__(self):
    self.batch  # terms over different numbers of units cannot be summed: fail here, early

  def score(self, ctx):
    return sum(w * t.score(ctx) for w, t in zip(self.weights, self.terms))

  @property
  def layers(self):
    return frozenset().union(*(t.layers for t in self.terms))

  @property
  def batch(self):
    return _common_batch([t.batch for t in self.terms])

  @property
  def couples_batch(self):
    return any(t.couples_batch for t in self.terms)

  def bind(self, spec, batch):
    return Sum(tuple(t.bind(spec, batch) for t in self.terms), self.weights)

  def labels(self, batch):
    parts = [t.labels(batch) for t in self.terms]
    out = []
    for b in range(batch):
      s = ""
      for w, p in zip(self.weights, parts):
        sign = "-" if w < 0 else "+"
        mag = "" if abs(w) == 1 else f"{abs(w):g}*"
        s += f"{sign}{mag}{p[b]}"
      out.append(s.lstrip("+"))
    return out


@register(data=["a", "b"])
class Product(Objective):
  """Objective times objective, image by image."""

  a: Objective
  b: Objective

  def __post_init__(self):
    self.batch  # fail early on terms over different numbers of units

  def score(self, ctx):
    return self.a.score(ctx) * self.b.score(ctx)

  @property
  def layers(self):
    return self.a.layers | self.b.layers

  @property
  def batch(self):
    return _common_batch([self.a.batch, self.b.batch])

  @property
  def couples_batch(self):
    return self.a.couples_batch or self.b.couples_batch

  def bind(self, spec, batch):
    return Product(self.a.bind(spec, batch), self.b.bind(spec, batch))

  def labels(self, batch):
    return [f"({x})*({y})" for x, y in zip(self.a.labels(batch), self.b.labels(batch))]


@register(data=["parts"], meta=["sizes"])
class Stack(Objective):
  """Different objectives on different images: ``parts[k]`` owns ``sizes[k]`` images."""

  parts: tuple
  sizes: tuple

  def score(self, ctx):
    scores, start = [], 0
    for part, n in zip(self.parts, self.sizes):
      scores.append(part.score(ctx.slice(start, start + n)))
      start += n
    return jnp.concatenate(scores)

  @property
  def layers(self):
    return frozenset().union(*(p.layers for p in self.parts))

  @property
  def batch(self):
    return sum(self.sizes)

  @property
  def couples_batch(self):
    return any(p.couples_batch for p in self.parts)

  def bind(self, spec, batch):
    if batch != sum(self.sizes):
      raise ValueError(f"a stack of {sum(self.sizes)} images cannot render a batch of {batch}")
    return Stack(tuple(p.bind(spec, n) for p, n in zip(self.parts, self.sizes)), self.sizes)

  def labels(self, batch):
    return [label for p, n in zip(self.parts, self.sizes) for label in p.labels(n)]


def _common_batch(batches: Sequence[int | None]) -> int | None:
  known = {b for b in batches if b is not None}
  if len(known) > 1:
    raise ValueError(f"terms imply different batch sizes {sorted(known)}; "
                     "combine objectives over the same number of units")
  return known.pop() if known else None


# ----------------------------------------------------------------------------- constructors


def channel(layer: str, unit: Any) -> Channel:
  """Mean activation of channel ``unit`` (an int or a ``(B,)`` array, one per image)."""
  return Channel(layer, _units_array(unit))


def neuron(layer: str, unit: Any, x: Any = None, y: Any = None) -> Neuron:
  """Activation of channel ``unit`` at column ``x``, row ``y`` (default: the centre)."""
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


def sum_of(objectives: Sequence[Any]) -> Objective:
  """The sum of a list of objectives (flattening nested sums)."""
  terms, weights = [], []
  for obj in objectives:
    obj = _as_objective(obj)
    if isinstance(obj, Sum):
      terms.extend(obj.terms)
      weights.extend(obj.weights)
    else:
      terms.append(obj)
      weights.append(1.0)
  return Sum(tuple(terms), tuple(weights))


def stack(objectives: Sequence[Objective], sizes: Sequence[int] | None = None) -> Stack:
  """Puts objective ``k`` on its own images: ``sizes[k]`` defaults to its implied batch or 1."""
  if sizes is None:
    sizes = [obj.batch or 1 for obj in objectives]
  return Stack(tuple(objectives), tuple(int(n) for n in sizes))
