"""The compiled programs of a render: the initial draw, the chunk of steps, the final images.

A render of ``steps`` steps runs as a ``lax.scan`` of ``chunk`` steps inside one compiled
program, which Python calls ``steps / chunk`` times, carrying the state (parameters, optimizer
state, first non-finite step) from call to call. The model (a pytree: weights are leaves), the
objective's data (unit indices, targets), the per-image keys and the index of the chunk's first
step are arguments of that program, never constants, so rendering other units, another seed or
(where :func:`chunk_lengths` gives the same chunk) another step count reuses it.

Why chunks and not one scan of all steps: the program has no host callbacks (progress is shown
from Python between chunks), so JAX's persistent compilation cache can store it (see
``featviz.compile_cache``), and showing a progress bar or not is the same program. Step ``t``
draws its transforms from ``fold_in(k_steps, t)`` with the global ``t``, so the images do not
depend on the chunking: they are bitwise those of a single chunk of all steps
(``tests/test_render_chunks.py``).

Everything static about the programs is a :class:`Plan`; equal plans and argument signatures
share a compiled program, kept in one bounded cache.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from featviz import objectives as obj_lib
from featviz import param as param_lib
from featviz import transforms as tf_lib
from featviz.model import Model
from featviz.nonlin import Ops, redirecting

# Steps per compiled call, at most (see chunk_lengths). Measured on jax 0.10.2, 2-core CPU: a call
# costs 0.04 ms (tiny test CNN, 8 weight arrays) to 0.25 ms (InceptionV1, 116) of host time to
# dispatch, and InceptionV1 mixed4a (batch 1) ran at 20.0 ms/step in 1-step chunks, 18.9 in 8- and
# 32-step chunks (a single scan: the same, within the machine's noise). Dispatch is asynchronous,
# so that cost is hidden once a call's steps outlast it; 32 steps do for any real network and
# nearly for a 16-px toy (0.19 ms/step in 1-step chunks, 0.08 in 32, 0.075 in 64). Longer chunks
# would only make the progress bar and the non-finite check coarser, and fewer step counts would
# share a chunk; 32 divides Lucid's 512 and the other powers of two users pick.
MAX_CHUNK = 32

# Compiled programs kept per process (least recently used dropped first). A sweep of every layer
# of InceptionV1 needs 3 per layer shape; 64 keeps a whole model's with room to spare.
MAX_PROGRAMS = 64


def chunk_lengths(steps: int, chunk: int | None = None) -> tuple[int, ...]:
  """The step counts of the compiled calls that run ``steps`` steps, in order.

  ``chunk=None`` takes the largest divisor of ``steps`` that is at most :data:`MAX_CHUNK` (512,
  256, 1024 steps: 32; 100, 200, 1000: 25; 12: 12), so every render compiles one loop program
  and the step counts with the same divisor share it. A count with no divisor near 32 (101: 1)
  gets short chunks rather than a second program: a call costs about 1 ms more than a step
  inside a scan (see :data:`MAX_CHUNK`), 0.1 s for 101 calls, while a second program takes
  seconds to compile on a CPU (measured: 4 to 7 s for InceptionV1 mixed4a, 4.8 s for
  EfficientNet-Lite0 block3). An explicit ``chunk`` gives ``steps // chunk`` calls of ``chunk``
  steps and one of the rest. The images never depend on the chunks.
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
class Plan:
  """Everything static about the programs of a render; equal plans share compiled programs.

  The step count is not here: a render of ``steps`` steps calls the program of each length in
  :func:`chunk_lengths`. Neither is the progress bar, which Python advances between calls, nor
  the model, whose spec and forward function are the static part of its pytree.
  """

  layers: tuple[str, ...]
  param: Callable  # f(size, batch, channels) -> featviz.param.Param
  size: tuple[int, int]
  batch: int
  channels: int
  transforms: Callable | None
  shared_draws: bool  # the transforms draw once for the batch (Lucid's behaviour)
  optimizer: optax.GradientTransformation | float  # a float: Adam with that learning rate
  redirect_relu_steps: int
  chunk: int  # steps per call of the program (a lax.scan of this length)
  input_size: int | None
  compute_dtype: str | None  # the network's arithmetic dtype; None: float32
  rewrites: frozenset[str]  # featviz.nonlin.CPU_REWRITES the zoo layers use
  # A NamedSharding that splits the batch axis over a mesh's devices; None: one device.
  batch_sharding: Any = None
  # RGBA images (param has 4 channels): composite onto a random background each step and
  # weight the objective by transparency (featviz.param.alpha).
  alpha: bool = False
  # Accumulate each image's |d objective / d image| over the steps (MACO's transparency map),
  # carried in the state as a (B, H, W) array; False: the state carries None there.
  transparency: bool = False
  # Each slot of the batch is at its own step (the sweep's continuous batching,
  # featviz._sweep.continuous): the chunk program's ``start`` is (B,), the optimizer runs per
  # slot (its state, Adam's step count included, has a leading batch axis), the first bad
  # step is per slot, and the "refill" program restarts chosen slots. False: one step for the
  # batch, as a render has.
  per_slot: bool = False
  # With ``per_slot``: each device runs its slots one after another, each as a batch of one,
  # and skips the idle ones (a negative ``start``), so an idle slot costs nothing and a unit's
  # arithmetic is the same whatever batch or devices hold it (:func:`_serial_chunk`).
  serial: bool = False

  def setup(self) -> Plan:
    """The fields the initial draw and the final images depend on (the rest blanked), so a
    few small programs serve every layer, objective and step count of one image shape."""
    return dataclasses.replace(
      self,
      layers=(),
      transforms=None,
      shared_draws=False,
      redirect_relu_steps=0,
      chunk=0,
      input_size=None,
      compute_dtype=None,
      rewrites=frozenset(),
      serial=False,
    )

  def build_optimizer(self) -> optax.GradientTransformation:
    """The optimizer; with ``per_slot``, one per slot (vmapped over the batch axis), so that a
    slot restarted at step 0 gets Adam's bias correction for step 0 whatever the others'."""
    optimizer = optax.adam(self.optimizer) if isinstance(self.optimizer, float) else self.optimizer
    if not self.per_slot:
      return optimizer
    return optax.GradientTransformation(jax.vmap(optimizer.init), jax.vmap(optimizer.update))


def draws_shared(transform: Callable) -> bool:
  """True when ``transform`` draws one value for the whole batch (every part has
  ``shared=True``; Lucid's behaviour): it then gets the batch's key, not one per image."""
  if isinstance(transform, tf_lib.Compose):
    return all(draws_shared(t) for t in transform.transforms)
  return bool(getattr(transform, "shared", False))


_PROGRAMS: collections.OrderedDict[Any, Any] = collections.OrderedDict()
_TRACES = [0]


def trace_count() -> int:
  """How many times a chunk program has been traced (compiled) in this process: one per plan,
  chunk length and argument signature. The small programs that draw the initial state and
  decode the final images are not counted. A debugging aid (tests check reuse with it)."""
  return _TRACES[0]


def _all_finite(tree) -> jax.Array:
  leaves = jax.tree.leaves(tree)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _finite_per_slot(tree) -> jax.Array:
  """``(B,)``: whether each slot's leaves (leading batch axis) are all finite."""
  leaves = jax.tree.leaves(tree)
  per_leaf = [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in leaves]
  return jnp.all(jnp.stack(per_leaf), axis=0)


def _on_batch_axis(plan: Plan, params):
  """Pins every params leaf's leading (batch) axis to the plan's devices (no-op on one).

  Each image has its own parameters, so splitting the batch is data parallelism (the only
  communication is the finiteness check's scalar all-reduces); without the pin XLA could keep
  the freshly drawn parameters on one device.
  """
  if plan.batch_sharding is None:
    return params
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, plan.batch_sharding), params)


def _start(plan: Plan, params):
  """The loop state ``(params, opt_state, bad_step = -1, transparency)`` at ``params``
  (``bad_step`` one per slot with ``plan.per_slot``)."""
  params = _on_batch_axis(plan, params)
  accumulated = jnp.zeros((plan.batch, *plan.size), jnp.float32) if plan.transparency else None
  bad_step = jnp.full((plan.batch,) if plan.per_slot else (), -1, jnp.int32)
  return params, plan.build_optimizer().init(params), bad_step, accumulated


def _init(plan: Plan, k_init: jax.Array):
  """The loop's initial state (:func:`_start`): each image's parameters drawn from its own
  key (``k_init (B,)``)."""
  one = plan.param(plan.size, 1, plan.channels)
  params = jax.vmap(lambda k: jax.tree.map(lambda x: x[0], one.init(k)))(k_init)
  return _start(plan, params)


def _init_from(plan: Plan, images: jax.Array):
  """The loop's initial state at the parameters of ``images (B, H, W, C)`` in [0, 1] (the
  parameterization's ``from_image``: its inverse, or its closest fit)."""
  return _start(plan, plan.param(plan.size, plan.batch, plan.channels).from_image(images))


def _images(plan: Plan, params) -> jax.Array:
  """The images of ``params``."""
  return plan.param(plan.size, plan.batch, plan.channels).to_image(params)


def _refill(plan: Plan, state, k_init: jax.Array, fresh: jax.Array):
  """``state`` with the slots where ``fresh (B,)`` is true restarted: their parameters drawn
  anew from their keys ``k_init (B,)``, their optimizer state, first bad step and transparency
  those of step 0 (:func:`_init`). A ``per_slot`` plan's state has a leading batch axis on
  every leaf, so this is a select per leaf."""
  new = _init(plan, k_init)

  def pick(n, o):
    return jnp.where(fresh.reshape(fresh.shape + (1,) * (n.ndim - 1)), n, o)

  return jax.tree.map(pick, new, state)


def _per_image_steps(keys: jax.Array, step: jax.Array) -> jax.Array:
  """Each image's key folded with its step: ``step`` one for the batch, or one per slot."""
  return jax.vmap(jax.random.fold_in, in_axes=(0, None if step.ndim == 0 else 0))(keys, step)


def transform(
  plan: Plan, k_steps: jax.Array, k_shared: jax.Array, step: jax.Array, images: jax.Array
) -> jax.Array:
  """Step ``step``'s random transforms: each image with its own key, or one shared draw."""
  if plan.shared_draws:
    return plan.transforms(jax.random.fold_in(k_shared, step), images)
  keys = _per_image_steps(k_steps, step)
  return jax.vmap(lambda k, image: plan.transforms(k, image[None])[0])(keys, images)


# Folded into a step's per-image key for the alpha background, so that it is not the
# transforms' draw (the bytes of "back").
_BACKGROUND_SALT = 0x6261636B


def loss(
  plan: Plan,
  model: Model,
  objective: obj_lib.Objective,
  k_steps: jax.Array,
  k_shared: jax.Array,
  params,
  step: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """``(-sum of scores, scores (B,))`` of one step: params -> images -> transforms ->
  network (only the layers the objective reads) -> objective. ``model`` is already cast to
  the plan's compute dtype."""
  param = plan.param(plan.size, plan.batch, plan.channels)
  with jax.named_scope("param"):
    image = param.to_image(params)
  return loss_of_image(plan, model, objective, k_steps, k_shared, image, step)


def loss_of_image(
  plan: Plan,
  model: Model,
  objective: obj_lib.Objective,
  k_steps: jax.Array,
  k_shared: jax.Array,
  image: jax.Array,
  step: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """:func:`loss` from the decoded images on. With ``plan.alpha`` the RGBA images are
  composited onto a random background per image and step, the transforms move colour and
  alpha together, and the loss weights each score by Lucid's transparency term."""
  if plan.alpha:
    with jax.named_scope("alpha"):
      keys = _per_image_steps(k_steps, step)
      keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, _BACKGROUND_SALT)
      back = jax.vmap(lambda k: param_lib.alpha.background(k, 1, plan.size)[0])(keys)
      rgb = param_lib.alpha.composite(image, back)
      alpha_full = image[..., 3:]
      image = jnp.concatenate([rgb, alpha_full], axis=-1)
  with jax.named_scope("transforms"):
    x = transform(plan, k_steps, k_shared, step, image)
  weight = 1.0
  if plan.alpha:
    weight = param_lib.alpha.objective_weight(x[..., 3:], alpha_full)
    x, image = x[..., :3], rgb
  ops = Ops(rewrites=plan.rewrites)
  if plan.redirect_relu_steps:
    ops = redirecting(step < plan.redirect_relu_steps, plan.rewrites)
  with jax.named_scope("model"):
    acts = model.activations(
      x, plan.layers, ops=ops, compute_dtype=plan.compute_dtype, input_size=plan.input_size
    )
  with jax.named_scope("objective"):
    scores = objective(obj_lib.Context(acts, image))
  return -jnp.sum(scores * weight), scores


def _optimize_chunk(
  plan: Plan,
  model: Model,
  objective: obj_lib.Objective,
  k_steps: jax.Array,
  k_shared: jax.Array,
  state,
  start: jax.Array,
):
  """A chunk program: steps ``start .. start + plan.chunk - 1`` from ``state``.

  Returns the new state and the chunk's history rows ``(plan.chunk, B)``. Step ``t`` uses the
  global ``t`` (its transforms' keys, the redirected-ReLU switch), so a run's result does not
  depend on how its steps are chunked. With ``plan.per_slot``, ``start`` is ``(B,)``: slot ``i``
  runs its own steps ``start[i] ..`` and freezes at its own first non-finite step; with
  ``plan.serial`` too, the slots run one after another and a negative ``start[i]`` marks an
  idle slot, skipped (:func:`_serial_chunk`).
  """
  _TRACES[0] += 1
  model = model.cast(plan.compute_dtype)  # once per chunk, outside the scan
  if plan.serial:
    return _serial_chunk(plan, model, objective, k_steps, k_shared, state, start)
  return _chunk_steps(plan, model, objective, k_steps, k_shared, state, start)


def _chunk_steps(plan: Plan, model: Model, objective, k_steps, k_shared, state, start):
  """:func:`_optimize_chunk`'s scan of steps over the whole batch (``model`` already cast)."""
  optimizer = plan.build_optimizer()
  value_and_grad = jax.value_and_grad(
    functools.partial(loss, plan, model, objective, k_steps, k_shared), has_aux=True
  )
  param = plan.param(plan.size, plan.batch, plan.channels)
  image_value_and_grad = jax.value_and_grad(
    functools.partial(loss_of_image, plan, model, objective, k_steps, k_shared), has_aux=True
  )

  def gradients(params, step, accumulated):
    """The step's value, scores and parameter gradient; with ``plan.transparency`` also the
    gradient with respect to the decoded images (before the transforms), whose absolute
    value, averaged over the colour channels, joins ``accumulated``."""
    if not plan.transparency:
      return value_and_grad(params, step), accumulated
    with jax.named_scope("param"):
      image, pullback = jax.vjp(param.to_image, params)
    (value, scores), image_grad = image_value_and_grad(image, step)
    (grads,) = pullback(image_grad)
    return ((value, scores), grads), accumulated + jnp.mean(jnp.abs(image_grad), axis=-1)

  def step_fn(carry, step):
    params, opt_state, bad_step, accumulated = carry
    ((value, scores), grads), new_accumulated = gradients(params, step, accumulated)
    with jax.named_scope("optimizer"):
      updates, new_opt_state = optimizer.update(grads, opt_state, params)
      new_params = _on_batch_axis(plan, optax.apply_updates(params, updates))
    if plan.per_slot:
      finite = jnp.isfinite(scores) & _finite_per_slot(new_params)
    else:
      finite = jnp.isfinite(value) & _all_finite(new_params)
    bad_step = jnp.where((bad_step < 0) & ~finite, step, bad_step)
    keep = bad_step < 0  # once non-finite, freeze: the error names the step afterwards

    def kept(n, o):
      return jnp.where(keep.reshape(keep.shape + (1,) * (n.ndim - keep.ndim)), n, o)

    params = jax.tree.map(kept, new_params, params)
    opt_state = jax.tree.map(kept, new_opt_state, opt_state)
    accumulated = jax.tree.map(kept, new_accumulated, accumulated)
    return (params, opt_state, bad_step, accumulated), scores

  offsets = jnp.arange(plan.chunk, dtype=jnp.int32)
  steps = start[None, :] + offsets[:, None] if plan.per_slot else start + offsets
  return jax.lax.scan(step_fn, state, steps)


def _per_image(plan: Plan, leaf) -> bool:
  """Whether an objective leaf holds one value per image (its leading axis is the batch): split
  over the devices like the images (:func:`shardings`) and sliced per slot
  (:func:`_serial_chunk`); the other leaves are the same for every image."""
  return np.ndim(leaf) >= 1 and np.shape(leaf)[0] == plan.batch


def _serial_chunk(plan: Plan, model: Model, objective, k_steps, k_shared, state, start):
  """:func:`_optimize_chunk` for a ``serial`` plan: each device takes its slots in turn, runs
  a slot whose ``start`` is not negative as a batch of one (:func:`_chunk_steps` of the same
  plan at batch 1) and passes an idle one (``start < 0``) through untouched, with history rows
  of 0. XLA runs only the branch its condition picks, so idle slots cost nothing: the
  continuous sweep's tail, where finished slots have no unit to take, then runs at the cost of
  its busy slots alone, with no smaller program to compile (``featviz._sweep.continuous``).

  A per-slot state has a leading batch axis on every leaf; so do the per-image keys, ``start``
  and the objective leaves whose leading axis is the batch (the rest, like the model, are the
  same for every slot). Each device's slots are ``shard_map``'s local block of that axis.
  """
  one = dataclasses.replace(plan, batch=1, batch_sharding=None, serial=False)
  leaves, treedef = jax.tree.flatten(objective)
  sliced = [_per_image(plan, x) for x in leaves]
  per_slot_leaves = [x for x, s in zip(leaves, sliced) if s]
  same_leaves = [x for x, s in zip(leaves, sliced) if not s]

  def local(model, per_slot_leaves, same_leaves, k_steps, k_shared, state, start):
    def run(slot):
      mine, key, slot_state, first = slot
      parts, same = iter(mine), iter(same_leaves)
      leaves_one = [next(parts)[None] if s else next(same) for s in sliced]
      objective_one = jax.tree.unflatten(treedef, leaves_one)
      new_state, history = _chunk_steps(
        one,
        model,
        objective_one,
        key[None],
        k_shared,
        jax.tree.map(lambda x: x[None], slot_state),
        first[None],
      )
      return jax.tree.map(lambda x: x[0], new_state), history[:, 0].astype(jnp.float32)

    def idle(slot):  # (the rows' shape and dtype are known: tracing run for them costs seconds)
      return slot[2], jnp.zeros((plan.chunk,), jnp.float32)

    def one_slot(slot):
      return jax.lax.cond(slot[3] >= 0, run, idle, slot)

    new_state, history = jax.lax.map(one_slot, (per_slot_leaves, k_steps, state, start))
    return new_state, history.T  # (slots, chunk) -> (chunk, slots), as _chunk_steps gives

  args = (model, per_slot_leaves, same_leaves, k_steps, k_shared, state, start)
  if plan.batch_sharding is None:
    return local(*args)
  split = jax.sharding.PartitionSpec(plan.batch_sharding.spec[0])
  same = jax.sharding.PartitionSpec()
  history = jax.sharding.PartitionSpec(None, plan.batch_sharding.spec[0])
  return jax.shard_map(
    local,
    mesh=plan.batch_sharding.mesh,
    in_specs=(same, split, same, split, same, split, split),
    out_specs=(split, history),
    # shard_map's check of which values vary over devices would refuse the cond: the busy
    # branch's rows vary, the idle branch's zeros do not. No collective runs inside, so turning
    # the check off changes nothing that is computed.
    check_vma=False,
  )(*args)


def canonical(leaf):
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


def _key_struct(shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(shape, jax.random.key(0).dtype)


@functools.lru_cache(maxsize=MAX_PROGRAMS)
def _state_shape(setup: Plan):
  """The loop state's shapes and dtypes, without drawing anything (traced once per setup)."""
  return jax.eval_shape(functools.partial(_init, setup), _key_struct((setup.batch,)))


def _state_shardings(setup: Plan):
  """The state's layout: leaves with a leading batch axis split like the images, the rest
  (Adam's step count, the first bad step) replicated."""
  batch = setup.batch_sharding
  replicated = jax.sharding.NamedSharding(batch.mesh, jax.sharding.PartitionSpec())
  return jax.tree.map(
    lambda x: batch if x.shape[:1] == (setup.batch,) else replicated, _state_shape(setup)
  )


def state_shardings(plan: Plan):
  """The layout of the loop state of ``plan`` over its devices (``plan.batch_sharding``)."""
  return _state_shardings(plan.setup())


def shardings(plan: Plan, model: Model, objective) -> tuple[tuple, tuple]:
  """``(in_shardings, out_shardings)`` of the chunk program when the plan splits the batch.

  Arguments ``(model, objective, k_steps, k_shared, state, start)``: the model, the shared key
  and ``start`` are replicated; objective leaves whose leading axis is the batch (unit
  indices, per-image vectors), the per-image keys and state leaves with a leading batch axis
  (parameters, Adam's moments) are split like the images. Results ``(state, history)``: the
  state as it came in, the history ``(chunk, B)`` split on its second axis.
  """
  batch = plan.batch_sharding
  mesh, axes = batch.mesh, batch.spec[0]
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

  def leaf(x):
    return batch if _per_image(plan, x) else replicated

  state = _state_shardings(plan.setup())
  in_shardings = (
    jax.tree.map(lambda _: replicated, model),
    jax.tree.map(leaf, objective),
    batch,
    replicated,
    state,
    batch if plan.per_slot else replicated,
  )
  history = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, axes))
  return in_shardings, (state, history)


def batch_sharding(mesh: jax.sharding.Mesh) -> jax.sharding.NamedSharding:
  """Splits a leading batch axis over every device of ``mesh`` (all its axes)."""
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))


def _remember(key, make):
  """The cached program under ``key`` and 0 s, or ``make()``'s and its compile time."""
  if key in _PROGRAMS:
    _PROGRAMS.move_to_end(key)
    return _PROGRAMS[key], 0.0
  start = time.perf_counter()
  program = make()
  _PROGRAMS[key] = program
  while len(_PROGRAMS) > MAX_PROGRAMS:
    _PROGRAMS.popitem(last=False)
  return program, time.perf_counter() - start


def lower_chunk(plan: Plan, model: Model, objective) -> jax.stages.Lowered:
  """The chunk program of ``plan``, lowered for these arguments' shapes (not compiled)."""
  layout = {}
  if plan.batch_sharding is not None:
    layout = dict(zip(("in_shardings", "out_shardings"), shardings(plan, model, objective)))
  index = jax.ShapeDtypeStruct((plan.batch,) if plan.per_slot else (), jnp.int32)
  return jax.jit(_optimize_chunk, static_argnums=0, **layout).lower(
    plan,
    model,
    objective,
    _key_struct((plan.batch,)),
    _key_struct(()),
    _state_shape(plan.setup()),
    index,
  )


def compiled_chunk(plan: Plan, model: Model, objective):
  """The compiled chunk program for this plan and argument signature, and its compile time.

  Called as ``fn(model, objective, k_steps, k_shared, state, start) -> (state, history)``
  with ``state`` from :func:`compiled_setup`'s ``"init"`` program or a previous call. With
  ``plan.batch_sharding`` it takes and returns arrays laid out as :func:`shardings` says.
  """
  key = ("chunk", plan, _signature(model), _signature(objective))
  return _remember(key, lambda: lower_chunk(plan, model, objective).compile())


def is_compiled(plan: Plan, model: Model, objective) -> bool:
  """Whether :func:`compiled_chunk` holds this plan's program already (then it costs 0 s)."""
  return ("chunk", plan, _signature(model), _signature(objective)) in _PROGRAMS


def compiled_setup(plan: Plan, kind: str, images_shape: tuple[int, ...] | None = None):
  """The compiled ``"init"`` (``k_init -> state``), ``"from_image"`` (``images -> state``, for
  images of ``images_shape``), ``"images"`` (``params -> images``) or, for a ``per_slot``
  plan, ``"refill"`` (``(state, k_init, fresh) -> state``, :func:`_refill`) program of
  ``plan.setup()``, and its compile time (0 when compiled before)."""
  setup = plan.setup()

  def make():
    layout = {}
    if kind == "from_image":
      fn, arg = _init_from, jax.ShapeDtypeStruct(images_shape, jnp.float32)
      if setup.batch_sharding is not None:
        layout = {"in_shardings": (setup.batch_sharding,), "out_shardings": _state_shardings(setup)}
    elif kind == "init":
      fn, arg = _init, _key_struct((setup.batch,))
      if setup.batch_sharding is not None:
        layout = {"in_shardings": (setup.batch_sharding,), "out_shardings": _state_shardings(setup)}
    elif kind == "images":
      fn, arg = _images, _state_shape(setup)[0]
      if setup.batch_sharding is not None:
        layout = {
          "in_shardings": (_state_shardings(setup)[0],),
          "out_shardings": setup.batch_sharding,
        }
    elif kind == "refill":
      if not setup.per_slot:
        raise ValueError("the refill program restarts slots of a per_slot plan only")
      args = (
        _state_shape(setup),
        _key_struct((setup.batch,)),
        jax.ShapeDtypeStruct((setup.batch,), jnp.bool_),
      )
      if setup.batch_sharding is not None:
        state = _state_shardings(setup)
        layout = {
          "in_shardings": (state, setup.batch_sharding, setup.batch_sharding),
          "out_shardings": state,
        }
      return jax.jit(_refill, static_argnums=0, **layout).lower(setup, *args).compile()
    else:
      raise ValueError(f"kind must be 'init', 'from_image', 'images' or 'refill', got {kind!r}")
    return jax.jit(fn, static_argnums=0, **layout).lower(setup, arg).compile()

  return _remember((kind, setup, images_shape), make)
