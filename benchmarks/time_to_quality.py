"""Time to quality: how many steps and seconds featviz and lucent need to reach a photo ratio.

    python -m benchmarks.time_to_quality --photos ../shared/images/imagenet-sample \\
        [--variants lucid,lr0.1,warmup-cosine,redirect0,redirect32,transforms-none] \\
        [--lucent-python /tmp/lucentenv/bin/python | --lucent-from DIR | --featviz-only]

The 8 units of issue 19 (EfficientNet-Lite0 ``block10`` channels 0-7, the pip package's real
weights; ``--units LAYER:A-B`` for others), one batch, Lucid's defaults (128 px, Fourier,
standard transforms, Adam 0.05, redirected ReLU for 16 steps), seed 0. The quality of a render
at step ``k`` is the median over the units of the sweep's own score (``featviz._sweep.quality``):
the unit's channel mean on its un-transformed 128 px image over its best channel mean on the
photos of ``--photos`` (at 128 px, centre-cropped). Recorded at steps 16, 32, 64, 128, 256,
512 (``--steps``):

* featviz: one 512-step render with ``RenderConfig(snapshots=...)`` where that field exists,
  else a render of each length with the same seed (the same first steps: a render's images do
  not depend on its chunking, and a snapshot at ``k`` is bitwise the final image of a
  ``k``-step render). Seconds at ``k``: the ``k``-step render's ``run_seconds`` (or the
  512-step render's scaled by ``k / 512`` with snapshots); compiling is reported apart.
* lucent (torch-lucent 0.1.8): ``render_vis`` with ``thresholds=steps`` on
  ``benchmarks/torch_efficientnet_lite.py`` (the PyTorch port of the same network and weight
  file), driven as ``vs_lucent.py``'s EfficientNet case drives it (its model, units, image
  size; the port is checked against featviz by ``vs_lucent.check_port``, 1e-6 measured).
  Lucent's images are scored by featviz's scorer: one ruler for both. Seconds at ``k``: the
  512-step call's wall time scaled by ``k / 512`` (lucent compiles nothing; its steps cost the
  same). ``--lucent-from DIR`` reads the images and times of an earlier ``--lucent-out DIR``
  run (lucent at 512 steps takes minutes: run it once, in the background).

The table: for each side, the first recorded step whose median ratio reaches lucent's 512-step
median, and 2, 4 and 6, with its seconds (a step grid, not interpolated: "64" means somewhere in
(32, 64]). ``--variants`` runs featviz again under other settings (a row each, library defaults
unchanged): ``lr0.1``, ``warmup-cosine`` (Adam under ``optax.warmup_cosine_decay_schedule``,
0 -> 0.1 over 32 steps, then cosine to 0.005 at step 512), ``redirect0``, ``redirect32`` (the
redirected-ReLU window), ``transforms-none``. With lucent's curve it also prints, unit by unit,
each side's ratio against the unit's own lucent@512 ratio, and records the first step at which
each unit reaches it (``each unit to its lucent@512 steps``).

Writes a RESULTS.md row per featviz variant and one for lucent (``common.append_row``), a
markdown table on stdout, and the figure ``docs/time_to_quality.png`` (ratio against steps).

The lucent worker (``--lucent-worker``) runs this file as a script under the lucent venv's
Python, which has no jax or featviz: the module's top level imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
MODEL = "efficientnet_lite0"
STEPS = (16, 32, 64, 128, 256, 512)
TARGETS = (2.0, 4.0, 6.0)
DEFAULT_UNITS = "block10:0-7"  # issue 19's units, vs_lucent.CASES's EfficientNet case
VARIANTS = ("lucid", "lr0.1", "warmup-cosine", "redirect0", "redirect32", "transforms-none")
# warmup-cosine: Adam's rate rises linearly from 0 over the first 32 steps to 0.1 (twice Lucid's
# 0.05), then falls on a cosine to 0.005 (a tenth of Lucid's) at step 512, Lucid's step count.
WARMUP_STEPS, PEAK_LR, END_LR, DECAY_STEPS = 32, 0.1, 0.005, 512


def _vs_lucent():
  """``benchmarks/vs_lucent.py`` as a module under either Python (its top level is stdlib)."""
  sys.path.insert(0, str(HERE))
  import vs_lucent

  return vs_lucent


def model_units(model, spec: str) -> tuple[str, list[int]]:
  """``"block10:0-7"`` -> ``("block10", [0, ..., 7])``, read as every featviz command reads a
  range (``featviz._sweep.partition``) and checked against the model's layers and channels."""
  from featviz._sweep import partition

  layer, _, text = spec.partition(":")
  try:
    model.layers_in_order([layer])  # an unknown layer: the message lists the model's layers
    wanted = partition.layer_units(model.spec.layers, [layer], partition.parse_units(text))
  except ValueError as e:
    raise SystemExit(f"--units {spec!r}: {e}") from None
  return layer, list(wanted[layer])


def worker_spec(layer: str, units: list[int]) -> str:
  """The units as the lucent worker reads them (:func:`listed_units`): ``"block10:0,1,2"``."""
  return f"{layer}:{','.join(map(str, units))}"


def listed_units(spec: str) -> tuple[str, list[int]]:
  """The lucent worker's ``"block10:0,1,2"`` (the featviz side resolved the range) -> its
  layer and units."""
  layer, _, units = spec.partition(":")
  return layer, [int(u) for u in units.split(",")]


# ----------------------------------------------------------------------------- lucent side
# Runs under the lucent venv's Python: torch, lucent and numpy only, never jax.


def lucent_worker(out_dir: str, steps: list[int], weights: str, seed: int, spec: str) -> dict:
  import warnings

  warnings.filterwarnings("ignore")
  import lucent
  import numpy as np
  import torch
  from lucent.optvis import objectives, param, render

  vs = _vs_lucent()
  torch.manual_seed(seed)
  layer, units = listed_units(spec)
  model, preprocess = vs._lucent_model(MODEL, weights)
  obj = sum(objectives.channel(layer, int(c), batch=i) for i, c in enumerate(units))
  c0, t0 = time.process_time(), time.perf_counter()
  images = render.render_vis(
    model,
    obj,
    param_f=lambda: param.image(vs.LUCENT_SIZE, batch=len(units)),
    thresholds=tuple(steps),
    show_image=False,
    progress=False,
    preprocess=preprocess,
  )
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  np.savez(out / "images.npz", **{str(s): np.asarray(x, np.float32) for s, x in zip(steps, images)})
  info = {
    "torch": torch.__version__,
    "lucent": getattr(lucent, "__version__", "0.1.8"),
    "threads": torch.get_num_threads(),
    "steps": list(steps),
    "wall_s": wall,
    "cpu_s": cpu,
    "seed": seed,
    "units": spec,
    "load": os.getloadavg()[0],
    "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
  }
  (out / "info.json").write_text(json.dumps(info))
  return info


def run_lucent(
  python: str, out_dir: str, steps: list[int], weights: str, seed: int, spec: str
) -> dict:
  cmd = [python, str(pathlib.Path(__file__).resolve()), "--lucent-worker", "--lucent-out", out_dir]
  cmd += ["--steps", ",".join(map(str, steps)), "--lucent-weights", weights, "--seed", str(seed)]
  cmd += ["--units", spec]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode != 0:
    raise RuntimeError(f"lucent worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])


def load_lucent(out_dir: str, wait_s: float = 0) -> tuple[dict, dict]:
  """(info, {step: images}) of a ``--lucent-out`` run; waits up to ``wait_s`` for it to end."""
  import numpy as np

  out = pathlib.Path(out_dir)
  deadline = time.monotonic() + wait_s
  while not (out / "info.json").exists() and time.monotonic() < deadline:
    time.sleep(10)
  info = json.loads((out / "info.json").read_text())
  with np.load(out / "images.npz") as z:
    images = {int(k): z[k] for k in z.files}
  return info, images


# ----------------------------------------------------------------------------- featviz side


def variant_config(name: str, steps: int):
  """Lucid's settings at ``steps`` steps with the named change (``VARIANTS``)."""
  import optax

  import featviz

  base = featviz.RenderConfig(steps=steps)
  if name == "lucid":
    return base
  if name == "lr0.1":
    return base.replace(learning_rate=0.1)
  if name == "warmup-cosine":
    schedule = optax.warmup_cosine_decay_schedule(
      0.0, PEAK_LR, WARMUP_STEPS, DECAY_STEPS, end_value=END_LR
    )
    return base.replace(optimizer=optax.adam(schedule))
  if name.startswith("redirect"):
    return base.replace(redirect_relu_steps=int(name[len("redirect") :]))
  if name == "transforms-none":
    return base.replace(transforms="none")
  raise SystemExit(f"unknown variant {name!r}: choose from {', '.join(VARIANTS)}")


def has_snapshots() -> bool:
  import dataclasses

  import featviz

  return "snapshots" in {f.name for f in dataclasses.fields(featviz.RenderConfig)}


def featviz_curve(model, objective, name: str, steps: list[int], seed: int) -> dict:
  """``{"images": {step: images}, "seconds": {step: s}, "compile_s": s, "how": str}``."""
  import featviz

  top = max(steps)
  config = variant_config(name, top)
  if has_snapshots():
    r = featviz.render(
      model, objective, config.replace(snapshots=tuple(steps)), seed=seed, progress_bar=False
    )
    images = {int(k): v for k, v in r.snapshots.items()}
    seconds = {k: r.run_seconds * k / top for k in steps}
    return {
      "images": images,
      "seconds": seconds,
      "compile_s": r.compile_seconds,
      "how": f"one {top}-step render, snapshots",
    }
  images, seconds, compile_s = {}, {}, 0.0
  for k in steps:
    # The same optimizer object for every length: a schedule counts the steps itself.
    r = featviz.render(model, objective, config.replace(steps=k), seed=seed, progress_bar=False)
    images[k], seconds[k] = r.images, r.run_seconds
    compile_s += r.compile_seconds
  return {
    "images": images,
    "seconds": seconds,
    "compile_s": compile_s,
    "how": "a render of each length, same seed",
  }


def median_ratios(model, layer: str, units: list[int], best, images: dict) -> dict:
  """``{step: (median ratio, [ratio per unit])}``, each render scored as it is."""
  import numpy as np

  from featviz._sweep import quality

  out = {}
  for k, x in sorted(images.items()):
    means = quality.channel_means(model, [layer], x)[layer]
    ratios = [quality.ratio(float(means[i, u]), float(best[u])) for i, u in enumerate(units)]
    defined = [r for r in ratios if r is not None]
    out[k] = (float(np.median(defined)) if defined else float("nan"), ratios)
  return out


def unit_steps_to_lucent(curve: dict, lucent_ratios: list) -> list[int | None]:
  """Per unit, the first recorded step whose ratio reaches that unit's own lucent@512 ratio."""
  out = []
  for i, target in enumerate(lucent_ratios):
    hits = [k for k in sorted(curve) if target is not None and curve[k][1][i] is not None]
    out.append(next((k for k in hits if curve[k][1][i] >= target), None))
  return out


def first_reaching(curve: dict, seconds: dict, target: float) -> tuple[int | None, float | None]:
  for k in sorted(curve):
    if curve[k][0] >= target:
      return k, seconds[k]
  return None, None


# ----------------------------------------------------------------------------- figure


def figure(curves: dict[str, dict], path: pathlib.Path, title: str) -> None:
  """Median ratio against steps (log2 axis), a line per side / variant, drawn with PIL."""
  import math

  from PIL import Image, ImageDraw

  from featviz import images as images_lib
  from featviz.analysis import figures

  w, h, left, right, top, bottom = 900, 520, 70, 200, 40, 50
  canvas = Image.new("RGB", (w, h), "white")
  draw = ImageDraw.Draw(canvas)
  font = figures.font()
  steps = sorted({k for c in curves.values() for k in c})
  ymax = max(v[0] for c in curves.values() for v in c.values() if v[0] == v[0])
  ymax = math.ceil(ymax + 0.5)
  x0, x1 = math.log2(steps[0]), math.log2(steps[-1])

  def xy(k, v):
    x = left + (math.log2(k) - x0) / (x1 - x0) * (w - left - right)
    y = h - bottom - v / ymax * (h - top - bottom)
    return x, y

  draw.rectangle([left, top, w - right, h - bottom], outline="black")
  for k in steps:
    x, _ = xy(k, 0)
    draw.line([x, h - bottom, x, h - bottom + 5], fill="black")
    draw.text((x - 10, h - bottom + 8), str(k), fill="black", font=font)
  for v in range(0, ymax + 1):
    _, y = xy(steps[0], v)
    draw.line([left - 5, y, left, y], fill="black")
    draw.line([left, y, w - right, y], fill=(230, 230, 230))
    draw.text((left - 25, y - 6), str(v), fill="black", font=font)
  draw.text((left, 10), title, fill="black", font=font)
  draw.text(((w - right) // 2 - 20, h - 22), "steps", fill="black", font=font)
  draw.text((5, top - 20), "median ratio to best photo", fill="black", font=font)
  colours = [(200, 30, 30), (30, 30, 200), (30, 150, 30), (200, 120, 0), (140, 0, 160)]
  colours += [(0, 150, 150), (120, 120, 120)]
  for i, (name, c) in enumerate(curves.items()):
    colour = colours[i % len(colours)]
    pts = [xy(k, c[k][0]) for k in sorted(c)]
    draw.line(pts, fill=colour, width=3 if i < 2 else 1)
    for x, y in pts:
      draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    draw.text((w - right + 10, top + 18 * i), name, fill=colour, font=font)
  images_lib.save_png(canvas, path)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--photos", help="folder of photos the renders are scored against")
  ap.add_argument("--steps", default=",".join(map(str, STEPS)))
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument(
    "--units",
    default=DEFAULT_UNITS,
    help="LAYER:A-B of efficientnet_lite0, one batch (default: issue 19's 8 units)",
  )
  ap.add_argument("--variants", default="lucid", help=f"featviz settings: {','.join(VARIANTS)}")
  ap.add_argument(
    "--lucent-python", default=os.environ.get("LUCENT_PYTHON", "/tmp/lucentenv/bin/python")
  )
  ap.add_argument("--lucent-from", default=None, help="read lucent's images from a --lucent-out")
  ap.add_argument("--lucent-out", default=None, help="where lucent's images and times go")
  ap.add_argument(
    "--wait-lucent", type=float, default=3600, help="seconds to wait for --lucent-from's run"
  )
  ap.add_argument("--lucent-only", action="store_true", help="run lucent, save, stop")
  ap.add_argument("--featviz-only", action="store_true")
  ap.add_argument(
    "--no-lucent-row",
    action="store_true",
    help="with --lucent-from: lucent's curve as the target only (a run that recorded it did)",
  )
  ap.add_argument("--figure", default=str(HERE.parent / "docs" / "time_to_quality.png"))
  ap.add_argument("--json", default=None)
  ap.add_argument("--no-results", action="store_true")
  ap.add_argument("--lucent-worker", action="store_true", help=argparse.SUPPRESS)
  ap.add_argument("--lucent-weights", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  steps = sorted(int(s) for s in args.steps.split(","))

  if args.lucent_worker:
    info = lucent_worker(args.lucent_out, steps, args.lucent_weights, args.seed, args.units)
    print(json.dumps(info))
    return 0

  from featviz import cpu_devices

  fv_devices = cpu_devices.enable()  # before JAX starts, as the featviz command does
  import numpy as np

  import featviz
  from benchmarks import common
  from featviz import objectives as O
  from featviz._sweep import quality
  from featviz.zoo import catalogue, sources

  vs = _vs_lucent()
  variants = [v for v in args.variants.split(",") if v]
  for v in variants:
    variant_config(v, max(steps))  # refuses an unknown name before anything runs
  model = common.load_model(MODEL)
  layer, units = model_units(model, args.units)
  worker_units = worker_spec(layer, units)
  weights = str(sources.locate(MODEL, catalogue.entry(MODEL).source))

  lucent_info, lucent_images, port_error = None, None, None
  if not args.lucent_from and not args.featviz_only:
    if not vs.lucent_available(args.lucent_python):
      raise SystemExit(f"lucent not importable with {args.lucent_python} (see --featviz-only)")
    port_error = vs.check_port(args.lucent_python, weights, model)
    print(f"PyTorch port: relative error {port_error:.2g} against featviz", flush=True)
    out = args.lucent_out or os.path.join(
      os.environ.get("TMPDIR", "/tmp"), f"ttq_lucent_{os.getpid()}"
    )
    t = time.perf_counter()
    run_lucent(args.lucent_python, out, steps, weights, args.seed, worker_units)
    print(f"lucent: {time.perf_counter() - t:.0f} s, images in {out}", flush=True)
    lucent_info, lucent_images = load_lucent(out)
    if args.lucent_only:
      return 0

  if not args.photos:
    raise SystemExit("--photos DIR: the folder of photos the renders are scored against")
  env = common.environment()
  best, _ = quality.dataset_best(model, [layer], args.photos, featviz.RenderConfig().size)[layer]
  n_photos = len(quality.dataset_files(args.photos))
  objective = O.channel(layer, np.asarray(units, np.int32))
  title = f"{MODEL} {args.units}, batch {len(units)}, Lucid's defaults, seed {args.seed}"
  top = max(steps)

  curves, seconds, meta, summary, lines = {}, {}, {}, {}, []
  targets = [(f"{t:g}", t) for t in TARGETS]

  def add_lucent() -> None:
    # A --lucent-from run made for other units or steps would be compared unit by unit with
    # the wrong images (runs before --units existed rendered DEFAULT_UNITS).
    theirs = lucent_info.get("units") or worker_spec(*model_units(model, DEFAULT_UNITS))
    if theirs != worker_units or top not in lucent_images:
      raise SystemExit(
        f"lucent's images are of {theirs} at steps {sorted(lucent_images)}; this run wants "
        f"{worker_units} at steps {steps}: run lucent again with these --units and --steps"
      )
    curves["lucent"] = median_ratios(model, layer, units, best, lucent_images)
    per_step = lucent_info["wall_s"] / max(lucent_info["steps"])
    seconds["lucent"] = {k: per_step * k for k in curves["lucent"]}
    meta["lucent"] = {
      "how": f"render_vis thresholds, one {max(lucent_info['steps'])}-step call",
      "ms/step": 1e3 * per_step,
      "cpu-ms/step": 1e3 * lucent_info["cpu_s"] / max(lucent_info["steps"]),
      "run load": round(lucent_info["load"], 1),
      "run date": lucent_info["date"],
    }
    env.versions.update(torch=lucent_info["torch"], lucent=lucent_info["lucent"])
    targets.insert(0, ("lucent@512", curves["lucent"][top][0]))
    if not args.no_lucent_row:
      record("lucent")

  def record(name: str) -> None:
    """Its table line and RESULTS.md row, and the figure with every curve so far."""
    curve = curves[name]
    reach = {n: first_reaching(curve, seconds[name], t) for n, t in targets}
    cells = [f"{curve[k][0]:.2f}" for k in steps] + [f"{meta[name]['ms/step']:.0f}"]
    for s, sec in reach.values():
      cells.append(f"{s} / {sec:.0f}" if s is not None else f"> {top}")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
    figs = {f"ratio@{k}": curve[k][0] for k in steps}
    figs[f"min@{top}"] = min(r for r in curve[top][1] if r is not None)
    for n, (s, sec) in reach.items():
      figs[f"to {n} steps"] = s if s is not None else f">{top}"
      figs[f"to {n} s"] = sec if sec is not None else "-"
    if name != "lucent" and "lucent" in curves:
      per_unit = unit_steps_to_lucent(curve, curves["lucent"][top][1])
      figs["each unit to its lucent@512 steps"] = "/".join(
        str(k) if k is not None else f">{top}" for k in per_unit
      )
      reached = [k for k in per_unit if k is not None]
      figs["every unit at its lucent@512 by"] = (
        max(reached) if len(reached) == len(per_unit) else f">{top}"
      )
    figs.update({k: v for k, v in meta[name].items() if k != "how"})
    summary[name] = {"curve": curve, "seconds": seconds[name], "figures": figs}
    settings = {
      "model": MODEL,
      "units": args.units,
      "batch": len(units),
      "side": name,
      "how": meta[name]["how"],
      "photos": f"{pathlib.Path(args.photos).name} ({n_photos})",
      "scorer": "featviz._sweep.quality, un-transformed 128 px",
      "seed": args.seed,
      "seconds": "steps x the side's wall s/step, compile apart",
    }
    if name == "lucent" and port_error is not None:
      settings["port rel. error"] = port_error
    if name != "lucent":
      settings["featviz CPU devices"] = fv_devices if len(units) % fv_devices == 0 else 1
    row = common.format_row(env, "time_to_quality", settings, figs)
    if not args.no_results:
      common.append_rows([row])
    print(lines[-1], flush=True)
    if args.figure:
      figure(curves, pathlib.Path(args.figure), title)

  if lucent_images is not None:
    add_lucent()
  for v in variants:
    t = time.perf_counter()
    c = featviz_curve(model, objective, v, steps, args.seed)
    name = f"featviz {v}"
    curves[name] = median_ratios(model, layer, units, best, c["images"])
    seconds[name] = c["seconds"]
    meta[name] = {
      "how": c["how"],
      "ms/step": 1e3 * c["seconds"][top] / top,
      "compile_s": c["compile_s"],
    }
    print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    if args.lucent_from and lucent_images is None:
      lucent_info, lucent_images = load_lucent(args.lucent_from, wait_s=args.wait_lucent)
      add_lucent()
    record(name)

  head = "| side | " + " | ".join(f"ratio @{k}" for k in steps) + " | ms/step | "
  head += " | ".join(f"to {n} ({t:.2f}): steps / s" for n, t in targets) + " |"
  table = "\n".join([head, "|" + "---|" * (head.count("|") - 1), *lines])
  print(f"\n{env.device}, load {env.load}, commit {env.commit}\n\n{table}\n")
  if "lucent" in curves:  # unit by unit: each side's ratio against the unit's own lucent@512
    names = [n for n in curves if n != "lucent"]
    head = f"| unit | lucent@{top} | " + " | ".join(f"{n} @{k}" for n in names for k in steps)
    head += " |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for i, u in enumerate(units):
      cells = [f"{curves[n][k][1][i]:.2f}" for n in names for k in steps]
      print(f"| {u} | {curves['lucent'][top][1][i]:.2f} | " + " | ".join(cells) + " |")
  common.write_json(args.json, {"env": env.as_dict(), "table": table, "summary": summary})
  return 0


if __name__ == "__main__":
  sys.exit(main())
