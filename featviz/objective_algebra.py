"""The objective algebra: the base class, ``Context``, and how objectives combine.

An objective is a pytree dataclass (:func:`register`) whose ``score(ctx)`` gives
one value per image. ``+``, ``-``, ``*`` and ``/`` by scalars build :class:`Sum`
(weights are data, so changing a weight reuses the compiled loop), objective
times objective builds :class:`Product`, and :class:`Stack` puts different
objectives on different images of one batch. The objectives themselves live in
:mod:`featviz.objectives` and :mod:`featviz.regularizers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

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

  def slice(self, start: int, stop: int) -> Context:
    return Context({k: v[start:stop] for k, v in self.acts.items()}, self.image[start:stop])


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

  def bind(self, spec: ModelSpec, batch: int) -> Objective:
    """Checks layers and units against ``spec`` and broadcasts unit data to ``batch``."""
    return self

  def check_shapes(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Checks data that depends on the activations' shapes (a neuron's position) against
    ``shapes``, ``{layer: activation shape}`` of the render (``jax.eval_shape`` of the network
    on the transformed images); raises ``UnitOutOfRangeError``. Default: nothing to check."""

  def labels(self, batch: int) -> list[str]:
    """A short label per image, e.g. ``"block10:5"``."""
    return [self.name] * batch

  @property
  def name(self) -> str:
    return type(self).__name__

  # ----- algebra -----
  def __add__(self, other: Any) -> Objective:
    return sum_of([self, _as_objective(other)])

  def __radd__(self, other: Any) -> Objective:
    if isinstance(other, (int, float)) and other == 0:  # builtin sum() starts at 0
      return self
    return sum_of([_as_objective(other), self])

  def __neg__(self) -> Objective:
    return Sum((self,), (-1.0,))

  def __sub__(self, other: Any) -> Objective:
    return self + (-_as_objective(other))

  def __rsub__(self, other: Any) -> Objective:
    return _as_objective(other) + (-self)

  def __mul__(self, other: Any) -> Objective:
    if isinstance(other, Objective):
      return Product(self, other)
    return Sum((self,), (_scalar(other),))

  __rmul__ = __mul__

  def __truediv__(self, other: Any) -> Objective:
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
    _ = self.batch  # terms over different numbers of units cannot be summed: fail here, early

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

  def check_shapes(self, shapes):
    for t in self.terms:
      t.check_shapes(shapes)

  def labels(self, batch):
    parts = [t.labels(batch) for t in self.terms]
    # Spaces around + and -, so that a term never reads as a range: "block10:0 - 0.01*tv",
    # not "block10:0-0.01*tv" (a SPEC's 0-7 is units 0 to 7).
    out = []
    for b in range(batch):
      s = ""
      for w, p in zip(self.weights, parts):
        mag = "" if abs(w) == 1 else f"{abs(w):g}*"
        if not s:
          s = f"{'-' if w < 0 else ''}{mag}{p[b]}"
        else:
          s += f" {'-' if w < 0 else '+'} {mag}{p[b]}"
      out.append(s)
    return out


@register(data=["a", "b"])
class Product(Objective):
  """Objective times objective, image by image."""

  a: Objective
  b: Objective

  def __post_init__(self):
    _ = self.batch  # fail early on terms over different numbers of units

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

  def check_shapes(self, shapes):
    self.a.check_shapes(shapes)
    self.b.check_shapes(shapes)

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

  def check_shapes(self, shapes):
    for p in self.parts:
      p.check_shapes(shapes)

  def labels(self, batch):
    return [label for p, n in zip(self.parts, self.sizes) for label in p.labels(n)]


def _common_batch(batches: Sequence[int | None]) -> int | None:
  known = {b for b in batches if b is not None}
  if len(known) > 1:
    raise ValueError(
      f"terms imply different batch sizes {sorted(known)}; "
      "combine objectives over the same number of units"
    )
  return known.pop() if known else None


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
