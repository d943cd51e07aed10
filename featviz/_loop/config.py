"""RenderConfig: every setting of a render, in one frozen dataclass.

The CLI builds one from its flags, :func:`featviz.render` and :func:`featviz.sweep` take it, and
a sweep's manifest stores it whole (:meth:`RenderConfig.to_dict`). Defaults are Lucid's
``render_vis`` (``lucid/optvis/render.py``): Fourier parameterization with decorrelated colour,
``standard_transforms``, Adam with learning rate 0.05, 512 steps, 128 px, redirected ReLU
gradients for the first 16 steps (``lucid/optvis/overrides/redirected_relu_grad.py``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from featviz import nonlin
from featviz import param as param_lib
from featviz import transforms as tf_lib
from featviz.nonlin import LUCID_REDIRECT_STEPS
from featviz.param.maco_image import MacoCrops

# Named transforms (names, not objects, so that a manifest can record them).
TRANSFORMS = ("standard", "shared", "none", "maco")
KERNELS = ("auto", "xla", "pallas")
REWRITES = ("auto", "all", "none")

# Upper bounds that keep a typo from compiling for minutes or allocating the machine away:
# 2**20 steps is 2,000x Lucid's 512; 4096 px is 32x its 128 (a 4096^2 Fourier image is 200 MB of
# parameters and Adam state per image in float32).
MAX_STEPS = 1 << 20
MAX_SIZE = 4096


class ConfigError(ValueError):
  """A render setting out of range or of the wrong kind; the message names the valid values."""


@dataclasses.dataclass(frozen=True)
class RenderConfig:
  """Every setting of a render. :meth:`lucid` is the default.

  Attributes:
    param: the image parameterization, a name of ``featviz.param.PARAMETERIZATIONS``
      (``"fourier"``, Lucid's; ``"pixel"``, ``"maco"``, ``"cppn"``, ``"laplacian"``,
      ``"lowres"``), or a factory ``f(size, batch, channels) -> featviz.param.Param`` whose
      parameters have a leading batch axis. With ``"maco"`` the result also has the paper's
      transparency map (``RenderResult.transparency``).
    alpha: optimize RGBA images: the parameterization gets a fourth channel, each step
      composites the image onto a random background and weights the objective by how
      transparent the image is (Lucid's transparency recipe, ``featviz.param.alpha``); images
      come back ``(B, H, W, 4)``.
    steps: optimization steps.
    size: side of the rendered images in pixels.
    learning_rate: Adam's learning rate (used when ``optimizer`` is None).
    optimizer: an optax optimizer instead of Adam; compiled programs are shared only between
      renders that pass the same object.
    transforms: ``"standard"`` (Lucid's five, a draw per image), ``"shared"`` (one draw for
      the whole batch, as Lucid), ``"maco"`` (MACO's random crop and noise, one resample per
      image: ``featviz.param.maco_image.MacoCrops``), ``"none"``, or a transform
      ``(key, images) -> images`` (``featviz.transforms``).
    redirect_relu_steps: Lucid's redirected ReLU gradient for this many first steps; 0: off.
    compute_dtype: ``"bfloat16"`` multiplies in bf16 inside the network's dense convolutions
      (float32 accumulation); parameters, gradients and activations stay float32. ``None``:
      float32 throughout.
    input_size: resize the transformed images to this side before the network (lucent
      upsamples to 224). A fixed-size network always resizes to its own size.
    chunk: steps per call of the compiled loop; ``None`` picks a divisor of ``steps`` up to 32
      (``featviz._loop.program.chunk_lengths``). Never changes the images.
    kernels: the one-pass transforms' and the Fourier decode's implementation: ``"auto"``
      (Pallas only on device kinds where it was measured faster), ``"xla"`` or ``"pallas"``.
    rewrites: the zoo layers' CPU rewrites of XLA's convolution and pooling
      (``featviz.nonlin.CPU_REWRITES``): ``"auto"`` (all on a CPU, none elsewhere), ``"all"``,
      ``"none"``, or a set of their names. Part of the compiled program's identity.
    snapshots: steps after which to keep the images as well (Lucid's ``thresholds``), in
      increasing order, each from 1 to ``steps``: ``(16, 64, 256)``. The result's
      ``snapshots`` then maps each of them (and ``steps``) to its images; the chunks are cut
      to end on them (:func:`featviz._loop.api.snapshot_chunk_lengths`), which never changes
      the images. ``()``: only the final images.
  """

  param: str | Callable[..., param_lib.Param] = "fourier"
  steps: int = 512
  size: int = 128
  learning_rate: float = 0.05
  optimizer: optax.GradientTransformation | None = None
  transforms: str | Callable = "standard"
  redirect_relu_steps: int = LUCID_REDIRECT_STEPS
  compute_dtype: str | None = None
  input_size: int | None = None
  chunk: int | None = None
  kernels: str = "auto"
  rewrites: str | frozenset[str] = "auto"
  alpha: bool = False
  snapshots: tuple[int, ...] = ()

  def __post_init__(self):
    for name, low, top in (
      ("steps", 1, MAX_STEPS),
      ("size", 1, MAX_SIZE),
      ("input_size", 1, MAX_SIZE),
      ("chunk", 1, MAX_STEPS),
      ("redirect_relu_steps", 0, MAX_STEPS),
    ):
      value = getattr(self, name)
      if value is not None or name in ("steps", "size", "redirect_relu_steps"):
        object.__setattr__(self, name, _check_int(name, value, low, top))
    lr = self.learning_rate
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
      raise ConfigError(f"learning_rate must be a finite number above 0, got {lr!r}")
    object.__setattr__(self, "learning_rate", float(lr))
    if isinstance(self.param, str) and self.param not in param_lib.PARAMETERIZATIONS:
      raise ConfigError(
        f"param {self.param!r}: choose one of "
        f"{', '.join(param_lib.PARAMETERIZATIONS)} or pass a factory"
      )
    if not isinstance(self.alpha, (bool, np.bool_)):
      raise ConfigError(f"alpha must be True or False, got {self.alpha!r}")
    object.__setattr__(self, "alpha", bool(self.alpha))
    if self.alpha and self.param == "maco":
      others = ", ".join(p for p in param_lib.PARAMETERIZATIONS if p != "maco")
      raise ConfigError(
        "alpha: maco has no alpha channel (its transparency map is result.transparency); "
        f"choose alpha with one of {others}"
      )
    if isinstance(self.transforms, str) and self.transforms not in TRANSFORMS:
      raise ConfigError(
        f"transforms {self.transforms!r}: choose one of {', '.join(TRANSFORMS)} or pass a transform"
      )
    if not isinstance(self.transforms, str) and not callable(self.transforms):
      raise ConfigError(f"transforms must be a name or a callable, got {self.transforms!r}")
    if self.kernels not in KERNELS:
      raise ConfigError(f"kernels {self.kernels!r}: choose one of {', '.join(KERNELS)}")
    if self.compute_dtype is not None:
      try:
        dtype = jnp.dtype(self.compute_dtype)
      except TypeError:
        dtype = None
      if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ConfigError(
          f"compute_dtype {self.compute_dtype!r}: give a floating dtype such "
          "as bfloat16 or float16, or None for float32"
        )
      object.__setattr__(self, "compute_dtype", dtype.name)
    if not isinstance(self.rewrites, str):
      object.__setattr__(self, "rewrites", frozenset(self.rewrites))
    try:
      nonlin.rewrites_for(self.rewrites, "cpu")
    except ValueError as e:
      raise ConfigError(str(e)) from None
    object.__setattr__(self, "snapshots", _check_snapshots(self.snapshots, self.steps))

  @classmethod
  def lucid(cls, **overrides) -> RenderConfig:
    """Lucid's ``render_vis`` defaults (the class defaults), with ``overrides``."""
    return cls().replace(**overrides)

  @classmethod
  def maco(cls, **overrides) -> RenderConfig:
    """MACO (Fel et al. 2023) in this loop: the ``"maco"`` parameterization (fixed natural
    magnitude, optimized phase) with its crops and noise (``transforms="maco"``), 256 steps
    (Xplique's default), Adam at Lucid's learning rate, no redirected ReLU."""
    return cls(param="maco", transforms="maco", steps=256, redirect_relu_steps=0).replace(
      **overrides
    )

  @classmethod
  def lucent(cls, **overrides) -> RenderConfig:
    """Lucent's ``render_vis`` defaults: Lucid's, with the transformed images upsampled to 224
    px before the network, and without Lucid's redirected ReLU (lucent's own ReLU trick, which
    scales negative gradients by 0.1 at every step, is not implemented here)."""
    return cls(input_size=224, redirect_relu_steps=0).replace(**overrides)

  def replace(self, **overrides) -> RenderConfig:
    """This config with some fields replaced; an unknown name is an error that lists them."""
    fields = {f.name for f in dataclasses.fields(self)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
      raise ConfigError(
        f"unknown render setting(s) {', '.join(unknown)}; the settings are "
        f"{', '.join(f.name for f in dataclasses.fields(self))}"
      )
    return dataclasses.replace(self, **overrides) if overrides else self

  def to_dict(self) -> dict[str, Any]:
    """The config as JSON-able values, for a sweep's manifest; refuses settings that are
    objects (a manifest records names, so that a resume can compare them)."""
    out = {}
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if f.name == "optimizer":
        if value is not None:
          raise ConfigError(
            "a sweep records its settings by name: use learning_rate, not an optimizer object"
          )
        continue
      if callable(value):
        raise ConfigError(
          f"a sweep records its settings by name: give {f.name} as one of its names, not {value!r}"
        )
      if f.name == "snapshots":
        if value:  # left out when empty, so that manifests made before the field still match
          out[f.name] = list(value)
        continue
      out[f.name] = sorted(value) if isinstance(value, frozenset) else value
    return out

  @classmethod
  def from_dict(cls, values: dict[str, Any]) -> RenderConfig:
    """The inverse of :meth:`to_dict`."""
    values = dict(values)
    if isinstance(values.get("rewrites"), list):
      values["rewrites"] = frozenset(values["rewrites"])
    if isinstance(values.get("snapshots"), list):
      values["snapshots"] = tuple(values["snapshots"])
    return cls().replace(**values)

  # ---- what the settings mean, resolved for the loop ------------------------------------

  def kernel_implementation(self) -> str | None:
    """The kernels' ``implementation=`` argument: None for auto."""
    return None if self.kernels == "auto" else self.kernels

  def param_factory(self) -> Callable[..., param_lib.Param]:
    factory = self.param
    if isinstance(factory, str):
      impl = self.kernel_implementation()
      if self.param == "fourier" and impl is not None:
        factory = _FourierWith(impl)
      else:
        factory = param_lib.factory(self.param)
    return param_lib.alpha.WithAlpha(factory) if self.alpha else factory

  def transform(self) -> Callable:
    if not isinstance(self.transforms, str):
      return self.transforms
    return {
      "standard": lambda: tf_lib.standard(implementation=self.kernel_implementation()),
      "shared": lambda: tf_lib.standard(shared=True),
      "maco": lambda: MacoCrops(implementation=self.kernel_implementation()),
      "none": tf_lib.identity,
    }[self.transforms]()


@dataclasses.dataclass(frozen=True)
class _FourierWith:
  """``param.fourier`` with a fixed decode implementation; equal by it (a stable compile key)."""

  implementation: str

  def __call__(self, size, batch=1, channels=3):
    return param_lib.fourier(size, batch, channels, implementation=self.implementation)


def _check_int(name: str, value: Any, low: int, high: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
    raise ConfigError(f"{name} must be an integer from {low} to {high}, got {value!r}")
  return int(value)


def _check_snapshots(value: Any, steps: int) -> tuple[int, ...]:
  """``value`` as a tuple of increasing steps from 1 to ``steps``, else a ConfigError."""
  what = f"snapshots must be steps from 1 to {steps} (the render's steps), in increasing order"
  if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
    raise ConfigError(f"{what}, as a tuple such as (16, 64); got {value!r}")
  value = tuple(value)
  for step in value:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or not 1 <= step <= steps:
      raise ConfigError(f"{what}; got {step!r} in {value!r}")
  if any(b <= a for a, b in zip(value, value[1:])):
    raise ConfigError(f"{what}, each once; got {value!r}")
  return tuple(int(step) for step in value)
