"""XLA against Pallas for each op in ``kernels/``, at the render loop's shapes; forward and
forward + VJP.

Ops and shapes (Lucid's defaults: 128 px, ``standard_transforms``):

* ``fourier_decode``: spectrum ``(B, 2, 3, 128, 65)`` -> image ``(B, 128, 128, 3)``.
* ``affine_resample`` of a ``(B, 128, 128, 3)`` image:
  ``140`` px: Lucid's pad 12, jitter 8, scale, rotate, jitter 4 composed into one map, with the
  rotation's canvas (``affine_resample.standard``: the render loop's transformed size);
  ``152`` px: pad 12, scale, rotate into the whole padded canvas (the largest size).
  Draws: Lucid's (zoom 0.9 to 1.1, angle -10 to 10 degrees), one per image.
* Batches 1, 8, 64 (``--batches``).

For every configuration the script checks the two paths agree (relative L2 error of the output
and of the gradient, printed), then times each: one call to compile, then ``--repeats`` calls
cycling through ``--sets`` input sets (so a GPU's 50 MB L2 does not hold one set for every
call). ``ms`` is the mean of those calls issued back to back with one synchronization at the end
(device time plus whatever launch cost the device cannot hide; in the render loop the op runs
inside one compiled ``lax.scan`` with no Python dispatch at all); ``--json`` also keeps the
median of calls synchronized one at a time. ``GB/s`` counts the fewest bytes the op must move
(each input read once, each output written once), so it compares with the device's copy
bandwidth; the JSON's Fourier records also give the inverse DFT's matmul rate (unpadded FLOPs,
as XLA does them).

**The affine_resample VJP error can read ~4e-3 and still be right.** XLA's jitted VJP of the
bilinear gather (the reference, and so ``featviz.transforms``) computes the tap index and the tap
weight in different fusions; where a source coordinate lies within a float32 rounding of an
integer (1 of ~20,000 pixels in Lucid's draws) they can round apart, and a weight near 1 lands on
the next row (seen on CPU at batch 8, not at batch 1; eager XLA agreed with Pallas to 7e-7).
The Pallas backward's weights are continuous in the coordinate, so it has no such jump.

**On CPU the Pallas kernels run in interpret mode** (``interpret=True``: a JAX loop over the grid
that emulates the kernel). Those numbers show only that the kernels run; they say nothing about
GPU speed. On a GPU the kernels compile through Triton and the rows are real.

**End to end** (``--end-to-end``, default on a GPU): the render loop itself
(``featviz.render``, InceptionV1 ``mixed4a``, Lucid's defaults, ``--e2e-steps`` steps with the
default render's share of redirected-ReLU steps) with the transforms and the Fourier decode
switched (``RenderConfig(transforms=..., kernels=...)``) between: the five transforms step by
step (what the loop ran before ``kernels/``), the one-pass resample on XLA (the default
everywhere today), and on a GPU the Pallas kernels (each alone and both). ms per step and
units/s, and each variant against the step-by-step one. On CPU only the XLA variants run
(interpreted Pallas says nothing about speed).

Rows go to ``benchmarks/RESULTS.md`` (one per op, size and mode) on a GPU, or with
``--append`` elsewhere; ``--json`` keeps everything. The line ``device_kind`` is the key that
``kernels/<op>/api.py``'s ``PALLAS_WINS_ON`` takes once the kernel wins forward + VJP.

From the repository root:

  python -m benchmarks.kernels_bench                      # GPU: batches 1, 8, 64
  python -m benchmarks.kernels_bench --batches 1 --repeats 3    # CPU: it runs (interpreted)
  python -m benchmarks.kernels_bench --ops none --end-to-end --batches 1,8   # CPU: XLA variants
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import featviz
from benchmarks import common
from featviz import objectives
from featviz import transforms as tf_lib
from featviz.kernels import affine_resample as ar
from featviz.kernels import fourier_decode as fd
from featviz.kernels.affine_resample import pallas as ar_pallas
from featviz.kernels.fourier_decode import pallas as fd_pallas

SIZE = common.LUCID.size  # Lucid's image size, 128
CHANNELS = 3
F32 = 4  # bytes


def fourier_case(batch: int, rng: np.random.Generator, rows: int):
  """Inputs, the op for each implementation, bytes and FLOPs of fourier_decode at 128 px."""
  h = w = SIZE
  wf = w // 2 + 1

  def make():
    params = rng.normal(0.0, 0.01, (batch, 2, CHANNELS, h, wf)).astype(np.float32)
    cot = rng.normal(size=(batch, h, w, CHANNELS)).astype(np.float32)
    return jnp.asarray(params), jnp.asarray(cot)

  def op(impl):
    return lambda params, maps: fd.fourier_decode(params, implementation=impl, rows=rows)

  spec_bytes = batch * 2 * CHANNELS * h * wf * F32
  image_bytes = batch * h * w * CHANNELS * F32
  # Per channel: four (H x H) @ (H x Wf) products and two (H x Wf) @ (Wf x W).
  flops = batch * CHANNELS * (4 * 2 * h * h * wf + 2 * 2 * h * wf * w)
  return {
    "make": make,
    "op": op,
    "maps": (),
    "shape": f"(B,2,3,{h},{wf})->(B,{h},{w},3)",
    "bytes_fwd": spec_bytes + image_bytes,
    # VJP: read cotangent and saved output, write the spectrum gradient.
    "bytes_vjp": spec_bytes + image_bytes + 2 * image_bytes + spec_bytes,
    # The backward transposes each product once (the DFT matrices need no gradient).
    "flops_fwd": flops,
    "flops_vjp": 2 * flops,
  }


def lucid_maps(batch: int, rng: np.random.Generator, out: int):
  """Matrices (and canvas) for Lucid-like draws; ``out`` 140 (standard) or 152 (padded)."""
  scale = rng.choice(ar.api.STANDARD_SCALES, batch).astype(np.float32)
  angle = (rng.choice(ar.api.STANDARD_ANGLES, batch) * math.pi / 180).astype(np.float32)
  if out == SIZE + 12:
    draws = ar.StandardDraws(
      offset_before=jnp.asarray(rng.integers(0, 9, (batch, 2)), jnp.int32),
      scale=jnp.asarray(scale),
      angle=jnp.asarray(angle),
      offset_after=jnp.asarray(rng.integers(0, 5, (batch, 2)), jnp.int32),
    )
    comp = ar.compose_standard(draws, (SIZE, SIZE))
    return comp.matrices, (out, out), comp.canvas, comp.canvas_size
  # Pad 12, then zoom and turn about the padded canvas's centre: c + R (t - c) / s - 12.
  c = (out - 1) / 2.0
  cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
  lin = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
  offset = c - lin @ np.asarray([c, c]) - 12.0
  matrices = np.concatenate([lin, offset[:, :, None]], -1).astype(np.float32)
  return jnp.asarray(matrices), (out, out), None, None


def resample_case(batch: int, rng: np.random.Generator, out: int, block: int):
  matrices, out_size, canvas, canvas_size = lucid_maps(batch, rng, out)

  def make():
    images = rng.uniform(size=(batch, SIZE, SIZE, CHANNELS)).astype(np.float32)
    cot = rng.normal(size=(batch,) + out_size + (CHANNELS,)).astype(np.float32)
    return jnp.asarray(images), jnp.asarray(cot)

  def op(impl):
    def apply(images, maps):
      return ar.affine_resample(
        images,
        maps[0],
        out_size,
        fill=0.5,
        canvas=maps[1],
        canvas_size=canvas_size,
        canvas_fill=0.0,
        implementation=impl,
        block=block,
      )

    return apply

  in_bytes = batch * SIZE * SIZE * CHANNELS * F32
  out_bytes = batch * out * out * CHANNELS * F32
  # The maps are arguments of the compiled program, as in the render loop (drawn at run time).
  return {
    "make": make,
    "op": op,
    "maps": (matrices, canvas),
    "shape": f"(B,{SIZE},{SIZE},3)->(B,{out},{out},3)",
    "bytes_fwd": in_bytes + out_bytes,
    "bytes_vjp": 2 * (in_bytes + out_bytes),
    "flops_fwd": 0,
    "flops_vjp": 0,
  }


def rel_err(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def measure(case: dict, sets: int, repeats: int) -> dict:
  """Compile and time XLA and Pallas, forward and forward + VJP, on ``sets`` input sets."""
  inputs = [case["make"]() for _ in range(sets)]
  result = {}
  outs = {}
  maps = case["maps"]
  for impl in ("xla", "pallas"):
    op = case["op"](impl)
    fwd = jax.jit(op)

    @jax.jit
    def fwd_vjp(x, cot, maps, op=op):
      y, vjp = jax.vjp(lambda x: op(x, maps), x)
      return y, vjp(cot)[0]

    for mode, fn, call in (
      ("fwd", fwd, lambda f, x, g: f(x, maps)),
      ("fwd+vjp", fwd_vjp, lambda f, x, g: f(x, g, maps)),
    ):
      t0 = time.perf_counter()
      outs[impl, mode] = jax.block_until_ready(call(fn, *inputs[0]))
      compile_s = time.perf_counter() - t0
      times = []
      for r in range(repeats):
        x, g = inputs[r % sets]
        t0 = time.perf_counter()
        jax.block_until_ready(call(fn, x, g))
        times.append(time.perf_counter() - t0)
      t0 = time.perf_counter()
      pending = [call(fn, *inputs[r % sets]) for r in range(repeats)]
      jax.block_until_ready(pending)
      pipelined = (time.perf_counter() - t0) / repeats
      result[impl, mode] = {
        "ms": 1e3 * pipelined,
        "compile_s": compile_s,
        "ms_synced_median": 1e3 * statistics.median(times),
        "ms_synced": [1e3 * t for t in times],
      }
  for mode in ("fwd", "fwd+vjp"):
    x_out, p_out = outs["xla", mode], outs["pallas", mode]
    errs = (
      [rel_err(p_out, x_out)]
      if mode == "fwd"
      else [rel_err(p_out[0], x_out[0]), rel_err(p_out[1], x_out[1])]
    )
    result["err", mode] = max(errs)
  return result


# ----------------------------------------------------------------------------- end to end

E2E_LAYER = "mixed4a"  # the layer of the CPU target and of vs_lucent.py


def e2e_variants(gpu: bool) -> list[tuple[str, dict[str, Any]]]:
  """(label, ``RenderConfig`` fields) for the render loop. ``kernels`` picks the Fourier
  decode's implementation and, with ``transforms="standard"``, the one-pass resample's; a
  transform object keeps its own."""
  variants = [
    ("five steps, xla", {"transforms": tf_lib.standard(one_pass=False), "kernels": "xla"}),
    ("one pass, xla (default)", {"transforms": "standard", "kernels": "xla"}),
  ]
  if gpu:
    variants += [
      (
        "one pass pallas",
        {"transforms": tf_lib.standard(implementation="pallas"), "kernels": "xla"},
      ),
      (
        "fourier pallas",
        {"transforms": tf_lib.standard(implementation="xla"), "kernels": "pallas"},
      ),
      ("both pallas", {"transforms": "standard", "kernels": "pallas"}),
    ]
  return variants


def end_to_end(batches: list[int], steps: int, repeats: int, gpu: bool) -> list[dict]:
  """ms per step of the whole render loop for each variant; see the module docstring."""
  model = common.load_model("inceptionv1")
  records = []
  for batch in batches:
    obj = objectives.channel(E2E_LAYER, np.arange(batch, dtype=np.int32))
    base = None
    for label, fields in e2e_variants(gpu):
      config = common.timed_config(steps, **fields)
      first = featviz.render(model, obj, config, progress_bar=False)
      runs = [
        featviz.render(model, obj, config, progress_bar=False).run_seconds for _ in range(repeats)
      ]
      ms = 1e3 * statistics.median(runs) / steps
      base = base or ms
      rec = {
        "batch": batch,
        "variant": label,
        "ms_per_step": ms,
        "units_per_s_512": batch / (ms / 1e3) / common.LUCID.steps,
        "vs_five_steps": base / ms,
        "compile_s": first.compile_seconds,
        "run_s": runs,
        "steps": steps,
      }
      records.append(rec)
      print(
        f"end to end {E2E_LAYER} B{batch:<3} {label:<26} {ms:9.2f} ms/step "
        f"{rec['units_per_s_512']:9.4f} units/s  x{rec['vs_five_steps']:.2f} vs five steps",
        flush=True,
      )
  return records


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--batches",
    default=None,
    help="comma-separated batch sizes (default 1,8,64 on GPU, 1,8 on CPU)",
  )
  parser.add_argument("--ops", default="fourier_decode,affine_resample")
  parser.add_argument("--sizes", default="140,152", help="affine_resample output sizes")
  parser.add_argument("--repeats", type=int, default=None, help="default 50 GPU, 3 CPU")
  parser.add_argument("--sets", type=int, default=None, help="input sets (default 4 GPU, 1 CPU)")
  parser.add_argument("--rows", type=int, default=fd_pallas.ROWS, help="fourier rows/program")
  parser.add_argument(
    "--block", type=int, default=ar_pallas.BLOCK, help="affine_resample pixels/program"
  )
  parser.add_argument(
    "--append",
    action="store_true",
    help="append RESULTS.md rows off a GPU too (they say interpret=True)",
  )
  parser.add_argument("--json", default=None, help="write every number here")
  parser.add_argument(
    "--end-to-end",
    action=argparse.BooleanOptionalAction,
    default=None,
    help="also time the render loop per variant (default: on a GPU)",
  )
  parser.add_argument(
    "--e2e-steps",
    type=int,
    default=None,
    help="render steps per timed call, a multiple of 32 (GPU 512, CPU 32)",
  )
  args = parser.parse_args(argv)

  gpu = common.on_gpu()
  interpret = not gpu
  batches = [int(b) for b in (args.batches or ("1,8,64" if gpu else "1,8")).split(",")]
  repeats = args.repeats or (50 if gpu else 3)
  sets = args.sets or (4 if gpu else 1)
  env = common.environment()
  kind = jax.devices()[0].device_kind
  print(f"device {env.device}; device_kind {kind!r}; backend {jax.default_backend()}")
  print(f"versions {env.versions}; commit {env.commit}; cores {env.cores}; load {env.load}")
  print(
    f"pallas: {'Triton (compiled)' if gpu else 'interpret=True: timings only show it runs'}"
    f"; repeats {repeats}, input sets {sets}; ms = mean of back-to-back calls"
  )

  rng = np.random.default_rng(0)
  configs = []
  for op_name in args.ops.split(","):
    if op_name == "none":
      continue
    if op_name == "fourier_decode":
      configs.append(
        ("fourier_decode", lambda b: fourier_case(b, rng, args.rows), {"rows": args.rows})
      )
    elif op_name == "affine_resample":
      for out in (int(s) for s in args.sizes.split(",")):
        configs.append(
          (
            "affine_resample",
            functools.partial(lambda b, out: resample_case(b, rng, out, args.block), out=out),
            {"block": args.block, "out": out},
          )
        )
    else:
      parser.error(f"unknown op {op_name!r}")

  header = (
    f"{'op':<16} {'shape':<30} {'B':>3} {'mode':<8} {'xla ms':>9} {'pallas ms':>10} "
    f"{'speedup':>8} {'rel err':>8} {'GB/s x/p':>12}"
  )
  print(header)
  records, rows = [], []
  for op_name, make_case, knobs in configs:
    per_mode = {"fwd": {}, "fwd+vjp": {}}
    for batch in batches:
      case = make_case(batch)
      res = measure(case, sets, repeats)
      for mode in ("fwd", "fwd+vjp"):
        xla_ms, pal_ms = res["xla", mode]["ms"], res["pallas", mode]["ms"]
        nbytes = case["bytes_fwd" if mode == "fwd" else "bytes_vjp"]
        flops = case["flops_fwd" if mode == "fwd" else "flops_vjp"]
        speedup = xla_ms / pal_ms
        gbs = (nbytes / xla_ms / 1e6, nbytes / pal_ms / 1e6)
        print(
          f"{op_name:<16} {case['shape']:<30} {batch:>3} {mode:<8} {xla_ms:>9.3f} "
          f"{pal_ms:>10.3f} {speedup:>8.2f} {res['err', mode]:>8.1e} "
          f"{gbs[0]:>5.0f}/{gbs[1]:<5.0f}"
        )
        record = {
          "op": op_name,
          "shape": case["shape"],
          "batch": batch,
          "mode": mode,
          "xla_ms": xla_ms,
          "pallas_ms": pal_ms,
          "speedup": speedup,
          "rel_err": res["err", mode],
          "bytes": nbytes,
          "flops": flops,
          "xla_gflops": flops / xla_ms / 1e6,
          "pallas_gflops": flops / pal_ms / 1e6,
          "compile_s": {i: res[i, mode]["compile_s"] for i in ("xla", "pallas")},
          "ms_synced_median": {i: res[i, mode]["ms_synced_median"] for i in ("xla", "pallas")},
          "ms_synced": {i: res[i, mode]["ms_synced"] for i in ("xla", "pallas")},
          **knobs,
        }
        records.append(record)
        per_mode[mode][f"B{batch}"] = f"{xla_ms:.3g}/{pal_ms:.3g}ms x{speedup:.2f}"
    for mode, figures in per_mode.items():
      settings = {
        "op": op_name,
        "shape": case["shape"],
        "mode": mode,
        "interpret": interpret,
        "repeats": repeats,
        "sets": sets,
        **knobs,
      }
      rows.append((settings, {"xla/pallas": "mean of back-to-back calls", **figures}))

  wins = {}
  for r in records:
    if r["mode"] == "fwd+vjp":
      wins.setdefault(r["op"], []).append(r["speedup"] > 1.0)
  for op_name, won in wins.items():
    if not gpu:
      print(f"{op_name}: interpret mode, no verdict on speed")
    elif all(won):
      print(
        f"{op_name}: pallas fwd+vjp faster at every batch -> candidate for PALLAS_WINS_ON: "
        f"{kind!r} (repeat the run first: a win smaller than the run-to-run spread is noise)"
      )
    else:
      print(f"{op_name}: pallas fwd+vjp not faster at every batch; auto stays on XLA")

  e2e = []
  if args.end_to_end if args.end_to_end is not None else gpu:
    e2e_steps = args.e2e_steps or (common.LUCID.steps if gpu else 32)
    e2e = end_to_end(batches, e2e_steps, 3, gpu)  # whole renders: 3 timed calls each
    for batch in batches:
      figures = {f"{r['variant']} ms/step": r["ms_per_step"] for r in e2e if r["batch"] == batch}
      figures.update(
        {
          f"{r['variant']} x five steps": r["vs_five_steps"]
          for r in e2e
          if r["batch"] == batch and r["vs_five_steps"] != 1.0
        }
      )
      rows.append(
        (
          {
            "op": "end to end (render loop)",
            "layer": E2E_LAYER,
            "batch": batch,
            "steps": e2e_steps,
            "redirected steps": common.redirect_steps_for(e2e_steps),
            "size": SIZE,
            "param": "fourier",
            "pallas": "compiled" if gpu else "not run",
          },
          figures,
        )
      )

  if gpu or args.append:
    for settings, figures in rows:
      common.append_row(env, "kernels_bench.py", settings, figures)
    print(f"appended {len(rows)} rows to {common.RESULTS}")
  common.write_json(
    args.json,
    {
      "env": env.as_dict(),
      "device_kind": kind,
      "interpret": interpret,
      "records": records,
      "end_to_end": e2e,
    },
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
