"""How far a whole-model sweep is from this machine's arithmetic limit, layer by layer.

    python -m benchmarks.microscope_floor --store SITE/sweep

Reads a finished sweep store of EfficientNet-Lite0 (``featviz microscope efficientnet_lite0``'s
``SITE/sweep``): per layer, the image-steps its units took (the sum of their ``steps``) and
its wall seconds (from the last ``finished`` time of the layer before to its own last; the
first layer from its first unit's start). It lowers each layer's render program for one image
at the sweep's settings (Lucid's, 128 px, 16-step chunks) and takes XLA's FLOP count of one
step (``common.render_flops``), and measures the machine's matrix-product rate on all its
devices at once (``common.matmul_peak`` on each device, concurrently: the rate every core
reaches together). Then:

* **floor s**: the layer's image-steps x FLOPs per step / that rate: the seconds the sweep's
  arithmetic takes if every operation ran as fast as a large matrix product, which no network
  of depthwise convolutions and element-wise ops does; a bound, not a target;
* **GFLOP/s** and **% peak**: what the sweep achieved, its FLOPs over its wall seconds.

The checks' forward passes (one per unit per 16 steps, about 2 % of the FLOPs) and the
gallery are left out, so the floor is lower still than it would be with them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from featviz import cpu_devices, objectives
from featviz._sweep import store as store_lib

# The sweep's chunk: featviz._sweep.continuous.CHECK_EVERY steps between checks.
CHUNK = 16


def layer_times(rows: dict) -> dict[str, dict]:
  """Per layer: units, image-steps, and wall seconds from the rows' ``finished`` times."""
  by_layer: dict[str, list] = {}
  for (layer, _), row in rows.items():
    by_layer.setdefault(layer, []).append(row)
  stamp = datetime.datetime.fromisoformat
  ordered = sorted(by_layer, key=lambda x: max(stamp(r["finished"]) for r in by_layer[x]))
  out, previous = {}, None
  for layer in ordered:
    layer_rows = by_layer[layer]
    last = max(stamp(r["finished"]) for r in layer_rows)
    if previous is None:  # the first layer: from its first unit's start (finished - seconds)
      first = min(
        stamp(r["finished"]) - datetime.timedelta(seconds=r["chunk_seconds"]) for r in layer_rows
      )
      seconds = (last - first).total_seconds()
    else:
      seconds = (last - previous).total_seconds()
    out[layer] = {
      "units": len(layer_rows),
      "image_steps": sum(int(r["steps"]) for r in layer_rows),
      "seconds": seconds,
    }
    previous = last
  return out


def all_devices_peak(repeats: int) -> float:
  """GFLOP/s of a float32 2048^2 product on every local device at once (each device's median
  rate, summed)."""
  devices = jax.local_devices()
  n = 2048
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)

  def one(device):
    x = jax.device_put(a, device)
    mm = jax.jit(lambda x: jnp.dot(x, x, precision=jax.lax.Precision.HIGHEST))
    mm(x).block_until_ready()
    t = common.timed(lambda: mm(x).block_until_ready(), repeats)
    return 2.0 * n**3 / t.median / 1e9

  with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool:
    return float(sum(pool.map(one, devices)))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--store", required=True, help="a finished sweep store (SITE/sweep)")
  parser.add_argument("--model", default="efficientnet_lite0")
  parser.add_argument("--repeats", type=int, default=7)
  args = parser.parse_args(argv)
  cpu_devices.enable()  # one device per core, as the featviz command; before JAX starts

  store = store_lib.Store(pathlib.Path(args.store))
  rows = store.rows()
  if not rows:
    raise SystemExit(f"{args.store}: no finished units in this store")
  layers = layer_times(rows)
  model = common.load_model(args.model)
  config = common.LUCID.replace(steps=256, chunk=CHUNK)
  counting = common.scan_body_counting()
  peak = all_devices_peak(args.repeats)
  print(f"matrix-product rate, {len(jax.local_devices())} devices at once: {peak:.1f} GFLOP/s")

  table = [
    "| layer | units | image-steps | GFLOP/step | wall s | floor s | GFLOP/s | % peak |",
    "|---|---|---|---|---|---|---|---|",
  ]
  total = {"flops": 0.0, "seconds": 0.0, "steps": 0}
  for layer, t in layers.items():
    obj = objectives.channel(layer, np.zeros(1, np.int32))
    flops = common.render_flops(model, obj, config, counting)
    work = flops * t["image_steps"]
    rate = work / t["seconds"] / 1e9
    total["flops"] += work
    total["seconds"] += t["seconds"]
    total["steps"] += t["image_steps"]
    table.append(
      f"| {layer} | {t['units']} | {t['image_steps']} | {flops / 1e9:.3f} | {t['seconds']:.0f} "
      f"| {work / 1e9 / peak:.0f} | {rate:.1f} | {100 * rate / peak:.0f} |"
    )
  rate = total["flops"] / total["seconds"] / 1e9
  floor = total["flops"] / 1e9 / peak
  table.append(
    f"| all | {sum(t['units'] for t in layers.values())} | {total['steps']} | "
    f"{total['flops'] / total['steps'] / 1e9:.3f} | {total['seconds']:.0f} | {floor:.0f} "
    f"| {rate:.1f} | {100 * rate / peak:.0f} |"
  )
  print("\n".join(table))
  print(
    f"{total['flops'] / 1e12:.1f} TFLOP in {total['seconds'] / 60:.1f} min; at the "
    f"matrix-product rate {floor / 60:.1f} min. A 30-minute sweep of these image-steps needs "
    f"{total['flops'] / 1800 / 1e9:.1f} GFLOP/s, {100 * total['flops'] / 1800 / 1e9 / peak:.0f} "
    "% of that rate, for the whole sweep."
  )
  common.append_row(
    common.environment(),
    "microscope_floor",
    {
      "model": args.model,
      "store": args.store,
      "image_steps": total["steps"],
      "peak": "2048^2 float32 product on every device at once",
    },
    {
      "peak_GFLOP/s": round(peak, 1),
      "TFLOP": round(total["flops"] / 1e12, 2),
      "wall_min": round(total["seconds"] / 60, 1),
      "floor_min": round(floor / 60, 1),
      "GFLOP/s": round(rate, 1),
      "%peak": round(100 * rate / peak, 1),
    },
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
