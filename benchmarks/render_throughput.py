"""Render throughput: image-steps/s, units/s, FLOPs per step and % of the device's peak.

For each layer and batch size, renders ``objectives.channel(layer, arange(B))`` at Lucid's
defaults (128 px, Fourier, ``standard_transforms`` with a draw per image, Adam 0.05; 512
steps unless ``--steps`` says fewer, which CPU runs do and their rows say) through
``featviz.render.render``, the same call users make, and reports per configuration:

* compile seconds (apart: the first call compiles, the timed calls reuse the program);
* seconds per step (median of ``--repeats`` timed calls after one warm-up call), image-steps
  per second, and units per second at 512 steps (``img-steps/s / 512``);
* FLOPs per step from XLA's cost analysis of the compiled loop. XLA counts a ``lax.scan``
  body once, not once per iteration (checked each run by ``common.scan_body_counting``;
  the other case is divided by the step count), so the loop's total is one step;
* achieved TFLOP/s and its fraction of the matrix-product peak measured on the same device
  at the start of the run (float32 on CPU, bfloat16 on GPU).

``--profile`` adds the per-stage breakdown of one configuration (README, "What the profile
showed"): by ablation (param, transforms, network forward, network backward, optimizer;
each a scan of its own, timed like the loop) and by a ``jax.profiler`` trace of the real
loop whose per-HLO-op times are summed by the ``named_scope`` the op came from.

  python benchmarks/render_throughput.py --steps 8 --batches 1,8,32          # CPU
  python benchmarks/render_throughput.py --model efficientnet_lite0 --steps 8
  python benchmarks/render_throughput.py --profile --layers mixed4a --batches 1,8 --steps 8
"""

from __future__ import annotations

import argparse
import collections
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from featviz import objectives, render  # noqa: E402
from featviz import param as param_lib  # noqa: E402
from featviz import transforms as tf_lib  # noqa: E402
from featviz.nonlin import STANDARD_OPS  # noqa: E402
from featviz.nonlin import redirecting  # noqa: E402

INCEPTION_LAYERS = ("mixed3a", "mixed3b", "mixed4a", "mixed4b", "mixed4c", "mixed4d",
                    "mixed4e", "mixed5a", "mixed5b")
EFFNET_LAYERS = tuple(f"block{i}" for i in range(16))
LUCID_STEPS = common.LUCID_STEPS


def default_layers(model_name: str) -> tuple[str, ...]:
  return INCEPTION_LAYERS if model_name == "inceptionv1" else EFFNET_LAYERS


def channel_objective(layer: str, batch: int, channels: int | None = None):
  """One image per channel: channels 0 .. batch-1 (wrapping when the layer has fewer)."""
  units = np.arange(batch, dtype=np.int32)
  return objectives.channel(layer, units % channels if channels else units)


def measure(model, layer: str, batch: int, steps: int, repeats: int, counting: str,
            input_size: int | None = None, compute_dtype: str | None = None) -> dict:
  """Compiles and times one configuration through ``render.render``."""
  obj = channel_objective(layer, batch, model.spec.layers[layer])
  kw = {"input_size": input_size, "redirect_relu_steps": common.redirect_steps_for(steps)}
  if compute_dtype:  # only passed when asked: older render() has no such argument
    kw["compute_dtype"] = compute_dtype
  before = dict(render._COMPILED)
  first = render.render(model, obj, steps=steps, progress_bar=False, **kw)
  compiled = common.new_compiled(before)
  flops = (common.flops_per_step(compiled, render.chunk_lengths(steps)[0], counting)
           if compiled is not None else float("nan"))
  runs, cpus = [], []
  for _ in range(repeats):
    c0 = time.process_time()
    r = render.render(model, obj, steps=steps, progress_bar=False, **kw)
    cpus.append(time.process_time() - c0)
    runs.append(r.run_seconds)
  step_s = statistics.median(runs) / steps
  return {
      "layer": layer, "batch": batch, "steps": steps, "compile_s": first.compile_seconds,
      "first_run_s": first.run_seconds, "run_s": runs, "cpu_s": cpus,
      "s_per_step": step_s, "s_per_step_best": min(runs) / steps,
      "cpu_s_per_step": statistics.median(cpus) / steps,
      "img_steps_per_s": batch / step_s, "units_per_s_512": batch / step_s / LUCID_STEPS,
      "gflop_per_step": flops / 1e9, "tflops": flops / step_s / 1e12,
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


def ablation(model, layer: str, batch: int, steps: int, repeats: int) -> dict:
  """Seconds per step of each stage, timed in scans of their own (see module doc).

  P   param: Fourier spectrum -> image, forward and backward;
  PT  param + standard transforms, forward and backward;
  Nf  network forward (+ objective) on a fixed input of the transformed size;
  Nfb the same, forward and backward (with Lucid's redirected ReLU, as the loop);
  Nfb_plain the same with the plain ReLU gradient (the redirect's own cost);
  G   the whole loss, forward and backward (P, T, network, objective together);
  S   the real loop's step (G + Adam + finiteness checks), through render().
  Also PT with the five transforms step by step (``standard(one_pass=False)``, what the
  loop ran before the one-pass map). The redirected ReLU is on for the first
  ``common.redirect_steps_for(steps)`` steps of every scan, the default render's share.
  """
  size = render.LUCID.size
  param = param_lib.fourier(size, batch, model.spec.channels)
  tf = tf_lib.standard()
  obj = channel_objective(layer, batch, model.spec.layers[layer]).bind(model.spec, batch)
  weights = model.weights
  lo, hi = model.spec.value_range
  layers = (layer,)
  p0 = param.init(jax.random.key(1))
  key0 = jax.random.key(2)
  x_shape = jax.eval_shape(lambda p: tf(key0, param.to_image(p)), p0).shape

  def net_score(x, step, ops):
    acts = model.forward(weights, lo + (hi - lo) * x, layers, ops)
    return jnp.sum(obj(objectives.Context(acts, x)))

  window = common.redirect_steps_for(steps)

  def redirect(step):
    return redirecting(step < window)

  def grad_step(f):
    def step(p, s):
      g = jax.grad(f)(p, jax.random.fold_in(key0, s), s)
      return p + 1e-6 * g
    return step

  five_steps = tf_lib.standard(one_pass=False)
  x0 = jax.nn.sigmoid(jax.random.normal(jax.random.key(3), x_shape))
  n = steps
  out = {}
  out["P"] = _scan_timer(grad_step(lambda p, k, s: jnp.sum(param.to_image(p) ** 2)), p0, n,
                         repeats)
  out["PT"] = _scan_timer(grad_step(lambda p, k, s: jnp.sum(tf(k, param.to_image(p)) ** 2)),
                          p0, n, repeats)
  out["PT_five_steps"] = _scan_timer(
      grad_step(lambda p, k, s: jnp.sum(five_steps(k, param.to_image(p)) ** 2)), p0, n, repeats)
  out["Nf"] = _scan_timer(lambda x, s: x + 1e-9 * net_score(x, s, redirect(s)), x0, n, repeats)
  out["Nfb"] = _scan_timer(
      lambda x, s: x + 1e-6 * jax.grad(net_score)(x, s, redirect(s)), x0, n, repeats)
  out["Nfb_plain"] = _scan_timer(
      lambda x, s: x + 1e-6 * jax.grad(net_score)(x, s, STANDARD_OPS), x0, n, repeats)
  out["G"] = _scan_timer(
      grad_step(lambda p, k, s: net_score(tf(k, param.to_image(p)), s, redirect(s))), p0, n,
      repeats)
  runs = []
  obj_u = channel_objective(layer, batch, model.spec.layers[layer])
  kw = {"steps": steps, "progress_bar": False, "redirect_relu_steps": window}
  render.render(model, obj_u, **kw)
  for _ in range(repeats):
    runs.append(render.render(model, obj_u, **kw).run_seconds)
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
  return {"raw_s_per_step": out, "stages_s_per_step": stages,
          "transformed_input": list(x_shape)}


# ----------------------------------------------------------------------------- what-if


def whatif(model, layer: str, batch: int, steps: int, repeats: int) -> dict:
  """The whole step (through render) and the network's forward + backward with each of
  ``featviz.zoo.tf_layers.REWRITES`` switched the other way from where this device has it
  (on a CPU: off; on a GPU: on), then all of them; this process only. Also each variant's
  gradient's relative difference from the shipped one's (the rewrites are exact up to
  float32 rounding and summation order)."""
  from featviz.zoo import tf_layers as tfl
  shipped = tfl.use_rewrite
  default = {name: shipped(name) for name in tfl.REWRITES}
  obj = channel_objective(layer, batch, model.spec.layers[layer])
  bound = obj.bind(model.spec, batch)
  lo, hi = model.spec.value_range
  size = render.LUCID.size
  param = param_lib.fourier(size, batch, model.spec.channels)
  tf = tf_lib.standard()
  x_shape = jax.eval_shape(lambda p: tf(jax.random.key(0), param.to_image(p)),
                           param.init(jax.random.key(0))).shape
  x0 = jax.nn.sigmoid(jax.random.normal(jax.random.key(3), x_shape))

  def grad_x(x, s):
    def score(x):
      acts = model.forward(model.weights, lo + (hi - lo) * x, (layer,),
                           redirecting(s < render.LUCID.redirect_relu_steps))
      return jnp.sum(bound(objectives.Context(acts, x)))
    return jax.grad(score)(x)

  variants = {"shipped": set()}
  for name in tfl.REWRITES:
    variants[f"{name} {'off' if default[name] else 'on'}"] = {name}
  variants["all switched"] = set(tfl.REWRITES)
  out, ref = {}, None
  try:
    for label, flipped in variants.items():
      tfl.use_rewrite = lambda name, flipped=flipped: default[name] != (name in flipped)
      render._COMPILED.clear()
      jax.clear_caches()  # jit's trace caches would otherwise hand back the other program
      g = np.asarray(jax.jit(grad_x)(x0, jnp.int32(100)))
      ref = g if ref is None else ref
      rel = float(np.linalg.norm(g - ref) / max(np.linalg.norm(ref), 1e-30))
      nfb = _scan_timer(lambda x, s: x + 1e-6 * grad_x(x, s), x0, steps, repeats)
      kw = {"steps": steps, "progress_bar": False,
            "redirect_relu_steps": common.redirect_steps_for(steps)}
      render.render(model, obj, **kw)
      runs = [render.render(model, obj, **kw).run_seconds for _ in range(repeats)]
      out[label] = {"Nfb_s": nfb, "S_s": statistics.median(runs) / steps, "grad_rel_diff": rel}
      print(f"whatif {layer} B{batch} {label:<32} step {out[label]['S_s'] * 1e3:8.1f} ms  "
            f"net f+b {nfb * 1e3:8.1f} ms  grad rel diff {rel:.1e}", flush=True)
  finally:
    tfl.use_rewrite = shipped
    render._COMPILED.clear()
    jax.clear_caches()
  return out


def _op_stage(op_name: str) -> str:
  back = "transpose(" in op_name
  for scope, label in (("model", "network"), ("transforms", "transforms"),
                       ("objective", "objective"), ("optimizer", "optimizer"),
                       ("fourier_image", "param"), ("param", "param")):
    if f"/{scope}" in op_name or f"({scope}" in op_name:
      if label in ("optimizer",):
        return label
      return f"{label} {'backward' if back else 'forward'}"
  return "other (rng, finiteness checks, loop)"


def _op_kind(text: str) -> str:
  for pat, kind in (("convolution(", "convolution"), ("select-and-scatter", "pool backward"),
                    ("reduce-window", "reduce-window (pool/LRN)"), ("scatter(", "scatter"),
                    ("gather(", "gather"), ("dot(", "dot"), ("ynn_fusion", "ynn fusion")):
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
      if not op_name and "reduce-window" in kind_text and re.search(r"= \(f32\[[^=]*s32\[",
                                                                    line):
        # XLA:CPU's max-pool gradient: a variadic reduce-window (max + argmax indices) that
        # carries no metadata, then a scatter.
        op_name = "transpose(jvp(model))/max-pool gradient (argmax reduce-window)"
      index[name] = (op_name, _op_kind(kind_text))
  return index


def trace_profile(model, layer: str, batch: int, steps: int) -> dict:
  """Per-stage and per-op-kind sums of the real loop's thunk times (jax.profiler trace)."""
  obj = channel_objective(layer, batch, model.spec.layers[layer])
  kw = {"steps": steps, "progress_bar": False,
        "redirect_relu_steps": common.redirect_steps_for(steps)}
  before = dict(render._COMPILED)
  render.render(model, obj, **kw)
  compiled = common.new_compiled(before) or list(render._COMPILED.values())[-1]
  index = hlo_index(compiled)
  folder = tempfile.mkdtemp(prefix="featviz_trace_")
  jax.profiler.start_trace(folder, create_perfetto_trace=True)
  r = render.render(model, obj, **kw)
  jax.profiler.stop_trace()
  path = sorted(glob.glob(os.path.join(folder, "**", "perfetto_trace.json.gz"),
                          recursive=True))[-1]
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
  return {"wall_s_per_step": r.run_seconds / steps, "thunk_s_per_step": total,
          "by_stage": dict(by_stage.most_common()), "by_kind": dict(by_kind.most_common(25)),
          "top_ops": dict(by_op.most_common(25)), "trace": path}


def print_profile(model_name, layer, batch, abl, tr) -> None:
  print(f"\n== profile {model_name} {layer} batch {batch} ==")
  print("ablation (s/step, medians):")
  whole = abl["stages_s_per_step"]["whole step S"]
  for k, v in abl["stages_s_per_step"].items():
    print(f"  {k:40s} {v * 1e3:9.1f} ms  {100 * v / whole:5.1f} %")
  print("  raw:", {k: round(v * 1e3, 1) for k, v in abl["raw_s_per_step"].items()})
  print(f"trace: wall {tr['wall_s_per_step'] * 1e3:.1f} ms/step, summed op time "
        f"{tr['thunk_s_per_step'] * 1e3:.1f} ms/step")
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
  ap.add_argument("--batches", default=None, help="comma-separated; default 1,8,32 (CPU) or "
                  "1,8,32,128 (GPU)")
  ap.add_argument("--steps", type=int, default=LUCID_STEPS,
                  help="optimization steps per timed call (Lucid: 512; fewer on CPU)")
  ap.add_argument("--repeats", type=int, default=3, help="timed calls per configuration")
  ap.add_argument("--compute-dtype", default=None,
                  help="render(compute_dtype=...), e.g. bfloat16 (network math; params f32)")
  ap.add_argument("--profile", action="store_true", help="stage breakdown (ablation + trace)")
  ap.add_argument("--whatif", action="store_true",
                  help="with --profile: time candidate engine changes patched in (no edits)")
  ap.add_argument("--json", default=None, help="also write every figure to this file")
  ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
  args = ap.parse_args(argv)

  model = common.load_model(args.model)
  layers = tuple(args.layers.split(",")) if args.layers else default_layers(args.model)
  gpu = common.on_gpu()
  batches = [int(b) for b in (args.batches or ("1,8,32,128" if gpu else "1,8,32")).split(",")]
  env = common.environment()
  counting = common.scan_body_counting()
  peak = common.matmul_peak()
  print(f"{env.device}, {env.cores} cores, load {env.load}, commit {env.commit}, "
        f"{env.versions}")
  print(f"matmul peak ({peak['dtype']}, n={peak['n']}): {peak['tflops'] * 1e3:.1f} GFLOP/s "
        f"median, {peak['tflops_best'] * 1e3:.1f} best; cost analysis counts the scan body "
        f"{counting}")
  settings_base = {"model": args.model, "size": 128, "param": "fourier",
                   "transforms": "standard (per image)", "steps": args.steps,
                   "repeats": args.repeats, "peak_GFLOP/s": peak["tflops"] * 1e3,
                   "peak_dtype": peak["dtype"], "compute_dtype": args.compute_dtype or "float32"}
  if args.steps != LUCID_STEPS:
    settings_base["note"] = (f"{args.steps} steps timed, not 512; units/s rescaled to 512; "
                             f"redirected ReLU on for {common.redirect_steps_for(args.steps)} of them")

  results, rows = [], []
  if args.profile:
    profiles = []
    for layer in layers:
      for b in batches:
        abl = ablation(model, layer, b, args.steps, args.repeats)
        tr = trace_profile(model, layer, b, args.steps)
        print_profile(args.model, layer, b, abl, tr)
        wi = whatif(model, layer, b, args.steps, args.repeats) if args.whatif else {}
        for name, v in wi.items():
          print(f"  what-if {name:18s} network f+b {v['Nfb_s'] * 1e3:8.1f} ms  whole step "
                f"{v['S_s'] * 1e3:8.1f} ms  grad rel. diff {v['grad_rel_diff']:.1e}")
        profiles.append({"layer": layer, "batch": b, "ablation": abl, "trace": tr,
                         "whatif": wi})
        st = abl["stages_s_per_step"]
        figures = {k.strip().split(" (")[0]: f"{v * 1e3:.1f}ms" for k, v in st.items()}
        figures.update({f"whatif {k} step": f"{v['S_s'] * 1e3:.1f}ms" for k, v in wi.items()})
        rows.append(common.format_row(env, "render_throughput --profile",
                                      dict(settings_base, layer=layer, batch=b), figures))
    common.write_json(args.json, {"env": env.as_dict(), "peak": peak, "profiles": profiles})
  else:
    print(f"\n{'layer':10s} {'B':>4s} {'compile s':>9s} {'ms/step':>9s} {'img-st/s':>9s} "
          f"{'units/s':>8s} {'GFLOP/st':>9s} {'GFLOP/s':>8s} {'%peak':>6s} {'cpu-s/st':>8s}")
    for layer in layers:
      for b in batches:
        try:
          m = measure(model, layer, b, args.steps, args.repeats, counting,
                      compute_dtype=args.compute_dtype)
        except Exception as e:  # one bad configuration must not lose the others' rows
          print(f"{layer:10s} {b:4d} FAILED: {type(e).__name__}: {e}", flush=True)
          continue
        m["pct_peak"] = 100 * m["tflops"] / peak["tflops"]
        results.append(m)
        print(f"{layer:10s} {b:4d} {m['compile_s']:9.1f} {m['s_per_step'] * 1e3:9.1f} "
              f"{m['img_steps_per_s']:9.2f} {m['units_per_s_512']:8.4f} "
              f"{m['gflop_per_step']:9.2f} {m['tflops'] * 1e3:8.1f} {m['pct_peak']:6.1f} "
              f"{m['cpu_s_per_step']:8.2f}", flush=True)
        figures = {"compile_s": m["compile_s"], "ms/step": m["s_per_step"] * 1e3,
                   "img-steps/s": m["img_steps_per_s"], "units/s@512": m["units_per_s_512"],
                   "GFLOP/step": m["gflop_per_step"], "TFLOP/s": m["tflops"],
                   "%peak": m["pct_peak"], "cpu-s/step": m["cpu_s_per_step"]}
        row = common.format_row(env, "render_throughput",
                                dict(settings_base, layer=layer, batch=b), figures)
        if not args.no_results:  # row by row: a run cut short keeps what it measured
          common.append_rows([row])
    common.write_json(args.json, {"env": env.as_dict(), "peak": peak, "counting": counting,
                                  "results": results})
  if not args.no_results:
    common.append_rows(rows)
    print(f"\nappended {len(rows) or len(results)} rows to {common.RESULTS}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
