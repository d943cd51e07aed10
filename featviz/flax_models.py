"""Your own flax network as a :class:`featviz.Model`: ``flax.linen`` and ``flax.nnx`` modules.

``Model.from_flax(module, variables, image_size=32)`` finds the network's layers itself: every
submodule's ``__call__`` output, named by its module path as flax names it (``Conv_0``,
``Block_2/Conv_1``; nnx: attribute names, ``blocks/0/conv``), with its channel count (the last
axis) from an abstract evaluation (``jax.eval_shape``: nothing runs). The module's own output
is the layer ``logits`` when it is ``(B, K)``. ``layers=`` narrows (a sequence of paths) or
renames (``{new name: path}``).

How the outputs are found, without patching anything global (thread-safe, pure):

* linen: ``flax.linen.intercept_methods`` (a thread-local interceptor stack) sees every module
  call of ``module.apply`` and keeps ``__call__`` outputs;
* nnx: the module is ``nnx.merge``-d afresh from its graph definition and state inside the
  traced forward, and each submodule of that fresh copy gets a subclass of its own class whose
  ``__call__`` records its output; the copy is thrown away after the call.

A submodule called more than once keeps its last output; an output that is not an array of rank
2, 3 or 4 (a tuple, a dict, an integer array) is skipped and listed in ``model.metadata
["skipped"]``; methods other than ``__call__`` are not layers.

Pass the module as it should run for visualization: inference mode is the user's setting
(``nn.BatchNorm(use_running_average=True)``, ``nn.Dropout(deterministic=True)``, or
``apply_kwargs={"train": False}``; nnx: ``module.eval()`` before). ``jax.nn.relu`` / ``relu6``
inside get the render's redirected gradient and guided backprop (:mod:`featviz.relu_swap`).
The whole network runs for any layer asked (no early stop).
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from featviz import function_models as fm
from featviz.model import Model

LOGITS = "logits"


def _output_layer(paths: Sequence[str]) -> str:
  """The name of the module's own output: ``logits`` unless a submodule is named so."""
  return LOGITS if LOGITS not in paths else "__output__"


# ----------------------------------------------------------------------------- linen


@dataclasses.dataclass(frozen=True)
class LinenApply:
  """``apply(variables, x) -> {path: output}`` of a linen module: every submodule's ``__call__``
  output in call order, and the module's own output. Equal when the modules (hashable frozen
  dataclasses), the method and the keyword arguments are."""

  module: Any
  method: str | None = None
  kwargs: tuple[tuple[str, Any], ...] = ()

  def __call__(self, variables: Any, x: jax.Array) -> dict[str, Any]:
    import flax.linen as nn

    out: dict[str, Any] = {}

    def record(next_fun, args, kwargs, context):
      y = next_fun(*args, **kwargs)
      if context.method_name == "__call__" and context.module.path:
        key = "/".join(str(p) for p in context.module.path)
        out.pop(key, None)  # a module called again: its last output, at its last place
        out[key] = y
      return y

    with nn.intercept_methods(record):
      y = self.module.apply(variables, x, method=self.method, **dict(self.kwargs))
    out[_output_layer(list(out))] = y
    return out


# ----------------------------------------------------------------------------- nnx

# The recorder of the nnx forward being traced in this context: ({id(submodule): path}, outputs).
_RECORDING: contextvars.ContextVar[tuple[dict[int, str], dict[str, Any]] | None] = (
  contextvars.ContextVar("featviz_nnx_recording", default=None)
)
_RECORDING_CLASSES: dict[type, type] = {}


def _recording_class(cls: type) -> type:
  """A subclass of ``cls`` whose ``__call__`` also hands its output to the active recorder."""
  sub = _RECORDING_CLASSES.get(cls)
  if sub is not None:
    return sub

  def __call__(self, *args, **kwargs):
    y = cls.__call__(self, *args, **kwargs)
    recording = _RECORDING.get()
    if recording is not None and id(self) in recording[0]:
      key = recording[0][id(self)]
      recording[1].pop(key, None)
      recording[1][key] = y
    return y

  sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
  return _RECORDING_CLASSES.setdefault(cls, sub)


@dataclasses.dataclass(frozen=True)
class NnxApply:
  """``apply(state, x) -> {path: output}`` of an nnx module given by its graph definition
  (hashable: modules of one structure share it)."""

  graphdef: Any
  kwargs: tuple[tuple[str, Any], ...] = ()

  def __call__(self, state: Any, x: jax.Array) -> dict[str, Any]:
    from flax import nnx

    module = nnx.merge(self.graphdef, state)  # a fresh copy, private to this call
    paths = {}
    for path, sub in nnx.iter_modules(module):
      if path and any("__call__" in vars(c) for c in type(sub).__mro__):
        paths[id(sub)] = "/".join(str(p) for p in path)
        sub.__class__ = _recording_class(type(sub))
    out: dict[str, Any] = {}
    token = _RECORDING.set((paths, out))
    try:
      y = module(x, **dict(self.kwargs))
    finally:
      _RECORDING.reset(token)
    out[_output_layer(list(out))] = y
    return out


# ----------------------------------------------------------------------------- discovery


def _discover(apply, weights, image_size: int, channels: int):
  """The outputs' keys in call order, the array ones abstractly (``jax.eval_shape``), and the
  others ``{key: type name}``."""
  order: list[str] = []
  others: dict[str, str] = {}

  def probe(w, x):
    out = apply(w, x)
    order.extend(out)
    arrays = {}
    for key, value in out.items():
      if isinstance(value, jax.Array):
        arrays[key] = value
      else:
        others[key] = f"not an array ({type(value).__name__})"
    return arrays

  arrays = jax.eval_shape(probe, weights, fm.abstract_input(image_size, channels))
  return order, arrays, others


def from_flax(
  module: Any,
  variables: Any = None,
  *,
  image_size: int,
  channels: int = 3,
  value_range: tuple[float, float] = (0.0, 1.0),
  mean: Sequence[float] | None = None,
  std: Sequence[float] | None = None,
  layers: Sequence[str] | Mapping[str, str] | None = None,
  labels: Sequence[str] = (),
  method: str | None = None,
  apply_kwargs: Mapping[str, Any] | None = None,
  fixed_size: bool | None = None,
  name: str | None = None,
) -> Model:
  """A :class:`Model` of a ``flax.linen`` module and its variables, or of a ``flax.nnx`` module.

  Args:
    module: a ``flax.linen.Module`` (then ``variables`` is what ``module.init`` returned, or
      a checkpoint of it), or a ``flax.nnx.Module`` (``variables`` None: its state is split
      off with ``nnx.split``).
    variables: the linen variables, ``{"params": ..., "batch_stats": ...}``.
    image_size: the side the network is made for; renders default to it.
    channels: input channels.
    value_range, mean, std: what images in ``[0, 1]`` become before the module
      (:meth:`featviz.ModelSpec.to_input`): ImageNet networks trained on torchvision's
      transforms take ``mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)``.
    layers: None for every layer found; a sequence of module paths narrows them; a mapping
      ``{new name: module path}`` renames.
    labels: class names of ``logits``.
    method: a linen method to call instead of ``__call__`` (its name).
    apply_kwargs: keyword arguments of every call (``{"train": False}``).
    fixed_size: the network only takes ``image_size`` inputs; None: found out abstractly.
    name: the model's name (default: the module's class name).

  Raises:
    UnknownLayerError: ``layers`` names a path the module does not have (the message lists
      those it has).
    OwnModelError: not a flax module, or no usable output.
  """
  fm.check_size(image_size, channels)
  kwargs = tuple(sorted(dict(apply_kwargs or {}).items()))
  kind = _kind(module)
  if kind == "nnx":
    from flax import nnx

    if variables is not None:
      raise fm.OwnModelError(
        "an nnx module carries its own state: call Model.from_flax(module, image_size=...) "
        "without variables"
      )
    if method is not None:
      raise fm.OwnModelError("method= is for linen modules; wrap an nnx method in a module")
    graphdef, weights = nnx.split(module)
    apply = NnxApply(graphdef, kwargs)
  else:
    if variables is None:
      raise fm.OwnModelError(
        f"a linen module needs its variables: Model.from_flax({type(module).__name__}(), "
        "module.init(key, x), image_size=...)"
      )
    weights = variables
    apply = LinenApply(module, method, kwargs)
  what = name or type(module).__name__
  order, arrays, others = _discover(apply, weights, image_size, channels)
  found, skipped = fm.layer_shapes(arrays, what)
  skipped.update(others)
  output = _output_layer([k for k in order if k != LOGITS])
  if output in found and len(found[output]) != 2:  # the output is a layer only when (B, K)
    skipped[output] = f"the module's output is {found.pop(output)}, not (B, K) logits"
  found = {k: found[k] for k in order if k in found}
  names = fm.choose_layers(found, layers, what, skipped)
  return fm.make_model(
    apply,
    weights,
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
    source=f"Model.from_flax ({kind})",
    metadata={"skipped": skipped},
  )


def _kind(module: Any) -> str:
  import flax.linen as nn
  from flax import nnx

  if isinstance(module, nnx.Module):
    return "nnx"
  if isinstance(module, nn.Module):
    return "linen"
  raise fm.OwnModelError(
    f"from_flax takes a flax.linen or flax.nnx module, got {type(module).__name__}; "
    "for a plain function use Model.from_function"
  )
