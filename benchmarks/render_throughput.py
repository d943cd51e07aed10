"""Render throughput: image-steps/s, units/s, FLOPs per step and % of the device's peak.

For each layer and batch size, renders ``objectives.channel(layer, arange(B))`` at Lucid's
defaults (``featviz.RenderConfig()``: 128 px, Fourier, ``standard_transforms`` with a draw per
image, Adam 0.05; 512 steps unless ``--steps`` says fewer, which CPU runs do and their rows
say) through ``featviz.render``, the same call users make, and reports per configuration:

* compile seconds (apart: the first call compiles, the timed calls reuse the program);
* seconds per step (median of ``--repeats`` timed calls after one warm-up call), image-steps
  per second, and units per second at 512 steps (``img-steps/s / 512``);
* FLOPs per step from XLA's cost analysis of the compiled chunk program (``featviz.lower``).
  XLA counts a ``lax.scan`` body once, not once per iteration (checked each run by
  ``common.scan_body_counting``; the other case is divided by the chunk length), so the
  program's total is one step;
* achieved TFLOP/s and its fraction of the matrix-product peak measured on the same device
  at the start of the run (float32 on CPU, bfloat16 on GPU).

``--profile`` adds the per-stage breakdown of one configuration (README, "What the profile
showed"): by ablation (param, transforms, network forward, network backward, optimizer;
each a scan of its own over the loop's own pieces, ``featviz._loop.program``, timed like the
loop) and by a ``jax.profiler`` trace of the real loop whose per-HLO-op times are summed by
the ``named_scope`` the op came from. ``--whatif`` also times the loop with each of the CPU
rewrites (``featviz.nonlin.CPU_REWRITES``) switched the other way, as
``RenderConfig(rewrites=...)`` variants.

From the repository root:

  python -m benchmarks.render_throughput --steps 32 --batches 1,8,32          # CPU
  python -m benchmarks.render_throughput --model efficientnet_lite0 --steps 32
  python -m benchmarks.render_throughput --profile --layers mixed4a --batches 1,8 --steps 32
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

import featviz
from benchmarks import common
from featviz import objectives
from featviz import transforms as tf_lib
from featviz._loop import api, program
from featviz._loop import keys as keys_lib
from featviz.nonlin import CPU_REWRITES, Ops, redirecting, rewrites_for

INCEPTION_LAYERS = common.INCEPTION_MIXED_LAYERS
EFFNET_LAYERS = tuple(f"block{i}" for i in range(16))


def default_layers(model_name: str) -> tuple[str, ...]:
  return INCEPTION_LAYERS if model_name == "inceptionv1" else EFFNET_LAYERS


def channel_objective(layer: str, batch: int, channels: int | None = None):
  """One image per channel: channels 0 .. batch-1 (wrapping when the layer has fewer)."""
  units = np.arange(batch, dtype=np.int32)
  return objectives.channel(layer, units % channels if channels else units)


def measure(
  model, layer: str, batch: int, config: featviz.RenderConfig, repeats: int, counting: str
) -> dict:
  """Compiles and times one configuration through ``featviz.render``."""
  steps = config.steps
  obj = channel_objective(layer, batch, model.spec.layers[layer])
  first = featviz.render(model, obj, config, progress_bar=False)
  flops = common.render_flops(model, obj, config, counting)
  runs, cpus = [], []
  for _ in range(repeats):
    c0 = time.process_time()
    r = featviz.render(model, obj, config, progress_bar=False)
    cpus.append(time.process_time() - c0)
    runs.append(r.run_seconds)
  step_s = statistics.median(runs) / steps
  return {
    "layer": layer,
    "batch": batch,
    "steps": steps,
    "compile_s": first.compile_seconds,
    "first_run_s": first.run_seconds,
    "run_s": runs,
    "cpu_s": cpus,
    "s_per_step": step_s,
    "s_per_step_best": min(runs) / steps,
    "cpu_s_per_step": statistics.median(cpus) / steps,
    "img_steps_per_s": batch / step_s,
    "units_per_s_512": batch / step_s / common.LUCID.steps,
    "gflop_per_step": flops / 1e9,
    "tflops": flops / step_s / 1e12,
  }


# ----------------------------------------------------------------------------- profile


def _scan_timer(fn, arg, n: int, repeats: int) -> float:
  """Median seconds per iteration of ``arg = fn(arg, step)`` scanned ``n`` times."""

  def loop(a):
    return jax.lax.scan(lambda c, s: (fn(c, s), None), a, jnp.arange(n))[0]

  c = jax.jit(loop).lower(arg).compile()
  jax.block_until_ready(c(arg))
  t = common.timed(lambda: jax.block_until_ready(c(arg)), repeats)
  return t.median / n


@dataclasses.dataclass(frozen=True)
class _Loop:
  """The pieces of ``featviz.render(model, objective, config)``'s step, as the render builds
  them: its plan, the bound objective and per-image keys (``featviz._loop``)."""

  objective: objectives.Objective  # as given (for featviz.render)
  bound: objectives.Objective  # bound to the model and batch (for program.loss)
  plan: program.Plan
  k_steps: jax.Array
  k_shared: jax.Array

  @classmethod
  def of(cls, model, layer: str, batch: int, config: featviz.RenderConfig) -> _Loop:
    obj = channel_objective(layer, batch, model.spec.layers[layer])
    _, batch, bound, plan, _ = api._prepare(model, obj, config, {}, batch, None)
    _, k_steps, k_shared = keys_lib.derive(jax.random.key(2), bound.labels(batch))
    return cls(obj, bound, plan, k_steps, k_shared)

  def param(self):
    return self.plan.param(self.plan.size, self.plan.batch, self.plan.channels)

  def transformed(self, params, step, plan: program.Plan | None = None) -> jax.Array:
    """Step ``step``'s transformed images of ``params`` (with ``plan``'s transforms)."""
    return program.transform(
      plan or self.plan, self.k_steps, self.k_shared, step, self.param().to_image(params)
    )

  def ops(self, step, redirect_steps: int | None = None) -> Ops:
    """The network's primitives at ``step``, as the loop picks them (the CPU rewrites of the
    plan; Lucid's redirected ReLU while ``step < redirect_steps``, the plan's window)."""
    window = self.plan.redirect_relu_steps if redirect_steps is None else redirect_steps
    if window:
      return redirecting(step < window, self.plan.rewrites)
    return Ops(rewrites=self.plan.rewrites)

  def net_score(self, model, x, ops: Ops) -> jax.Array:
    """The network (only the objective's layers) and the objective's sum on input ``x``;
    ``model`` already cast to the plan's compute dtype, as in ``program.loss``."""
    acts = model.activations(
      x,
      self.plan.layers,
      ops=ops,
      compute_dtype=self.plan.compute_dtype,
      input_size=self.plan.input_size,
    )
    return jnp.sum(self.bound(objectives.Context(acts, x)))

  def fixed_input(self) -> jax.Array:
    """A fixed network input in [0, 1] of the transformed images' shape."""
    p0 = self.param().init(jax.random.key(1))
    shape = jax.eval_shape(lambda p: self.transformed(p, 0), p0).shape
    return jax.nn.sigmoid(jax.random.normal(jax.random.key(3), shape))


def _grad_step(f):
  """``params -> params + 1e-6 * grad f(params, step)``: a scan body that needs the gradient."""

  def step(p, s):
    g = jax.grad(f)(p, s)
    return jax.tree.map(lambda a, b: a + 1e-6 * b, p, g)

  return step


def ablation(model, layer: str, batch: int, config: featviz.RenderConfig, repeats: int) -> dict:
  """Seconds per step of each stage, timed in scans of their own (see module doc).

  P   param: Fourier spectrum -> image, forward and backward;
  PT  param + the loop's transforms (``program.transform``), forward and backward;
  Nf  network forward (+ objective) on a fixed input of the transformed size;
  Nfb the same, forward and backward (with Lucid's redirected ReLU, as the loop);
  Nfb_plain the same with the plain ReLU gradient (the redirect's own cost);
  G   the whole loss (``program.loss``: P, T, network, objective together), forward and
      backward;
  S   the real loop's step (G + Adam + finiteness checks), through ``featviz.render``.
  Also PT with the five transforms step by step (``standard(one_pass=False)``, what the
  loop ran before the one-pass map). The redirected ReLU is on for the config's
  ``redirect_relu_steps`` first steps of every scan (``common.timed_config``: the default
  render's share).
  """
  steps = config.steps
  loop = _Loop.of(model, layer, batch, config)
  plan = loop.plan
  net = model.cast(plan.compute_dtype)  # once, outside the scans, as the loop
  param = loop.param()
  five_steps = dataclasses.replace(
    plan, transforms=tf_lib.standard(one_pass=False), shared_draws=False
  )
  p0 = param.init(jax.random.key(1))
  x0 = loop.fixed_input()
  plain = Ops(rewrites=plan.rewrites)

  def nfb(ops_of):
    return lambda x, s: x + 1e-6 * jax.grad(lambda x: loop.net_score(net, x, ops_of(s)))(x)

  n = steps
  out = {}
  out["P"] = _scan_timer(_grad_step(lambda p, s: jnp.sum(param.to_image(p) ** 2)), p0, n, repeats)
  out["PT"] = _scan_timer(
    _grad_step(lambda p, s: jnp.sum(loop.transformed(p, s) ** 2)), p0, n, repeats
  )
  out["PT_five_steps"] = _scan_timer(
    _grad_step(lambda p, s: jnp.sum(loop.transformed(p, s, five_steps) ** 2)), p0, n, repeats
  )
  out["Nf"] = _scan_timer(
    lambda x, s: x + 1e-9 * loop.net_score(net, x, loop.ops(s)), x0, n, repeats
  )
  out["Nfb"] = _scan_timer(nfb(loop.ops), x0, n, repeats)
  out["Nfb_plain"] = _scan_timer(nfb(lambda s: plain), x0, n, repeats)
  out["G"] = _scan_timer(
    _grad_step(
      lambda p, s: program.loss(plan, net, loop.bound, loop.k_steps, loop.k_shared, p, s)[0]
    ),
    p0,
    n,
    repeats,
  )
  featviz.render(model, loop.objective, config, progress_bar=False)
  runs = [
    featviz.render(model, loop.objective, config, progress_bar=False).run_seconds
    for _ in range(repeats)
  ]
  out["S"] = statistics.median(runs) / steps
  stages = {
    "param (fwd+bwd)": out["P"],
    "transforms (fwd+bwd)": out["PT"] - out["P"],
    "network forward": out["Nf"],
    "network backward": out["Nfb"] - out["Nf"],
    "  of which redirected-ReLU extra": out["Nfb"] - out["Nfb_plain"],
    "joining the pieces (G - PT - Nfb)": out["G"] - out["PT"] - out["Nfb"],
    "optimizer + checks (S - G)": out["S"] - out["G"],
    "whole step S": out["S"],
  }
  return {"raw_s_per_step": out, "stages_s_per_step": stages, "transformed_input": list(x0.shape)}


# ----------------------------------------------------------------------------- what-if


def whatif(model, layer: str, batch: int, config: featviz.RenderConfig, repeats: int) -> dict:
  """The whole step (through ``featviz.render``) and the network's forward + backward with
  each of ``featviz.nonlin.CPU_REWRITES`` switched the other way from where this device has
  it (``rewrites="auto"``: on a CPU all on, so each goes off; on a GPU each goes on), then all
  of them: each variant is ``config.replace(rewrites=...)``, a program of its own. Also each
  variant's gradient's relative difference from the shipped one's (the rewrites are exact up
  to float32 rounding and summation order). The forward + backward timing runs Lucid's
  redirected ReLU for its first 16 steps (``RenderConfig().redirect_relu_steps``), the whole
  step the config's share."""
  shipped = rewrites_for(config.rewrites, jax.default_backend())
  variants = {"shipped": shipped}
  for name in sorted(CPU_REWRITES):
    variants[f"{name} {'off' if name in shipped else 'on'}"] = shipped ^ {name}
  variants["all switched"] = shipped ^ CPU_REWRITES
  steps = config.steps
  out, ref, x0 = {}, None, None
  for label, rewrites in variants.items():
    variant = config.replace(rewrites=rewrites)
    loop = _Loop.of(model, layer, batch, variant)
    net = model.cast(loop.plan.compute_dtype)
    x0 = loop.fixed_input() if x0 is None else x0

    def grad_x(x, s, loop=loop, net=net):
      ops = loop.ops(s, common.LUCID.redirect_relu_steps)
      return jax.grad(lambda x: loop.net_score(net, x, ops))(x)

    g = np.asarray(jax.jit(grad_x)(x0, jnp.int32(100)))
    ref = g if ref is None else ref
    rel = float(np.linalg.norm(g - ref) / max(np.linalg.norm(ref), 1e-30))
    nfb = _scan_timer(lambda x, s, grad_x=grad_x: x + 1e-6 * grad_x(x, s), x0, steps, repeats)
    featviz.render(model, loop.objective, variant, progress_bar=False)
    runs = [
      featviz.render(model, loop.objective, variant, progress_bar=False).run_seconds
      for _ in range(repeats)
    ]
    out[label] = {
      "Nfb_s": nfb,
      "S_s": statistics.median(runs) / steps,
      "grad_rel_diff": rel,
      "rewrites": sorted(rewrites),
    }
    print(
      f"whatif {layer} B{batch} {label:<32} step {out[label]['S_s'] * 1e3:8.1f} ms  "
      f"net f+b {nfb * 1e3:8.1f} ms  grad rel diff {rel:.1e}",
      flush=True,
    )
  return out


def _op_stage(op_name: str) -> str:
  back = "transpose(" in op_name
  for scope, label in (
    ("model", "network"),
    ("transforms", "transforms"),
    ("objective", "objective"),
    ("optimizer", "optimizer"),
    ("fourier_image", "param"),
    ("param", "param"),
  ):
    if f"/{scope}" in op_name or f"({scope}" in op_name:
      if label in ("optimizer",):
        return label
      return f"{label} {'backward' if back else 'forward'}"
  return "other (rng, finiteness checks, loop)"


def _op_kind(text: str) -> str:
  for pat, kind in (
    ("convolution(", "convolution"),
    ("select-and-scatter", "pool backward"),
    ("reduce-window", "reduce-window (pool/LRN)"),
    ("scatter(", "scatter"),
    ("gather(", "gather"),
    ("dot(", "dot"),
    ("ynn_fusion", "ynn fusion"),
  ):
    if pat in text:
      return kind
  return "elementwise/other"


def hlo_index(compiled) -> dict[str, tuple[str, str]]:
  """HLO instruction name -> (op_name metadata, op kind), from the compiled module's text.

  A fusion without metadata takes the first ``op_name`` inside the computation it calls.
  """
  text = compiled.as_text()
  comps, current = {}, None
  for line in text.splitlines():
    m = re.match(r"^%?([\w.\-]+) .*\{\s*$", line)
    if m and not line.startswith(" "):
      current = m.group(1)
      comps[current] = []
    elif current is not None:
      comps[current].append(line)
  index = {}
  for lines in comps.values():
    for line in lines:
      m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line)
      if not m:
        continue
      name = m.group(1)
      op = re.search(r'op_name="([^"]*)"', line)
      kind_text = line
      called = re.search(r"calls=%([\w.\-]+)", line)
      if called and called.group(1) in comps:
        body = "\n".join(comps[called.group(1)])
        kind_text = line + body
        if not op:
          op = re.search(r'op_name="([^"]*)"', body)
      op_name = op.group(1) if op else ""
      if not op_name and "reduce-window" in kind_text and re.search(r"= \(f32\[[^=]*s32\[", line):
        # XLA:CPU's max-pool gradient: a variadic reduce-window (max + argmax indices) that
        # carries no metadata, then a scatter.
        op_name = "transpose(jvp(model))/max-pool gradient (argmax reduce-window)"
      index[name] = (op_name, _op_kind(kind_text))
  return index


def trace_profile(model, layer: str, batch: int, config: featviz.RenderConfig) -> dict:
  """Per-stage and per-op-kind sums of the real loop's thunk times (jax.profiler trace).

  The HLO index comes from ``featviz.lower``'s program compiled here: the same lowering as the
  render's, so its instruction names are those the trace reports.
  """
  steps = config.steps
  obj = channel_objective(layer, batch, model.spec.layers[layer])
  featviz.render(model, obj, config, progress_bar=False)
  index = hlo_index(featviz.lower(model, obj, config).compile())
  folder = tempfile.mkdtemp(prefix="featviz_trace_")
  jax.profiler.start_trace(folder, create_perfetto_trace=True)
  r = featviz.render(model, obj, config, progress_bar=False)
  jax.profiler.stop_trace()
  path = sorted(glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"), recursive=True))[-1]
  data = json.load(gzip.open(path))
  events = data["traceEvents"] if isinstance(data, dict) else data
  by_stage, by_kind, by_op = (collections.Counter() for _ in range(3))
  for e in events:
    if e.get("ph") != "X":
      continue
    op = (e.get("args") or {}).get("hlo_op")
    if not op or op not in index:
      continue
    op_name, kind = index[op]
    stage = _op_stage(op_name)
    seconds = e.get("dur", 0) / 1e6 / steps
    by_stage[stage] += seconds
    by_kind[f"{stage} / {kind}"] += seconds
    by_op[f"{op} [{kind}] {op_name.split('closed_call/')[-1][:90]}"] += seconds
  total = sum(by_stage.values())
  return {
    "wall_s_per_step": r.run_seconds / steps,
    "thunk_s_per_step": total,
    "by_stage": dict(by_stage.most_common()),
    "by_kind": dict(by_kind.most_common(25)),
    "top_ops": dict(by_op.most_common(25)),
    "trace": path,
  }


def print_profile(model_name, layer, batch, abl, tr) -> None:
  print(f"\n== profile {model_name} {layer} batch {batch} ==")
  print("ablation (s/step, medians):")
  whole = abl["stages_s_per_step"]["whole step S"]
  for k, v in abl["stages_s_per_step"].items():
    print(f"  {k:40s} {v * 1e3:9.1f} ms  {100 * v / whole:5.1f} %")
  print("  raw:", {k: round(v * 1e3, 1) for k, v in abl["raw_s_per_step"].items()})
  print(
    f"trace: wall {tr['wall_s_per_step'] * 1e3:.1f} ms/step, summed op time "
    f"{tr['thunk_s_per_step'] * 1e3:.1f} ms/step"
  )
  for k, v in tr["by_stage"].items():
    print(f"  {k:40s} {v * 1e3:9.1f} ms  {100 * v / tr['thunk_s_per_step']:5.1f} %")
  print(" by stage/kind:")
  for k, v in tr["by_kind"].items():
    print(f"  {k:60s} {v * 1e3:9.1f} ms")
  print(" top ops:")
  for k, v in list(tr["top_ops"].items())[:15]:
    print(f"  {v * 1e3:8.2f} ms  {k}")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default="inceptionv1", choices=["inceptionv1", "efficientnet_lite0"])
  ap.add_argument("--layers", default=None, help="comma-separated; default: all of the suite")
  ap.add_argument(
    "--batches", default=None, help="comma-separated; default 1,8,32 (CPU) or 1,8,32,128 (GPU)"
  )
  ap.add_argument(
    "--steps",
    type=int,
    default=common.LUCID.steps,
    help="optimization steps per timed call (Lucid: 512; fewer on CPU)",
  )
  ap.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
  ap.add_argument(
    "--compute-dtype",
    default=None,
    help="RenderConfig(compute_dtype=...), e.g. bfloat16 (network math; params f32)",
  )
  ap.add_argument("--profile", action="store_true", help="stage breakdown (ablation + trace)")
  ap.add_argument(
    "--whatif",
    action="store_true",
    help="with --profile: time the loop with each CPU rewrite switched "
    "(RenderConfig(rewrites=...))",
  )
  ap.add_argument("--json", default=None, help="also write every figure to this file")
  ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
  args = ap.parse_args(argv)
  config = common.timed_config(args.steps, compute_dtype=args.compute_dtype)

  model = common.load_model(args.model)
  layers = tuple(args.layers.split(",")) if args.layers else default_layers(args.model)
  gpu = common.on_gpu()
  batches = [int(b) for b in (args.batches or ("1,8,32,128" if gpu else "1,8,32")).split(",")]
  env = common.environment()
  counting = common.scan_body_counting()
  peak = common.matmul_peak()
  print(f"{env.device}, {env.cores} cores, load {env.load}, commit {env.commit}, {env.versions}")
  print(
    f"matmul peak ({peak['dtype']}, n={peak['n']}): {peak['tflops'] * 1e3:.1f} GFLOP/s "
    f"median, {peak['tflops_best'] * 1e3:.1f} best; cost analysis counts the scan body "
    f"{counting}"
  )
  settings_base = {
    "model": args.model,
    "size": config.size,
    "param": config.param,
    "transforms": "standard (per image)",
    "steps": args.steps,
    "repeats": args.repeats,
    "peak_GFLOP/s": peak["tflops"] * 1e3,
    "peak_dtype": peak["dtype"],
    "compute_dtype": config.compute_dtype or "float32",
  }
  if args.steps != common.LUCID.steps:
    settings_base["note"] = (
      f"{args.steps} steps timed, not {common.LUCID.steps}; units/s "
      f"rescaled to {common.LUCID.steps}; redirected ReLU on for "
      f"{config.redirect_relu_steps} of them"
    )

  results, rows = [], []
  if args.profile:
    profiles = []
    for layer in layers:
      for b in batches:
        abl = ablation(model, layer, b, config, args.repeats)
        tr = trace_profile(model, layer, b, config)
        print_profile(args.model, layer, b, abl, tr)
        wi = whatif(model, layer, b, config, args.repeats) if args.whatif else {}
        for name, v in wi.items():
          print(
            f"  what-if {name:18s} network f+b {v['Nfb_s'] * 1e3:8.1f} ms  whole step "
            f"{v['S_s'] * 1e3:8.1f} ms  grad rel. diff {v['grad_rel_diff']:.1e}"
          )
        profiles.append({"layer": layer, "batch": b, "ablation": abl, "trace": tr, "whatif": wi})
        st = abl["stages_s_per_step"]
        figures = {k.strip().split(" (")[0]: f"{v * 1e3:.1f}ms" for k, v in st.items()}
        figures.update({f"whatif {k} step": f"{v['S_s'] * 1e3:.1f}ms" for k, v in wi.items()})
        rows.append(
          common.format_row(
            env, "render_throughput --profile", dict(settings_base, layer=layer, batch=b), figures
          )
        )
    common.write_json(args.json, {"env": env.as_dict(), "peak": peak, "profiles": profiles})
  else:
    print(
      f"\n{'layer':10s} {'B':>4s} {'compile s':>9s} {'ms/step':>9s} {'img-st/s':>9s} "
      f"{'units/s':>8s} {'GFLOP/st':>9s} {'GFLOP/s':>8s} {'%peak':>6s} {'cpu-s/st':>8s}"
    )
    for layer in layers:
      for b in batches:
        try:
          m = measure(model, layer, b, config, args.repeats, counting)
        except Exception as e:  # one bad configuration must not lose the others' rows
          print(f"{layer:10s} {b:4d} FAILED: {type(e).__name__}: {e}", flush=True)
          continue
        m["pct_peak"] = 100 * m["tflops"] / peak["tflops"]
        results.append(m)
        print(
          f"{layer:10s} {b:4d} {m['compile_s']:9.1f} {m['s_per_step'] * 1e3:9.1f} "
          f"{m['img_steps_per_s']:9.2f} {m['units_per_s_512']:8.4f} "
          f"{m['gflop_per_step']:9.2f} {m['tflops'] * 1e3:8.1f} {m['pct_peak']:6.1f} "
          f"{m['cpu_s_per_step']:8.2f}",
          flush=True,
        )
        figures = {
          "compile_s": m["compile_s"],
          "ms/step": m["s_per_step"] * 1e3,
          "img-steps/s": m["img_steps_per_s"],
          "units/s@512": m["units_per_s_512"],
          "GFLOP/step": m["gflop_per_step"],
          "TFLOP/s": m["tflops"],
          "%peak": m["pct_peak"],
          "cpu-s/step": m["cpu_s_per_step"],
        }
        row = common.format_row(
          env, "render_throughput", dict(settings_base, layer=layer, batch=b), figures
        )
        if not args.no_results:  # row by row: a run cut short keeps what it measured
          common.append_rows([row])
    common.write_json(
      args.json, {"env": env.as_dict(), "peak": peak, "counting": counting, "results": results}
    )
  if not args.no_results:
    common.append_rows(rows)
    print(f"\nappended {len(rows) or len(results)} rows to {common.RESULTS}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
