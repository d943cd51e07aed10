"""Snapshots (Lucid's thresholds): the images at chosen steps, from the one compiled chunk."""

import json
import pathlib

import numpy as np
import pytest
from PIL import Image

import featviz
from featviz import objectives as O
from featviz._loop import api as render
from featviz._loop import program
from featviz.cli import build_parser, main, render_flags
from featviz.cli.common import load_source

TINY = f"{pathlib.Path(__file__).with_name('tiny_cnn.py')}:make"
# Loaded as the CLI loads it, and rendered with the CLI test's settings (no transforms: the
# standard preset's resampling takes seconds to compile on CPU), so that every render of this
# file runs one compiled chunk program of 4 steps.
MODEL = load_source(TINY)
FAST = dict(size=16, progress_bar=False, transforms="none", seed=0, chunk=4)
OBJ = O.channel("conv3", np.arange(2))


def test_chunks_end_on_every_snapshot_with_one_length():
  lengths = render.snapshot_chunk_lengths
  assert lengths(512, (16, 64, 256)) == (16,) * 32  # gcd 16
  assert lengths(512, (100,)) == (4,) * 128  # gcd 4
  assert lengths(512, (37,)) == (1,) * 512  # gcd 1: short calls, still one program
  assert lengths(96, (64, 96)) == (32,) * 3  # gcd 32 = program.MAX_CHUNK
  assert lengths(512) == program.chunk_lengths(512)
  assert lengths(21, (5,), chunk=8) == (5, 8, 8)  # an explicit chunk restarts at a snapshot
  assert lengths(20, (4, 20), chunk=8) == (4, 8, 8)
  for steps, snaps, chunk in [(512, (16, 64, 256), None), (100, (30, 70), None), (21, (5,), 8)]:
    ends = set(np.cumsum(lengths(steps, snaps, chunk)).tolist())
    assert set(snaps) <= ends and max(ends) == steps


def test_snapshots_are_the_final_images_of_shorter_renders_and_change_nothing():
  """12 steps with snapshots at 4 and 8 against the same render without them, and against
  renders of 4 and 8 steps: bitwise. All in chunks of 4, so that the test compiles one chunk
  program (tests/test_render_chunks.py shows that the chunks never change the images)."""
  kw = dict(FAST, steps=12)
  plain = render.render(MODEL, OBJ, **kw)
  before = program.trace_count()
  shot = render.render(MODEL, OBJ, **kw, snapshots=(4, 8))
  np.testing.assert_array_equal(shot.images, plain.images)
  np.testing.assert_array_equal(shot.history, plain.history)
  assert list(shot.snapshots) == [4, 8, 12] and shot.snapshots[12] is shot.images
  for k in (4, 8):
    short = render.render(MODEL, OBJ, **dict(kw, steps=k))
    assert shot.snapshots[k].shape == (2, 16, 16, 3) and shot.snapshots[k].dtype == np.float32
    np.testing.assert_array_equal(shot.snapshots[k], short.images)
  # The images do move between snapshots (so that the checks above could fail).
  assert not np.array_equal(shot.snapshots[4], shot.snapshots[8])
  assert list(plain.snapshots) == [12] and plain.snapshots[12] is plain.images
  assert program.trace_count() == before  # the snapshots are the images program's, no other


@pytest.mark.parametrize(
  "snapshots, message",
  [
    ((0, 4), "from 1 to 24"),
    ((4, 25), "from 1 to 24"),
    ((12, 4), "increasing order"),
    ((4, 4), "each once"),
    ((4.0,), "from 1 to 24"),
    ((True,), "from 1 to 24"),
    (16, "a tuple such as"),
    ("16", "a tuple such as"),
  ],
)
def test_bad_snapshots_are_a_config_error_naming_the_range(snapshots, message):
  with pytest.raises(featviz.ConfigError, match=message):
    featviz.RenderConfig(steps=24, snapshots=snapshots)


def test_snapshots_round_trip_through_json():
  config = featviz.RenderConfig(steps=256, snapshots=[16, 64, 256])
  assert config.snapshots == (16, 64, 256)
  stored = json.loads(json.dumps(config.to_dict()))
  assert stored["snapshots"] == [16, 64, 256]
  assert featviz.RenderConfig.from_dict(stored) == config
  # Left out at its default: a sweep manifest written before the field still compares equal.
  assert "snapshots" not in featviz.RenderConfig().to_dict()


def test_cli_writes_snapshot_pngs_and_a_gif(capsys, tmp_path, featviz_home):
  out, gif = tmp_path / "r.png", tmp_path / "anim" / "r.gif"
  argv = ["render", TINY, "conv3:0-1", "--steps", "12", "--size", "16", "--transforms", "none"]
  argv += ["--snapshots", "4,8", "--gif", str(gif), "--no-progress", "--out", str(out)]
  assert main(argv) == 0, capsys.readouterr()
  folder = tmp_path / "r_images"
  assert sorted(p.name for p in folder.iterdir()) == [
    "0000_conv3_0.png",
    "0000_conv3_0_step04.png",
    "0000_conv3_0_step08.png",
    "0001_conv3_1.png",
    "0001_conv3_1_step04.png",
    "0001_conv3_1_step08.png",
  ]
  with Image.open(gif) as anim:
    assert anim.n_frames == 3 and anim.info["loop"] == 0  # steps 4, 8 and the final 12
  assert "3 frames" in capsys.readouterr().out
  assert not [p for p in gif.parent.iterdir() if p.suffix == ".tmp"]


def test_gif_alone_takes_a_frame_every_32_steps():
  def snapshots(*flags):
    args = build_parser().parse_args(["render", "m", "conv3:0", *flags])
    return render_flags.snapshots_of(args)

  assert snapshots("--gif", "a.gif") == tuple(range(32, 513, 32))  # Lucid's 512 steps: 16
  assert snapshots("--gif", "a.gif", "--steps", "100") == (32, 64, 96)  # and the final 100
  assert snapshots("--gif", "a.gif", "--steps", "5") == (1, 2, 3, 4, 5)
  assert snapshots("--gif", "a.gif", "--snapshots", "3,9") == (3, 9)
  assert snapshots() == ()


def test_cli_bad_snapshots_exit_2_and_write_nothing(capsys, tmp_path, featviz_home):
  bad = tmp_path / "bad"
  argv = ["render", TINY, "conv3:0", "--steps", "8", "--snapshots", "4,9", "--out", f"{bad}.png"]
  assert main(argv) == 2
  assert "--snapshots must be steps from 1 to 8" in capsys.readouterr().err
  argv = ["render", TINY, "conv3:0", "--snapshots", "4,x", "--out", f"{bad}.png"]
  with pytest.raises(SystemExit) as e:
    main(argv)
  assert e.value.code == 2 and "comma-separated list of steps" in capsys.readouterr().err
  assert not list(tmp_path.glob("bad*"))
