"""The command line: the render job on a real model, and every bad-input case (exit 2,
a message naming the problem and the choices, nothing written)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from featviz.cli import main, spec_grammar


def run(capsys, *argv):
  try:
    code = main(list(argv))
  except SystemExit as e:  # argparse's own refusals (a bad type or choice) exit 2 themselves
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def files_under(path: pathlib.Path):
  return sorted(p.relative_to(path) for p in path.rglob("*"))


@pytest.fixture()
def out_dir(tmp_path, featviz_home):
  d = tmp_path / "out"
  d.mkdir()
  return d


def test_render_mnist_writes_grid_and_one_png_per_image(capsys, out_dir):
  out = out_dir / "digits.png"
  code, stdout, _ = run(
    capsys,
    "render",
    "mnist_cnn",
    "logit:3-5",
    "--steps",
    "20",
    "--size",
    "28",
    "--tv",
    "0.01",
    "--no-progress",
    "--out",
    str(out),
  )
  assert code == 0, stdout
  grid = Image.open(out)
  grid.load()
  assert grid.size[0] > 3 * 28
  singles = sorted((out_dir / "digits_images").glob("*.png"))
  assert [p.name for p in singles] == ["0000_logit_3.png", "0001_logit_4.png", "0002_logit_5.png"]
  assert np.asarray(Image.open(singles[0])).shape == (28, 28)  # greyscale model, greyscale PNG
  assert "wrote" in stdout


def test_render_kernels_pallas_matches_xla(capsys, out_dir):
  """``--kernels pallas`` (interpreted on CPU) renders what ``--kernels xla`` renders."""
  pngs = {}
  for impl in ("xla", "pallas"):
    out = out_dir / f"{impl}.png"
    code, stdout, _ = run(
      capsys,
      "render",
      "mnist_cnn",
      "logit:3",
      "--steps",
      "4",
      "--size",
      "32",
      "--kernels",
      impl,
      "--no-progress",
      "--out",
      str(out),
    )
    assert code == 0, stdout
    pngs[impl] = np.asarray(Image.open(out_dir / f"{impl}_images" / "0000_logit_3.png"), float)
  # Same draws and maths; float32 rounding can move a pixel by one 8-bit level at most.
  assert np.abs(pngs["pallas"] - pngs["xla"]).max() <= 1


@pytest.mark.parametrize(
  "argv,needle",
  [
    (["render", "no_such_model", "a:1"], "mnist_cnn, inceptionv1, efficientnet_lite0"),
    (["render", "mnist_cnn", "conv9:1"], "valid layers: conv1"),
    (["render", "mnist_cnn", "conv1:99"], "valid units are 0-"),
    (["render", "mnist_cnn", "logit:12"], "valid 0-9"),
    (["render", "mnist_cnn", "conv1:1+*2"], "the grammar is"),
    (["render", "mnist_cnn", "conv1:5-2"], "smaller unit first"),
    (["render", "mnist_cnn", "conv1:1", "--steps", "0"], "--steps must be an integer from 1"),
    (["render", "mnist_cnn", "conv1:1", "--lr", "nan"], "--lr: 'nan' is not a finite number"),
    (["render", "mnist_cnn", "conv1:1", "--tv", "inf"], "--tv: 'inf' is not a finite number"),
    (
      ["render", "mnist_cnn", "conv1:1", "--size", "20000"],
      "--size must be an integer from 1 to 4096",
    ),
    (["render", "mnist_cnn", "conv1:1", "--batch", "0"], "--batch must be a positive integer"),
    (["zoo", "info", "resnet"], "the zoo has"),
  ],
)
def test_bad_input_exits_2_with_a_useful_message_and_writes_nothing(capsys, out_dir, argv, needle):
  code, _, err = run(
    capsys, *argv, *(["--out", str(out_dir / "x.png")] if argv[0] == "render" else [])
  )
  assert code == 2
  assert needle in err
  assert files_under(out_dir) == []


def test_output_that_cannot_be_written(capsys, out_dir):
  locked = out_dir / "locked"
  locked.mkdir()
  locked.chmod(0o500)
  try:
    if os.access(locked, os.W_OK):
      pytest.skip("running as a user who can write anywhere (root)")
    code, _, err = run(capsys, "render", "mnist_cnn", "conv1:1", "--out", str(locked / "x.png"))
    assert code == 2 and "cannot be written" in err
  finally:
    locked.chmod(0o700)


def test_output_must_be_a_png_file(capsys, out_dir):
  code, _, err = run(capsys, "render", "mnist_cnn", "conv1:1", "--out", str(out_dir))
  assert code == 2 and "must end in .png" in err
  code, _, err = run(capsys, "render", "mnist_cnn", "conv1:1", "--out", "/proc/featviz/x.png")
  assert code == 2 and "cannot create the folder" in err


def test_zoo_list_and_info(capsys):
  code, out, _ = run(capsys, "zoo", "list")
  assert code == 0 and "efficientnet_lite0" in out and "mnist_cnn" in out
  code, out, _ = run(capsys, "zoo", "info", "mnist_cnn")
  assert code == 0 and "conv1" in out and "logits" in out


def test_installed_console_script_runs():
  exe = pathlib.Path(sys.executable).with_name("featviz")
  result = subprocess.run([str(exe), "zoo", "list"], capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and "inceptionv1" in result.stdout


@pytest.mark.parametrize(
  "text,labels",
  [
    ("mixed4a:476", ["mixed4a:476"]),
    ("block10:0-3", ["block10:0", "block10:1", "block10:2", "block10:3"]),
    ("conv2:5@3,4", ["conv2:5@3,4"]),
    ("0.5*a:1+0.5*a:2", ["0.5*a:1 + 0.5*a:2"]),
    ("logit:1-0.2*logit:7", ["logit:1 - 0.2*logit:7"]),
    ("deepdream:block5", ["deepdream:block5"]),
    ("logit:0-2", ["logit:0", "logit:1", "logit:2"]),
    ("logit:goldfish", ["logit:goldfish"]),
    ('logit:"great white shark"', ["logit:great white shark"]),
    ("a:0-1-a:2-3", ["a:0 - a:2", "a:1 - a:3"]),
    ("a:1-2*a:3", ["a:1 - 2*a:3"]),
  ],
)
def test_spec_grammar(text, labels):
  objective = spec_grammar.parse(text)
  assert objective.labels(len(labels)) == labels


@pytest.mark.parametrize("text", ["", "a", "a:", ":1", "a:1 b:2", "2*", "a:1++a:2", "logit:"])
def test_spec_grammar_rejects(text):
  with pytest.raises(spec_grammar.SpecError, match="grammar"):
    spec_grammar.parse(text)


def test_written_files_get_normal_permissions(tmp_path):
  from featviz import images

  mask = os.umask(0o022)
  try:
    path = images.save_png(np.zeros((2, 2, 3)), tmp_path / "x.png")
  finally:
    os.umask(mask)
  assert (path.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize(
  "text,layer",
  [
    ("layer3.5:2", "layer3.5"),
    ("features.29:0", "features.29"),
    ("Block_0/Conv_1:3", "Block_0/Conv_1"),
    ("encoder.layers.encoder_layer_5:1@0", "encoder.layers.encoder_layer_5"),
  ],
)
def test_spec_layers_are_module_paths(text, layer):
  """torchvision names its layers by module path with "." and flax with "/" (issues 13, 14)."""
  assert spec_grammar.parse(text).layers == frozenset([layer])
