"""Arguments shared by the subcommands (the model and its weights), the help layout, and
counted nouns for output lines ("1 image", "2 images")."""

from __future__ import annotations

import argparse
import pathlib


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Keeps the epilog's line breaks and ends each flag's help with its default.

  Like ``argparse.ArgumentDefaultsHelpFormatter``, but a default of ``None`` or ``False`` (an
  unset option, an off switch) is left out: the help text says what happens then. Every
  ``featviz`` parser uses it (``formatter_class=HelpFormatter``).
  """

  def _get_help_string(self, action: argparse.Action) -> str:
    text = action.help or ""
    unset = action.default is None or action.default is False
    shown = "%(default)" in text or unset or action.default == argparse.SUPPRESS
    if shown or not (action.option_strings or action.nargs in ("?", "*")):
      return text
    return f"{text} (default: %(default)s)"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
  """``n`` and ``noun`` for an output line: ``plural(1, "image")`` is ``"1 image"``, ``plural(3,
  "image")`` is ``"3 images"``; ``nouns`` is the plural where adding ``s`` is wrong."""
  return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def weights_file(text: str) -> str:
  """argparse type: the path of an existing file (a missing one is refused before any work)."""
  path = pathlib.Path(text).expanduser()
  if not path.exists():
    raise argparse.ArgumentTypeError(f"no such weight file {text!r}")
  if not path.is_file():
    raise argparse.ArgumentTypeError(f"{text!r} is not a file; give a .pth or .npz weight file")
  return text


def add_model_arguments(parser) -> None:
  parser.add_argument("model", help="a zoo model (see `featviz zoo list`)")
  parser.add_argument(
    "--weights",
    type=weights_file,
    default=None,
    metavar="PATH",
    help="a local weight file for the model (.pth in either torch format, "
    "or .npz), instead of the catalogue's source",
  )


def load_model(args):
  from featviz import zoo

  return zoo.load(args.model, weights=args.weights)
