"""Continuous batching: each slot of the batch renders one unit until it is done, then the next.

A fixed-step sweep runs every unit of a batch for ``steps`` steps. Units differ: some reach a
good image in 32 steps, others need hundreds. Here, as an inference server schedules requests,
every slot of the compiled loop holds one unit with its own step counter, optimizer state
(Adam's bias correction per slot), redirected-ReLU window and transform draws, all keyed by
(seed, layer, unit, the unit's own step) (``featviz._loop.program.Plan.per_slot``). After each
chunk of ``every`` steps the host scores every slot's un-transformed image with the sweep's own
scorer (``featviz._sweep.quality``), asks the :class:`~featviz._sweep.stopping.StopRule`
whether its unit is done, hands the done units' images and rows to ``commit``, and refills
their slots with the next units (``program._refill``): unit indices, keys and step counters are
data, so nothing recompiles.

**A unit's image does not depend on the schedule.** Its keys are those of the first image of its
label (``keys.derive_first``), its steps count from its own 0, and its stop depends on its own
scores only, so the same unit gives the same image whatever batch, order, device count or
neighbours rendered it (``tests/test_continuous.py`` checks this bitwise on PNGs), up to the
rounding of batch-size-dependent kernels, as for the fixed-step sweep.

**The tail.** When the queue is empty, finished slots fall idle. On a CPU each device runs
its slots one after another, each a batch of one, and skips the idle ones
(``program.Plan.serial``; :data:`SERIAL_PLATFORMS`): an idle slot costs nothing, so the tail
runs at the cost of its busy slots alone, and the host only moves busy slots off a device that
holds more than its share onto idle devices (:func:`balanced`). A unit's arithmetic is then
that of a batch of one whatever batch or device held it, so its image is bitwise the same on
1 or 4 devices (``tests/test_sweep_multidevice.py``).

Elsewhere the whole batch runs, idle slots included, and the busy ones can move to a smaller
batch (their state is gathered; each slot is independent, so nothing changes but the
cost): the batch size that holds them among ``n, n/2, n/4, ...`` (multiples of the device count,
so that a later run finds the same programs in JAX's persistent cache). A new batch size
compiles its programs (measured on EfficientNet-Lite0 ``block10``, 2-core CPU: 16 s, about the
same at every size), so the move is made only when it pays: when the idle share of the batch
times the seconds per step times the steps the busy units may still take (up to their limit)
exceeds the compile (0 for a size this process has compiled; else this layer's first compile, as
measured). That rule assumes a step's cost is proportional to the batch, true of a CPU and
pessimistic on an accelerator, where a smaller batch saves less.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from featviz import objectives
from featviz import transforms as tf_lib
from featviz._loop import api as render_api
from featviz._loop import keys as keys_lib
from featviz._loop import program
from featviz._loop.config import ConfigError, RenderConfig
from featviz._sweep import partition, stopping
from featviz._sweep import quality as sweep_quality
from featviz._sweep import store as store_lib
from featviz.model import Model

# Steps between checks, at most (stopping.check_interval picks a divisor of the step limit):
# Lucid's redirected-ReLU window is 16 steps, and a check costs one forward pass per slot
# against 16 forward-and-backward steps (about 2%).
CHECK_EVERY = 16

# Where each device runs its slots one after another, each a batch of one, skipping the idle
# ones (program.Plan.serial). A CPU step's cost is about proportional to its batch, so there
# serial slots cost about what the batch does and idle ones are free. Measured on
# EfficientNet-Lite0 block10 (128 px, Lucid's settings, 2-core AMD EPYC, 2 devices, jax 0.10.2),
# seconds per 16-step chunk of 8 slots: 2.25-2.41 s for the whole batch, 1.93-2.15 s serial with
# every slot busy, 0.46-0.51 s with one busy slot per device, 0.79-0.81 s with two on one device,
# 0.002 s with none. Over the whole model's sweep the serial steps cost 14-31 % less than the
# batched ones up to block13 and 3 % more at block15 (benchmarks/RESULTS.md, the whole-model
# Microscope, run 3). Accelerators run a batch in about the time of one image, so there the
# batch stays whole and the tail moves to smaller batches instead.
SERIAL_PLATFORMS = frozenset({"cpu"})

# The seconds the first programs of (model name, layer, size) took to compile in this process:
# what the tail expects a batch size it has not compiled to cost (render_layer).
_COMPILE_SECONDS: dict[tuple[str, str, int], float] = {}


@dataclasses.dataclass
class _Slots:
  """The compiled programs and device state of one batch size of a layer's loop."""

  n: int
  plan: program.Plan
  chunk: Any
  images: Any
  refill: Any
  init: Any
  compile_seconds: float


@dataclasses.dataclass
class _Unit:
  """A unit in a slot: what the host tracks between chunks."""

  unit: int
  steps: int = 0
  scores: list[float] = dataclasses.field(default_factory=list)
  start: float | None = None
  last: float | None = None
  seconds: float = 0.0


def check_transforms(config: RenderConfig) -> None:
  """Refuses transforms that draw once for the whole batch: slots at different steps cannot
  share a draw (a ConfigError, before a sweep writes anything)."""
  transform = config.transform()
  draws_nothing = isinstance(transform, tf_lib.Compose) and not transform.transforms
  if program.draws_shared(transform) and not draws_nothing:
    raise ConfigError(
      "a sweep that stops units early gives every unit its own transform draws; "
      "choose transforms 'standard' (a draw per image), not 'shared'"
    )


def serial_on(mesh: jax.sharding.Mesh) -> bool:
  """Whether the sweep runs its slots one after another on each device (see the module doc):
  on the platforms of :data:`SERIAL_PLATFORMS`."""
  return mesh.devices.flat[0].platform in SERIAL_PLATFORMS


def _plan(model: Model, layer: str, config: RenderConfig, mesh: jax.sharding.Mesh, n: int):
  """The per-slot plan and bound objective of a batch of ``n`` slots of ``layer``."""
  objective = objectives.channel(layer, np.zeros(n, np.int32))
  check_transforms(config)
  _, _, bound, plan, _ = render_api._prepare(model, objective, config, {}, n, mesh)
  # (no transforms count as shared draws; they draw nothing, so per image is the same)
  plan = dataclasses.replace(plan, per_slot=True, shared_draws=False, serial=serial_on(mesh))
  return plan, bound


def _programs(
  model: Model, layer: str, config: RenderConfig, mesh: jax.sharding.Mesh, n: int
) -> _Slots:
  """The per-slot programs for a batch of ``n`` slots of ``layer`` (compiled once each)."""
  plan, bound = _plan(model, layer, config, mesh, n)
  init, seconds = program.compiled_setup(plan, "init")
  chunk, s = program.compiled_chunk(plan, model, bound)
  seconds += s
  images, s = program.compiled_setup(plan, "images")
  seconds += s
  refill, s = program.compiled_setup(plan, "refill")
  return _Slots(n, plan, chunk, images, refill, init, seconds + s)


def render_layer(
  model: Model,
  layer: str,
  units: Sequence[int],
  config: RenderConfig,
  key: jax.Array,
  mesh: jax.sharding.Mesh,
  batch: int,
  rule: stopping.StopRule,
  commit: Callable[[list[tuple[int, np.ndarray, dict[str, Any]]]], None],
  best: tuple[np.ndarray, list[str]] | None = None,
  progress: Callable[[int, str], None] | None = None,
) -> list[dict[str, Any]]:
  """Renders ``units`` of ``layer`` in ``batch`` slots until each is done.

  Args:
    config: the render settings; ``config.steps`` is every unit's step limit and must be a
      multiple of ``rule.every``.
    key: the sweep's key: unit ``u`` draws from it folded with ``"layer:u"``.
    mesh: the devices each batch is split over.
    batch: slots (rounded up to a multiple of the devices; fewer when there are fewer units).
    rule: when a unit stops.
    commit: called with ``[(unit, image (H, W, C), row)]`` each time units finish, before
      their slots are refilled.
    best: ``(dataset max (C,), argmax photos)`` of the layer, for ``rule.until_ratio``.
    progress: called with (units just finished, a status line) after each chunk.

  Returns:
    The failures: ``[{"layer", "units": [u], "step", "error"}]`` for units whose render went
    non-finite (they stay missing; a re-run tries them again).
  """
  if not units:
    return []
  if config.steps % rule.every:
    raise stopping.StopRuleError(
      f"steps {config.steps} must be a multiple of the check interval {rule.every}"
    )
  config = config.replace(chunk=rule.every)
  queue = deque(int(u) for u in units)
  n = partition.padded_batch(min(batch, len(queue)), mesh.size)
  slots: list[_Unit | None] = [_Unit(queue.popleft()) if queue else None for _ in range(n)]
  progs = _programs(model, layer, config, mesh, n)
  compile_seconds = progs.compile_seconds
  # What a batch size this process has not compiled is expected to cost (see the module doc):
  # this layer's compile as measured, in this call or (when its programs were cached) before.
  measured = (model.spec.name, layer, config.size)
  if progs.compile_seconds > 0:
    _COMPILE_SECONDS[measured] = progs.compile_seconds
  compile_estimate = _COMPILE_SECONDS.get(measured, progs.compile_seconds)
  k_shared = jax.random.fold_in(key, 0xFFFFFFFF)
  top = best[0] if best is not None else None
  failures: list[dict[str, Any]] = []

  def arguments(slots):
    """The chunk program's data for these slots: objective, keys (idle slots repeat unit 0's)."""
    held = [s.unit if s is not None else units[0] for s in slots]
    objective = objectives.channel(layer, np.asarray(held, np.int32)).bind(model.spec, len(held))
    objective = jax.tree.map(program.canonical, objective)
    k_init, k_steps = keys_lib.derive_first(key, [f"{layer}:{u}" for u in held])
    return objective, k_init, k_steps

  def place(target: _Slots, slots):
    """The chunk program's arguments on its devices, its layout, and the slots' ``k_init``."""
    objective, k_init, k_steps = arguments(slots)
    layout = program.shardings(target.plan, model, objective)[0]
    return jax.device_put((model, objective, k_steps, k_shared), layout[:4]), layout, k_init

  args, layout, k_init = place(progs, slots)
  state = progs.init(jax.device_put(k_init, progs.plan.batch_sharding))
  tail_plans: dict[int, bool] = {}  # a smaller batch size -> whether its programs are compiled
  idle_start = -1 if progs.plan.serial else 0  # a serial plan skips a slot that starts < 0
  while any(s is not None for s in slots):
    start = time.perf_counter()
    steps = np.asarray([s.steps if s is not None else idle_start for s in slots], np.int32)
    state, rows = progs.chunk(*args, state, jax.device_put(steps, layout[5]))
    images = np.asarray(progs.images(state[0]))
    means = sweep_quality.channel_means(
      model, [layer], images, progs.plan.batch_sharding, batch=progs.n
    )[layer]
    bad = np.asarray(state[2])
    rows = np.asarray(rows)
    elapsed = time.perf_counter() - start
    done, fresh, failed_now = [], np.zeros(progs.n, bool), 0
    for i, s in enumerate(slots):
      if s is None:
        continue
      if s.steps == 0:
        s.start = float(rows[0, i])
      s.steps += rule.every
      s.last = float(rows[-1, i])
      s.seconds += elapsed
      s.scores.append(float(means[i, s.unit]))
      if bad[i] >= 0:
        failures.append(
          {
            "layer": layer,
            "units": [s.unit],
            "step": int(bad[i]),
            "error": f"{layer}:{s.unit} became non-finite at step {int(bad[i])}",
          }
        )
        reason = stopping.NON_FINITE
        failed_now += 1
      else:
        dataset_max = float(top[s.unit]) if top is not None else None
        reason = rule.reason(s.steps, s.scores, dataset_max)
      if reason is None:
        continue
      if reason != stopping.NON_FINITE:
        done.append((s.unit, images[i], _row(layer, i, s, reason, config, progs, mesh)))
      slots[i] = _Unit(queue.popleft()) if queue else None
      fresh[i] = slots[i] is not None
    if done:
      for _, _, row in done:
        row["compile_seconds"] = round(compile_seconds, 3)
      commit(done)
    busy = [i for i, s in enumerate(slots) if s is not None]
    if progress is not None:
      progress(failed_now + len(done), f"{layer}: {len(busy)} busy, {len(queue)} queued")
    if not busy:
      break
    if fresh.any():
      args, layout, k_init = place(progs, slots)
      sharding = progs.plan.batch_sharding
      state = progs.refill(state, jax.device_put(k_init, sharding), jax.device_put(fresh, sharding))
    if progs.plan.serial:  # idle slots cost nothing: only keep every device busy
      order = balanced([s is not None for s in slots], mesh.size)
      if order is not None:
        slots = [slots[i] for i in order]
        args, layout, _ = place(progs, slots)
        state = _gathered(state, order, progs.plan)
      continue
    step_seconds = elapsed / rule.every
    smaller = _tail_batch(progs.n, len(busy), mesh.size) if not queue else progs.n
    if smaller < progs.n:
      if smaller not in tail_plans:  # once per size: only a move compiles it, and then it is n
        plan, bound = _plan(model, layer, config, mesh, smaller)
        tail_plans[smaller] = program.is_compiled(plan, model, bound)
      remaining = rule.max_steps - min(slots[i].steps for i in busy)
      cost = 0.0 if tail_plans[smaller] else compile_estimate
      if move_pays(progs.n, smaller, step_seconds, remaining, cost):  # the tail: a smaller batch
        gather = np.asarray(busy + [busy[0]] * (smaller - len(busy)))  # padding: idle copies
        slots = [slots[i] for i in busy] + [None] * (smaller - len(busy))
        progs = _programs(model, layer, config, mesh, smaller)
        compile_seconds += progs.compile_seconds
        args, layout, _ = place(progs, slots)
        state = _gathered(state, gather, progs.plan)
  return failures


def _gathered(state, order: np.ndarray, plan: program.Plan):
  """The slots ``order`` of a per-slot ``state`` (every leaf has a leading batch axis), laid
  out for ``plan``."""
  return jax.device_put(
    jax.tree.map(lambda x: np.asarray(x)[order], state), program.state_shardings(plan)
  )


def balanced(busy: Sequence[bool], devices: int) -> np.ndarray | None:
  """A reordering of the slots that spreads the busy ones over the devices (each device holds
  a contiguous block of ``len(busy) / devices`` slots), or None when no device holds more than
  its share (the busy count over the devices, rounded up). With serial slots a device's chunk
  takes as long as its busy slots, so the chunk is as short as the busiest device allows."""
  n = len(busy)
  per = n // devices
  counts = [sum(busy[d * per : (d + 1) * per]) for d in range(devices)]
  if max(counts) <= -(-sum(busy) // devices):
    return None
  order = np.full(n, -1)
  busy_slots = [i for i, b in enumerate(busy) if b]
  for k, i in enumerate(busy_slots):  # round robin: device k % devices, its (k // devices)th slot
    order[(k % devices) * per + k // devices] = i
  order[order < 0] = [i for i, b in enumerate(busy) if not b]
  return order


def move_pays(n: int, smaller: int, step_seconds: float, remaining: int, compile_cost: float):
  """Whether moving from ``n`` slots to ``smaller`` saves more than it costs: the idle share
  of the step (a CPU step's cost is proportional to the batch; see the module doc) times the
  steps the busy units may still take, against the seconds its programs take to compile."""
  return (1 - smaller / n) * step_seconds * remaining > compile_cost


def _tail_batch(n: int, busy: int, devices: int) -> int:
  """The smallest of ``n, n/2, n/4, ...`` (rounded up to a multiple of ``devices``) that holds
  ``busy`` slots: a fixed ladder of sizes, so that runs share their compiled programs."""
  size = n
  while True:
    half = partition.padded_batch(max(1, size // 2), devices)
    if half >= size or half < busy:
      return size
    size = half


def _row(layer: str, slot: int, s: _Unit, reason: str, config, progs: _Slots, mesh) -> dict:
  return {
    "layer": layer,
    "unit": s.unit,
    "slot": slot,
    "steps": s.steps,
    "stopped": reason,
    "size": config.size,
    "start": s.start,
    "last_step": s.last,
    "final": s.scores[-1],
    "chunk_seconds": round(s.seconds, 3),
    "devices": mesh.size,
    "batch": progs.n,
    "finished": store_lib.now(),
  }
