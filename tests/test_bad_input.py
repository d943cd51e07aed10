"""Issue 17's bad-input rows: each is refused with exit 2 and a message that names the problem and
the valid choices, before anything is compiled or written (red-team report, section 1)."""

import subprocess
import sys

import numpy as np
import pytest

from featviz import model as model_lib
from featviz import objectives as O
from featviz.cli import main, spec_grammar

R = ("render", "mnist_cnn", "--size", "28", "--steps", "4", "--no-progress")
CLI = "import sys; from featviz.cli import main; sys.exit(main())"
S = (
  "sweep",
  "mnist_cnn",
  "--layers",
  "conv1",
  "--units",
  "0-1",
  "--batch",
  "2",
  "--steps",
  "4",
  "--size",
  "28",
  "--no-progress",
)


def run(capsys, *argv):
  try:
    code = main(list(argv))
  except SystemExit as e:  # argparse's own refusals exit 2 themselves
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


@pytest.fixture()
def render(capsys, tmp_path, featviz_home):
  """``featviz render mnist_cnn ... ARGS --out tmp/out/a.png``: (exit code, stderr); nothing may
  be written on a refusal."""

  def go(*args):
    out = tmp_path / "out"
    code, _, err = run(capsys, *R, *args, "--out", str(out / "a.png"))
    if code == 2:
      assert not out.exists(), f"refused, yet {out} was written"
      assert "Traceback" not in err
    return code, err

  return go


# ---- unit numbers past int32 (they wrapped around and rendered another unit) ----------------


@pytest.mark.parametrize(
  "spec, valid",
  [
    ("conv1:4294967299", "valid units are 0-31"),  # 2**32 + 3 rendered unit 3
    ("logit:4294967299", "valid 0-9"),
    ("conv1:99999999999", "valid units are 0-31"),  # the message showed 1215752191
  ],
)
def test_units_past_int32_are_refused_with_their_own_number(render, spec, valid):
  code, err = render(spec)
  assert code == 2
  assert spec.split(":")[1] in err and valid in err


def test_objective_keeps_the_unit_it_was_given_until_bind():
  spec = model_lib.ModelSpec("m", (0.0, 1.0), "test", 8, 3, {"a": 4})
  for objective in (
    O.channel("a", 2**32 + 3),
    O.neuron("a", 2**32 + 3),
    O.channel("a", np.array([0, 2**32 + 1])),
  ):
    with pytest.raises(model_lib.UnitOutOfRangeError, match="4294967"):
      objective.bind(spec, batch=objective.batch or 1)
  with pytest.raises(model_lib.UnitOutOfRangeError, match="2\\*\\*63"):
    O.channel("a", 10**30)


# ---- neuron positions outside the layer's map (they were clipped to its edge) ----------------


@pytest.mark.parametrize(
  "spec", ["conv1:0@100,100", "conv1:0@26,0", "conv1:0@0,26", "conv1:0@99999999999,0"]
)
def test_neuron_outside_the_map_is_refused_with_the_valid_range(render, spec):
  code, err = render(spec)  # conv1 of mnist_cnn is 26x26 at 28 px
  assert code == 2
  assert "columns 0-25" in err and "rows 0-25" in err


def test_neuron_check_shapes_names_layer_and_size():
  objective = O.neuron("conv1", 0, x=3, y=30) + O.channel("conv2", 1)
  objective.check_shapes({"conv1": (1, 40, 40, 32), "conv2": (1, 24, 24, 32)})  # inside
  with pytest.raises(model_lib.UnitOutOfRangeError, match="row 30 .*'conv1'.*rows 0-25"):
    objective.check_shapes({"conv1": (1, 26, 26, 32)})
  O.neuron("conv1", 0).check_shapes({"conv1": (1, 26, 26, 32)})  # the centre: always inside


# ---- SPECs: weights, long ranges, huge numbers, mismatched ranges, length --------------------


@pytest.mark.parametrize(
  "spec", ["1e999*conv1:3", "1e400*conv1:0+conv1:1", "conv1:0-1e999*conv1:2"]
)
def test_infinite_weight_is_a_spec_error(spec):
  with pytest.raises(spec_grammar.SpecError, match="finite"):
    spec_grammar.parse(spec)


@pytest.mark.parametrize(
  "spec, words",
  [
    ("1e999*conv1:3", "finite"),
    ("conv1:0-99999999999", "at most"),  # np.arange tried to take 745 GiB
    ("conv1:0-9999999999999999999999", "at most"),
    pytest.param("conv1:" + "1" * 5000, "characters", id="5000-digits"),  # past int()'s limit
    pytest.param("+".join(["conv1:1"] * 3000), "characters", id="3000-terms"),  # ran 600+ s
    ("conv1:0-3+conv1:0-2", "4 units"),
    ("conv1:" + "9" * 18, "valid units are 0-31"),  # fits int64: bind names the valid units
    ("conv1:" + "9" * 40, "no layer has that many channels"),  # past 64 bits: the grammar
  ],
)
def test_bad_specs_exit_2_before_anything_runs(render, spec, words):
  code, err = render(spec)
  assert code == 2 and words in err


def test_spec_of_many_terms_is_refused_by_count():
  spec = "+".join(f"conv1:{i % 32}" for i in range(spec_grammar.MAX_TERMS + 1))
  assert len(spec) <= spec_grammar.MAX_SPEC_CHARS
  with pytest.raises(spec_grammar.SpecError, match=f"at most {spec_grammar.MAX_TERMS} terms"):
    spec_grammar.parse(spec)


def test_ranges_of_different_lengths_name_both_terms():
  with pytest.raises(spec_grammar.SpecError, match=r"conv1:0-3 \(4 units\).*conv1:0-2 \(3 units"):
    spec_grammar.parse("conv1:0-3+conv1:0-2")


def test_parse_error_points_at_the_bad_character():
  with pytest.raises(spec_grammar.SpecError, match="at character 7"):
    spec_grammar.parse("conv1:-1")
  with pytest.raises(spec_grammar.SpecError, match="at character 9"):
    spec_grammar.parse("conv1:0+*conv1:1")


# ---- flags: seed, weights, batch -------------------------------------------------------------


@pytest.mark.parametrize("seed", [str(2**64), "99999999999999999999999", str(-(2**63) - 1)])
def test_seed_outside_64_bits_is_refused(render, seed):
  code, err = render("conv1:0", "--seed", seed)
  assert code == 2 and "--seed" in err and "2**64" in err


def test_weights_that_are_not_a_file_are_refused(render, tmp_path):
  for path in ("/nonexistent/w.pth", str(tmp_path)):
    code, err = render("conv1:0", "--weights", path)
    assert code == 2 and "--weights" in err and path in err


def test_batch_smaller_than_the_units_is_refused(render):
  code, err = render("conv1:0-3", "--batch", "2")
  assert code == 2 and "4 images" in err


# ---- sweep: the same flags, and --distributed ------------------------------------------------


@pytest.mark.parametrize(
  "extra, words",
  [
    (("--seed", str(2**64)), "--seed"),
    (("--weights", "/nonexistent/w.pth"), "--weights"),
    (
      (
        "--distributed",
        "--coordinator",
        "127.0.0.1:1",
        "--num-processes",
        "2",
        "--process-id",
        "5",
      ),
      "--process-id 5",
    ),
    (
      ("--distributed", "--coordinator", "127.0.0.1", "--num-processes", "2", "--process-id", "0"),
      "HOST:PORT",
    ),
    (("--distributed", "--num-processes", "0"), "--num-processes"),
    (("--process-id", "1"), "--distributed"),
  ],
)
def test_sweep_bad_flags_exit_2_and_write_nothing(capsys, tmp_path, featviz_home, extra, words):
  out = tmp_path / "store"
  code, _, err = run(capsys, *S, *extra, "--out", str(out))
  assert code == 2 and words in err and "Traceback" not in err
  assert not out.exists()


def test_sweep_distributed_without_a_coordinator_exits_2(tmp_path, featviz_home):
  """In a fresh process (jax.distributed must start before any computation), as a user runs it."""
  env = {"PATH": "/usr/bin:/bin", "FEATVIZ_HOME": str(featviz_home), "JAX_PLATFORMS": "cpu"}
  p = subprocess.run(
    [sys.executable, "-c", CLI, *S, "--distributed", "--out", str(tmp_path / "store")],
    capture_output=True,
    text=True,
    env=env,
    timeout=120,
    cwd=tmp_path,  # not the checkout: its featviz/ folder would shadow the installed package
  )
  assert p.returncode == 2, p.stderr
  assert "--coordinator" in p.stderr and "Traceback" not in p.stderr


def test_a_sweep_of_an_unknown_layer_leaves_no_store_folder(capsys, tmp_path, featviz_home):
  out = tmp_path / "store"
  code, _, err = run(
    capsys, "sweep", "mnist_cnn", "--layers", "conv9", "--no-progress", "--out", str(out)
  )
  assert code == 2 and "valid layers: conv1" in err
  assert not out.exists()


def test_zoo_convert_refuses_a_missing_weight_file(capsys, tmp_path, featviz_home):
  code, _, err = run(capsys, "zoo", "convert", "mnist_cnn", "--weights", str(tmp_path / "no.pth"))
  assert code == 2 and "no.pth" in err and "Traceback" not in err


@pytest.mark.parametrize(
  "argv",
  [
    ("dream", "mnist_cnn", "photo.png", "--layer", "conv1", "--lr", "nan"),
    ("dream", "mnist_cnn", "photo.png", "--layer", "conv1", "--octave-scale", "nan"),
    ("invert", "mnist_cnn", "photo.png", "--lr", "inf"),
  ],
)
def test_analysis_commands_refuse_non_finite_numbers(capsys, argv):
  code, _, err = run(capsys, *argv)
  assert code == 2 and "is not a finite number" in err
