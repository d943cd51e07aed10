"""The render loop: gradient ascent on images, run as compiled chunks of steps.

``render(model, objective)`` draws the initial parameters from the seed, then
runs ``steps`` of: parameters -> images -> random transforms -> network (only
the layers the objective reads) -> scores -> gradient -> optimizer update.
The steps run as a ``lax.scan`` of ``chunk`` steps inside one compiled program,
which Python calls ``steps / chunk`` times, carrying the state (parameters,
optimizer state, first non-finite step) from call to call. Model weights, the
objective's data (unit indices, targets), the seed's key and the index of the
chunk's first step are arguments of that program, never constants, so
rendering other units, another seed or (where :func:`chunk_lengths` gives the
same chunk) another step count reuses it.

Why chunks and not one scan of all steps: the program has no host callbacks
(progress is shown from Python between chunks), so JAX's persistent
compilation cache can store it (``jax._src.compiler._cache_write`` skips
programs with host callbacks; see ``featviz.compile_cache``), and showing a
progress bar or not is the same program. Step ``t`` draws its transforms from
``fold_in(k_steps, t)`` with the global ``t``, so the images do not depend on
the chunking: they are bitwise those of a single chunk of all steps
(``tests/test_render_chunks.py``).

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
from featviz.model import STANDARD_OPS, Model, cast_kernels, run_forward
from featviz.nonlin import LUCID_REDIRECT_STEPS, redirecting


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
  """The objective or the image parameters stopped being finite.

  Attributes:
    step: the first step whose loss or updated parameters were not finite.
    images: the images of the last finite step (after ``step`` steps), or None.
  """

  def __init__(self, message: str, step: int | None = None, images: np.ndarray | None = None):
    super().__init__(message)
    self.step = step
    self.images = images


@functools.lru_cache(maxsize=None)
def adam(learning_rate: float = LUCID.learning_rate) -> optax.GradientTransformation:
  """Adam, cached per learning rate so that renders share one compiled loop."""
  return optax.adam(learning_rate)


# Steps per compiled call, at most (see chunk_lengths). Measured on jax 0.10.2, 2-core CPU: a call
# costs 0.04 ms (tiny test CNN, 8 weight arrays) to 0.25 ms (InceptionV1, 116) of host time to
# dispatch, and InceptionV1 mixed4a (batch 1) ran at 20.0 ms/step in 1-step chunks, 18.9 in 8- and
# 32-step chunks (the old single scan: the same, within the machine's noise). Dispatch is
# asynchronous, so that cost is hidden once a call's steps outlast it; 32 steps do for any real
# network and nearly for a 16-px toy (0.19 ms/step in 1-step chunks, 0.08 in 32, 0.075 in 64).
# Longer chunks would only make the progress bar and the non-finite check coarser, and fewer step
# counts would share a chunk; 32 divides Lucid's 512 and the other powers of two users pick.
MAX_CHUNK = 32


def chunk_lengths(steps: int, chunk: int | None = None) -> tuple[int, ...]:
  """The step counts of the compiled calls that run ``steps`` steps, in order.

  ``chunk=None`` takes the largest divisor of ``steps`` that is at most
  :data:`MAX_CHUNK` (512, 256, 1024 steps: 32; 100, 200, 1000: 25; 12: 12), so
  every render compiles one loop program and the step counts with the same
  divisor share it. A count with no divisor near 32 (101: 1) gets short chunks
  rather than a second program: a call costs about 1 ms more than a step inside
  a scan (see :data:`MAX_CHUNK`), 0.1 s for 101 calls, while a second program
  takes seconds to compile on a CPU (measured: 4 to 7 s for InceptionV1 mixed4a,
  4.8 s for EfficientNet-Lite0 block3). An explicit ``chunk`` gives
  ``steps // chunk`` calls of ``chunk`` steps and one of the rest. The images
  never depend on the chunks (see the module docstring).
  """
  steps = int(steps)
  if steps < 1:
    raise ValueError(f"steps must be at least 1, got {steps}")
  if chunk is None:
    chunk = max(d for d in range(1, min(steps, MAX_CHUNK) + 1) if steps % d == 0)
  chunk = int(chunk)
  if chunk < 1:
    raise ValueError(f"chunk must be at least 1, got {chunk}")
  full, rest = divmod(steps, chunk)
  return (chunk,) * full + ((rest,) if rest else ())


@dataclasses.dataclass(frozen=True)
class _Setup:
  """What the initial state and the final images depend on: a few small programs serve
  every layer, objective and step count of one image shape and optimizer."""

  param: Callable
  size: tuple[int, int]
  batch: int
  channels: int
  optimizer: optax.GradientTransformation
  batch_sharding: Any = None


@dataclasses.dataclass(frozen=True)
class _Plan:
  """Everything static about a chunk program; equal plans share a compiled program.

  The step count is not here: a render of ``steps`` steps calls the program of
  each length in :func:`chunk_lengths`. Neither is the progress bar, which
  Python advances between calls.
  """

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
  redirect_relu_steps: int
  chunk: int  # steps per call of the program (a lax.scan of this length)
  # A NamedSharding that splits the batch axis over a mesh's devices; None: one device.
  batch_sharding: Any = None
  # The network's arithmetic dtype (e.g. "bfloat16"); None: float32. Parameters stay float32.
  compute_dtype: str | None = None

  @property
  def setup(self) -> _Setup:
    return _Setup(self.param, self.size, self.batch, self.channels, self.optimizer,
                  self.batch_sharding)


@dataclasses.dataclass
class RenderResult:
  """What :func:`render` returns.

  Attributes:
    images: ``(B, H, W, C)`` float32 in ``[0, 1]``.
    history: ``(steps, B)``: each image's objective value at every step, on the
      transformed image the step optimized.
    labels: a short label per image (e.g. ``"block10:5"``).
    seed: the seed that drew the initial parameters and every transform.
    compile_seconds: time spent compiling the programs this render needed (0 when
      all were compiled before in this process; loading them from JAX's persistent
      compilation cache counts here too, and takes far less than compiling).
    run_seconds: time spent running the compiled programs (every chunk, the
      initial draw and the final images), transfers of the results included.
  """

  images: np.ndarray
  history: np.ndarray
  labels: list[str]
  seed: int
  steps: int
  compile_seconds: float
  run_seconds: float
  objective: obj_lib.Objective


# Chunk programs: signature (plan, weights' and objective's shapes) -> compiled program. The
# benchmarks read the newest entry's cost analysis (XLA counts a scan body once: one step).
_COMPILED: dict[Any, Any] = {}
# The small programs: (setup, "init" | "images") -> compiled program.
_SETUP_COMPILED: dict[Any, Any] = {}
_TRACES = [0]


def trace_count() -> int:
  """How many times a chunk program of the render loop has been traced (compiled) in this
  process: one per plan, chunk length and argument signature. The small programs that draw
  the initial state and decode the final images are not counted."""
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


def _on_batch_axis(plan: _Plan | _Setup, params):
  """Pins every params leaf's leading (batch) axis to the plan's devices (no-op on one).

  Each image has its own parameters, so splitting the batch is data parallelism
  (the only communication is the finiteness check's scalar all-reduces); without
  the pin XLA could keep the freshly drawn parameters on one device.
  """
  if plan.batch_sharding is None:
    return params
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, plan.batch_sharding), params)


def _keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(k_init, k_steps)``: the initial draw's key and the key every step folds its index in."""
  k_init, k_steps = jax.random.split(key)
  return k_init, k_steps


def _init(setup: _Setup, key: jax.Array):
  """The loop's initial state: ``(params, opt_state, bad_step = -1)``."""
  param = setup.param(setup.size, setup.batch, setup.channels)
  params = _on_batch_axis(setup, param.init(_keys(key)[0]))
  return params, setup.optimizer.init(params), jnp.asarray(-1, jnp.int32)


def _images(setup: _Setup, params) -> jax.Array:
  """The images of ``params``."""
  return setup.param(setup.size, setup.batch, setup.channels).to_image(params)


def _optimize_chunk(plan: _Plan, weights, objective: obj_lib.Objective, key: jax.Array, state,
                    start: jax.Array):
  """A chunk program: steps ``start .. start + plan.chunk - 1`` from ``state``.

  Returns the new state and the chunk's history rows ``(plan.chunk, B)``. Step
  ``t`` uses the global ``t`` (its transforms' key, the redirected-ReLU switch),
  so a run's result does not depend on how its steps are chunked.
  """
  _TRACES[0] += 1
  if plan.compute_dtype is not None:  # once per chunk, outside the scan; run_forward's is a no-op
    weights = cast_kernels(weights, plan.compute_dtype)
  param = plan.param(plan.size, plan.batch, plan.channels)
  k_steps = _keys(key)[1]

  def loss_fn(params, step_key, step):
    with jax.named_scope("param"):
      image = param.to_image(params)
    with jax.named_scope("transforms"):
      x = plan.transforms(step_key, image)
    ops = STANDARD_OPS
    if plan.redirect_relu_steps:
      ops = redirecting(step < plan.redirect_relu_steps)
    with jax.named_scope("model"):
      acts = run_forward(plan.forward, weights, network_input(plan, x), plan.layers, ops,
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
    return (params, opt_state, bad_step), scores

  steps = start + jnp.arange(plan.chunk, dtype=jnp.int32)
  return jax.lax.scan(step_fn, state, steps)


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


@functools.lru_cache(maxsize=None)
def _state_shape(setup: _Setup):
  """The loop state's shapes and dtypes, without drawing anything (traced once per setup)."""
  return jax.eval_shape(functools.partial(_init, setup), jax.random.key(0))


def _state_shardings(setup: _Setup):
  """The state's layout: leaves with a leading batch axis split like the images, the rest
  (Adam's step count, the first bad step) replicated."""
  batch = setup.batch_sharding
  replicated = jax.sharding.NamedSharding(batch.mesh, jax.sharding.PartitionSpec())
  return jax.tree.map(lambda x: batch if x.shape[:1] == (setup.batch,) else replicated,
                      _state_shape(setup))


def shardings(plan: _Plan, weights, objective, key):
  """``(in_shardings, out_shardings)`` of the chunk program when the plan splits the batch.

  Arguments ``(weights, objective, key, state, start)``: weights, the key and
  ``start`` are replicated; objective leaves whose leading axis is the batch
  (unit indices, per-image vectors) and state leaves with a leading batch axis
  (parameters, Adam's moments) are split like the images. Results ``(state,
  history)``: the state as it came in, the history ``(chunk, B)`` split on its
  second axis.
  """
  batch = plan.batch_sharding
  mesh, axes = batch.mesh, batch.spec[0]
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def leaf(x):
    return batch if np.ndim(x) >= 1 and np.shape(x)[0] == plan.batch else replicated

  state = _state_shardings(plan.setup)
  in_shardings = (jax.tree.map(lambda _: replicated, weights), jax.tree.map(leaf, objective),
                  replicated, state, replicated)
  history = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, axes))
  return in_shardings, (state, history)


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Splits a leading batch axis over every device of ``mesh`` (all its axes)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))


def compiled_loop(plan: _Plan, weights, objective, key):
  """The compiled chunk program for this plan and argument signature, and its compile time.

  It is called as ``fn(weights, objective, key, state, start) -> (state,
  history)`` with ``state`` from :func:`compiled_setup`'s ``"init"`` program or
  a previous call. With ``plan.batch_sharding`` it takes and returns arrays laid
  out as :func:`shardings` says; pass arguments through ``jax.device_put`` to match.
  """
  signature = (plan, _signature(weights), _signature(objective))
  if signature in _COMPILED:
    return _COMPILED[signature], 0.0
  start = time.perf_counter()
  layout = {}
  if plan.batch_sharding is not None:
    layout = dict(zip(("in_shardings", "out_shardings"),
                      shardings(plan, weights, objective, key)))
  index = jax.ShapeDtypeStruct((), jnp.int32)
  fn = jax.jit(_optimize_chunk, static_argnums=0, **layout).lower(
      plan, weights, objective, key, _state_shape(plan.setup), index).compile()
  _COMPILED[signature] = fn
  return fn, time.perf_counter() - start


def compiled_setup(setup: _Setup, kind: str):
  """The compiled ``"init"`` (``key -> state``) or ``"images"`` (``params -> images``)
  program, and its compile time (0 when compiled before)."""
  if (setup, kind) in _SETUP_COMPILED:
    return _SETUP_COMPILED[setup, kind], 0.0
  start = time.perf_counter()
  layout = {}
  if kind == "init":
    fn, arg = _init, jax.random.key(0)
    if setup.batch_sharding is not None:
      layout = {"out_shardings": _state_shardings(setup)}
  elif kind == "images":
    fn, arg = _images, _state_shape(setup)[0]
    if setup.batch_sharding is not None:
      layout = {"in_shardings": (_state_shardings(setup)[0],),
                "out_shardings": setup.batch_sharding}
  else:
    raise ValueError(f"kind must be 'init' or 'images', got {kind!r}")
  compiled = jax.jit(fn, static_argnums=0, **layout).lower(setup, arg).compile()
  _SETUP_COMPILED[setup, kind] = compiled
  return compiled, time.perf_counter() - start


def _run(init, chunks, finish, args, lengths: Sequence[int], bar) -> tuple:
  """Runs the compiled programs: ``(images, history, bad_step)`` as NumPy values.

  Chunk ``i + 1`` is dispatched before Python waits for chunk ``i``'s first bad
  step (a scalar), so the device always has the next chunk queued while the bar
  advances and the finiteness check runs. A non-finite step ends the run after
  the chunk that follows it: the state froze at that step, so the images are
  those of the last finite step either way.
  """
  weights, objective, key = args
  state = init(key)
  history, pending, bad_step, done = [], [], -1, 0

  def wait(entry):
    bad, steps_done = entry
    bad = int(jax.device_get(bad))
    if bar is not None:
      progress.tick(steps_done - 1)
    return bad

  for n in lengths:
    state, rows = chunks[n](weights, objective, key, state, np.int32(done))
    done += n
    history.append(rows)
    pending.append((state[2], done))
    if len(pending) > 1:
      bad_step = wait(pending.pop(0))
      if bad_step >= 0:
        break
  if bad_step < 0:
    for entry in pending:
      bad_step = wait(entry)
  images, history = jax.device_get((finish(state[0]), history))
  return np.asarray(images), np.concatenate([np.asarray(h) for h in history]), bad_step


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
           compute_dtype: str | None = None,
           chunk: int | None = None) -> RenderResult:
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
    chunk: steps per call of the compiled loop (see :func:`chunk_lengths`; ``None``
      picks a divisor of ``steps`` up to 32). Changes neither the images nor the
      history (bitwise), only how often Python sees progress and which programs
      compile.

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
  lengths = chunk_lengths(steps, chunk)  # raises on steps < 1
  if mesh is not None and batch % mesh.size:
    raise ValueError(f"batch {batch} must be a multiple of the mesh's {mesh.size} devices; "
                     "pad the batch (featviz._sweep.partition.padded_batch)")
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
      redirect_relu_steps=int(redirect_relu_steps),
      chunk=lengths[0],
      batch_sharding=None if mesh is None else batch_sharding(mesh),
      compute_dtype=None if compute_dtype is None else jnp.dtype(compute_dtype).name)
  bound = jax.tree.map(_canonical, bound)
  key = jax.random.key(seed)
  # Every program first (init, the chunk length(s), images), then the run.
  init, compile_seconds = compiled_setup(plan.setup, "init")
  chunks = {}
  for n in dict.fromkeys(lengths):
    chunks[n], seconds = compiled_loop(dataclasses.replace(plan, chunk=n), model.weights, bound,
                                       key)
    compile_seconds += seconds
  finish, seconds = compiled_setup(plan.setup, "images")
  compile_seconds += seconds
  args = (model.weights, bound, key)
  if mesh is not None:  # committed arrays must arrive as compiled; a no-op when they do
    args = jax.device_put(args, shardings(plan, *args)[0][:3])
  labels = bound.labels(batch)
  desc = f"render {model.spec.name} {labels[0]}" + (f" (+{batch - 1})" if batch > 1 else "")
  with progress.bar(steps, desc, enabled=progress_bar, images_per_step=batch) as bar:
    start = time.perf_counter()
    images, history, bad_step = _run(init, chunks, finish, args, lengths, bar)
    run_seconds = time.perf_counter() - start
  if bad_step >= 0:
    raise NonFiniteError(
        f"the objective {' | '.join(dict.fromkeys(labels))} on {model.spec.name} became "
        f"non-finite at step {bad_step} of {steps}; the images were kept at step "
        f"{bad_step - 1}. Lower the learning rate or add a regularizer.", bad_step, images)
  return RenderResult(images, history, labels, seed, steps, compile_seconds, run_seconds, bound)


def score_images(model: Model, objective: obj_lib.Objective, images: Any) -> np.ndarray:
  """Each image's objective value, on the images as given (no transforms): ``(B,)``."""
  images = jnp.asarray(images, jnp.float32)
  bound = objective.bind(model.spec, images.shape[0])
  acts = model.activations(images, sorted(bound.layers))
  return np.asarray(bound(obj_lib.Context(acts, images)))


callable_module.make_callable(__name__, "render")  # featviz.render(model, objective, ...)
