"""Continuous batching: per-slot steps, stopping rules, and images independent of the schedule."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from featviz import nonlin
from featviz import transforms as tf_lib
from featviz._loop import program
from featviz._loop.config import ConfigError
from featviz._sweep import continuous, stopping
from featviz._sweep import run as sweep
from featviz._sweep import store as S

import tiny_cnn

MODEL = tiny_cnn.make()
# No transforms: the standard preset's resampling takes seconds to compile per batch size, and
# the per-slot draws are checked on their own below.
FAST = dict(size=24, steps=64, transforms="none", progress_bar=False)


def _pngs(out, layer, units):
  return {u: (pathlib.Path(out) / layer / f"{u:04d}.png").read_bytes() for u in units}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(4):
    Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(folder / f"p{i}.png")
  return folder


def test_stop_rule_reasons_follow_their_definitions():
  rule = stopping.StopRule(max_steps=64, every=16, until_ratio=4.0)
  assert rule.reason(16, [3.9], best=1.0) is None
  assert rule.reason(16, [4.0], best=1.0) == stopping.RATIO
  assert rule.reason(64, [1.0], best=1.0) == stopping.MAX_STEPS
  assert rule.reason(16, [9.0], best=-1.0) is None  # no ratio where the best photo is <= 0
  plateau = stopping.StopRule(max_steps=128, every=16, until_plateau=0.1, plateau_window=32)
  # gain over the last 2 checks: (10.5 - 10) / 10 = 5% < 10%; (12 - 10) / 10 = 20%
  assert plateau.reason(48, [5.0, 10.0, 10.2, 10.5], best=None) == stopping.PLATEAU
  assert plateau.reason(48, [5.0, 10.0, 11.0, 12.0], best=None) is None
  assert plateau.reason(16, [1.0], best=None) is None  # not a window of history yet
  assert stopping.check_interval(256, 16) == 16
  assert stopping.check_interval(100, 16) == 10
  with pytest.raises(stopping.StopRuleError, match="must divide"):
    stopping.StopRule(max_steps=100, every=16)
  with pytest.raises(stopping.StopRuleError, match="above 0"):
    stopping.StopRule(max_steps=64, every=16, until_ratio=float("nan"))


def test_per_slot_redirect_is_each_items_scalar_rule():
  x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 4, 2)), jnp.float32)
  x = x.at[1].set(-jnp.abs(x[1]))  # a dead item: the redirected rule differs from ReLU's there

  def grad(active):
    return jax.grad(
      lambda v: jnp.sum(nonlin.redirected_relu(v, active) * (-1.0 - jnp.arange(2.0)))
    )(x)

  per_slot = grad(jnp.asarray([True, False, True]))
  on, off = grad(jnp.asarray(True)), grad(jnp.asarray(False))
  np.testing.assert_array_equal(per_slot[0], on[0])
  np.testing.assert_array_equal(per_slot[1], off[1])
  np.testing.assert_array_equal(per_slot[2], on[2])
  assert not np.array_equal(on[1], off[1])


def test_per_slot_transform_draws_are_each_images_own_step():
  images = jnp.asarray(np.random.default_rng(2).random((3, 20, 20, 3)), jnp.float32)
  keys = jax.random.split(jax.random.key(0), 3)
  plan = program.Plan(
    layers=(), param=None, size=(20, 20), batch=3, channels=3, transforms=tf_lib.standard(),
    shared_draws=False, optimizer=0.05, redirect_relu_steps=0, chunk=1, input_size=None,
    compute_dtype=None, rewrites=frozenset(), per_slot=True,
  )  # fmt: skip
  draw = jax.jit(lambda step: program.transform(plan, keys, None, step, images))
  per_slot = draw(jnp.asarray([0, 5, 17], jnp.int32))
  for i, t in enumerate([0, 5, 17]):
    alone = draw(jnp.asarray(t, jnp.int32))
    np.testing.assert_array_equal(per_slot[i], alone[i])


def test_units_that_run_to_the_limit_are_the_fixed_sweeps_images(tmp_path):
  sweep.sweep(MODEL, ["conv3"], out=tmp_path / "fixed", batch=4, **FAST)
  # a plateau test that never fires (a window longer than the run): every unit runs 64 steps
  sweep.sweep(
    MODEL, ["conv3"], out=tmp_path / "cont", batch=4, until_plateau=1e-9, plateau_window=999,
    **FAST,
  )  # fmt: skip
  rows = S.Store(tmp_path / "cont").rows()
  assert {r["steps"] for r in rows.values()} == {64}
  assert {r["stopped"] for r in rows.values()} == {stopping.MAX_STEPS}
  assert _pngs(tmp_path / "fixed", "conv3", range(8)) == _pngs(tmp_path / "cont", "conv3", range(8))


@pytest.mark.parametrize("serial", [True, False], ids=["serial-slots", "batched-tail-moves"])
def test_a_units_image_and_steps_do_not_depend_on_the_schedule(
  tmp_path, photos, monkeypatch, serial
):
  if not serial:  # the accelerators' way: the whole batch runs, the tail moves to smaller ones
    monkeypatch.setattr(continuous, "SERIAL_PLATFORMS", frozenset())
    # the tiny model compiles in well under a second, and its tail moves would not pay: make them
    monkeypatch.setattr(continuous, "move_pays", lambda *args: True)
  run = dict(FAST, until_ratio=1.0, dataset=photos)
  sweep.sweep(MODEL, ["conv3"], out=tmp_path / "b3", batch=3, **run)
  sweep.sweep(MODEL, ["conv3"], out=tmp_path / "b2", batch=2, **run)
  # in two runs, the second resuming the first: other neighbours, other slots
  sweep.sweep(MODEL, ["conv3"], out=tmp_path / "parts", batch=4, units="5-7", **run)
  sweep.sweep(MODEL, ["conv3"], out=tmp_path / "parts", batch=4, **run)
  rows = {name: S.Store(tmp_path / name).rows() for name in ("b3", "b2", "parts")}
  steps = {name: [r[("conv3", u)]["steps"] for u in range(8)] for name, r in rows.items()}
  assert steps["b3"] == steps["b2"] == steps["parts"]
  assert len(set(steps["b3"])) > 1  # units stopped at different steps: slots were refilled
  # serial slots never move (an idle slot costs nothing); batched ones move to smaller batches
  assert ({r["batch"] for r in rows["b3"].values()} == {3}) == serial
  for r in rows["b3"].values():  # each stopped at its first check at or above the ratio
    assert (r["stopped"] == stopping.RATIO) == (r["ratio"] >= 1.0)
    assert r["stopped"] == stopping.RATIO or r["steps"] == 64
  images = {name: _pngs(tmp_path / name, "conv3", range(8)) for name in rows}
  assert images["b3"] == images["b2"] == images["parts"]
  assert sweep.check(tmp_path / "parts") == []


def test_until_ratio_without_photos_is_refused_before_any_file(tmp_path):
  with pytest.raises(stopping.StopRuleError, match="dataset"):
    sweep.sweep(MODEL, ["conv3"], out=tmp_path / "s", until_ratio=2.0, **FAST)
  assert not (tmp_path / "s").exists()


def test_a_resume_with_another_rule_is_refused(tmp_path):
  sweep.sweep(MODEL, ["conv3"], out=tmp_path, batch=4, units="0-1", until_plateau=0.5, **FAST)
  with pytest.raises(S.SettingsMismatchError, match="until_plateau"):
    sweep.sweep(MODEL, ["conv3"], out=tmp_path, batch=4, until_plateau=0.1, **FAST)
  with pytest.raises(S.SettingsMismatchError, match="stop"):
    sweep.sweep(MODEL, ["conv3"], out=tmp_path, batch=4, **FAST)


def test_shared_transform_draws_are_refused(tmp_path):
  with pytest.raises(ConfigError, match="standard"):
    sweep.sweep(
      MODEL, ["conv3"], out=tmp_path / "s", until_plateau=0.1, **dict(FAST, transforms="shared")
    )
  assert not (tmp_path / "s").exists()


def test_a_unit_that_goes_non_finite_is_recorded_and_its_slot_takes_the_next(tmp_path):
  weights = {k: dict(v) for k, v in MODEL.weights.items()}
  bias = np.array(weights["conv3"]["b"])
  bias[2] = np.inf  # channel 2 alone is inf; the others' scores and gradients stay finite
  weights["conv3"]["b"] = bias
  broken = MODEL.replace(weights=weights)
  summary = sweep.sweep(broken, ["conv3"], out=tmp_path, batch=3, until_plateau=0.5, **FAST)
  assert [(f["layer"], f["units"], f["step"]) for f in summary["failed"]] == [("conv3", [2], 0)]
  assert sorted(u for _, u in S.Store(tmp_path).rows()) == [0, 1, 3, 4, 5, 6, 7]
  assert sweep.check(tmp_path) == []


def test_the_tail_ladder_is_the_smallest_halving_that_holds_the_busy_slots():
  # (slots, busy, devices) -> size: halvings of 8 rounded up to the device count
  cases = {(8, 1, 1): 1, (8, 2, 1): 2, (8, 3, 1): 4, (8, 5, 1): 8, (8, 3, 2): 4, (8, 1, 2): 2,
           (6, 1, 2): 2, (6, 3, 2): 4, (8, 1, 8): 8}  # fmt: skip
  for (n, busy, devices), size in cases.items():
    assert continuous._tail_batch(n, busy, devices) == size, (n, busy, devices)


def test_a_tail_move_is_made_when_the_idle_share_saves_more_than_the_compile():
  # 8 -> 2 slots at 0.134 s/step (EfficientNet-Lite0 block10, 2 CPU devices), 156 steps left:
  # 0.75 * 0.134 * 156 = 15.7 s saved, against a 16 s compile (no move) or a compiled size (move)
  assert not continuous.move_pays(8, 2, 0.134, 156, 16.0)
  assert continuous.move_pays(8, 2, 0.134, 156, 15.0)
  assert continuous.move_pays(8, 2, 0.134, 156, 0.0)
  assert not continuous.move_pays(8, 8, 0.134, 156, 0.0)  # nothing idle, nothing saved


def _slot_programs(serial: bool, n: int = 3):
  """The chunk program of ``n`` slots of tiny_cnn conv3 (one device), its arguments and a
  fresh state, with serial slots or the whole batch."""
  from featviz import objectives
  from featviz._loop import keys as keys_lib
  from featviz._loop.config import RenderConfig

  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
  config = RenderConfig(size=24, steps=32, chunk=8, transforms="none")
  plan, bound = continuous._plan(MODEL, "conv3", config, mesh, n)
  plan = dataclasses.replace(plan, serial=serial)
  chunk, _ = program.compiled_chunk(plan, MODEL, bound)
  init, _ = program.compiled_setup(plan, "init")
  units = np.arange(n, dtype=np.int32) + 2
  objective = jax.tree.map(
    program.canonical, objectives.channel("conv3", units).bind(MODEL.spec, n)
  )
  k_init, k_steps = keys_lib.derive_first(jax.random.key(0), [f"conv3:{u}" for u in units])
  state = init(jax.device_put(k_init, plan.batch_sharding))
  return lambda start: chunk(MODEL, objective, k_steps, jax.random.key(1), state, start), state


def test_a_serial_slot_runs_the_batched_programs_steps_and_an_idle_one_is_untouched():
  serial, state = _slot_programs(True)
  batched, _ = _slot_programs(False)
  start = np.asarray([0, -1, 8], np.int32)  # slot 1 idle; slots 0 and 2 at their own steps
  (new, _, bad, _), rows = serial(start)
  (reference, _, _, _), reference_rows = batched(np.maximum(start, 0))
  for a, b, before in zip(
    jax.tree.leaves(new), jax.tree.leaves(reference), jax.tree.leaves(state[0])
  ):
    a, b, before = np.asarray(a), np.asarray(b), np.asarray(before)
    np.testing.assert_allclose(a[[0, 2]], b[[0, 2]], rtol=1e-5, atol=1e-6)  # batched rounding
    np.testing.assert_array_equal(a[1], before[1])  # the idle slot: its state as it came in
  np.testing.assert_allclose(
    np.asarray(rows)[:, [0, 2]], np.asarray(reference_rows)[:, [0, 2]], rtol=1e-5
  )
  np.testing.assert_array_equal(np.asarray(rows)[:, 1], 0.0)
  assert np.asarray(bad).tolist() == [-1, -1, -1]


def test_balancing_spreads_the_busy_slots_over_the_devices():
  assert continuous.balanced([True] * 8, 2) is None  # all busy
  assert continuous.balanced([True, False, False, False, True, False, False, False], 2) is None
  assert continuous.balanced([True, True, True, False], 2) is None  # 2 and 1: as even as 3 goes
  order = continuous.balanced([False, False, False, False, True, True, False, False], 2)
  assert sorted(order) == list(range(8))  # a permutation
  assert order[0] in (4, 5) and order[4] in (4, 5)  # one busy slot at the head of each device
  # 4 devices of 2 slots: the busiest holds 2 of 5 busy slots, as few as 5 over 4 allows
  assert continuous.balanced([True, True, True, True, False, False, False, True], 4) is None
  order = continuous.balanced([True, True, True, True, False, False, False, False], 4)
  assert [int(order[d * 2]) for d in range(4)] == [0, 1, 2, 3]  # one busy slot per device
  assert sorted(int(order[d * 2 + 1]) for d in range(4)) == [4, 5, 6, 7]
  assert continuous.balanced([False, True], 1) is None  # one device: nothing to spread
