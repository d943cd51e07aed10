"""What every benchmark shares: the run's record, RESULTS.md rows, peak and FLOP counts, timing.

* :func:`environment` records where and on what a figure was measured: date, device (CPU
  model from ``/proc/cpuinfo`` or the GPU's name), core count, versions, the git commit
  (``+dirty`` when the tree has changes) and the load average at the start (the CPU runs of
  this repo were taken on a machine shared with other jobs: read CPU figures with that).
* :func:`append_row` adds one row to ``benchmarks/RESULTS.md`` atomically: under an
  exclusive lock on the folder, the whole file is rewritten to a temporary file and renamed
  over the old one, so concurrent runs never interleave or lose rows.
* :func:`matmul_peak` measures the device's matrix-product rate once (float32 on CPU,
  bfloat16 on GPU), the ceiling the render loop's TFLOP/s is compared with.
* :func:`timed_config` is the :class:`featviz.RenderConfig` of a timed render: Lucid's
  settings (``featviz.RenderConfig()``, the one home of its numbers) at fewer steps, with the
  default render's share of redirected-ReLU steps.
* :func:`render_flops` is XLA's FLOP count of one step of a render, from the chunk program
  ``featviz.lower`` gives; :func:`scan_body_counting` finds out whether that analysis counts
  a ``lax.scan`` body once or once per iteration (XLA 0.10 on CPU: once; checked every run,
  not assumed).
* :func:`timed` runs a callable several times and returns the wall and process-CPU seconds
  of each run (medians are what the tables report).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import featviz
from featviz._loop import program

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "RESULTS.md"

COLUMNS = ("date (UTC)", "script", "device", "cores", "versions", "commit", "settings", "figures")
HEADER = f"""# Benchmark results

Rows are appended by the scripts in this folder (`benchmarks/README.md` says what each
measures). Never edit a row by hand; add a new run instead. `+dirty`: the tree had
uncommitted changes when the row was measured. `load` is the 1-minute load average when the
run started: the CPU rows were measured on a 2-core machine shared with other jobs, so
their absolute rates are lower bounds and vary between runs; compare rows of one run.
`vs_lucent` rows measured at a load above the core count are not valid (torch's threads spin
when the cores are oversubscribed: lucent's CPU time per step rose 10x); newer rows say so in
`valid=`, and the two rows of 2026-11-21 06:01 (load 7.4, "31x", "14x") are such rows: the
quiet-machine rows of 06:38 (load ~1) replace them.

Units: `img-steps/s` = images x optimization steps per second; `units/s` = units (one image
each) rendered per second at the row's step count rescaled to 512 steps (Lucid's default),
i.e. `img-steps/s / 512`; `GFLOP/step` from XLA's cost analysis of the compiled loop (per
optimization step for the whole batch); `%peak` = achieved FLOP/s over the measured
matrix-product peak of the same device (float32 on CPU, bfloat16 on GPU).

| {" | ".join(COLUMNS)} |
|{"|".join("---" for _ in COLUMNS)}|
"""


# ----------------------------------------------------------------------------- the record


def _cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def device_name() -> str:
  """The GPU's name (``jax.devices()[0].device_kind``), or the CPU model and ``(CPU)``."""
  dev = jax.devices()[0]
  if dev.platform == "cpu":
    return f"{_cpu_model()} (CPU)"
  return f"{dev.device_kind} x{jax.device_count()}"


def on_gpu() -> bool:
  return jax.devices()[0].platform == "gpu"


def git_commit() -> str:
  """``git rev-parse --short HEAD``, plus ``+dirty`` when tracked or untracked files changed."""
  try:
    head = subprocess.run(
      ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "status", "--porcelain"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
  import featviz

  out = {"jax": jax.__version__, "featviz": featviz.__version__}
  try:
    import jaxlib

    out["jaxlib"] = jaxlib.__version__
  except ImportError:
    pass
  out.update(extra or {})
  return out


@dataclasses.dataclass
class Environment:
  date: str
  device: str
  cores: int
  versions: dict[str, str]
  commit: str
  load: float

  def as_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def environment(extra_versions: dict[str, str] | None = None) -> Environment:
  """Where and on what this run measures; ``load`` is the 1-minute load average now."""
  try:
    load = os.getloadavg()[0]
  except OSError:
    load = float("nan")
  return Environment(
    date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
    device=device_name(),
    cores=os.cpu_count() or 0,
    versions=versions(extra_versions),
    commit=git_commit(),
    load=round(load, 1),
  )


# ----------------------------------------------------------------------------- RESULTS.md


def _cell(value: Any) -> str:
  if isinstance(value, dict):
    value = "; ".join(f"{k}={_fmt(v)}" for k, v in value.items())
  return str(value).replace("|", "/").replace("\n", " ")


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    if v != v:
      return "nan"
    if abs(v) >= 100:
      return f"{v:.0f}"
    if abs(v) >= 1:
      return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v:.3g}"
  return str(v)


def format_row(
  env: Environment, script: str, settings: dict[str, Any], figures: dict[str, Any]
) -> str:
  vers = " ".join(f"{k} {v}" for k, v in env.versions.items())
  settings = dict(settings, load=env.load)
  cells = (
    env.date,
    script,
    env.device,
    env.cores,
    vers,
    env.commit,
    _cell(settings),
    _cell(figures),
  )
  return "| " + " | ".join(_cell(c) for c in cells) + " |\n"


@contextlib.contextmanager
def _folder_lock(folder: pathlib.Path):
  fd = os.open(folder, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def append_rows(rows: Sequence[str], path: pathlib.Path = RESULTS) -> None:
  """Appends table rows to ``path`` atomically (lock, write a temporary file, rename)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with _folder_lock(path.parent):
    old = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if not old.endswith("\n"):
      old += "\n"
    fd, tmp = tempfile.mkstemp(prefix=".RESULTS.", suffix=".tmp", dir=path.parent)
    try:
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(old + "".join(rows))
        f.flush()
        os.fsync(f.fileno())
      os.chmod(tmp, 0o644)
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
      raise


def append_row(
  env: Environment,
  script: str,
  settings: dict[str, Any],
  figures: dict[str, Any],
  path: pathlib.Path = RESULTS,
) -> str:
  row = format_row(env, script, settings, figures)
  append_rows([row], path)
  return row


def write_json(path: str | os.PathLike | None, payload: Any) -> None:
  if not path:
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(payload, indent=1, default=str))


# ----------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Timing:
  wall: list[float]
  cpu: list[float]  # process CPU seconds (user + system, all threads) of each run

  @property
  def median(self) -> float:
    return statistics.median(self.wall)

  @property
  def best(self) -> float:
    return min(self.wall)

  @property
  def cpu_median(self) -> float:
    return statistics.median(self.cpu)


# Lucid's settings (steps 512, the first 16 with the redirected ReLU gradient, 128 px, Adam
# 0.05): what a timed run scales down and what units/s are rescaled to.
# InceptionV1's mixed layers, in forward order: what the render and sweep benchmarks time.
INCEPTION_MIXED_LAYERS = (
  "mixed3a",
  "mixed3b",
  "mixed4a",
  "mixed4b",
  "mixed4c",
  "mixed4d",
  "mixed4e",
  "mixed5a",
  "mixed5b",
)

LUCID = featviz.RenderConfig()


def redirect_steps_for(steps: int) -> int:
  """The redirected-ReLU window for a timed run of ``steps`` steps: the default render's share.

  A 512-step render runs the redirected gradient (a ``lax.cond`` branch that costs more) for
  16 steps, 1 in 32. A timed run of fewer steps keeps that share, so its mean step time is the
  default render's; timing 8 steps all inside the window would overstate it. ``steps`` must be
  a multiple of 32.
  """
  window = steps * LUCID.redirect_relu_steps / LUCID.steps
  if window != int(window):
    raise SystemExit(
      f"--steps {steps}: use a multiple of "
      f"{LUCID.steps // LUCID.redirect_relu_steps} so the redirected-ReLU share "
      f"({LUCID.redirect_relu_steps} of {LUCID.steps} steps) is the default "
      "render's"
    )
  return int(window)


def timed_config(steps: int, **overrides) -> featviz.RenderConfig:
  """Lucid's settings at ``steps`` steps with the default render's share of redirected-ReLU
  steps (:func:`redirect_steps_for`), and ``overrides`` (other :class:`featviz.RenderConfig`
  fields)."""
  return LUCID.replace(steps=steps, redirect_relu_steps=redirect_steps_for(steps), **overrides)


def timed(fn: Callable[[], Any], repeats: int) -> Timing:
  """Runs ``fn`` (which must block until its result is ready) ``repeats`` times."""
  wall, cpu = [], []
  for _ in range(repeats):
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
  return Timing(wall, cpu)


# ----------------------------------------------------------------------------- FLOPs


def cost_flops(compiled) -> float:
  """``flops`` from XLA's cost analysis of a compiled program (a dict, or a list of them)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get("flops", float("nan")))


def scan_body_counting() -> str:
  """``"once"`` if cost analysis counts a ``lax.scan`` body once, ``"per-iteration"`` if
  it multiplies by the trip count. Measured on a 128x128 matmul scanned 3 and 7 times."""
  a = jnp.ones((128, 128), jnp.float32)

  def flops(n: int) -> float:
    def loop(a):
      return jax.lax.scan(lambda c, _: (c @ a, None), a, None, length=n)[0]

    return cost_flops(jax.jit(loop).lower(a).compile())

  f3, f7 = flops(3), flops(7)
  if not (f3 > 0):
    return "unknown"
  return "once" if abs(f7 - f3) < 0.01 * f3 else "per-iteration"


def flops_per_step(compiled, scan_length: int, counting: str) -> float:
  """FLOPs of one optimization step of a compiled chunk program of the render loop.

  ``scan_length`` is the program's number of steps (the first of
  ``featviz._loop.program.chunk_lengths(steps, chunk)``). With the body counted once, the
  program's total is one step (the initial draw and the final image are programs of their
  own). Counted per iteration, the total is divided by ``scan_length``.
  """
  total = cost_flops(compiled)
  return total / scan_length if counting == "per-iteration" else total


def render_flops(model, objective, config: featviz.RenderConfig, counting: str, **kwargs) -> float:
  """FLOPs of one step of ``featviz.render(model, objective, config, **kwargs)``: XLA's cost
  analysis of its chunk program (``featviz.lower``, compiled here once more: the render's own
  compiled programs are private). Lowered for one device: a program split over several counts
  each device's share only."""
  kwargs.setdefault("mesh", jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",)))
  compiled = featviz.lower(model, objective, config, **kwargs).compile()
  return flops_per_step(compiled, program.chunk_lengths(config.steps, config.chunk)[0], counting)


# ----------------------------------------------------------------------------- peak


def matmul_peak(dtype: str | None = None, n: int | None = None, repeats: int = 7) -> dict[str, Any]:
  """The device's matrix-product rate: ``n x n @ n x n`` (2 n^3 FLOPs), median of runs.

  float32 (highest precision) on CPU, bfloat16 inputs with float32 accumulation on GPU.
  Random inputs (never zeros: they can run faster than real data).
  """
  gpu = on_gpu()
  dtype = dtype or ("bfloat16" if gpu else "float32")
  n = n or (16384 if gpu else 2048)  # GPU: 8.8 TFLOP a product, ~11 ms: launch cost is noise
  ka, kb = jax.random.split(jax.random.key(0))
  a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
  b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)

  @jax.jit
  def mm(a, b):
    return jnp.dot(a, b, preferred_element_type=jnp.float32, precision=jax.lax.Precision.HIGHEST)

  mm(a, b).block_until_ready()
  t = timed(lambda: mm(a, b).block_until_ready(), repeats)
  flops = 2.0 * n**3
  return {
    "dtype": dtype,
    "n": n,
    "tflops": flops / t.median / 1e12,
    "tflops_best": flops / t.best / 1e12,
    "seconds": t.wall,
  }


# ----------------------------------------------------------------------------- models


def inception_weights() -> str | None:
  """The random-weights InceptionV1 file from ``shared/`` (speed does not depend on values)."""
  name = "reference/inceptionv1/random_inception5h.pth"
  candidates = [
    os.environ.get("FEATVIZ_INCEPTION_WEIGHTS", ""),
    os.environ.get("FEATVIZ_SHARED") and pathlib.Path(os.environ["FEATVIZ_SHARED"], name),
    REPO / "shared" / name,
    REPO.parent / "shared" / name,
  ]
  for c in candidates:
    if c and pathlib.Path(c).is_file():
      return str(c)
  return None


def load_model(name: str) -> featviz.Model:
  if name == "inceptionv1":
    return featviz.zoo.load(name, weights=inception_weights())
  return featviz.zoo.load(name)
