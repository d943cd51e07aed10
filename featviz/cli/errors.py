"""Which exceptions mean bad input (exit 2) on the command line."""

from __future__ import annotations

import os
import pathlib

from featviz._loop.config import ConfigError
from featviz._sweep.stopping import StopRuleError
from featviz._sweep.store import SettingsMismatchError
from featviz.cli.spec_grammar import SpecError
from featviz.model import ImageShapeError, UnitOutOfRangeError, UnknownLabelError, UnknownLayerError

EXIT_USAGE = 2  # argparse's own exit code for bad arguments
EXIT_FAILED = 1


class UsageError(ValueError):
  """Bad command-line input found by a subcommand."""


def _zoo_errors() -> tuple[type[BaseException], ...]:
  from featviz import zoo

  return (
    zoo.UnknownModelError,
    zoo.WeightsUnavailableError,
    zoo.CheckpointError,
    zoo.WeightMismatchError,
    zoo.HashMismatchError,
    zoo.CorruptCacheError,
  )


USAGE_ERRORS = (
  UsageError,
  SpecError,
  ConfigError,
  SettingsMismatchError,
  StopRuleError,
  UnknownLayerError,
  UnitOutOfRangeError,
  UnknownLabelError,
  ImageShapeError,
) + _zoo_errors()


def _store_errors() -> tuple[type[BaseException], ...]:
  from featviz._sweep import store  # a damaged, orphaned or busy sweep folder (issue 17)

  return (store.StoreError, store.ManifestLostError)


USAGE_ERRORS += _store_errors()


def writable_output(path: str, suffix: str | None = ".png") -> pathlib.Path:
  """Checks, before any work, that ``path`` can be written; creates its parent folder."""
  out = pathlib.Path(path)
  if suffix and out.suffix.lower() != suffix:
    raise UsageError(f"output {path!r} must end in {suffix}")
  if out.is_dir():
    raise UsageError(f"output {path!r} is a directory; give a file name ending in {suffix}")
  try:
    out.parent.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UsageError(f"cannot create the folder for output {path!r}: {e.strerror}") from e
  if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
    raise UsageError(f"output {path!r} cannot be written (no permission)")
  return out


def writable_dir(path: str) -> pathlib.Path:
  """Checks that folder ``path`` exists or can be made, and can be written."""
  out = pathlib.Path(path)
  if out.exists() and not out.is_dir():
    raise UsageError(f"output {path!r} exists and is not a folder")
  try:
    out.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise UsageError(f"cannot create output folder {path!r}: {e.strerror}") from e
  if not os.access(out, os.W_OK):
    raise UsageError(f"output folder {path!r} cannot be written (no permission)")
  return out
