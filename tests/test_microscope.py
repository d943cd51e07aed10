"""``featviz microscope`` (sweep + gallery in one folder, resumable), the sweep's stopping flags,
and the gallery's steps and stop reasons (issue 20).

One module-scoped Microscope of tests/tiny_cnn.py (a conv layer and the flat logits, 4 fixed
steps, no transforms, 24 px: the continuous scheduler's own tests render the stopping rules)
serves the site tests;
the flag tests stop before anything renders, and the page tests write stores directly.
"""

import contextlib
import io
import pathlib

import numpy as np
import pytest
from PIL import Image

from featviz import cli, gallery, images
from featviz._sweep import run as sweep_run
from featviz._sweep import store as S
from featviz.cli import build_parser, cmd_sweep
from featviz.gallery.build import STORE_DIR

import tiny_cnn

TESTS = pathlib.Path(__file__).parent
SOURCE = f"{TESTS / 'tiny_cnn.py'}:make"  # FILE.py:FUNCTION, as a user's own model
LAYERS = ("conv2", "logits")  # 6 and 5 channels
FAST = ["--size", "24", "--transforms", "none", "--batch", "4", "--top", "2", "--no-progress"]


def _main(*args):
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = cli.main([str(a) for a in args])
  return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(4):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(folder / f"p{i}.png")
  return folder


@pytest.fixture(scope="module")
def microscope(tmp_path_factory, photos):
  """``(site, the first run's (code, stdout, stderr), its index rows)``."""
  site = tmp_path_factory.mktemp("micro") / "site"
  args = ["microscope", SOURCE, "--dataset", photos, "--out", site, "--max-steps", "4"]
  args += ["--layers", ",".join(LAYERS)]
  first = _main(*args, "--until-ratio", "off", *FAST)
  return site, args, first, S.Store(site / STORE_DIR).rows()


def test_microscope_builds_a_site_with_a_page_per_layer(microscope):
  site, _, (code, out, err), rows = microscope
  assert code == 0, err
  assert (site / "index.html").is_file() and (site / "sweep" / "manifest.json").is_file()
  for layer in LAYERS:  # every layer asked for, every unit
    channels = tiny_cnn.LAYERS[layer]
    assert (site / "tiny_cnn" / layer / "index.html").is_file()
    assert len(list((site / "tiny_cnn" / layer).glob("[0-9]*.html"))) == channels
    assert sum(k[0] == layer for k in rows) == channels
  assert all(r["steps"] == 4 and "ratio" in r for r in rows.values())
  assert not (site / "tiny_cnn" / "conv1").exists()
  assert "11 units of 1 sweep" in out and f"its sweep store {site}/sweep/" in out
  assert "gallery: writing" in err and "scanning 4 photos" in err


def test_a_second_run_renders_nothing_new_and_rebuilds(microscope):
  site, args, _, rows = microscope
  code, out, err = _main(*args, "--until-ratio", "off", *FAST)
  assert code == 0, err
  assert S.Store(site / "sweep").rows() == rows  # each row keeps its `finished` time
  assert "wrote 0 files" in out


def test_a_site_folder_holding_other_files_is_refused_before_rendering(tmp_path):
  (tmp_path / "notes.txt").write_text("mine")
  code, _, err = _main("microscope", SOURCE, "--out", tmp_path, "--steps", "4", *FAST)
  assert code == 2 and "holds files the gallery did not write ('notes.txt')" in err
  assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# ----------------------------------------------------------------------------- stopping flags


@pytest.mark.parametrize("command", ["sweep", "microscope"])
def test_until_ratio_without_a_dataset_exits_2_naming_dataset(tmp_path, command):
  layers = ["--layers", "conv1"]
  code, _, err = _main(command, SOURCE, *layers, "--until-ratio", "2", "--out", tmp_path / "o")
  assert code == 2 and "--until-ratio 2 needs --dataset DIR" in err
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
  "flags, message",
  [
    (["--max-steps", "64", "--steps", "128"], "--max-steps 64 and --steps 128 both set"),
    (["--plateau-window", "8"], "--plateau-window 8 goes with --until-plateau"),
  ],
)
def test_stopping_flags_that_do_not_go_together_exit_2(tmp_path, flags, message):
  code, _, err = _main("sweep", SOURCE, "--layers", "conv1", *flags, "--out", tmp_path / "o")
  assert code == 2 and message in err


def _stopping(command, *flags):
  args = build_parser().parse_args([command, SOURCE, "--out", "x", *flags])
  defaults = (4.0, 256) if command == "microscope" else None
  config, stopping = cmd_sweep.stopping_from(args, defaults)
  return config.steps, stopping


def test_microscope_defaults_are_issue_20s_with_a_dataset_only():
  with_data = ["--dataset", "photos"]
  assert _stopping("microscope", *with_data) == (256, {"until_ratio": 4.0})
  assert _stopping("microscope") == (512, {})  # Lucid's steps, no rule
  assert _stopping("microscope", *with_data, "--until-ratio", "off") == (256, {})
  assert _stopping("microscope", *with_data, "--steps", "128") == (128, {"until_ratio": 4.0})
  assert _stopping("sweep", "--layers", "a", *with_data) == (512, {})  # sweep: none by default
  assert _stopping("sweep", "--layers", "a", "--until-plateau", "0.01", "--max-steps", "96") == (
    96,
    {"until_plateau": 0.01},
  )
  assert _stopping("sweep", "--layers", "a", "--until-plateau", "0.01", "--plateau-window", "32")[
    1
  ] == {"until_plateau": 0.01, "plateau_window": 32}


def test_the_sweep_command_passes_only_the_rules_given(tmp_path, monkeypatch):
  calls = []

  def fake(model, layers, config, **kwargs):
    calls.append((config.steps, kwargs))
    return {"layers": {}, "failed": []}

  monkeypatch.setattr(sweep_run, "sweep", fake)
  base = ["sweep", SOURCE, "--layers", "conv1", "--out", tmp_path]
  assert _main(*base)[0] == 0
  assert _main(*base, "--until-plateau", "0.05", "--max-steps", "32")[0] == 0
  (steps0, plain), (steps1, ruled) = calls
  assert steps0 == 512 and not {"until_ratio", "until_plateau", "plateau_window"} & set(plain)
  assert steps1 == 32 and ruled["until_plateau"] == 0.05 and "plateau_window" not in ruled


# ----------------------------------------------------------------------------- gallery pages


def _store(root, extra):
  """A store of one conv1 layer (4 random PNGs); ``extra(u)`` adds fields to unit u's row."""
  store = S.Store(root)
  store.open(
    {
      "format": S.FORMAT,
      "model": "tiny",
      "weights_sha256": "ab" * 32,
      "featviz_version": "0.1.0",
      "settings": {"steps": 256},
      "dataset": None,
      "layers": {"conv1": 4},
      "created": "2026-01-01T00:00:00+00:00",
    }
  )
  rng = np.random.default_rng(0)
  rows = [
    {"layer": "conv1", "unit": u, "png": f"conv1/{u:04d}.png", "final": 1.0, "steps": 256}
    | extra(u)
    for u in range(4)
  ]
  store.commit("conv1", 0, {u: rng.uniform(size=(8, 8, 3)) for u in range(4)}, rows)
  return root


def test_the_gallery_shows_each_units_steps_and_why_it_stopped(tmp_path):
  store = _store(tmp_path / "store", lambda u: {"steps": 32 * (u + 1), "stopped": "ratio"})
  gallery.build(store, tmp_path / "site")
  layer = tmp_path / "site" / "tiny" / "conv1"
  unit = (layer / "0002.html").read_text()
  assert "<tr><th>steps taken</th><td>96</td></tr>" in unit
  assert "<tr><th>stopped</th><td>ratio: its ratio reached --until-ratio</td></tr>" in unit
  page = (layer / "index.html").read_text()
  assert 'title="96 steps, stopped: ratio"' in page
  assert "steps median 80 (stopped by ratio 4)" in page  # median of 32, 64, 96, 128


def test_an_older_store_without_stop_reasons_still_builds(tmp_path):
  store = _store(tmp_path / "store", lambda u: {})
  assert gallery.build(store, tmp_path / "site").units == 4
  unit = (tmp_path / "site" / "tiny" / "conv1" / "0000.html").read_text()
  assert "<th>steps taken</th><td>256</td>" in unit and "<th>stopped</th>" not in unit


def test_a_stop_reason_that_is_not_text_is_refused(tmp_path):
  store = _store(tmp_path / "store", lambda u: {"stopped": 7} if u == 1 else {})
  with pytest.raises(gallery.NotASweepError, match="conv1:1 has stopped = 7"):
    gallery.build(store, tmp_path / "site")


def test_no_model_folder_takes_the_store_folders_name(tmp_path):
  store = _store(tmp_path / "store", lambda u: {})
  sweep = gallery.read_sweep(store)
  sweep.manifest["model"] = "sweep"
  gallery.build(sweep, tmp_path / "site")
  assert sweep.slug == "sweep-2" and images.safe_name("sweep") == STORE_DIR
