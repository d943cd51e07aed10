"""The ``featviz`` command: a thin layer that parses arguments and calls the library.

Each subcommand lives in its own module ``featviz/cli/cmd_<name>.py`` with a
``register(subparsers)`` function; :func:`main` discovers them, so adding a
subcommand touches no other file. Bad input exits with code 2 and a message
that names the problem and the valid choices; a failed optimization exits 1.
Every command runs with JAX's persistent compilation cache on
(``featviz.compile_cache``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from featviz.cli.errors import EXIT_FAILED, EXIT_USAGE, USAGE_ERRORS, UsageError


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="featviz", description="Feature visualization for vision networks, on JAX.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if info.name.startswith("cmd_"):
      importlib.import_module(f"{__name__}.{info.name}").register(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  from featviz import compile_cache
  try:
    # Around every compile: a second run with the same settings loads its programs from disk.
    # FEATVIZ_COMPILE_CACHE=0 opts out; a JAX cache folder the user set is kept.
    with compile_cache.enabled():
      return int(args.func(args) or 0)
  except USAGE_ERRORS as e:
    print(f"featviz {args.command}: error: {e}", file=sys.stderr)
    return EXIT_USAGE
  except FloatingPointError as e:
    print(f"featviz {args.command}: failed: {e}", file=sys.stderr)
    return EXIT_FAILED
  except KeyboardInterrupt:
    print("featviz: interrupted", file=sys.stderr)
    return 130


__all__ = ["main", "build_parser", "UsageError"]
