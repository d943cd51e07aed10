"""Arguments shared by the subcommands (the model and its weights), the help layout, and
counted nouns for output lines ("1 image", "2 images").

A MODEL argument is a zoo name (``efficientnet_lite0``) or a factory of your own network:
``path/to/file.py:FUNCTION`` or ``package.module:FUNCTION``, a function that returns a
:class:`featviz.Model` (``Model.from_flax``, ``Model.from_function``). It is called with no
arguments, or with ``weights=PATH`` when ``--weights`` is given, which it must then accept.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import inspect
import pathlib
import sys


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


MODEL_HELP = (
  "a zoo model (see `featviz zoo list`), or your own: FILE.py:FUNCTION or "
  "package.module:FUNCTION, a function returning a featviz.Model"
)


def add_model_arguments(parser) -> None:
  parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
  parser.add_argument(
    "--weights",
    type=weights_file,
    default=None,
    metavar="PATH",
    help="a local weight file for the model (.pth in either torch format, or .npz), instead "
    "of the catalogue's source; for FILE.py:FUNCTION, passed to it as weights=PATH",
  )


def load_model(args):
  """The model of ``args.model`` (and ``args.weights``): a zoo name or a factory."""
  return load_source(args.model, args.weights)


def load_source(source: str, weights: str | None = None):
  """A zoo model, or what the factory ``FILE.py:FUNCTION`` / ``module:FUNCTION`` returns, with
  ``metadata["source"]`` saying which (the sweep manifest records it)."""
  if ":" not in source:
    from featviz import zoo

    model = zoo.load(source, weights=weights)
    return model.replace(metadata={**dict(model.metadata), "source": f"zoo:{source}"})
  factory, where = factory_of(source)
  return call_factory(factory, where, weights)


def factory_of(source: str):
  """``(function, source as recorded)`` for ``FILE.py:FUNCTION`` or ``module:FUNCTION``."""
  from featviz.cli.errors import UsageError

  target, _, name = source.rpartition(":")
  if not name.isidentifier() or not target:
    raise UsageError(
      f"model {source!r}: give a zoo name, FILE.py:FUNCTION or package.module:FUNCTION "
      "(FUNCTION a Python name)"
    )
  if target.endswith(".py") or "/" in target or "\\" in target:
    path = pathlib.Path(target).expanduser().resolve()
    if not path.is_file():
      raise UsageError(f"model {source!r}: no such file {target!r}")
    module = _import_file(path, source)
    where = f"file:{path}:{name}"
  else:
    try:
      module = importlib.import_module(target)
    except ImportError as e:
      raise UsageError(f"model {source!r}: cannot import module {target!r}: {e}") from None
    where = f"module:{target}:{name}"
  factory = getattr(module, name, None)
  if factory is None:
    functions = sorted(
      k for k, v in vars(module).items() if inspect.isfunction(v) and not k.startswith("_")
    )
    raise UsageError(
      f"model {source!r}: {target} has no {name!r}; its functions: {', '.join(functions) or '-'}"
    )
  if not callable(factory):
    raise UsageError(f"model {source!r}: {name!r} is a {type(factory).__name__}, not a function")
  return factory, where


def _import_file(path: pathlib.Path, source: str):
  """Runs a model file as a module of its own (named by its path's hash, in ``sys.modules``
  so that dataclasses and flax modules defined in it work)."""
  from featviz.cli.errors import UsageError

  module_name = "featviz_own_model_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
  if module_name in sys.modules:
    return sys.modules[module_name]
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # any error of the user's file is bad input
    del sys.modules[module_name]
    raise UsageError(f"model {source!r}: running {path} failed: {type(e).__name__}: {e}") from e
  return module


def call_factory(factory, where: str, weights: str | None):
  from featviz.cli.errors import UsageError
  from featviz.model import Model

  label = where.split(":", 1)[1]
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):
    params = {}
  if weights is not None and "weights" not in params:
    raise UsageError(
      f"--weights was given but {label}() takes no weights parameter; drop --weights, or "
      "give the factory a weights=None argument"
    )
  try:
    model = factory(weights=weights) if weights is not None else factory()
  except Exception as e:  # the user's factory failing is bad input
    raise UsageError(f"{label}() raised {type(e).__name__}: {e}") from e
  if not isinstance(model, Model):
    raise UsageError(
      f"{label}() returned a {type(model).__name__}; a model factory returns a featviz.Model "
      "(featviz.Model.from_flax(...) or Model.from_function(...))"
    )
  return model.replace(metadata={**dict(model.metadata), "source": where})
