"""Every channel of InceptionV1 mixed3a ... mixed5b (5,484 units) at Lucid's defaults, end to end.

Two measurements, both at the same :class:`featviz.RenderConfig` (Lucid's,
``common.timed_config``: ``--steps`` steps with the default render's share of redirected-ReLU
steps, and ``--compute-dtype``):

1. **Per-layer chunks, direct.** For each layer, ``featviz.render`` with
   ``objectives.channel(layer, units)`` for ``--batch`` units at a time: the compile time
   (once per layer: unit indices are data) and the seconds per chunk. With ``--chunks N``
   only the first N chunks of each layer run and the whole sweep is extrapolated:
   ``sum(compile) + sum(chunks_per_layer * seconds_per_chunk * 512 / steps)``; with
   ``--chunks 0`` every chunk runs (the real thing, for a GPU). The XLA FLOP count of each
   layer's chunk program (``featviz.lower``) gives the sweep's total FLOPs and its TFLOP/s.
2. **The sweep machinery** (``featviz.sweep``): the same subset through the library's sweep
   (store, PNGs, atlases, every local device), timed end to end, to show what it adds over
   bare render calls. ``--no-sweep`` skips it.

From the repository root:

  python -m benchmarks.sweep_full_model --batch 8 --chunks 2 --steps 32       # CPU subset
  python -m benchmarks.sweep_full_model --batch 256 --chunks 0 --steps 512    # GPU, all
  python -m benchmarks.sweep_full_model --batch 256 --chunks 0 --compute-dtype bfloat16
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time

import numpy as np

import featviz
from benchmarks import common
from featviz import objectives

LAYERS = common.INCEPTION_MIXED_LAYERS


def direct(
  model, layers, batch: int, chunks: int, config: featviz.RenderConfig, counting: str
) -> dict:
  steps, full_steps = config.steps, common.LUCID.steps
  per_layer = {}
  for layer in layers:
    n = model.spec.layers[layer]
    n_chunks = math.ceil(n / batch)
    run_chunks = n_chunks if chunks <= 0 else min(chunks, n_chunks)
    compile_s, run_s, flops = 0.0, [], float("nan")
    for i in range(run_chunks):
      units = np.arange(i * batch, (i + 1) * batch) % n  # last chunk padded, as sweep does
      obj = objectives.channel(layer, units.astype(np.int32))
      r = featviz.render(model, obj, config, progress_bar=False)
      if i == 0:  # every chunk of a layer runs the same program
        flops = common.render_flops(model, obj, config, counting)
      compile_s += r.compile_seconds
      run_s.append(r.run_seconds)
    chunk_s = statistics.median(run_s)
    full_run = n_chunks * chunk_s * full_steps / steps
    per_layer[layer] = {
      "units": n,
      "chunks": n_chunks,
      "chunks_run": run_chunks,
      "compile_s": compile_s,
      "chunk_s": run_s,
      "chunk_s_median": chunk_s,
      "full_run_s_at_512": full_run,
      "gflop_per_step": flops / 1e9,
      "sweep_tflop": flops * n_chunks * full_steps / 1e12,
    }
    print(
      f"{layer:8s} {n:5d} units {n_chunks:4d} chunks (ran {run_chunks}): compile "
      f"{compile_s:6.1f} s, chunk {chunk_s:7.2f} s at {steps} steps, "
      f"{flops / 1e9:7.2f} GFLOP/step -> layer at {full_steps} steps {full_run:9.1f} s",
      flush=True,
    )
  return per_layer


def with_sweep(model, layers, batch: int, chunks: int, config: featviz.RenderConfig) -> dict:
  """``featviz.sweep`` of the same units (the first ``chunks * batch`` of each layer, or all)
  into a new temporary store, timed end to end."""
  out = tempfile.mkdtemp(prefix="featviz_sweep_bench_")
  units = None if chunks <= 0 else (0, chunks * batch)
  t0 = time.perf_counter()
  featviz.sweep(model, list(layers), config, out=out, units=units, batch=batch, progress_bar=False)
  return {"wall_s": time.perf_counter() - t0, "out": out}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--batch", type=int, default=None, help="units per chunk (CPU 8, GPU 256)")
  ap.add_argument(
    "--chunks",
    type=int,
    default=None,
    help="chunks per layer to run (0: all; default 2 on CPU, 0 on GPU)",
  )
  ap.add_argument(
    "--steps", type=int, default=None, help="steps per chunk, a multiple of 32 (CPU 32, GPU 512)"
  )
  ap.add_argument("--layers", default=",".join(LAYERS))
  ap.add_argument(
    "--compute-dtype",
    default=None,
    help="RenderConfig(compute_dtype=...), e.g. bfloat16, for both passes",
  )
  ap.add_argument("--no-sweep", action="store_true", help="skip the featviz.sweep pass")
  ap.add_argument("--json", default=None)
  ap.add_argument("--no-results", action="store_true")
  args = ap.parse_args(argv)
  gpu = common.on_gpu()
  batch = args.batch or (256 if gpu else 8)
  chunks = args.chunks if args.chunks is not None else (0 if gpu else 2)
  steps = args.steps or (common.LUCID.steps if gpu else 32)
  config = common.timed_config(steps, compute_dtype=args.compute_dtype)
  layers = tuple(args.layers.split(","))

  model = common.load_model("inceptionv1")
  env = common.environment()
  counting = common.scan_body_counting()
  peak = common.matmul_peak()
  total_units = sum(model.spec.layers[layer] for layer in layers)
  print(
    f"{env.device}, {env.cores} cores, load {env.load}, commit {env.commit}; "
    f"{total_units} units, batch {batch}, {steps} steps per chunk, "
    f"{'all' if chunks <= 0 else chunks} chunks per layer; peak "
    f"{peak['tflops'] * 1e3:.1f} GFLOP/s ({peak['dtype']})"
  )
  t0 = time.perf_counter()
  per_layer = direct(model, layers, batch, chunks, config, counting)
  direct_wall = time.perf_counter() - t0
  compile_total = sum(v["compile_s"] for v in per_layer.values())
  run_total = sum(v["full_run_s_at_512"] for v in per_layer.values())
  tflop = sum(v["sweep_tflop"] for v in per_layer.values())
  full = compile_total + run_total
  measured_all = chunks <= 0 and steps == common.LUCID.steps
  print(
    f"\nwhole sweep at 512 steps ({'measured' if measured_all else 'extrapolated'}): "
    f"{full:.1f} s = compile {compile_total:.1f} s + run {run_total:.1f} s; "
    f"{total_units / full:.3f} units/s ({total_units / run_total:.3f} without compile); "
    f"{tflop:.1f} TFLOP in all, {tflop / run_total:.4f} TFLOP/s "
    f"({100 * tflop / run_total / peak['tflops']:.1f} % of peak)"
  )
  sw = {} if args.no_sweep else with_sweep(model, layers, batch, chunks, config)
  if sw:
    print(
      f"featviz.sweep on the same subset: {sw['wall_s']:.1f} s end to end (direct render "
      f"calls: {direct_wall:.1f} s, both including one compile per layer)"
    )

  settings = {
    "model": "inceptionv1",
    "layers": f"{layers[0]}..{layers[-1]}",
    "units": total_units,
    "batch": batch,
    "steps": steps,
    "chunks/layer": "all" if chunks <= 0 else chunks,
    "size": config.size,
    "param": config.param,
    "transforms": "standard (per image)",
    "compute_dtype": config.compute_dtype or "float32",
    "peak_GFLOP/s": peak["tflops"] * 1e3,
  }
  if not measured_all:
    settings["note"] = (
      f"extrapolated from {chunks if chunks > 0 else 'all'} chunk(s) per "
      f"layer at {steps} steps to all chunks at 512"
    )
  figures = {
    "wall_s@512": full,
    "compile_s": compile_total,
    "run_s@512": run_total,
    "units/s": total_units / full,
    "units/s excl. compile": total_units / run_total,
    "TFLOP": tflop,
    "TFLOP/s": tflop / run_total,
    "%peak": 100 * tflop / run_total / peak["tflops"],
  }
  if sw:
    figures["featviz.sweep subset wall_s"] = sw["wall_s"]
    figures["direct subset wall_s"] = direct_wall
  common.write_json(
    args.json,
    {"env": env.as_dict(), "peak": peak, "per_layer": per_layer, "sweep": sw, "figures": figures},
  )
  if not args.no_results:
    row = common.append_row(env, "sweep_full_model", settings, figures)
    print(f"\nappended to {common.RESULTS}:\n{row}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
