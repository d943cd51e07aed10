"""Continuous batching against fixed-step batches: the same sweep, wall time and quality.

    python -m benchmarks.continuous_batching --photos ../shared/images/imagenet-sample \\
        [--layer block10] [--units 0-15] [--batch 8] [--max-steps 256] [--until-ratio 4]

Runs ``featviz.sweep`` twice on the same units of EfficientNet-Lite0 (the real weights of the pip
package), Lucid's settings, the same batch and seed, into fresh folders:

* **fixed**: every unit ``--max-steps`` steps (today's sweep);
* **continuous**: ``until_ratio=R``: each unit stops at its first check (every 16 steps) where
  its activation on its un-transformed image reaches R times the best photo's, or at
  ``--max-steps`` (``featviz._sweep.continuous``);
* **serial fixed**: the continuous engine with a ratio no unit reaches (``until_ratio=1e9``),
  so every unit runs ``--max-steps`` steps there. On a CPU that engine runs each slot as a
  batch of one (``program.Plan.serial``), which costs less per image than the fixed sweep's
  batch; this side says how much of the speedup is that and how much is the scheduling.

Each sweep runs in its own fresh process with JAX's persistent compilation cache off, so both
pay their compiles cold; the wall time is the whole ``featviz.sweep`` call (compiles, the photo
scores, the renders, the PNGs). Each process then runs its sweep again into another folder with
its programs compiled (``*_warm``): what a user's second run sees with the persistent
compilation cache, which the ``featviz`` command enables. Figures: wall seconds, the speedups,
every unit's steps and stop reason, and the ratio's min and median on both sides (quality at
equal settings).

``--compile-cache DIR`` measures the persistent cache itself instead: each side runs three
times, each in a fresh process, sharing JAX's persistent compilation cache in ``DIR`` (empty
at the start), as three ``featviz sweep`` commands would: run 1 compiles, runs 2 and 3 find
their programs in the cache (the steady state of a user who sweeps again; each process still
traces them). Where the tail moves to smaller batches (not on a CPU, whose slots run serially),
it moves only when that pays against the compile it expects (its first program's, which a
cache hit makes short), so there run 2 compiles the tail's sizes into the cache and run 3 finds
every program.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

from benchmarks import common

# The serial fixed side's ratio: no unit reaches it, so each runs its step limit (the best
# render of this benchmark's units is under 10x its best photo).
NEVER = 1e9

_CHILD = r"""
import json, sys, time
from featviz import cpu_devices
args = json.loads(sys.argv[1])
devices = cpu_devices.enable(args["cpu_devices"])  # before JAX starts, as the featviz command
import featviz
if args.get("compile_cache"):  # the persistent cache, as the featviz command enables it
  from featviz import compile_cache
  compile_cache.enable(args["compile_cache"])
from featviz._sweep import store
model = featviz.zoo.load("efficientnet_lite0")
runs = []
for out, rule in args["runs"]:
  start = time.perf_counter()
  summary = featviz.sweep(model, [args["layer"]], out=out, units=args["units"],
                          batch=args["batch"], steps=args["steps"], dataset=args["photos"],
                          progress_bar=False, **rule)
  seconds = time.perf_counter() - start
  rows = store.Store(out).rows()
  units = [rows[k] for k in sorted(rows)]
  runs.append({"seconds": seconds, "summary": summary["layers"][args["layer"]],
               "steps": [r["steps"] for r in units], "ratio": [r.get("ratio") for r in units],
               "stopped": [r.get("stopped", "max_steps") for r in units],
               "batches": sorted({r.get("batch", args["batch"]) for r in units}),
               "devices": devices})
print("RESULT " + json.dumps(runs))
"""


def _run(payload: dict, env: dict) -> list[dict]:
  out = subprocess.run(
    [sys.executable, "-c", _CHILD, json.dumps(payload)],
    env=env,
    capture_output=True,
    text=True,
    check=False,
  )
  if out.returncode:
    raise SystemExit(f"the timed sweep failed:\n{out.stderr[-3000:]}")
  line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
  return json.loads(line[len("RESULT ") :])


def _settings(args, devices: int, how: str) -> dict:
  """The row's settings: the sweep both sides ran, and how they ran it."""
  return {
    "model": "efficientnet_lite0",
    "units": f"{args.layer}:{args.units}",
    "batch": args.batch,
    "max_steps": args.max_steps,
    "until_ratio": args.until_ratio,
    "size": 128,
    "cpu_devices": devices,
    "how": how,
    "photos": f"{pathlib.Path(args.photos).name} ({len(os.listdir(args.photos))})",
  }


def _unit_figures(cont: dict) -> dict:
  """Every unit's steps, their mean, and how many stopped by ratio, from a continuous run."""
  steps = cont["steps"]
  return {
    "unit_steps": "/".join(map(str, steps)),
    "mean_steps": sum(steps) / len(steps),
    "stopped_by_ratio": f"{cont['stopped'].count('ratio')}/{len(steps)}",
  }


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--photos", required=True, help="a folder of photos (the ratio's best photo)")
  p.add_argument("--layer", default="block10", help="default: block10")
  p.add_argument("--units", default="0-15", help="inclusive range; default: 0-15 (16 units)")
  p.add_argument("--batch", type=int, default=8, help="units per compiled call; default: 8")
  p.add_argument("--max-steps", type=int, default=256, help="default: 256")
  p.add_argument("--until-ratio", type=float, default=4.0, help="default: 4")
  p.add_argument(
    "--cpu-devices",
    type=int,
    default=None,
    help="CPU devices (featviz.cpu_devices; default one per core, as the featviz command)",
  )
  p.add_argument(
    "--compile-cache",
    default=None,
    metavar="DIR",
    help="three fresh processes per side sharing JAX's persistent cache in DIR (must be empty)",
  )
  p.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
  args = p.parse_args(argv)
  if args.compile_cache is not None:
    cache = pathlib.Path(args.compile_cache).resolve()
    if cache.exists() and any(cache.iterdir()):
      p.error(f"--compile-cache {cache} must be empty or new (the runs start cold)")
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, FEATVIZ_COMPILE_CACHE="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
  else:
    env = dict(os.environ, FEATVIZ_COMPILE_CACHE="0")
  environment = common.environment()
  with tempfile.TemporaryDirectory() as tmp:
    payload = {
      "layer": args.layer,
      "units": args.units,
      "batch": args.batch,
      "steps": args.max_steps,
      "photos": str(pathlib.Path(args.photos).resolve()),
      "cpu_devices": args.cpu_devices,
      "compile_cache": str(cache) if args.compile_cache is not None else None,
    }
    rule = {"until_ratio": args.until_ratio}
    if args.compile_cache is not None:
      return _cached_runs(args, payload, rule, env, environment, tmp)
    fixed, fixed_warm = _run(
      dict(payload, runs=[[f"{tmp}/fixed", {}], [f"{tmp}/fixed_warm", {}]]), env
    )
    cont, warm = _run(dict(payload, runs=[[f"{tmp}/cont", rule], [f"{tmp}/cont_warm", rule]]), env)
    never = {"until_ratio": NEVER}
    serial, serial_warm = _run(
      dict(payload, runs=[[f"{tmp}/serial", never], [f"{tmp}/serial_warm", never]]), env
    )
  assert set(serial["steps"]) == {args.max_steps}, "the serial fixed side runs every step"
  assert cont["steps"] == warm["steps"], "a unit's steps must not depend on the run"
  reached = sum(s == "ratio" or n == args.max_steps for s, n in zip(cont["stopped"], cont["steps"]))
  settings = _settings(
    args,
    cont["devices"],
    "two fresh processes, compile cache off; wall = the whole featviz.sweep call",
  )

  def stats(values):
    values = [v for v in values if v is not None]
    return min(values), statistics.median(values)

  fixed_min, fixed_median = stats(fixed["ratio"])
  cont_min, cont_median = stats(cont["ratio"])
  figures = {
    "fixed_s": fixed["seconds"],
    "continuous_s": cont["seconds"],
    "speedup": fixed["seconds"] / cont["seconds"],
    "fixed_warm_s": fixed_warm["seconds"],
    "continuous_warm_s": warm["seconds"],
    "speedup_warm": fixed_warm["seconds"] / warm["seconds"],
    "serial_fixed_s": serial["seconds"],
    "serial_fixed_warm_s": serial_warm["seconds"],
    "speedup_vs_serial_fixed": serial["seconds"] / cont["seconds"],
    "speedup_warm_vs_serial_fixed": serial_warm["seconds"] / warm["seconds"],
    **_unit_figures(cont),
    "batch_sizes": "/".join(map(str, cont["batches"])),
    "batch_sizes_warm": "/".join(map(str, warm["batches"])),
    "ratio_or_limit": f"{reached}/{len(cont['steps'])}",
    "fixed ratio min/median": f"{fixed_min:.2f}/{fixed_median:.2f}",
    "continuous ratio min/median": f"{cont_min:.2f}/{cont_median:.2f}",
  }
  print(json.dumps(figures, indent=1))
  if not args.no_record:
    common.append_row(environment, "continuous_batching", settings, figures)
  return 0


def _cached_runs(args, payload, rule, env, environment, tmp) -> int:
  """Three fresh processes per side sharing the persistent cache: the ``--compile-cache`` mode."""
  fixed = [_run(dict(payload, runs=[[f"{tmp}/fixed{i}", {}]]), env)[0] for i in range(3)]
  cont = [_run(dict(payload, runs=[[f"{tmp}/cont{i}", rule]]), env)[0] for i in range(3)]
  assert all(c["steps"] == cont[0]["steps"] for c in cont), (
    "a unit's steps must not depend on the run"
  )
  settings = _settings(
    args,
    cont[0]["devices"],
    "3 fresh processes per side sharing JAX's persistent compile cache, empty at the "
    "start; wall = the whole featviz.sweep call",
  )
  figures = {}
  for i in range(3):
    figures[f"run{i + 1} fixed_s"] = fixed[i]["seconds"]
    figures[f"run{i + 1} continuous_s"] = cont[i]["seconds"]
    figures[f"run{i + 1} speedup"] = fixed[i]["seconds"] / cont[i]["seconds"]
    figures[f"run{i + 1} batch_sizes"] = "/".join(map(str, cont[i]["batches"]))
  figures.update(_unit_figures(cont[0]))
  print(json.dumps(figures, indent=1))
  if not args.no_record:
    common.append_row(environment, "continuous_batching", settings, figures)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
