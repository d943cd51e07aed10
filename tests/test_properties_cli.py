"""Property tests of the numeric flags of ``featviz render`` and ``featviz sweep`` (issue 17): any
value is accepted or refused with exit 2 and a message, never a traceback.

Nothing renders: the commands run through ``featviz.cli.main`` up to the point where they load
the model, which is replaced by a stub that stops the command (every check of the flags comes
before it). Budget: one example builds the parser and the RenderConfig, about 5 ms, so 150
examples for each command and mode keep this file within about 20 s on a 2-core CPU. The
deadline, 1 s, is far above that: a value that makes parsing slow (a huge integer, a long range)
is the kind of bug this looks for. ``database=None``: no ``.hypothesis/`` folder in the tree.
"""

import contextlib
import io
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featviz.cli import cmd_render, cmd_sweep, main

# monkeypatch's state (the stub model loader, FEATVIZ_HOME) is the same for every example.
SETTINGS = settings(
  max_examples=150,
  deadline=1000,
  database=None,
  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

RENDER_FLAGS = [
  "--steps",
  "--size",
  "--seed",
  "--lr",
  "--input-size",
  "--redirect-relu-steps",
  "--chunk",
  "--batch",
  "--tv",
  "--l1",
  "--l2",
  "--blur",
  "--diversity",
]
SWEEP_FLAGS = [
  "--steps",
  "--size",
  "--seed",
  "--lr",
  "--input-size",
  "--redirect-relu-steps",
  "--chunk",
  "--batch",
  "--num-processes",
  "--process-id",
]

# What a user might type for a number: small and huge integers (past 2**64, past the 4300 digits
# int() reads), floats of any kind, and text that is almost a number.
VALUES = st.one_of(
  st.integers(-10, 10**4).map(str),
  st.integers(-(2**70), 2**70).map(str),
  st.sampled_from([str(2**63), str(2**64), str(-(2**63) - 1), "9" * 5000, "1" + "0" * 30]),
  st.floats(allow_nan=True, allow_infinity=True).map(repr),
  st.sampled_from(
    [
      "nan",
      "inf",
      "-inf",
      "1e999",
      "-0",
      "0",
      "0.0",
      "1e-320",
      "0x10",
      "1_000",
      " 3 ",
      "",
      "3.",
      ".5",
      "1e3",
      "--",
      "٣",
      "+2",
      "None",
    ]
  ),
  st.text(max_size=12),
)


class Stop(Exception):
  """Raised by the stub model loader: the command accepted its flags and would render now."""


@pytest.fixture()
def stub_model(monkeypatch, tmp_path):
  def load_model(args):
    raise Stop

  monkeypatch.setattr(cmd_render, "load_model", load_model)
  monkeypatch.setattr(cmd_sweep, "load_model", load_model)
  monkeypatch.setenv("FEATVIZ_HOME", str(tmp_path / "home"))
  monkeypatch.setenv("FEATVIZ_COMPILE_CACHE", "0")


def accepted_or_exit_2(argv) -> bool:
  """Runs ``featviz ARGV``: True when it got to loading the model, False when it exited 2 with a
  message; anything else (another exit code, a traceback) fails the test."""
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    try:
      code = main(argv)
    except Stop:
      return True
    except SystemExit as e:  # argparse's own refusal: a bad type or choice
      code = e.code
  message = err.getvalue()
  assert code == 2, (argv, code, message)
  assert "error:" in message and "Traceback" not in message, (argv, message)
  return False


def _flag_args(flags):
  return st.lists(st.tuples(st.sampled_from(flags), VALUES), min_size=1, max_size=3)


@SETTINGS
@given(_flag_args(RENDER_FLAGS))
def test_render_numeric_flags_are_accepted_or_exit_2(stub_model, flags):
  with tempfile.TemporaryDirectory() as out:
    argv = ["render", "mnist_cnn", "conv1:0", "--out", f"{out}/a.png"]
    for flag, value in flags:
      argv.append(f"{flag}={value}")  # "=": a value such as "-3" is not read as a flag
    accepted_or_exit_2(argv)


@SETTINGS
@given(_flag_args(SWEEP_FLAGS))
def test_sweep_numeric_flags_are_accepted_or_exit_2(stub_model, flags):
  with tempfile.TemporaryDirectory() as out:
    argv = ["sweep", "mnist_cnn", "--layers", "conv1", "--out", f"{out}/store"]
    for flag, value in flags:
      argv.append(f"{flag}={value}")
    accepted_or_exit_2(argv)


@SETTINGS
@given(
  st.sampled_from(["--steps", "--size", "--input-size", "--chunk", "--batch"]),
  st.integers(-(2**66), 2**66),
)
def test_render_integer_flags_accept_exactly_their_range(stub_model, flag, value):
  with tempfile.TemporaryDirectory() as out:
    ok = accepted_or_exit_2(
      ["render", "mnist_cnn", "conv1:0", "--out", f"{out}/a.png", f"{flag}={value}"]
    )
  top = {"--batch": float("inf")}.get(flag, 2**20 if flag in ("--steps", "--chunk") else 4096)
  assert ok == (1 <= value <= top), (flag, value)


@SETTINGS
@given(st.integers(-(2**66), 2**66))
def test_seed_accepted_exactly_in_64_bits(stub_model, seed):
  with tempfile.TemporaryDirectory() as out:
    ok = accepted_or_exit_2(
      ["render", "mnist_cnn", "conv1:0", "--out", f"{out}/a.png", f"--seed={seed}"]
    )
  assert ok == (-(2**63) <= seed < 2**64)
