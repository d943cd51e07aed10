"""What a model is to featviz: weights, a pure forward function, and a spec.

A model maps images ``(B, H, W, C)`` in ``[0, 1]`` to a dict of named activations.
The forward function is pure: ``forward(weights, x, layers, ops) -> {name: array}``
where ``x`` is already in the network's own value range, ``layers`` is a tuple of
layer names (static) and the forward pass may stop after the deepest of them.
``ops`` carries the ReLU functions the architecture must use, so that the
render loop can swap in gradient-redirecting versions (Lucid's trick) without
the model knowing about optimisation.

Activations are NHWC for spatial layers and ``(B, C)`` for flat ones (logits).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from featviz.nonlin import STANDARD_OPS, Ops




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
      flatten + dense head); the render loop then resizes its images to it.
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

  def to_input(self, images: jax.Array) -> jax.Array:
    """Maps ``[0, 1]`` images to the network's value range."""
    lo, hi = self.value_range
    return lo + (hi - lo) * images

  def check_layer(self, layer: str) -> None:
    if layer not in self.layers:
      raise UnknownLayerError(
          f"unknown layer {layer!r} for model {self.name!r}; "
          f"valid layers: {', '.join(self.layers)}")

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
          f"valid units are 0-{n - 1} ({n} channels)")

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
            f"class index {label} is out of range for {self.name!r}: valid 0-{n - 1}")
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

  def __init__(self, spec: "ModelSpec", layers: Sequence[str]):
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


def run_forward(forward: "Forward", weights: Any, x: jax.Array, layers: tuple[str, ...],
                ops: Ops, compute_dtype: Any = None) -> dict[str, jax.Array]:
  """``forward``, optionally with its kernels in ``compute_dtype`` (e.g. bfloat16).

  The dense kernels are cast to ``compute_dtype`` (:func:`cast_kernels`); the
  zoo's convolutions cast their input to their kernel's dtype, multiply in it
  and accumulate in float32. Activations come back as
  float32, so objectives, gradients and the image parameters stay float32
  ("bf16 compute with float32 parameters").
  """
  if compute_dtype is None:
    return forward(weights, x, layers, ops)
  acts = forward(cast_kernels(weights, compute_dtype), x, layers, ops)
  return {name: a.astype(jnp.float32) for name, a in acts.items()}


Forward = Callable[[Any, jax.Array, tuple[str, ...], Ops], dict[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Model:
  """A network: its weights (a pytree), a pure forward function and a spec.

  ``forward(weights, x, layers, ops)`` takes ``x`` in the network's value
  range. Use :meth:`activations` for images in ``[0, 1]``.
  """

  spec: ModelSpec
  weights: Any
  forward: Forward
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def layers_in_order(self, layers: Sequence[str]) -> tuple[str, ...]:
    """Validates layer names and returns them in forward order, deduplicated."""
    for layer in layers:
      self.spec.check_layer(layer)
    wanted = set(layers)
    return tuple(name for name in self.spec.layers if name in wanted)

  def check_images(self, images: Any) -> None:
    """Raises :class:`ImageShapeError` for a batch the network cannot take."""
    shape = tuple(np.shape(images))
    c = self.spec.channels
    if len(shape) != 4 or shape[-1] != c:
      raise ImageShapeError(
          f"{self.spec.name} takes images of shape (B, H, W, {c}) in [0, 1]; got shape {shape}")
    if self.spec.fixed_size and shape[1:3] != (self.spec.image_size,) * 2:
      s = self.spec.image_size
      raise ImageShapeError(
          f"{self.spec.name} takes {s}x{s} images only; got {shape[1]}x{shape[2]}")
    if min(shape[1:3]) < self.spec.min_size:
      raise ImageShapeError(
          f"{self.spec.name} needs images of at least {self.spec.min_size} px; "
          f"got {shape[1]}x{shape[2]}")
    if not isinstance(images, jax.core.Tracer):
      arr = np.asarray(images)
      if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ImageShapeError(
            f"{self.spec.name} takes images in [0, 1]; got values in "
            f"[{np.nanmin(arr):.4g}, {np.nanmax(arr):.4g}] (divide uint8 images by 255)")

  def activations(self, images: Any, layers: Sequence[str] | None = None,
                  ops: Ops = STANDARD_OPS,
                  compute_dtype: Any = None) -> dict[str, jax.Array]:
    """Named activations for images ``(B, H, W, C)`` in ``[0, 1]``.

    Args:
      images: a batch in ``[0, 1]``, channels last.
      layers: the layers to return; ``None`` means every layer in the spec.
      ops: the ReLU functions to use (the render loop's business).
      compute_dtype: e.g. ``jnp.bfloat16`` to run the network in bf16 (see
        :func:`run_forward`); activations come back as float32.

    Returns:
      ``{layer: activations}``, NHWC or ``(B, C)``, only for the layers asked.
    """
    self.check_images(images)
    names = self.layers_in_order(layers if layers is not None else tuple(self.spec.layers))
    x = self.spec.to_input(jnp.asarray(images, jnp.float32))
    out = run_forward(self.forward, self.weights, x, names, ops, compute_dtype)
    return {name: out[name] for name in names}
