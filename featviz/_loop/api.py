"""``featviz.render``: gradient ascent on images, and what it returns.

``render(model, objective)`` draws each image's initial parameters from its own key, then runs
``steps`` of: parameters -> images -> random transforms -> network (only the layers the
objective reads) -> scores -> gradient -> optimizer update, as compiled chunks of steps
(:mod:`featviz._loop.program`). Every setting is a field of :class:`RenderConfig`.
"""

from __future__ import annotations

import dataclasses
import io
import math
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz import cpu_devices, progress
from featviz import objectives as obj_lib
from featviz import param as param_lib
from featviz._loop import keys as keys_lib
from featviz._loop import program
from featviz._loop.config import ConfigError, RenderConfig
from featviz.model import ImageShapeError, Model
from featviz.nonlin import rewrites_for


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


@dataclasses.dataclass
class RenderResult:
  """What :func:`render` returns.

  Attributes:
    images: ``(B, H, W, C)`` float32 in ``[0, 1]``.
    history: ``(steps, B)``: each image's objective value at every step, on the transformed
      image the step optimized.
    labels: a short label per image (e.g. ``"block10:5"``).
    seed: the seed of the key (``None`` when a key was passed).
    steps: the steps run.
    compile_seconds: time spent compiling the programs this render needed (0 when all were
      compiled before in this process; loading them from JAX's persistent compilation cache
      counts here too, and takes far less than compiling).
    run_seconds: time spent running the compiled programs (every chunk, the initial draw and
      the final images), transfers of the results included.
    objective: the objective, bound to the model.
    config: the settings of the render.
    transparency: ``(B, H, W)`` float32 for the ``"maco"`` parameterization (else None):
      MACO's transparency map (Fel et al. 2023), each image's absolute gradient of its
      objective with respect to the decoded image (before the transforms), averaged over the
      colour channels and summed over the steps. ``featviz.images.overlay_transparency``
      draws it over the image.
    snapshots: ``{step: (B, H, W, C) float32}``, the images after each of
      ``config.snapshots`` steps and after the last step (whose entry is ``images``), in
      increasing order of step: Lucid's ``thresholds``. A snapshot at step ``k`` is bitwise
      the final images of a render of ``k`` steps with the same key and settings.
  """

  images: np.ndarray
  history: np.ndarray
  labels: list[str]
  seed: int | None
  steps: int
  compile_seconds: float
  run_seconds: float
  objective: obj_lib.Objective
  config: RenderConfig | None = None
  transparency: np.ndarray | None = None
  snapshots: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

  def _repr_png_(self) -> bytes:
    """The images as one captioned grid, so a notebook shows a result by itself."""
    from featviz import images as images_lib

    captions = [f"{label} ({value:.3g})" for label, value in zip(self.labels, self.history[-1])]
    buffer = io.BytesIO()
    images_lib.grid(self.images, captions).save(buffer, format="PNG")
    return buffer.getvalue()


def resolve_batch(objective: obj_lib.Objective, batch: int | None) -> int:
  """The number of images: ``batch``, or what the objective's units imply."""
  implied = objective.batch
  if batch is None:
    return implied or 1
  if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
    raise ConfigError(f"batch must be a positive integer, got {batch!r}")
  if implied is not None and implied != batch:
    raise ConfigError(
      f"the objective renders {implied} images (one per unit) but "
      f"batch={batch}; leave batch out, or give one unit per objective"
    )
  return int(batch)


def _plan(
  model: Model,
  objective: obj_lib.Objective,
  config: RenderConfig,
  batch: int,
  mesh: jax.sharding.Mesh | None,
  chunk: int,
) -> program.Plan:
  transform = config.transform()
  platform = mesh.devices.flat[0].platform if mesh is not None else jax.default_backend()
  factory = config.param_factory()
  try:  # builds the parameterization once, so that what it refuses is a ConfigError here
    param_name = factory((config.size, config.size), 1, model.spec.channels).name
  except param_lib.ParamError as e:
    raise ConfigError(f"param: {e}") from None
  return program.Plan(
    layers=model.layers_in_order(sorted(objective.layers)),
    param=factory,
    size=(config.size, config.size),
    batch=batch,
    channels=model.spec.channels,
    transforms=transform,
    shared_draws=program.draws_shared(transform),
    optimizer=config.optimizer if config.optimizer is not None else config.learning_rate,
    redirect_relu_steps=config.redirect_relu_steps,
    chunk=chunk,
    input_size=model.input_size(config.input_size),
    compute_dtype=config.compute_dtype,
    rewrites=rewrites_for(config.rewrites, platform),
    batch_sharding=None if mesh is None else program.batch_sharding(mesh),
    alpha=config.alpha,
    transparency=param_name == "maco",
  )


def check_positions(model: Model, objective: obj_lib.Objective, config: RenderConfig) -> None:
  """Refuses a neuron position (``LAYER:U@X,Y``) outside its layer's map at this render's size.

  The map's size depends on the render size, the transforms (Lucid's pad and crop) and the
  network's input resize, so it is read off ``jax.eval_shape`` of the network on one transformed
  image: nothing is compiled or run. (A check inside the objective's score could not see the
  position: it is traced data, so that one compiled loop serves every position.)
  """
  nodes = jax.tree.leaves(objective, is_leaf=lambda n: isinstance(n, obj_lib.Neuron))
  neurons = [n for n in nodes if isinstance(n, obj_lib.Neuron) and n.x is not None]
  if not neurons:
    return
  layers = sorted({n.layer for n in neurons})

  def forward(image):
    x = config.transform()(jax.random.key(0), image)
    return model.activations(x, layers, input_size=config.input_size)

  image = jax.ShapeDtypeStruct((1, config.size, config.size, model.spec.channels), jnp.float32)
  shapes = {k: v.shape for k, v in jax.eval_shape(forward, image).items()}
  for n in neurons:
    n.check_shapes(shapes)


def check_network_size(model: Model, config: RenderConfig) -> None:
  """Refuses a render whose network input (``size``, or the resize to ``input_size`` or a
  fixed-size network's own size) is below the architecture's smallest."""
  network_side = model.input_size(config.input_size) or config.size
  if network_side < model.spec.min_size:
    raise ImageShapeError(
      f"{model.spec.name} needs images of at least {model.spec.min_size} px; "
      f"its input would be {network_side} px (size {config.size}, input_size "
      f"{config.input_size})"
    )


def _prepare(model, objective, config, overrides, batch, mesh):
  config = (config if config is not None else RenderConfig()).replace(**overrides)
  if not isinstance(model, Model):
    raise TypeError(
      f"model must be a featviz.Model (featviz.zoo.load(name)), got {type(model).__name__}"
    )
  batch = resolve_batch(objective, batch)
  bound = objective.bind(model.spec, batch)
  check_network_size(model, config)
  if mesh is None:  # every local device when there are several and they divide the batch
    mesh = cpu_devices.batch_mesh(batch)
  if mesh is not None and batch % mesh.size:
    raise ValueError(
      f"batch {batch} must be a multiple of the mesh's {mesh.size} devices; "
      "pad the batch (featviz._sweep.partition.padded_batch)"
    )
  check_positions(model, bound, config)
  lengths = snapshot_chunk_lengths(config.steps, config.snapshots, config.chunk)
  plan = _plan(model, bound, config, batch, mesh, lengths[0])
  return config, batch, jax.tree.map(program.canonical, bound), plan, lengths


def snapshot_chunk_lengths(
  steps: int, snapshots: Sequence[int] = (), chunk: int | None = None
) -> tuple[int, ...]:
  """The chunk lengths of a render of ``steps`` steps whose chunks end on every snapshot step.

  ``chunk=None``: one length, the largest divisor of ``gcd(steps, *snapshots)`` up to
  :data:`program.MAX_CHUNK` (512 steps with snapshots at 16, 64, 256: 32 chunks of 16), so
  the render compiles one chunk program (each length is a program of its own: 10 to 15 s on a
  2-core CPU for EfficientNet-Lite0), at the cost of shorter calls when the gcd is small
  (``program.chunk_lengths`` weighs the two). An explicit ``chunk`` cuts each span between
  snapshots into calls of ``chunk`` steps and one of the rest. No snapshots: the lengths of
  :func:`program.chunk_lengths`.
  """
  if not snapshots:
    return program.chunk_lengths(steps, chunk)
  if chunk is None:
    return program.chunk_lengths(steps, program.chunk_lengths(math.gcd(steps, *snapshots))[0])
  lengths, done = [], 0
  for stop in dict.fromkeys([*snapshots, steps]):
    lengths += program.chunk_lengths(stop - done, chunk) if stop > done else []
    done = stop
  return tuple(lengths)


def lower(
  model: Model,
  objective: obj_lib.Objective,
  config: RenderConfig | None = None,
  *,
  batch: int | None = None,
  mesh: jax.sharding.Mesh | None = None,
  **overrides,
) -> jax.stages.Lowered:
  """The render's chunk program, lowered and not run: ``.compile().cost_analysis()`` gives
  its FLOPs (XLA counts a scan body once: one step), ``.as_text()`` its HLO.

  Same arguments as :func:`render`; the chunk is the render's first chunk length.
  """
  _, _, bound, plan, _ = _prepare(model, objective, config, overrides, batch, mesh)
  return program.lower_chunk(plan, model, bound)


def render(
  model: Model,
  objective: obj_lib.Objective,
  config: RenderConfig | None = None,
  *,
  key: jax.Array | None = None,
  seed: int = 0,
  batch: int | None = None,
  mesh: jax.sharding.Mesh | None = None,
  progress_bar: bool = True,
  init: Any = None,
  **overrides,
) -> RenderResult:
  """Renders images that maximize ``objective`` on ``model``.

  Args:
    model: a :class:`featviz.Model` (``featviz.zoo.load(name)``).
    objective: what to maximize; its units decide the batch (one image per unit).
    config: the settings (:class:`RenderConfig`); ``None``: Lucid's defaults.
    key: a ``jax.random.key``; ``None``: ``jax.random.key(seed)``. Image ``i`` draws from
      ``key`` folded with its label and repeat count (:mod:`featviz._loop.keys`), so an
      image does not depend on the rest of the batch. The same key, inputs and device give
      the same images.
    seed: the seed of the key when ``key`` is None.
    batch: number of images; defaults to what the objective's units imply.
    mesh: split the batch over this mesh's devices (data parallel: every image has its own
      parameters, so no device waits for another). ``batch`` must be a multiple of
      ``mesh.size``. ``None``: every local device when there are several and they divide
      the batch (``featviz.cpu_devices``: on a CPU, one device per core), else the default
      device.
    progress_bar: show a progress bar on stderr.
    init: start from these images instead of a random draw: ``(B or 1, H, W, C)`` in
      ``[0, 1]`` (``C``: the network's channels; RGBA with ``alpha=True``), resized
      bilinearly to the render size. Each parameterization inverts its decode
      (``featviz.param.Param.from_image``: exact for fourier, pixel and laplacian, a fit for
      lowres, the photo's phase for maco); a cppn cannot start from a photo (ConfigError).
    **overrides: fields of :class:`RenderConfig` to replace (``render(m, obj, steps=64)``).

  Returns:
    A :class:`RenderResult` with ``images (B, H, W, C)`` and ``history (steps, B)``.

  Raises:
    NonFiniteError: the objective or the parameters became NaN or infinite; the message
      names the step and the objective.
    featviz.ConfigError: a setting out of range.
  """
  config, batch, bound, plan, lengths = _prepare(model, objective, config, overrides, batch, mesh)
  root = keys_lib.as_key(key, seed)
  labels = bound.labels(batch)
  k_init, k_steps, k_shared = keys_lib.derive(root, labels)
  # Every program first (init, the chunk length(s), images), then the run.
  if init is None:
    first, compile_seconds = program.compiled_setup(plan, "init")
  else:
    start_images = start_images_for(plan, init)
    first, compile_seconds = program.compiled_setup(plan, "from_image", start_images.shape)
    k_init = start_images
  chunks = {}
  for n in dict.fromkeys(lengths):
    chunks[n], seconds = program.compiled_chunk(dataclasses.replace(plan, chunk=n), model, bound)
    compile_seconds += seconds
  finish, seconds = program.compiled_setup(plan, "images")
  compile_seconds += seconds
  args = (model, bound, k_steps, k_shared)
  if plan.batch_sharding is not None:  # committed arrays arrive as compiled (no-op when they do)
    args = jax.device_put(args, program.shardings(plan, model, bound)[0][:4])
    k_init = jax.device_put(k_init, plan.batch_sharding)
  desc = f"render {model.spec.name} {labels[0]}" + (f" (+{batch - 1})" if batch > 1 else "")
  with progress.bar(config.steps, desc, enabled=progress_bar, images_per_step=batch) as bar:
    start = time.perf_counter()
    images, history, bad_step, transparency, snapshots = _run(
      first, chunks, finish, k_init, args, lengths, bar, config.snapshots
    )
    run_seconds = time.perf_counter() - start
  if bad_step >= 0:
    raise NonFiniteError(
      f"the objective {' | '.join(dict.fromkeys(labels))} on {model.spec.name} became "
      f"non-finite at step {bad_step} of {config.steps}; "
      + (
        "the images are the initial ones"
        if bad_step == 0
        else f"the images were kept at step {bad_step - 1}"
      )
      + ". Lower the learning rate or add a regularizer.",
      bad_step,
      images,
    )
  return RenderResult(
    images,
    history,
    labels,
    seed if key is None else None,
    config.steps,
    compile_seconds,
    run_seconds,
    bound,
    config,
    transparency,
    snapshots,
  )


def start_images_for(plan: program.Plan, images: Any) -> np.ndarray:
  """``images`` as the ``from_image`` program takes them: ``(B, H, W, C)`` float32 at the
  render size (resized bilinearly), one image repeated for the batch; wrong shapes or values
  outside [0, 1] are an ImageShapeError or ConfigError."""
  x = np.asarray(images, np.float32)
  if x.ndim == 3:
    x = x[None]
  channels = (plan.channels, 4) if plan.alpha else (plan.channels,)
  if x.ndim != 4 or x.shape[-1] not in channels or x.shape[0] not in (1, plan.batch):
    raise ImageShapeError(
      f"init images must be (1 or {plan.batch}, H, W, {' or '.join(map(str, channels))}) in "
      f"[0, 1]; got shape {np.shape(images)}"
    )
  if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
    raise ConfigError("init images must be finite values in [0, 1]")
  if x.shape[1:3] != plan.size:
    x = np.asarray(jax.image.resize(x, (x.shape[0], *plan.size, x.shape[-1]), "linear"))
  try:  # a cppn has no inverse: say so before anything compiles
    jax.eval_shape(plan.param(plan.size, 1, plan.channels).from_image, x[:1])
  except param_lib.ParamError as e:
    raise ConfigError(f"init: {e}") from None
  return np.ascontiguousarray(np.broadcast_to(x, (plan.batch, *x.shape[1:])))


def _run(
  init, chunks, finish, k_init, args, lengths: Sequence[int], bar, snapshots: Sequence[int] = ()
) -> tuple:
  """Runs the compiled programs: ``(images, history, bad_step, transparency, snapshots)`` as
  NumPy values (``transparency`` None unless the plan accumulates it; ``snapshots`` the
  images after each chunk that ends on one of the ``snapshots`` steps, and the final images
  under the last step). ``k_init`` is the per-image keys, or the start images when ``init``
  is the ``from_image`` program.

  Chunk ``i + 1`` is dispatched before Python waits for chunk ``i``'s first bad step (a
  scalar), so the device always has the next chunk queued while the bar advances and the
  finiteness check runs. A non-finite step ends the run after the chunk that follows it: the
  state froze at that step, so the images are those of the last finite step either way.
  """
  state = init(k_init)
  history, pending, bad_step, done = [], [], -1, 0
  wanted, kept = set(snapshots), {}

  def wait(entry):
    bad, steps_done = entry
    bad = int(jax.device_get(bad))
    progress.advance(bar, steps_done)
    return bad

  for n in lengths:
    state, rows = chunks[n](*args, state, np.int32(done))
    done += n
    history.append(rows)
    if done in wanted and done < sum(lengths):  # the last step's images are the final ones
      kept[done] = finish(state[0])  # dispatched, not waited for
    pending.append((state[2], done))
    if len(pending) > 1:
      bad_step = wait(pending.pop(0))
      if bad_step >= 0:
        break
  if bad_step < 0:
    for entry in pending:
      bad_step = wait(entry)
  images, history, transparency, kept = jax.device_get((finish(state[0]), history, state[3], kept))
  history = np.concatenate([np.asarray(h) for h in history])
  transparency = None if transparency is None else np.asarray(transparency)
  images = np.asarray(images)
  kept = {step: np.asarray(x) for step, x in sorted(kept.items())}
  kept[done] = images
  return images, history, bad_step, transparency, kept


def score_images(model: Model, objective: obj_lib.Objective, images: Any) -> np.ndarray:
  """Each image's objective value, on the images as given (no transforms): ``(B,)``."""
  images = jnp.asarray(images, jnp.float32)
  bound = objective.bind(model.spec, images.shape[0])
  acts = model.activations(images, sorted(bound.layers))
  return np.asarray(bound(obj_lib.Context(acts, images)))
