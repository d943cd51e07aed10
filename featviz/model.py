"""What a model is to featviz: a pytree of weights with a static spec and forward function.

A :class:`Model` maps images ``(B, H, W, C)`` in ``[0, 1]`` to a dict of named activations
with :meth:`Model.activations`, the one place where images become network input: resize
(for a network with a fixed input size, or to a size asked for), value range, per-channel
normalisation, then the forward pass. The model is a pytree: its weights are the leaves and its
spec, forward function and metadata are static, so ``jax.jit(f)(model, x)`` takes it as one
argument and another model of the same architecture reuses the compiled program.

The forward function is pure: ``forward(weights, x, layers, ops) -> {name: array}`` where ``x``
is already network input, ``layers`` is a tuple of layer names (static) and the forward pass may
stop after the deepest of them. ``ops`` (:class:`featviz.nonlin.Ops`) carries the ReLU functions
and the CPU rewrites the architecture must use, so that the render loop can swap in
gradient-redirecting versions (Lucid's trick) without the model knowing about optimisation.

Activations are NHWC maps for spatial layers, ``(B, T, C)`` for token sequences (a ViT's
blocks) and ``(B, C)`` for flat ones (logits); :func:`as_map` is how every objective and
analysis reads "a channel" and "a position" of each. Your own network (any flax module, any JAX
function) becomes a Model with :meth:`Model.from_flax` and :meth:`Model.from_function`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz.nonlin import Ops, rewrites_for


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static facts about a network.

  Attributes:
    name: catalogue name, e.g. ``"mnist_cnn"``.
    value_range: ``(lo, hi)``: the network sees ``lo + (hi - lo) * x`` for an
      image ``x`` in ``[0, 1]``.
    value_range_source: where that range comes from (a citation).
    image_size: nominal input size in pixels (square).
    channels: input channels, 1 (greyscale) or 3 (RGB).
    layers: layer name -> channel count, in forward order.
    labels: class names, index ``i`` is logit ``i``.
    fixed_size: True when the network only accepts ``image_size`` inputs (a
      flatten + dense head); :meth:`Model.activations` then resizes images to it.
    min_size: the smallest input side the architecture takes.
    mean, std: per-channel normalisation after the value range, ``(x - mean) / std``
      (torchvision's models: mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225 on [0, 1]
      input); ``None``: none.
  """

  name: str
  value_range: tuple[float, float]
  value_range_source: str
  image_size: int
  channels: int
  layers: Mapping[str, int]
  labels: tuple[str, ...] = ()
  fixed_size: bool = False
  min_size: int = 1
  mean: tuple[float, ...] | None = None
  std: tuple[float, ...] | None = None

  def __post_init__(self):
    for name in ("mean", "std"):
      value = getattr(self, name)
      if value is not None and len(value) != self.channels:
        raise ValueError(
          f"{self.name}: {name} has {len(value)} entries for {self.channels} channels"
        )
    if (self.mean is None) != (self.std is None):
      raise ValueError(f"{self.name}: give both mean and std, or neither")

  def __hash__(self) -> int:  # layers is a mapping: hash its items (a spec is static pytree data)
    return hash(
      (
        self.name,
        tuple(self.value_range),
        self.image_size,
        self.channels,
        tuple(self.layers.items()),
        self.labels,
        self.fixed_size,
        self.min_size,
        self.mean,
        self.std,
      )
    )

  def to_input(self, images: jax.Array) -> jax.Array:
    """Maps ``[0, 1]`` images to network input: value range, then ``(x - mean) / std``."""
    lo, hi = self.value_range
    x = lo + (hi - lo) * images
    if self.mean is not None:
      x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
    return x

  def check_layer(self, layer: str) -> None:
    if layer not in self.layers:
      raise UnknownLayerError(
        f"unknown layer {layer!r} for model {self.name!r}; valid layers: {', '.join(self.layers)}"
      )

  def check_units(self, layer: str, units: Any) -> None:
    """Raises if any (concrete) unit index is out of range for ``layer``."""
    self.check_layer(layer)
    n = self.layers[layer]
    if isinstance(units, jax.core.Tracer):
      return
    u = np.asarray(units)
    if u.size and (u.min() < 0 or u.max() >= n):
      bad = u[(u < 0) | (u >= n)].ravel()[0]
      raise UnitOutOfRangeError(
        f"unit {int(bad)} is out of range for layer {layer!r} of {self.name!r}: "
        f"valid units are 0-{n - 1} ({n} channels)"
      )

  def label_index(self, label: int | str) -> int:
    """Resolves a class index or a class name (any case, spaces or ``_``) to a logit index.

    Names go through :func:`featviz.class_names.resolve`, whose ``UnknownLabelError`` names
    the closest classes.
    """
    from featviz import class_names  # It imports this module's UnknownLabelError.

    n = self.layers.get("logits", len(self.labels))
    if isinstance(label, (int, np.integer)):
      if not 0 <= int(label) < n:
        raise UnitOutOfRangeError(
          f"class index {label} is out of range for {self.name!r}: valid 0-{n - 1}"
        )
      return int(label)
    return class_names.resolve(self.labels, label, model=self.name, num_classes=n)


class UnknownLayerError(KeyError, ValueError):
  def __str__(self) -> str:  # KeyError would quote the message.
    return str(self.args[0])


class UnitOutOfRangeError(IndexError, ValueError):
  pass


class UnknownLabelError(KeyError, ValueError):
  def __str__(self) -> str:
    return str(self.args[0])


class ImageShapeError(ValueError):
  pass


def as_map(acts: jax.Array) -> jax.Array:
  """An activation as a map ``(B, h, w, C)``: the one view of "channel" and "position".

  * NHWC ``(B, H, W, C)``: as it is. A channel is the mean over ``H, W``; a neuron one
    ``(row, column)``, the centre by default.
  * tokens ``(B, T, C)``: ``(B, 1, T, C)``. A channel is the mean over the ``T`` tokens; a
    neuron one token, column ``t`` (a ViT's CLS token is token 0); the default is token
    ``T // 2``.
  * vectors ``(B, C)``: ``(B, 1, 1, C)``, a channel is the value itself; a neuron has no
    position to choose.
  """
  if acts.ndim == 4:
    return acts
  if acts.ndim == 3:
    return acts[:, None]
  if acts.ndim == 2:
    return acts[:, None, None]
  raise ImageShapeError(
    f"activations of shape {tuple(acts.shape)}: featviz reads (B, C) vectors, (B, T, C) "
    "tokens and (B, H, W, C) maps"
  )


def layer_kind(shape: Sequence[int]) -> str:
  """``"map"``, ``"tokens"`` or ``"vector"`` for an activation shape of rank 4, 3 or 2."""
  return {4: "map", 3: "tokens", 2: "vector"}.get(len(shape), f"rank {len(shape)}")


class ActivationRecorder:
  """Collects the activations a forward pass was asked for, and says when it may stop.

  Architectures call ``keep(name, h)`` after each named layer and return
  ``out`` as soon as it says True, so layers past the deepest one asked for are
  never computed::

    keep, out = ActivationRecorder(spec(), layers).start()
    h = conv1(x)
    if keep("conv1", h):
      return out
  """

  def __init__(self, spec: ModelSpec, layers: Sequence[str]):
    for name in layers:
      spec.check_layer(name)
    self.wanted = set(layers)
    self.out: dict[str, jax.Array] = {}

  def keep(self, name: str, h: jax.Array) -> bool:
    """Records ``h`` if it was asked for; True once every asked layer is recorded."""
    if name in self.wanted:
      self.out[name] = h
    return self.wanted <= self.out.keys()

  def start(self) -> tuple[Callable[[str, jax.Array], bool], dict[str, jax.Array]]:
    return self.keep, self.out


def cast_kernels(tree: Any, dtype: Any) -> Any:
  """Casts the dense kernels of ``tree`` to ``dtype``; everything else stays float32.

  A dense kernel is a floating leaf with 2 or more axes whose input axis (the
  second to last, HWIO / ``(in, out)``) is longer than 1. Kept in float32:

  * per-channel vectors (biases, batch-norm statistics), as mixed precision
    training keeps them: a batch-norm mean rounded to bf16's 8 bits cancels
    badly against activations of the same size;
  * depthwise kernels ``(kh, kw, 1, C)`` (and one-channel first layers): 9
    multiply-adds per output, memory-bound, so bf16 buys little there, while
    rounding them costs the most accuracy.

  Measured on EfficientNet-Lite0, two photos, relative activation error: 8 %
  with everything in bf16, 5 % with all kernels, under 2 % with dense kernels
  only (``tests/test_bf16.py``).
  """

  def cast(a):
    floating = jnp.issubdtype(jnp.result_type(a), jnp.floating)
    dense = jnp.ndim(a) >= 2 and jnp.shape(a)[-2] > 1
    return a.astype(dtype) if floating and dense else a

  return jax.tree.map(cast, tree)


Forward = Callable[[Any, jax.Array, tuple[str, ...], Ops], dict[str, jax.Array]]


def default_ops() -> Ops:
  """Plain ReLUs, with the CPU rewrites where the default backend is a CPU (``"auto"``)."""
  return Ops(rewrites=rewrites_for("auto", jax.default_backend()))


class _Frozen:
  """Static metadata: a JSON-able mapping compared by value, so it can sit in a treedef."""

  def __init__(self, mapping: Mapping[str, Any]):
    self.mapping = dict(mapping)
    self._key = json.dumps(self.mapping, sort_keys=True, default=str)

  def __eq__(self, other) -> bool:
    return isinstance(other, _Frozen) and self._key == other._key

  def __hash__(self) -> int:
    return hash(self._key)


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class Model:
  """A network: its weights (the pytree's leaves), a pure forward function and a spec (static).

  ``jax.jit(f)(model, images)`` takes the model as one argument; :meth:`activations` works on
  traced weights and images. ``forward(weights, x, layers, ops)`` takes ``x`` as network input;
  use :meth:`activations` for images in ``[0, 1]``.
  """

  spec: ModelSpec
  weights: Any
  forward: Forward
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def tree_flatten(self):
    return (self.weights,), (self.spec, self.forward, _Frozen(self.metadata))

  @classmethod
  def tree_unflatten(cls, aux, children):
    spec, forward, metadata = aux
    return cls(spec=spec, weights=children[0], forward=forward, metadata=metadata.mapping)

  @classmethod
  def from_flax(cls, module: Any, variables: Any = None, **options) -> Model:
    """Your own ``flax.linen`` module (with its variables) or ``flax.nnx`` module as a Model:
    its layers are its submodules' outputs, named by module path, channel counts found
    abstractly. Options and what it cannot do: :func:`featviz.flax_models.from_flax`."""
    from featviz import flax_models  # it imports this module

    return flax_models.from_flax(module, variables, **options)

  @classmethod
  def from_function(cls, apply: Callable, params: Any, **options) -> Model:
    """Your own JAX function ``apply(params, x) -> {name: activations}`` as a Model
    (:func:`featviz.function_models.from_function`)."""
    from featviz import function_models  # it imports this module

    return function_models.from_function(apply, params, **options)

  def replace(self, **changes) -> Model:
    """This model with some fields replaced (e.g. ``weights=`` placed on other devices)."""
    return dataclasses.replace(self, **changes)

  def cast(self, compute_dtype: Any) -> Model:
    """This model with its dense kernels in ``compute_dtype`` (:func:`cast_kernels`)."""
    if compute_dtype is None:
      return self
    return self.replace(weights=cast_kernels(self.weights, compute_dtype))

  def layers_in_order(self, layers: Sequence[str]) -> tuple[str, ...]:
    """Validates layer names and returns them in forward order, deduplicated."""
    for layer in layers:
      self.spec.check_layer(layer)
    wanted = set(layers)
    return tuple(name for name in self.spec.layers if name in wanted)

  def check_images(self, images: Any, input_size: int | None = None) -> None:
    """Raises :class:`ImageShapeError` for a batch the network cannot take (resized to
    ``self.input_size(input_size)`` first, when that is not None)."""
    shape = tuple(np.shape(images))
    c = self.spec.channels
    if len(shape) != 4 or shape[-1] != c:
      raise ImageShapeError(
        f"{self.spec.name} takes images of shape (B, H, W, {c}) in [0, 1]; got shape {shape}"
      )
    if min(shape[1:3]) < 1:
      raise ImageShapeError(f"{self.spec.name}: got an empty image, {shape[1]}x{shape[2]}")
    size = self.input_size(input_size)
    if size is not None and size < self.spec.min_size:
      raise ImageShapeError(
        f"{self.spec.name} needs images of at least {self.spec.min_size} px; input_size is {size}"
      )
    if size is None and min(shape[1:3]) < self.spec.min_size:
      raise ImageShapeError(
        f"{self.spec.name} needs images of at least {self.spec.min_size} px; "
        f"got {shape[1]}x{shape[2]}"
      )
    if not isinstance(images, jax.core.Tracer):
      arr = np.asarray(images)
      if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ImageShapeError(
          f"{self.spec.name} takes images in [0, 1]; got values in "
          f"[{np.nanmin(arr):.4g}, {np.nanmax(arr):.4g}] (divide uint8 images by 255)"
        )

  def input_size(self, requested: int | None = None) -> int | None:
    """The side images are resized to before the network: the fixed size of a fixed-size
    network, else ``requested`` (``None``: images go in at their own size)."""
    return self.spec.image_size if self.spec.fixed_size else requested

  def activations(
    self,
    images: Any,
    layers: Sequence[str] | None = None,
    *,
    ops: Ops | None = None,
    compute_dtype: Any = None,
    input_size: int | None = None,
  ) -> dict[str, jax.Array]:
    """Named activations for images ``(B, H, W, C)`` in ``[0, 1]``; jit-able.

    Args:
      images: a batch in ``[0, 1]``, channels last (the range is checked when concrete).
      layers: the layers to return; ``None`` means every layer in the spec.
      ops: the primitives to use (:class:`featviz.nonlin.Ops`); ``None``:
        :func:`default_ops`.
      compute_dtype: e.g. ``jnp.bfloat16`` to run the network's dense kernels in bf16
        (:func:`cast_kernels`; the zoo's convolutions cast their input to their kernel's
        dtype and accumulate in float32); activations come back as float32.
      input_size: resize images (bilinear) to this side first (lucent feeds 224); a
        fixed-size network always resizes to its own size.

    Returns:
      ``{layer: activations}``, NHWC or ``(B, C)``, only for the layers asked.
    """
    self.check_images(images, input_size)
    names = self.layers_in_order(layers if layers is not None else tuple(self.spec.layers))
    ops = ops if ops is not None else default_ops()
    return _activations(
      self,
      jnp.asarray(images, jnp.float32),
      tuple(names),
      ops,
      compute_dtype,
      self.input_size(input_size),
    )


@functools.partial(jax.jit, static_argnames=("names", "ops", "compute_dtype", "size"))
def _activations(
  model: Model, x: jax.Array, names: tuple[str, ...], ops: Ops, compute_dtype: Any, size: int | None
) -> dict[str, jax.Array]:
  """:meth:`Model.activations` as one compiled program. Called eagerly, the forward would run
  op by op, each new op shape compiled on its own: every layer of EfficientNet-Lite0 on two
  photos took tens of seconds that way, against a few for one compile; inside a caller's trace
  it is one nested call."""
  if size is not None and x.shape[1:3] != (size, size):
    b, _, _, c = x.shape
    x = jax.image.resize(x, (b, size, size, c), "linear")
  cast = model.cast(compute_dtype)
  out = cast.forward(cast.weights, model.spec.to_input(x), names, ops)
  if compute_dtype is not None:
    return {name: out[name].astype(jnp.float32) for name in names}
  return {name: out[name] for name in names}
