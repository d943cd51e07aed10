"""A sweep over 4 CPU devices gives the images of a 1-device sweep.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX starts, so
the check runs in a fresh interpreter. Measured on jax 0.10.2 CPU: the images
are bitwise equal, and the objective history differs by at most about 1e-7
(a sum over positions reduced in another order). The test allows 1e-6 on the
float images, not bitwise: XLA may pick other kernels for another per-device
batch size on other hardware, and float32 rounding is then all that differs.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

TESTS = pathlib.Path(__file__).parent
DEVICES = 4
TOLERANCE = 1e-6  # float32 images in [0, 1]; see the module docstring

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    out = sys.argv[2]
    import jax, numpy as np, tiny_cnn
    from featviz import objectives
    from featviz._loop import api as render
    from featviz._sweep import run as sweep
    from featviz._sweep import store as S

    model = tiny_cnn.make()
    devices = jax.devices()
    # Batch 6: one device runs 6 images, four devices 8 (two padding slots), standard
    # transforms drawing per image from one key per step.
    kw = dict(batch=6, steps=32, size=32, transforms="standard", progress_bar=False)
    sweep.sweep(model, ["conv3"], out=out + "/one", devices=devices[:1], **kw)
    sweep.sweep(model, ["conv3"], out=out + "/four", **kw)
    for i in range(2):  # two processes' shares, one after the other, into one store
      sweep.sweep(model, ["conv3"], out=out + "/shared", process=(i, 2), **kw)
    # Continuous batching (units stop at their own steps, slots refill) on 1 and 4 devices.
    import pathlib
    from PIL import Image
    photos = pathlib.Path(out, "photos")
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
      Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(photos / f"{i}.png")
    until = dict(steps=64, size=24, transforms="none", progress_bar=False, until_ratio=1.0,
                 dataset=str(photos))
    sweep.sweep(model, ["conv3"], out=out + "/until_one", devices=devices[:1], batch=3, **until)
    sweep.sweep(model, ["conv3"], out=out + "/until_four", batch=8, **until)
    # A tail where one device has two busy slots and the other none: at ratio 3 units 0-7 take
    # 32, 16, 32, 48, 32, 48, 64, 16 steps; queued as 3, 5, 1, 7, 0, 2, 4, 6 in 2 slots on
    # each of 2 devices, 4 and 6 share device 1 once 3 and 5 are done on device 0 (step 48).
    from featviz._sweep import continuous
    render_layer = continuous.render_layer
    def queued(model, layer, units, *args, **kwargs):
      return render_layer(model, layer, [3, 5, 1, 7, 0, 2, 4, 6], *args, **kwargs)
    continuous.render_layer = queued
    until3 = dict(until, until_ratio=3.0)
    sweep.sweep(model, ["conv3"], out=out + "/until3_two", devices=devices[:2], batch=4, **until3)
    continuous.render_layer = render_layer
    sweep.sweep(model, ["conv3"], out=out + "/until3_one", devices=devices[:1], batch=3, **until3)

    def steps(name):
      rows = S.Store(out + "/" + name).rows()
      return [rows[("conv3", u)]["steps"] for u in range(8)]

    def slots(name):
      rows = S.Store(out + "/" + name).rows()
      return [rows[("conv3", u)]["slot"] for u in range(8)]

    def finals(name):
      rows = S.Store(out + "/" + name).rows()
      return {u: (r["final"], r["devices"], r["process"]) for (_, u), r in sorted(rows.items())}

    images = {}
    for n in (1, len(devices)):
      mesh = jax.sharding.Mesh(np.asarray(devices[:n]), ("batch",))
      r = render.render(model, objectives.channel("conv3", np.arange(8, dtype=np.int32)),
                        steps=32, size=32, seed=3, progress_bar=False, mesh=mesh)
      images[n] = r
    a, b = images[1], images[len(devices)]
    # mesh=None: the batch of 8 split over every device (featviz.cpu_devices.batch_mesh)
    default = render.render(model, objectives.channel("conv3", np.arange(8, dtype=np.int32)),
                            steps=32, size=32, seed=3, progress_bar=False)
    lowered = render.lower(model, objectives.channel("conv3", np.arange(8, dtype=np.int32)),
                           steps=32, size=32)
    print(json.dumps({
        "default_bitwise": bool(np.array_equal(default.images, b.images)),
        "default_partitions": lowered.as_text().count("num_partitions = 4"),
        "devices": len(devices),
        "finals": {k: finals(k) for k in ("one", "four", "shared")},
        "until_steps": {k: steps(k)
                        for k in ("until_one", "until_four", "until3_one", "until3_two")},
        "until3_slots": slots("until3_two"),
        "check": {k: sweep.check(out + "/" + k) for k in ("one", "four", "shared")},
        "image_diff": float(np.abs(a.images - b.images).max()),
        "bitwise": bool(np.array_equal(a.images, b.images)),
        "history_diff": float(np.abs(a.history - b.history).max()),
    }))
    """)


def _pixels(path: pathlib.Path) -> np.ndarray:
  from PIL import Image

  with Image.open(path) as im:
    return np.asarray(im, np.int16)


@pytest.fixture(scope="module")
def four_device_report(tmp_path_factory):
  """The script's report, run once in a fresh interpreter with 4 CPU devices."""
  tmp_path = tmp_path_factory.mktemp("four_devices")
  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}", JAX_PLATFORMS="cpu"
  )
  # cwd=tmp_path: from the repo root, `python -c` would import the source folders.
  proc = subprocess.run(
    [sys.executable, "-c", SCRIPT, str(TESTS), str(tmp_path)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    cwd=tmp_path,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp_path, json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_render_what_one_device_renders(four_device_report):
  tmp_path, report = four_device_report
  print(report["image_diff"], report["bitwise"], report["history_diff"])
  assert report["devices"] == DEVICES
  assert report["image_diff"] <= TOLERANCE
  assert report["check"] == {"one": [], "four": [], "shared": []}
  one, four, shared = (report["finals"][k] for k in ("one", "four", "shared"))
  assert sorted(one) == sorted(four) == sorted(shared) == [str(u) for u in range(8)]
  for unit in one:
    assert one[unit][1] == 1 and four[unit][1] == DEVICES
    assert abs(one[unit][0] - four[unit][0]) <= 1e-5 * max(1.0, abs(one[unit][0]))
    assert shared[unit][2] == (int(unit) // 6) % 2  # chunk 0 -> process 0, chunk 1 -> 1
  for unit in range(8):  # PNGs: 8-bit, so at most one level apart if a value sits on .5
    name = pathlib.Path("conv3") / f"{unit:04d}.png"
    a, b, c = (_pixels(tmp_path / k / name) for k in ("one", "four", "shared"))
    assert np.abs(a - b).max() <= 1 and np.array_equal(b, c)


def test_a_render_splits_its_batch_over_every_device_by_default(four_device_report):
  _, report = four_device_report
  assert report["default_partitions"] >= 1  # the chunk program is partitioned 4 ways
  assert report["default_bitwise"]  # the program an explicit 4-device mesh gets


def test_continuous_batching_on_four_devices_gives_one_devices_units(four_device_report):
  tmp_path, report = four_device_report
  one, four = report["until_steps"]["until_one"], report["until_steps"]["until_four"]
  assert one == four and len(set(one)) > 1  # units stopped at their own steps, on either
  for unit in range(8):  # a CPU runs each slot as a batch of one (serial slots): bitwise
    name = pathlib.Path("conv3") / f"{unit:04d}.png"
    a, b = (_pixels(tmp_path / k / name) for k in ("until_one", "until_four"))
    np.testing.assert_array_equal(a, b)


def test_a_tail_on_one_device_is_spread_over_the_idle_ones(four_device_report):
  tmp_path, report = four_device_report
  steps = report["until_steps"]
  assert steps["until3_one"] == steps["until3_two"] == [32, 16, 32, 48, 32, 48, 64, 16]
  slots = report["until3_slots"]
  # unit 4 started in slot 2 (device 1) next to unit 6; at step 48 it moved to slot 0
  assert slots[4] == 0 and slots[6] == 2, slots
  for unit in range(8):
    name = pathlib.Path("conv3") / f"{unit:04d}.png"
    a, b = (_pixels(tmp_path / k / name) for k in ("until3_one", "until3_two"))
    np.testing.assert_array_equal(a, b)
