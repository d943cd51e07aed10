"""The ``featviz`` command: a thin layer that parses arguments and calls the library.

Each subcommand lives in its own module ``featviz/cli/cmd_<name>.py`` with a
``register(subparsers)`` function; :func:`main` discovers them, so adding a
subcommand touches no other file. Every parser uses ``common.HelpFormatter``, so
``--help`` shows each flag's default. A bare ``featviz`` (or ``featviz zoo``) prints
the command list and exits 0. Bad input exits with code 2 and a message that names
the problem and the valid choices; a failed optimization exits 1.
Every command runs with JAX's persistent compilation cache on
(``featviz.compile_cache``).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import pkgutil
import sys

from featviz.cli.common import HelpFormatter
from featviz.cli.errors import EXIT_FAILED, EXIT_USAGE, USAGE_ERRORS, UsageError

_EPILOG = """`featviz COMMAND --help` explains a command, its flags and their defaults.
`featviz` alone prints this list.

Start with:
  featviz zoo list
  featviz zoo labels efficientnet_lite0 --grep fish
  featviz render efficientnet_lite0 logit:goldfish --steps 256 --out goldfish.png
"""


# Failures of the machine rather than of featviz or the input: reported in one line, exit 1.
_MACHINE_ERRNOS = {
  errno.ENOSPC: "the disk is full",
  errno.EDQUOT: "the disk quota is used up",
  errno.EROFS: "the file system is read-only",
  errno.EACCES: "permission denied",
  errno.EPERM: "operation not permitted",
}


def _machine_failure(e: OSError) -> str:
  """One line for a full disk or an unwritable folder, naming the path and what to do."""
  what = _MACHINE_ERRNOS[e.errno]
  where = f" writing {e.filename}" if e.filename else ""
  from featviz import home

  cache = str(home.root())
  hint = "free some space and run again (a sweep resumes where it stopped)"
  if e.errno not in (errno.ENOSPC, errno.EDQUOT):
    hint = "give an output folder you can write"
  if e.filename and os.path.abspath(str(e.filename)).startswith(os.path.abspath(cache)):
    hint = f"featviz caches models and programs in {cache}: set FEATVIZ_HOME to a writable folder"
  return f"{what}{where}; {hint}"


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="featviz",
    description="Feature visualization for vision networks, on JAX.",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  sub = parser.add_subparsers(dest="command", metavar="COMMAND")
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if info.name.startswith("cmd_"):
      importlib.import_module(f"{__name__}.{info.name}").register(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  argv = sys.argv[1:] if argv is None else list(argv)
  for arg in argv:
    # argparse (CPython 3.11) reads "--flag=--" as an empty list and never calls the type.
    if arg.startswith("--") and arg.endswith("=--"):
      parser.error(f"argument {arg[:-3]}: expected one value, got '--'")
  args = parser.parse_args(argv)
  if getattr(args, "func", None) is None:  # a bare `featviz`: show what there is to run
    parser.print_help()
    return 0
  from featviz import compile_cache, cpu_devices

  try:
    # Before JAX starts: the CPU as one device per core, each batch split over them.
    try:
      cpu_devices.enable()
    except ValueError as e:  # FEATVIZ_CPU_DEVICES is not a count
      raise UsageError(str(e)) from None
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
  except OSError as e:
    if e.errno not in _MACHINE_ERRNOS:
      raise
    print(f"featviz {args.command}: failed: {_machine_failure(e)}", file=sys.stderr)
    return EXIT_FAILED
  except KeyboardInterrupt:
    print("featviz: interrupted", file=sys.stderr)
    return 130


__all__ = ["main", "build_parser", "UsageError"]
