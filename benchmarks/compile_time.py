"""Compile time per layer of a sweep: cold, and with JAX's persistent compilation cache warm.

    python -m benchmarks.compile_time [--layers block0,...,block15] [--batch 8]

For every block layer of EfficientNet-Lite0 (``block0`` ... ``block15``; ``--model`` and
``--layers`` choose others), a batch of ``--batch`` channels at Lucid's defaults (128 px,
``common.timed_config(32)``: one 32-step chunk, the sweep's chunk length at 512 steps), rendered
as the sweep renders a chunk: ``featviz.render(..., mesh=...)`` over a one-device mesh, then the
final images scored by the sweep's scorer (``featviz._sweep.quality``, one batch of
``quality.SCORE_BATCH``). Per layer:

* ``render compile s``: ``RenderResult.compile_seconds`` (the init, 32-step chunk and images
  programs: tracing, lowering and XLA compiling, or loading from the cache);
* ``score compile s``: the scorer's program, ``lower(...).compile()`` timed;
* ``ms/step``: the 32-step render's ``run_seconds / 32`` (what the compile is weighed against).

Each pass runs in a fresh process with ``featviz.compile_cache.enable(folder)`` on one
temporary folder (deleted at the end): the **cold** pass starts with the folder empty (it
compiles everything and stores it), the **warm** pass is a second process that finds it full,
as a second ``featviz sweep`` of the same model would. The first layer of a pass also pays the
process's one-time JAX start-up (noted in the row).

The full-model estimate: a sweep of every channel of these layers at 512 steps in batches of
``--batch``: run = sum over layers of ceil(channels / batch) x 512 x s/step; compile = the sum
of the cold (or warm) compiles; the share is compile / (compile + run). A RESULTS.md row per
layer and one for the estimate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

MODEL = "efficientnet_lite0"
LAYERS = tuple(f"block{i}" for i in range(16))
TIMED_STEPS = 32  # one chunk: program.MAX_CHUNK, the chunk of a 512-step sweep


def worker(model_name: str, layers: list[str], batch: int, cache: str) -> dict:
  """One pass in this process: per layer, compile and run seconds."""
  from featviz import compile_cache

  folder = compile_cache.enable(cache)
  import jax
  import numpy as np

  import featviz
  from benchmarks import common
  from featviz import objectives as O
  from featviz._sweep import quality

  model = common.load_model(model_name)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
  config = common.timed_config(TIMED_STEPS)
  out = {"cache": str(folder), "layers": {}}
  for layer in layers:
    shape = jax.eval_shape(
      lambda x, layer=layer: model.activations(x, [layer])[layer],
      jax.ShapeDtypeStruct((1, config.size, config.size, 3), np.float32),
    ).shape
    channels = shape[-1]
    units = np.arange(batch, dtype=np.int32) % channels
    t = time.perf_counter()
    r = featviz.render(model, O.channel(layer, units), config, mesh=mesh, progress_bar=False)
    total = time.perf_counter() - t
    x = np.zeros((quality.SCORE_BATCH, config.size, config.size, 3), np.float32)
    t = time.perf_counter()
    quality._channel_means.lower(model, x, (layer,)).compile()
    score_s = time.perf_counter() - t
    out["layers"][layer] = {
      "shape": list(shape[1:]),
      "channels": int(channels),
      "render_compile_s": r.compile_seconds,
      "render_total_s": total,
      "score_compile_s": score_s,
      "s_per_step": r.run_seconds / TIMED_STEPS,
    }
    print(layer, out["layers"][layer], file=sys.stderr, flush=True)
  out["cache_files"] = len(os.listdir(folder)) if folder else 0
  return out


def run_pass(model: str, layers: list[str], batch: int, cache: str) -> dict:
  cmd = [sys.executable, "-m", "benchmarks.compile_time", "--worker", "--cache", cache]
  cmd += ["--model", model, "--layers", ",".join(layers), "--batch", str(batch)]
  env = dict(os.environ, FEATVIZ_COMPILE_CACHE="1")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the temporary folder, not a user's
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode != 0:
    raise RuntimeError(f"compile_time worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default=MODEL)
  ap.add_argument("--layers", default=",".join(LAYERS))
  ap.add_argument("--batch", type=int, default=8)
  ap.add_argument("--steps", type=int, default=512, help="the estimated sweep's steps per unit")
  ap.add_argument("--json", default=None)
  ap.add_argument("--no-results", action="store_true")
  ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--cache", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  layers = [x for x in args.layers.split(",") if x]

  if args.worker:
    print(json.dumps(worker(args.model, layers, args.batch, args.cache)))
    return 0

  from benchmarks import common

  env = common.environment()
  cache = tempfile.mkdtemp(prefix="featviz_compile_cache_")
  try:
    cold = run_pass(args.model, layers, args.batch, cache)
    print("cold pass done", flush=True)
    warm = run_pass(args.model, layers, args.batch, cache)
    print("warm pass done", flush=True)
  finally:
    shutil.rmtree(cache, ignore_errors=True)
  end_load = round(os.getloadavg()[0], 1)

  rows = []
  head = (
    f"{'layer':8s} {'shape':>14s} {'cold render':>11s} {'cold score':>10s} "
    f"{'warm render':>11s} {'warm score':>10s} {'ms/step':>8s} {'batches':>7s}"
  )
  print(f"\n{env.device}, load {env.load} -> {end_load}, commit {env.commit}\n{head}")
  compile_cold = compile_warm = run_total = 0.0
  for i, layer in enumerate(layers):
    c, w = cold["layers"][layer], warm["layers"][layer]
    batches = math.ceil(c["channels"] / args.batch)
    run_s = batches * args.steps * c["s_per_step"]
    cold_s = c["render_compile_s"] + c["score_compile_s"]
    warm_s = w["render_compile_s"] + w["score_compile_s"]
    compile_cold += cold_s
    compile_warm += warm_s
    run_total += run_s
    print(
      f"{layer:8s} {'x'.join(map(str, c['shape'])):>14s} {c['render_compile_s']:11.2f} "
      f"{c['score_compile_s']:10.2f} {w['render_compile_s']:11.2f} {w['score_compile_s']:10.2f} "
      f"{1e3 * c['s_per_step']:8.1f} {batches:7d}"
    )
    settings = {
      "model": args.model,
      "layer": layer,
      "shape": "x".join(map(str, c["shape"])),
      "batch": args.batch,
      "size": 128,
      "programs": "init + 32-step chunk + images (one-device mesh) + scorer",
      "cache": "temporary folder: cold pass (empty), then warm pass (new process)",
    }
    if i == 0:
      settings["note"] = "first layer of each pass includes the process's JAX start-up"
    figs = {
      "cold render compile s": c["render_compile_s"],
      "cold score compile s": c["score_compile_s"],
      "warm render compile s": w["render_compile_s"],
      "warm score compile s": w["score_compile_s"],
      "ms/step (cold pass)": 1e3 * c["s_per_step"],
      "ms/step (warm pass)": 1e3 * w["s_per_step"],
      f"sweep run s ({args.steps} steps, {batches} batches)": run_s,
    }
    rows.append(common.format_row(env, "compile_time", settings, figs))
  units = sum(cold["layers"][x]["channels"] for x in layers)
  summary = {
    "units": units,
    "compile cold s": compile_cold,
    "compile warm s": compile_warm,
    "run s": run_total,
    "compile share cold": compile_cold / (compile_cold + run_total),
    "compile share warm": compile_warm / (compile_warm + run_total),
    "cache entries": cold["cache_files"],
    "load at end": end_load,
  }
  print(
    f"\nfull sweep of {units} units, {args.steps} steps, batch {args.batch}: run {run_total:.0f} s,"
    f" compile cold {compile_cold:.0f} s ({100 * summary['compile share cold']:.1f} %), "
    f"warm {compile_warm:.0f} s ({100 * summary['compile share warm']:.1f} %)"
  )
  rows.append(
    common.format_row(
      env,
      "compile_time",
      {
        "model": args.model,
        "layers": f"{layers[0]}..{layers[-1]} ({len(layers)})",
        "batch": args.batch,
        "estimate": f"full sweep at {args.steps} steps from the per-layer rows",
      },
      summary,
    )
  )
  common.write_json(args.json, {"env": env.as_dict(), "cold": cold, "warm": warm, **summary})
  if not args.no_results:
    common.append_rows(rows)
    print(f"appended {len(rows)} rows to {common.RESULTS}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
