"""Every command's --help: each flag explains itself and shows its default, in a user's words."""

from __future__ import annotations

import argparse

import pytest

from featviz.cli import build_parser, main
from featviz.cli.common import HelpFormatter, plural

# Edited elsewhere in the same change (issue 18): gallery still uses argparse's plain formatter,
# so its defaults do not show. Drop a name here once its command passes.
PENDING: set[str] = set()  # commands whose help is being rewritten (none)
# Words that mean something to featviz's developers only, and doubled words.
JARGON = ("no device yet", "penalty penalty", "TODO", "FIXME", "XXX")


def _parsers(parser: argparse.ArgumentParser, name: str = "featviz"):
  """(name, parser) for the command line and every subcommand, depth first."""
  yield name, parser
  for action in parser._actions:
    if isinstance(action, argparse._SubParsersAction):
      for sub_name, sub in action.choices.items():
        yield from _parsers(sub, f"{name} {sub_name}")


COMMANDS = dict(_parsers(build_parser()))


def _param_list():
  for name in COMMANDS:
    marks = (
      [pytest.mark.xfail(reason="rewritten elsewhere; see PENDING", strict=False)]
      if name in PENDING
      else []
    )
    yield pytest.param(name, marks=marks, id=name.replace(" ", "_"))


_PARAMS = list(_param_list())


def _flags(parser):
  return [
    a
    for a in parser._actions
    if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
  ]


def test_every_command_is_walked():
  assert {"featviz render", "featviz zoo labels", "featviz cam"} <= set(COMMANDS)
  assert len(COMMANDS) >= 15


@pytest.mark.parametrize("name", _PARAMS)
def test_every_argument_has_help(name):
  missing = [a.dest for a in _flags(COMMANDS[name]) if not (a.help or "").strip()]
  assert not missing, f"{name}: no help text for {missing}"


@pytest.mark.parametrize("name", _PARAMS)
def test_help_shows_every_default(name):
  parser = COMMANDS[name]
  assert issubclass(parser.formatter_class, HelpFormatter), f"{name}: not featviz's formatter"
  text = " ".join(parser.format_help().split())
  for action in _flags(parser):
    unset = action.default is None or action.default is False
    if action.option_strings and not unset and action.default != argparse.SUPPRESS:
      default = action.default
      shown = f"{default:.4g}" if "%(default).4g" in action.help else str(default)
      assert f"default: {shown}" in text or f"= {shown}" in text, (
        f"{name} {action.option_strings[0]}: default {default!r} not shown"
      )


@pytest.mark.parametrize("name", _PARAMS)
def test_help_has_no_developer_words(name):
  text = " ".join(COMMANDS[name].format_help().split())
  assert not [w for w in JARGON if w in text]


def test_a_bare_command_prints_its_commands_and_exits_0(capsys):
  assert main([]) == 0
  out = capsys.readouterr().out
  for command in ("render", "sweep", "zoo", "cam", "usage: featviz"):
    assert command in out
  assert main(["zoo"]) == 0
  out = capsys.readouterr().out
  assert "labels" in out and "convert" in out


def test_the_formatter_leaves_unset_options_alone():
  parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
  parser.add_argument("--steps", type=int, default=512, help="optimization steps")
  parser.add_argument("--size", default=None, help="side (default: the model's)")
  parser.add_argument("--quiet", action="store_true", help="say less")
  parser.add_argument("--seed", type=int, default=0, help="seed")
  text = " ".join(parser.format_help().split())
  assert "optimization steps (default: 512)" in text
  assert "side (default: the model's)" in text and "None" not in text
  assert "say less" in text and "False" not in text
  assert "seed (default: 0)" in text


def test_outputs_count_in_the_singular():
  assert plural(1, "image") == "1 image" and plural(0, "image") == "0 images"
  assert plural(2, "class", "classes") == "2 classes"


def test_one_unit_is_one_unit(capsys, tmp_path, featviz_home):
  out = tmp_path / "one.png"
  code = main(
    [
      "filters",
      "mnist_cnn",
      "--layer",
      "conv1",
      "--units",
      "3",
      "--steps",
      "2",
      "--size",
      "28",
      "--no-progress",
      "--out",
      str(out),
    ]
  )
  assert code == 0 and "1 unit of conv1" in capsys.readouterr().out
