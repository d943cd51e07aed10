"""Your own network as a :class:`featviz.Model`: a JAX function that returns named activations.

``Model.from_function(apply, params, image_size=32, layers=["conv1", "conv2"])`` wraps any
``apply(params, x) -> {name: activations}`` whose ``x`` is network input ``(B, H, W, C)`` (after
the value range and ``mean``/``std`` featviz applies). Channel counts come from an abstract
evaluation (``jax.eval_shape``), never typed by hand; activations may be NHWC maps, ``(B, T, C)``
token sequences or ``(B, C)`` vectors (:func:`featviz.model.as_map`). ``jax.nn.relu`` and
``relu6`` inside ``apply`` get Lucid's redirected gradient and guided backprop
(:mod:`featviz.relu_swap`, which also says what it cannot reach).

The model's ``forward`` is a :class:`FunctionForward`, a frozen dataclass equal when ``apply``
and the layer names are: two models of one function (other weights) reuse the compiled program.
The whole of ``apply`` runs for any layer asked (no early stop); only the asked layers are
returned. :mod:`featviz.flax_models` builds flax modules on it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from featviz import relu_swap
from featviz.model import Model, ModelSpec, UnknownLayerError
from featviz.nonlin import Ops

# The ranks an activation may have: (B, C) vectors, (B, T, C) tokens, (B, H, W, C) maps.
RANKS = (2, 3, 4)


class OwnModelError(ValueError):
  """A user network that featviz cannot wrap as given; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class FunctionForward:
  """``forward(weights, x, layers, ops)`` of a model made from ``apply(params, x) -> dict``.

  Attributes:
    apply: the user's function (equal by identity, or by value for a dataclass).
    names: ``(featviz name, key in apply's dict)`` pairs, in forward order.
  """

  apply: Callable[[Any, jax.Array], Mapping[str, jax.Array]]
  names: tuple[tuple[str, str], ...]

  def __call__(self, weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops):
    keys = dict(self.names)

    def run(w, x):
      out = self.apply(w, x)
      return {name: out[keys[name]] for name in layers}

    return relu_swap.call_with_ops(run, ops, weights, x)


def abstract_input(image_size: int, channels: int, batch: int = 1) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct((batch, image_size, image_size, channels), jnp.float32)


def choose_layers(
  found: Mapping[str, tuple[int, ...]],
  layers: Sequence[str] | Mapping[str, str] | None,
  what: str,
  skipped: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str], ...]:
  """``(name, key)`` pairs: every found key (``layers=None``), the keys of a sequence (narrows),
  or a mapping ``new name -> key`` (renames), in the order given. Raises
  :class:`OwnModelError` for a key in ``skipped`` (an output that cannot be a layer, with the
  reason) and ``UnknownLayerError`` naming the choices."""
  if layers is None:
    return tuple((k, k) for k in found)
  if isinstance(layers, str):
    raise TypeError(f"layers must be a sequence or a mapping of names, not the string {layers!r}")
  pairs = tuple(layers.items()) if isinstance(layers, Mapping) else tuple((k, k) for k in layers)
  for _, key in pairs:
    if skipped and key in skipped:
      raise OwnModelError(f"{what}'s {key!r} cannot be a layer: {skipped[key]}")
  for _, key in pairs:
    if key not in found:
      raise UnknownLayerError(f"{what} has no layer {key!r}; its layers: {', '.join(found)}")
  return pairs


def layer_shapes(outputs: Mapping[str, Any], what: str) -> tuple[dict[str, tuple], dict[str, str]]:
  """Splits abstract outputs into usable layers ``{key: shape}`` (rank 2, 3 or 4 arrays) and
  skipped ones ``{key: why}``."""
  found, skipped = {}, {}
  for key, value in outputs.items():
    shape = getattr(value, "shape", None)
    if shape is None or not hasattr(value, "dtype"):
      skipped[key] = f"not an array ({type(value).__name__})"
    elif len(shape) not in RANKS:
      skipped[key] = f"rank {len(shape)} {tuple(shape)}: featviz takes (B, C), (B, T, C), NHWC"
    elif not jnp.issubdtype(value.dtype, jnp.floating):
      skipped[key] = f"{value.dtype} values, not floating"
    else:
      found[key] = tuple(shape)
  if not found:
    raise OwnModelError(
      f"{what} gives no activation featviz can use (arrays (B, C), (B, T, C) or (B, H, W, C)); "
      f"skipped: {skipped}"
    )
  return found, skipped


def takes_other_sizes(apply: Callable, params: Any, image_size: int, channels: int) -> bool:
  """Whether ``apply`` runs (abstractly) on inputs twice ``image_size``: a network with a flatten
  and dense head, or position embeddings, does not, and is marked ``fixed_size``."""
  try:
    jax.eval_shape(apply, params, abstract_input(2 * image_size, channels))
  except Exception:  # any failure (a shape error of the user's code) means: fixed
    return False
  return True


def make_model(
  apply: Callable,
  params: Any,
  names: tuple[tuple[str, str], ...],
  shapes: Mapping[str, tuple[int, ...]],
  *,
  name: str,
  image_size: int,
  channels: int,
  value_range: tuple[float, float],
  mean: Sequence[float] | None,
  std: Sequence[float] | None,
  labels: Sequence[str],
  fixed_size: bool | None,
  source: str,
  metadata: Mapping[str, Any] | None = None,
) -> Model:
  """The :class:`Model` of ``apply`` with layers ``names`` whose abstract shapes are ``shapes``."""
  if fixed_size is None:
    fixed_size = not takes_other_sizes(apply, params, image_size, channels)
  spec = ModelSpec(
    name=name,
    value_range=(float(value_range[0]), float(value_range[1])),
    value_range_source=f"given to {source}",
    image_size=int(image_size),
    channels=int(channels),
    layers={new: int(shapes[key][-1]) for new, key in names},
    labels=tuple(labels),
    fixed_size=bool(fixed_size),
    mean=None if mean is None else tuple(float(v) for v in mean),
    std=None if std is None else tuple(float(v) for v in std),
  )
  info = {
    "built_by": source,
    "layer_shapes": {new: list(shapes[key]) for new, key in names},
    **dict(metadata or {}),
  }
  return Model(spec, params, FunctionForward(apply, names), info)


def check_size(image_size: Any, channels: Any) -> None:
  for what, v in (("image_size", image_size), ("channels", channels)):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise OwnModelError(f"{what} must be a positive integer, got {v!r}")


def from_function(
  apply: Callable[[Any, jax.Array], Mapping[str, jax.Array]],
  params: Any,
  *,
  image_size: int,
  layers: Sequence[str] | Mapping[str, str],
  channels: int = 3,
  value_range: tuple[float, float] = (0.0, 1.0),
  mean: Sequence[float] | None = None,
  std: Sequence[float] | None = None,
  labels: Sequence[str] = (),
  fixed_size: bool | None = None,
  name: str | None = None,
) -> Model:
  """A :class:`Model` of ``apply(params, x) -> {name: activations}``.

  Args:
    apply: a pure JAX function of the weights and network input ``x (B, H, W, channels)``;
      ``x`` is ``lo + (hi - lo) * image`` for ``value_range = (lo, hi)``, then
      ``(x - mean) / std`` when they are given. Give one function object (not a new lambda
      per call) so that models of it reuse the compiled programs.
    params: the weights, any pytree of arrays (the model's leaves).
    image_size: the side the network is made for; renders default to it.
    layers: the keys of ``apply``'s dict to expose, or ``{new name: key}``; a layer named
      ``logits`` of shape ``(B, K)`` is what ``logit:`` objectives read.
    channels: input channels (3 RGB, 1 grey).
    value_range, mean, std: what images in ``[0, 1]`` become before ``apply``.
    labels: class names of ``logits``.
    fixed_size: the network only takes ``image_size`` inputs (renders resize to it); None:
      found out by an abstract evaluation at twice that size.
    name: the model's name in captions and manifests (default: ``apply``'s name).

  Raises:
    UnknownLayerError: a layer ``apply`` does not return (the message lists those it does).
    OwnModelError: an output featviz cannot use, or bad sizes.
  """
  check_size(image_size, channels)
  what = name or getattr(apply, "__name__", type(apply).__name__)
  out = jax.eval_shape(apply, params, abstract_input(image_size, channels))
  if not isinstance(out, Mapping):
    raise OwnModelError(
      f"{what} returns a {type(out).__name__}; from_function needs a dict of named activations"
    )
  found, skipped = layer_shapes(out, what)
  names = choose_layers(found, layers, what, skipped)
  return make_model(
    apply,
    params,
    names,
    found,
    name=what,
    image_size=image_size,
    channels=channels,
    value_range=value_range,
    mean=mean,
    std=std,
    labels=labels,
    fixed_size=fixed_size,
    source="Model.from_function",
  )
