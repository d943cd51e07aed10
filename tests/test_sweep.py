"""Sweep: one compile per layer, resume, refusal of other settings, quality, SIGKILL."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

import featviz
from featviz import cli, objectives, photos
from featviz._loop import api as render
from featviz._loop import program
from featviz._sweep import quality as sweep_quality
from featviz._sweep import run as sweep
from featviz._sweep import store as S
from featviz.cli import cmd_sweep

import tiny_cnn

MODEL = tiny_cnn.make()
# No transforms and few steps: the standard preset's resampling takes seconds to compile on CPU
# (tests/test_render.py); test_sweep_multidevice.py runs the standard preset.
FAST = dict(batch=4, steps=4, size=24, transforms="none", progress_bar=False)
TESTS = pathlib.Path(__file__).parent


def _png_bytes(out, layer, unit) -> bytes:
  return (pathlib.Path(out) / layer / f"{unit:04d}.png").read_bytes()


def test_one_compile_per_layer_with_a_padded_last_chunk(tmp_path):
  before = program.trace_count()
  # steps=5 is used by no other test, so both layers compile here: conv2 has 6 channels
  # (chunks of 4 + 2, the second padded), conv3 8 (4 + 4).
  summary = sweep.sweep(MODEL, ["conv3", "conv2"], out=tmp_path, **dict(FAST, steps=5))
  assert program.trace_count() - before == 2
  rows = S.Store(tmp_path).rows()
  assert sorted(rows) == [("conv2", u) for u in range(6)] + [("conv3", u) for u in range(8)]
  assert [rows[("conv2", u)]["slot"] for u in range(6)] == [0, 1, 2, 3, 0, 1]
  assert sweep.check(tmp_path) == []
  assert list(summary["layers"]) == ["conv2", "conv3"]  # forward order
  assert summary["layers"]["conv2"] == {
    "units": 6,
    "done": 6,
    "final_median": summary["layers"]["conv2"]["final_median"],
    "steps_median": 5.0,
  }
  assert json.loads((tmp_path / "summary.json").read_text())["layers"] == summary["layers"]
  for layer in ("conv2", "conv3"):
    with Image.open(tmp_path / f"{layer}_atlas.png") as im:
      assert im.size[0] > 96
    with Image.open(tmp_path / layer / "0001.png") as im:
      assert im.size == (24, 24)


def test_rerun_renders_only_missing_units_and_images_do_not_depend_on_the_range(
  tmp_path, monkeypatch
):
  rendered = []
  real = sweep.render_chunk

  def spy(model, chunk, todo, *args):
    rendered.append((chunk.layer, tuple(todo)))
    return real(model, chunk, todo, *args)

  monkeypatch.setattr(sweep, "render_chunk", spy)
  part = tmp_path / "part"
  sweep.sweep(MODEL, ["conv3"], out=part, units="1-2", **FAST)
  first = S.Store(part).rows()
  sweep.sweep(MODEL, ["conv3"], out=part, units=(0, 8), **FAST)
  sweep.sweep(MODEL, ["conv3"], out=part, **FAST)
  assert rendered == [("conv3", (1, 2)), ("conv3", (0, 3)), ("conv3", (4, 5, 6, 7))]
  rows = S.Store(part).rows()
  assert all(rows[k] == first[k] for k in first)  # done rows were not touched
  whole = tmp_path / "whole"
  sweep.sweep(MODEL, ["conv3"], out=whole, **FAST)
  for unit in range(8):  # unit u sits in slot u % batch either way: same image
    assert _png_bytes(part, "conv3", unit) == _png_bytes(whole, "conv3", unit)
  assert sweep.check(part) == []


def _cli(monkeypatch, capsys, *args):
  monkeypatch.setattr(cmd_sweep, "load_model", lambda args: MODEL)
  code = cli.main(
    [
      "sweep",
      "tiny_cnn",
      "--no-progress",
      "--transforms",
      "none",
      "--size",
      "24",
      "--batch",
      "4",
      *args,
    ]
  )
  out, err = capsys.readouterr()
  return code, out, err


def test_cli_resumes_and_refuses_other_settings_with_exit_2(tmp_path, monkeypatch, capsys):
  base = ["--layers", "conv1", "--steps", "4", "--out", str(tmp_path)]
  code, out, _ = _cli(monkeypatch, capsys, *base)
  assert code == 0 and "conv1" in out and "4/4" in out
  code, out, _ = _cli(monkeypatch, capsys, *base)  # the same command: nothing to do, fine
  assert code == 0
  code, _, err = _cli(
    monkeypatch, capsys, "--layers", "conv1", "--steps", "6", "--seed", "2", "--out", str(tmp_path)
  )
  assert code == 2
  assert "settings.config.steps: store has 4, this run asks 6" in err
  assert "settings.seed: store has 0, this run asks 2" in err
  assert "settings.config.size" not in err


@pytest.mark.parametrize(
  "args, message",
  [
    (["--layers", "conv1", "--units", "9-11"], "past the last channel"),
    (["--layers", "conv1", "--units", "0:3"], "for Python's 0:3 write 0-2"),
    (["--layers", "nope"], "unknown layer 'nope'"),
    (["--layers", "conv1", "--share", "2/2"], "need 0 <= I < N"),
    (["--layers", "conv1", "--dataset", "/nonexistent"], "does not exist"),
  ],
)
def test_cli_bad_input_exits_2(tmp_path, monkeypatch, capsys, args, message):
  code, _, err = _cli(monkeypatch, capsys, *args, "--steps", "4", "--out", str(tmp_path))
  assert code == 2 and message in err


# ----------------------------------------------------------------------------- quality


def test_channel_means_are_the_channel_objective_on_untransformed_images():
  images = np.random.default_rng(0).uniform(size=(5, 20, 20, 3)).astype(np.float32)
  means = sweep_quality.channel_means(MODEL, ["conv3", "conv2"], images, batch=4)
  assert means["conv2"].shape == (5, 6) and means["conv3"].shape == (5, 8)
  for layer, n in (("conv2", 6), ("conv3", 8)):
    for unit in range(n):
      expected = render.score_images(MODEL, objectives.channel(layer, unit), images)
      np.testing.assert_allclose(means[layer][:, unit], expected, rtol=1e-5, atol=1e-6)


def test_photos_are_resized_by_the_shorter_side_and_centre_cropped(tmp_path):
  photo = np.zeros((30, 90, 3), np.uint8)  # landscape: red | green | blue thirds
  photo[:, :30, 0] = photo[:, 30:60, 1] = photo[:, 60:, 2] = 255
  Image.fromarray(photo).save(tmp_path / "wide.png")
  x = photos.load_image(tmp_path / "wide.png", 12, 3)
  assert x.shape == (12, 12, 3) and x.dtype == np.float32
  np.testing.assert_allclose(x[:, 1:-1], np.broadcast_to([0.0, 1.0, 0.0], (12, 10, 3)), atol=0.02)
  assert photos.load_image(tmp_path / "wide.png", 12, 1).shape == (12, 12, 1)


def test_dataset_best_names_the_photo_with_the_highest_mean(tmp_path):
  rng = np.random.default_rng(1)
  for i in range(5):
    Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), np.uint8)).save(tmp_path / f"{i}.png")
  (tmp_path / "notes.txt").write_text("not an image")
  best = sweep_quality.dataset_best(MODEL, ["conv3"], tmp_path, 16, batch=4)
  top, names = best["conv3"]
  images = np.stack([photos.load_image(tmp_path / f"{i}.png", 16, 3) for i in range(5)])
  means = sweep_quality.channel_means(MODEL, ["conv3"], images)["conv3"]
  np.testing.assert_allclose(top, means.max(0), rtol=1e-6)
  assert names == [f"{i}.png" for i in means.argmax(0)]


def test_ratio_and_its_statistics():
  assert sweep_quality.ratio(3.0, 2.0) == 1.5
  assert sweep_quality.ratio(1.0, 0.0) is None and sweep_quality.ratio(-1.0, -2.0) is None
  stats = sweep_quality.ratio_stats([0.5, 2.0, None, 4.0])
  assert stats == {
    "units": 4,
    "with_ratio": 3,
    "min": 0.5,
    "median": 2.0,
    "max": 4.0,
    "above_1": pytest.approx(2 / 3),
  }
  assert sweep_quality.ratio_stats([None]) == {"units": 1, "with_ratio": 0}


def test_sweep_with_a_dataset_scores_every_unit(tmp_path, shared):
  photos = shared / "images" / "imagenet-sample"
  summary = sweep.sweep(MODEL, ["conv2"], out=tmp_path, dataset=photos, **FAST)
  rows = S.Store(tmp_path).rows()
  files = sweep_quality.dataset_files(photos)
  assert len(files) == 264  # shared/README.md: 264 ImageNet photos
  best = sweep_quality.dataset_best(MODEL, ["conv2"], photos, FAST["size"])["conv2"]
  for (_, unit), row in rows.items():
    assert row["dataset_max"] == pytest.approx(float(best[0][unit]), rel=1e-5)
    assert row["dataset_argmax"] == best[1][unit]
    assert row["ratio"] == pytest.approx(row["final"] / row["dataset_max"])
  ratio = summary["layers"]["conv2"]["ratio"]
  assert ratio["units"] == 6 and ratio["min"] <= ratio["median"] <= ratio["max"]
  manifest = json.loads((tmp_path / S.MANIFEST).read_text())
  assert manifest["dataset"]["files"] == 264
  with pytest.raises(S.SettingsMismatchError, match="dataset"):
    sweep.sweep(MODEL, ["conv2"], out=tmp_path, **FAST)  # the same store without the photos


# ----------------------------------------------------------------------------- SIGKILL

# Chunks of 2 units, 2000 steps: about 1 s per chunk on one CPU core, so the kill lands
# after the first commit and well before the fourth (measured: 0.8 to 1.1 s per chunk).
KILL = dict(batch=2, steps=2000, size=24, transforms="none")


def test_sigkill_mid_sweep_then_resume_leaves_every_unit_once(tmp_path):
  out = tmp_path / "store"
  script = textwrap.dedent(f"""
      import sys
      sys.path.insert(0, {str(TESTS)!r})
      import tiny_cnn
      from featviz._sweep import run as sweep
      sweep.sweep(tiny_cnn.make(), ["conv3"], out={str(out)!r}, progress_bar=False, **{KILL!r})
      """)
  # cwd=tmp_path: from the repo root, `python -c` would import the source folders.
  proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, cwd=tmp_path)
  index = out / S.INDEX / "conv3"
  deadline = time.monotonic() + 240
  try:
    while not list(index.glob("*.json")):
      assert proc.poll() is None, proc.stderr.read().decode()
      assert time.monotonic() < deadline, "no chunk committed in 240 s"
      time.sleep(0.02)
  finally:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  killed = S.Store(out)
  done = killed.rows()
  assert 0 < len(done) < 8, "the kill should land mid-sweep"
  # A row never lacks its PNG; a PNG may lack its row (killed between the two commit steps).
  assert all("has no index row" in p for p in killed.check())

  sweep.sweep(tiny_cnn.make(), ["conv3"], out=out, progress_bar=False, **KILL)
  rows = S.Store(out).rows()
  assert sorted(rows) == [("conv3", u) for u in range(8)]  # none missing
  files = [json.loads(f.read_text()) for f in sorted(index.glob("*.json"))]
  units = [r["unit"] for f in files for r in f["rows"]]
  assert sorted(units) == list(range(8))  # none duplicated across index files
  assert all(rows[k] == done[k] for k in done)  # committed units were not rendered again
  assert sweep.check(out) == []  # every PNG decodes (verify + load), index matches the files
  # Only the PNGs: temporary files of the killed writer were removed on resume.
  assert sorted(p.name for p in (out / "conv3").iterdir()) == [f"{u:04d}.png" for u in range(8)]
  assert not list(out.rglob("*.tmp"))


def test_a_sweep_writes_the_same_pngs_whatever_its_batch_and_resumes_with_another(
  tmp_path, monkeypatch, capsys
):
  """Per-image keys: a unit's image depends on (seed, layer, unit) only (featviz._loop.keys)."""
  common = ["--layers", "conv2", "--steps", "8", "--transforms", "standard"]
  for batch in ("2", "3"):
    code, _, err = _cli(
      monkeypatch, capsys, *common, "--batch", batch, "--out", str(tmp_path / batch)
    )
    assert code == 0, err
  units = range(MODEL.spec.layers["conv2"])
  assert [_png_bytes(tmp_path / "2", "conv2", u) for u in units] == [
    _png_bytes(tmp_path / "3", "conv2", u) for u in units
  ]
  # A resume with another batch is the same sweep: it renders what is missing, bitwise alike.
  part = tmp_path / "part"
  code, _, err = _cli(
    monkeypatch, capsys, *common, "--batch", "2", "--units", "0-2", "--out", str(part)
  )
  assert code == 0, err
  code, _, err = _cli(monkeypatch, capsys, *common, "--batch", "5", "--out", str(part))
  assert code == 0, err
  assert [_png_bytes(part, "conv2", u) for u in units] == [
    _png_bytes(tmp_path / "3", "conv2", u) for u in units
  ]


def test_a_bf16_sweep_runs_from_the_cli_and_its_manifest_records_the_whole_config(
  tmp_path, monkeypatch, capsys
):
  code, _, err = _cli(
    monkeypatch,
    capsys,
    "--layers",
    "conv1",
    "--steps",
    "4",
    "--compute-dtype",
    "bfloat16",
    "--out",
    str(tmp_path / "bf16"),
  )
  assert code == 0, err
  manifest = json.loads((tmp_path / "bf16" / S.MANIFEST).read_text())
  config = featviz.RenderConfig.from_dict(manifest["settings"]["config"])
  assert config == featviz.RenderConfig(
    steps=4, size=24, transforms="none", compute_dtype="bfloat16"
  )
  code, _, err = _cli(
    monkeypatch, capsys, "--layers", "conv1", "--steps", "4", "--out", str(tmp_path / "f32")
  )
  assert code == 0, err
  assert _png_bytes(tmp_path / "bf16", "conv1", 0) != _png_bytes(tmp_path / "f32", "conv1", 0)


def test_a_chunk_that_goes_non_finite_is_recorded_and_the_sweep_goes_on(tmp_path):
  weights = {k: dict(v) for k, v in MODEL.weights.items()}
  weights["conv3"]["b"] = np.full_like(weights["conv3"]["b"], np.inf)  # conv3 is inf, and so
  # are its scores from the first step
  broken = MODEL.replace(weights=weights)
  summary = sweep.sweep(broken, ["conv2", "conv3"], out=tmp_path, **FAST)
  assert summary["layers"]["conv2"]["done"] == 6  # the healthy layer is complete
  assert summary["layers"]["conv3"]["done"] == 0
  assert [(f["layer"], f["units"]) for f in summary["failed"]] == [
    ("conv3", [0, 1, 2, 3]),
    ("conv3", [4, 5, 6, 7]),
  ]
  assert all("non-finite at step 0" in f["error"] for f in summary["failed"])
  assert sweep.check(tmp_path) == []
