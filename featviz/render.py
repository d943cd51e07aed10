"""The render loop: gradient ascent on images, every step inside one ``jit``.

``render(model, objective)`` draws the initial parameters from the seed, then
runs ``steps`` of: parameters -> images -> random transforms -> network (only
the layers the objective reads) -> scores -> gradient -> optimizer update, as a
``lax.scan`` inside one compiled program. Model weights and the objective's
data (unit indices, targets) are arguments of that program, never constants,
so rendering other units or another seed reuses it.

Defaults are Lucid's (``lucid/optvis/render.py``, ``anchors.md``): Fourier
parameterization, ``standard_transforms``, Adam with learning rate 0.05, 512
steps, 128 px, redirected ReLU gradients for the first 16 steps.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from featviz import callable_module
from featviz import objectives as obj_lib
from featviz import param as param_lib
from featviz import progress
from featviz import transforms as tf_lib
from featviz.model import STANDARD_NONLIN, Model, cast_kernels, run_forward
from featviz.redirected_relu import LUCID_REDIRECT_STEPS, redirecting


@dataclasses.dataclass(frozen=True)
class RenderConfig:
  """Settings of a render; :meth:`lucid` gives Lucid's defaults."""

  param: str = "fourier"
  steps: int = 512
  size: int = 128
  learning_rate: float = 0.05
  redirect_relu_steps: int = LUCID_REDIRECT_STEPS

  @classmethod
  def lucid(cls) -> "RenderConfig":
    """Lucid's ``render_vis`` defaults: Fourier, 512 steps, 128 px, Adam 0.05."""
    return cls()


LUCID = RenderConfig.lucid()


class NonFiniteError(FloatingPointError):
  """The objective or the image parameters stopped being finite."""


@functools.lru_cache(maxsize=None)
def adam(learning_rate: float = LUCID.learning_rate) -> optax.GradientTransformation:
  """Adam, cached per learning rate so that renders share one compiled loop."""
  return optax.adam(learning_rate)


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Everything static about a render; equal plans share a compiled program."""

  forward: Callable
  value_range: tuple[float, float]
  input_size: int | None
  layers: tuple[str, ...]
  param: Callable
  size: tuple[int, int]
  batch: int
  channels: int
  transforms: Callable
  optimizer: optax.GradientTransformation
  steps: int
  redirect_relu_steps: int
  progress_every: int  # 0: no progress callback
  # A NamedSharding that splits the batch axis over a mesh's devices; None: one device.
  batch_sharding: Any = None
  # The network's arithmetic dtype (e.g. "bfloat16"); None: float32. Parameters stay float32.
  compute_dtype: str | None = None


@dataclasses.dataclass
class RenderResult:
  """What :func:`render` returns.

  Attributes:
    images: ``(B, H, W, C)`` float32 in ``[0, 1]``.
    history: ``(steps, B)``: each image's objective value at every step, on the
      transformed image the step optimized.
    labels: a short label per image (e.g. ``"block10:5"``).
    seed: the seed that drew the initial parameters and every transform.
    compile_seconds: time spent compiling (0 when the program was cached).
    run_seconds: time spent running the compiled loop.
  """

  images: np.ndarray
  history: np.ndarray
  labels: list[str]
  seed: int
  steps: int
  compile_seconds: float
  run_seconds: float
  objective: obj_lib.Objective


_COMPILED: dict[Any, Any] = {}
_TRACES = [0]


def trace_count() -> int:
  """How many times the render loop has been traced (compiled) in this process."""
  return _TRACES[0]


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def network_input(plan: _Plan, images: jax.Array) -> jax.Array:
  """Resizes to the network's input size when it has one, then maps to its value range."""
  if plan.input_size is not None and images.shape[1:3] != (plan.input_size,) * 2:
    b, _, _, c = images.shape
    images = jax.image.resize(images, (b, plan.input_size, plan.input_size, c), "linear")
  lo, hi = plan.value_range
  return lo + (hi - lo) * images


def _on_batch_axis(plan: _Plan, params):
  """Pins every params leaf's leading (batch) axis to the plan's devices (no-op on one).

  Each image has its own parameters, so splitting the batch is data parallelism
  (the only communication is the finiteness check's scalar all-reduces); without
  the pin XLA could keep the freshly drawn parameters on one device.
  """
  if plan.batch_sharding is None:
    return params
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, plan.batch_sharding), params)


def _optimize(plan: _Plan, weights, objective: obj_lib.Objective, key: jax.Array):
  """The compiled loop. Returns final images, history ``(steps, B)``, first bad step."""
  _TRACES[0] += 1
  if plan.compute_dtype is not None:  # once, outside the loop; run_forward's cast is then a no-op
    weights = cast_kernels(weights, plan.compute_dtype)
  param = plan.param(plan.size, plan.batch, plan.channels)
  k_init, k_steps = jax.random.split(key)
  params = _on_batch_axis(plan, param.init(k_init))
  opt_state = plan.optimizer.init(params)

  def loss_fn(params, step_key, step):
    with jax.named_scope("param"):
      image = param.to_image(params)
    with jax.named_scope("transforms"):
      x = plan.transforms(step_key, image)
    nonlin = STANDARD_NONLIN
    if plan.redirect_relu_steps:
      nonlin = redirecting(step < plan.redirect_relu_steps)
    with jax.named_scope("model"):
      acts = run_forward(plan.forward, weights, network_input(plan, x), plan.layers, nonlin,
                         plan.compute_dtype)
    with jax.named_scope("objective"):
      scores = objective(obj_lib.Context(acts, image))
    return -jnp.sum(scores), scores

  def step_fn(carry, step):
    params, opt_state, bad_step = carry
    step_key = jax.random.fold_in(k_steps, step)
    (loss, scores), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, step_key, step)
    with jax.named_scope("optimizer"):
      updates, new_opt_state = plan.optimizer.update(grads, opt_state, params)
      new_params = _on_batch_axis(plan, optax.apply_updates(params, updates))
    finite = jnp.isfinite(loss) & _all_finite(new_params)
    bad_step = jnp.where((bad_step < 0) & ~finite, step, bad_step)
    keep = bad_step < 0  # once non-finite, freeze: the error names the step afterwards
    params = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_params, params)
    opt_state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_opt_state, opt_state)
    if plan.progress_every:
      report = (step % plan.progress_every == plan.progress_every - 1) | (step == plan.steps - 1)
      jax.lax.cond(report, lambda: jax.debug.callback(progress.tick, step), lambda: None)
    return (params, opt_state, bad_step), scores

  init = (params, opt_state, jnp.asarray(-1, jnp.int32))
  (params, _, bad_step), history = jax.lax.scan(step_fn, init, jnp.arange(plan.steps))
  return param.to_image(params), history, bad_step


def _canonical(leaf):
  """Fixes dtypes of objective data so the compiled program's signature is stable."""
  if isinstance(leaf, (bool, np.bool_)):
    return np.asarray(leaf)
  if isinstance(leaf, (int, np.integer)):
    return np.int32(leaf)
  if isinstance(leaf, (float, np.floating)):
    return np.float32(leaf)
  if isinstance(leaf, np.ndarray):
    if leaf.dtype.kind == "f":
      return leaf.astype(np.float32)
    if leaf.dtype.kind in "iu":
      return leaf.astype(np.int32)
  return leaf


def _signature(tree) -> tuple:
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


def shardings(plan: _Plan, weights, objective, key):
  """``(in_shardings, out_shardings)`` of the loop when the plan splits the batch.

  Weights and the key are replicated; objective leaves whose leading axis is the
  batch (unit indices, per-image vectors) are split like the images; the history
  ``(steps, B)`` is split on its second axis.
  """
  batch = plan.batch_sharding
  mesh, axes = batch.mesh, batch.spec[0]
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def leaf(x):
    return batch if np.ndim(x) >= 1 and np.shape(x)[0] == plan.batch else replicated

  in_shardings = (jax.tree.map(lambda _: replicated, weights), jax.tree.map(leaf, objective),
                  replicated)
  history = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, axes))
  return in_shardings, (batch, history, replicated)


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Splits a leading batch axis over every device of ``mesh`` (all its axes)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))


def compiled_loop(plan: _Plan, weights, objective, key):
  """The compiled program for this plan and argument signature, and its compile time.

  With ``plan.batch_sharding`` the program takes and returns arrays laid out as
  :func:`shardings` says; pass arguments through ``jax.device_put`` to match.
  """
  signature = (plan, _signature(weights), _signature(objective))
  if signature in _COMPILED:
    return _COMPILED[signature], 0.0
  start = time.perf_counter()
  layout = {}
  if plan.batch_sharding is not None:
    layout = dict(zip(("in_shardings", "out_shardings"),
                      shardings(plan, weights, objective, key)))
  fn = jax.jit(_optimize, static_argnums=0, **layout).lower(plan, weights, objective, key).compile()
  _COMPILED[signature] = fn
  return fn, time.perf_counter() - start


def resolve_batch(objective: obj_lib.Objective, batch: int | None) -> int:
  implied = objective.batch
  if batch is None:
    return implied or 1
  if implied is not None and implied != batch:
    raise ValueError(f"the objective renders {implied} images (one per unit) but batch={batch}")
  return int(batch)


def render(model: Model, objective: obj_lib.Objective, *,
           param: str | Callable[..., param_lib.Param] = LUCID.param,
           transforms: Callable | Sequence[Callable] | None = None,
           optimizer: optax.GradientTransformation | None = None,
           steps: int = LUCID.steps,
           size: int = LUCID.size,
           batch: int | None = None,
           seed: int = 0,
           input_size: int | None = None,
           redirect_relu_steps: int = LUCID.redirect_relu_steps,
           progress_bar: bool = True,
           mesh: jax.sharding.Mesh | None = None,
           compute_dtype: str | None = None) -> RenderResult:
  """Renders images that maximize ``objective`` on ``model``.

  Args:
    model: a :class:`featviz.model.Model` (``featviz.zoo.load(name)``).
    objective: what to maximize; its units decide the batch (one image per unit).
    param: "fourier" (Lucid's default), "pixel", or a factory
      ``f(size, batch, channels) -> Param``.
    transforms: a transform ``(key, images) -> images`` or a list of them
      (composed); ``None`` means Lucid's ``standard_transforms`` with a draw per
      image (``featviz.transforms.standard(shared=True)`` for Lucid's shared draw).
    optimizer: an optax optimizer; ``None`` means Adam with learning rate 0.05.
    steps: optimization steps.
    size: side of the rendered images in pixels.
    batch: number of images; defaults to what the objective's units imply.
    seed: seeds the initial parameters and all transform draws. The same seed,
      inputs and device give the same images.
    input_size: resize the transformed images to this size before the network
      (Lucent upsamples to 224). Models with a fixed input size always resize.
    redirect_relu_steps: Lucid's redirected ReLU gradient for this many first
      steps (16); 0 turns it off.
    progress_bar: show a progress bar on stderr.
    mesh: split the batch over this mesh's devices (data parallel: every image
      has its own parameters, so no device waits for another). ``batch`` must
      be a multiple of ``mesh.size``. ``None``: the default device.
    compute_dtype: "bfloat16" multiplies in bf16 inside the network's convolutions
      (kernels cast once, float32 accumulation; see ``model.run_forward``);
      activations, gradients, optimizer state and image parameters stay float32.
      ``None``: float32 throughout.

  Returns:
    A :class:`RenderResult` with ``images (B, H, W, C)`` and ``history (steps, B)``.

  Raises:
    NonFiniteError: the objective or the parameters became NaN or infinite; the
      message names the step and the objective.
  """
  batch = resolve_batch(objective, batch)
  bound = objective.bind(model.spec, batch)
  if transforms is None:
    transforms = tf_lib.standard()
  elif not callable(transforms):
    transforms = tf_lib.compose(transforms)
  if isinstance(param, str):
    param = param_lib.factory(param)
  if model.spec.fixed_size:
    input_size = model.spec.image_size
  if steps < 1:
    raise ValueError(f"steps must be at least 1, got {steps}")
  every = max(1, steps // 100) if progress_bar else 0
  if mesh is not None and batch % mesh.size:
    raise ValueError(f"batch {batch} must be a multiple of the mesh's {mesh.size} devices; "
                     "pad the batch (featviz.partition.padded_batch)")
  plan = _Plan(
      forward=model.forward,
      value_range=tuple(model.spec.value_range),
      input_size=input_size,
      layers=model.layers_in_order(sorted(bound.layers)),
      param=param,
      size=(size, size),
      batch=batch,
      channels=model.spec.channels,
      transforms=transforms,
      optimizer=optimizer if optimizer is not None else adam(LUCID.learning_rate),
      steps=int(steps),
      redirect_relu_steps=int(redirect_relu_steps),
      progress_every=every,
      batch_sharding=None if mesh is None else batch_sharding(mesh),
      compute_dtype=None if compute_dtype is None else jnp.dtype(compute_dtype).name)
  bound = jax.tree.map(_canonical, bound)
  key = jax.random.key(seed)
  fn, compile_seconds = compiled_loop(plan, model.weights, bound, key)
  args = (model.weights, bound, key)
  if mesh is not None:  # committed arrays must arrive as compiled; a no-op when they do
    args = jax.device_put(args, shardings(plan, *args)[0])
  labels = bound.labels(batch)
  desc = f"render {model.spec.name} {labels[0]}" + (f" (+{batch - 1})" if batch > 1 else "")
  with progress.bar(steps, desc, enabled=progress_bar, images_per_step=batch):
    start = time.perf_counter()
    images, history, bad_step = fn(*args)
    images, history, bad_step = jax.device_get((images, history, bad_step))
    run_seconds = time.perf_counter() - start
  if int(bad_step) >= 0:
    raise NonFiniteError(
        f"the objective {' | '.join(dict.fromkeys(labels))} on {model.spec.name} became "
        f"non-finite at step {int(bad_step)} of {steps}; the images were kept at step "
        f"{int(bad_step) - 1}. Lower the learning rate or add a regularizer.")
  return RenderResult(np.asarray(images), np.asarray(history), labels, seed, steps,
                      compile_seconds, run_seconds, bound)


def score_images(model: Model, objective: obj_lib.Objective, images: Any) -> np.ndarray:
  """Each image's objective value, on the images as given (no transforms): ``(B,)``."""
  images = jnp.asarray(images, jnp.float32)
  bound = objective.bind(model.spec, images.shape[0])
  acts = model.activations(images, sorted(bound.layers))
  return np.asarray(bound(obj_lib.Context(acts, images)))


callable_module.make_callable(__name__, "render")  # featviz.render(model, objective, ...)
