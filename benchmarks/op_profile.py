"""Where one render step's time goes, op by op: JAX's profiler on the compiled render loop.

    python -m benchmarks.op_profile [--model efficientnet_lite0] [--layer block15] [--batch 1]

Renders ``--steps`` steps of one channel objective at Lucid's settings (redirected ReLU off, so
every step runs the same branch) on one device, once to compile and once under
``jax.profiler``. Each event on the device's op lines is one run of one op of the compiled
program (on a CPU, a fusion or library call of XLA:CPU's thunk runtime); their names are those
of the optimized HLO of the same program (``featviz.lower``, compiled again here: XLA's names
are deterministic), which gives each its shape and the JAX op it came from. Prints ms per step:
in all, per kind of op (the name without its number) and for the ``--top`` slowest ops.

The profiler adds a few percent to each op, and the op lines hold the ops only (not the
loop's own control), so the sum is near, not equal to, the step's wall time, which is printed
beside it from a run without the profiler.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys
import tempfile

import jax
import numpy as np

import featviz
from benchmarks import common
from featviz import objectives

# An HLO instruction line: its name, its shape and the JAX op it came from.
_INSTRUCTION = re.compile(r"^\s*%([\w.\-]+) = (\S+) [^\n]*?op_name=\"([^\"]+)\"", re.M)


def op_times(trace_dir: pathlib.Path) -> collections.Counter:
  """Total ns per op name over the trace's device op lines (``tf_XLA*`` on a CPU; the
  executor's own spans are left out)."""
  files = sorted(trace_dir.glob("**/*.xplane.pb"))
  if not files:
    raise SystemExit(f"{trace_dir}: the profiler wrote no trace")
  data = jax.profiler.ProfileData.from_file(str(files[-1]))
  times: collections.Counter = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if not (line.name.startswith("tf_XLA") or plane.name.startswith("/device:")):
        continue
      for event in line.events:
        if not event.name.startswith("ThunkExecutor"):
          times[event.name] += event.duration_ns
  return times


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="efficientnet_lite0")
  parser.add_argument("--layer", default="block15")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--steps", type=int, default=32)
  parser.add_argument("--top", type=int, default=30)
  args = parser.parse_args(argv)

  model = common.load_model(args.model)
  config = common.LUCID.replace(steps=args.steps, chunk=16, redirect_relu_steps=0)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
  objective = objectives.channel(args.layer, np.zeros(args.batch, np.int32))
  hlo = featviz.lower(model, objective, config, mesh=mesh).compile().as_text()
  # The JAX op below the loop's body ("transpose(jvp(...))/..." is the backward pass).
  ops = {
    m.group(1): (m.group(2), m.group(3).split("closed_call/")[-1])
    for m in _INSTRUCTION.finditer(hlo)
  }

  def render():
    return featviz.render(model, objective, config, progress_bar=False, mesh=mesh)

  render()  # compiled
  wall = render().run_seconds
  with tempfile.TemporaryDirectory() as trace:
    jax.profiler.start_trace(trace)
    render()
    jax.profiler.stop_trace()
    times = op_times(pathlib.Path(trace))

  per_step = 1e-6 / args.steps  # ns in the run -> ms per step
  kinds: collections.Counter = collections.Counter()
  for name, ns in times.items():
    kinds[re.sub(r"\.\d+$", "", name)] += ns
  print(
    f"{args.model} {args.layer}, batch {args.batch}, {args.steps} steps, {common.device_name()}: "
    f"{1000 * wall / args.steps:.1f} ms per step (no profiler); the ops, profiled: "
    f"{sum(times.values()) * per_step:.1f} ms"
  )
  print("\nms/step  kind of op (ops)")
  counts = collections.Counter(re.sub(r"\.\d+$", "", n) for n in times)
  for kind, ns in kinds.most_common(15):
    print(f"{ns * per_step:7.2f}  {kind} ({counts[kind]})")
  print("\nms/step  op  shape  from")
  for name, ns in times.most_common(args.top):
    shape, where = ops.get(name, ("?", "?"))
    print(f"{ns * per_step:7.2f}  {name}  {shape}  {where}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
