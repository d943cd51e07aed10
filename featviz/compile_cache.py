"""JAX's persistent compilation cache in the featviz cache folder, for the ``featviz`` command.

A render compiles its loop once per process; on a CPU that takes seconds
(measured: 4.8 s for EfficientNet-Lite0 ``block3``, 4 to 7 s for InceptionV1
``mixed4a``), often longer than a short render. JAX can
keep compiled programs on disk and load them in a later process with the same
program, jax version and device (the cache key covers all three), so a second
``featviz render`` with the same settings starts at once. The render loop is
built for it: it has no host callbacks (JAX refuses to store programs with
them), and a progress bar or not is the same program.

The ``featviz`` command runs inside :func:`enabled` (it enables the cache before
it compiles anything and leaves JAX's settings as it found them when it returns,
which matters only to programs that call ``featviz.cli.main`` themselves). The
library never enables it by itself (importing featviz changes no JAX setting);
call :func:`enable` in your own program to get the same.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import warnings
from collections.abc import Iterator

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from featviz import home

# The opt-out: FEATVIZ_COMPILE_CACHE=0 (or false, no, off) leaves JAX's cache settings alone.
ENV_VAR = "FEATVIZ_COMPILE_CACHE"
_OFF = ("0", "false", "no", "off")
# The folder under the featviz cache root (featviz.home.root()).
SUBDIR = "jax_compilation_cache"
# Programs whose backend compile takes at least this long are stored. JAX's default, 1 s, would
# leave out the render's small programs that draw the initial state and decode the images: 0.29 s
# and 0.24 s (EfficientNet-Lite0, 128 px, 2-core CPU, jax 0.10.2), against the 0.2 s a later run
# takes to load the loop (4.8 s to compile) and 0.5 s to trace it. Eager operations compile in
# about 0.02 s and stay out, so the folder does not fill with them.
MIN_COMPILE_TIME_SECS = 0.1
_JAX_DEFAULT_MIN_COMPILE_TIME_SECS = 1.0  # jax_persistent_cache_min_compile_time_secs, jax 0.10.2


def default_dir() -> pathlib.Path:
  """``$FEATVIZ_HOME/jax_compilation_cache`` (``~/.cache/featviz/...`` without FEATVIZ_HOME)."""
  return home.root() / SUBDIR


def enabled_by_env() -> bool:
  """False when ``FEATVIZ_COMPILE_CACHE`` says 0, false, no or off (any case)."""
  return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


def enable(
  path: str | os.PathLike | None = None,
  *,
  min_compile_time_secs: float | None = None,
  min_entry_size_bytes: int | None = None,
) -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache in featviz's cache folder.

  Sets ``jax_compilation_cache_dir`` to ``path`` (default :func:`default_dir`)
  unless the user already set a cache folder (``jax.config`` or the
  ``JAX_COMPILATION_CACHE_DIR`` environment variable): theirs is kept and
  returned, with their other cache options. Does nothing and returns None when
  ``FEATVIZ_COMPILE_CACHE=0`` (``false``, ``no``, ``off``), or when
  ``jax_enable_compilation_cache`` is off.

  Call it before the first compile you want cached: JAX opens the cache at the
  first compile that finds a folder set. JAX stores only programs whose compile
  took at least ``jax_persistent_cache_min_compile_time_secs`` and whose entry
  is at least ``jax_persistent_cache_min_entry_size_bytes`` bytes. When this
  sets the folder and the first is still JAX's default (1 s), it lowers it to
  :data:`MIN_COMPILE_TIME_SECS` (0.1 s: the render's small programs are then
  stored too; see there). The size limit keeps JAX's default (0: no limit
  beyond what suits the file system). The arguments set either option
  explicitly.

  The folder is trusted as code: JAX runs what it loads from it, so keep it
  writable by you only (it is under your own cache root by default). It grows
  with every new program (measured: 0.4 MB for an EfficientNet-Lite0 ``block3``
  loop, 30 to 60 kB for the small programs) and JAX evicts nothing unless
  ``jax_compilation_cache_max_size`` is set; deleting the folder is always safe.

  Returns:
    The cache folder in use, or None when the cache stays off.
  """
  if not enabled_by_env() or not jax.config.jax_enable_compilation_cache:
    return None
  configured = jax.config.jax_compilation_cache_dir
  if configured:
    folder = pathlib.Path(configured)
  else:
    folder = pathlib.Path(path) if path is not None else default_dir()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    unset = (
      jax.config.jax_persistent_cache_min_compile_time_secs == _JAX_DEFAULT_MIN_COMPILE_TIME_SECS
    )
    if min_compile_time_secs is None and unset:
      min_compile_time_secs = MIN_COMPILE_TIME_SECS
  if min_compile_time_secs is not None:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
  if min_entry_size_bytes is not None:
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes))
  return folder


_OPTIONS = (
  "jax_compilation_cache_dir",
  "jax_persistent_cache_min_compile_time_secs",
  "jax_persistent_cache_min_entry_size_bytes",
)


# The start of the warning JAX 0.10 gives when an entry does not load (jax/_src/compiler.py,
# _cache_read); it then compiles again, but never replaces the entry (LRUCache.put keeps an
# existing file), so every later run would warn and recompile (red team, issue 17).
_READ_ERROR = "Error reading persistent compilation cache entry"
_ENTRY_SUFFIX = "-cache"  # jax/_src/lru_cache.py: _CACHE_SUFFIX; "-atime" files sit beside
_ATIME_SUFFIX = "-atime"


def unreadable_entries(folder: str | os.PathLike) -> list[pathlib.Path]:
  """The entries of a JAX cache folder that do not decompress (cut short or corrupted).

  Uses JAX's own ``decompress_executable`` (zstd or zlib, as JAX wrote them; both check their
  data), so an entry this passes is one JAX can at least unpack.
  """
  from jax._src import compilation_cache as jax_internal  # no public API for this

  bad = []
  for entry in sorted(pathlib.Path(folder).glob(f"*{_ENTRY_SUFFIX}")):
    try:
      jax_internal.decompress_executable(entry.read_bytes())
    except Exception:  # noqa: BLE001 - any failure to unpack makes the entry useless
      bad.append(entry)
  return bad


def prune_unreadable(folder: str | os.PathLike) -> list[pathlib.Path]:
  """Deletes :func:`unreadable_entries` (and their access-time files) so that JAX stores the
  programs again at their next compile; returns what was deleted."""
  bad = unreadable_entries(folder)
  for entry in bad:
    for path in (entry, entry.with_name(entry.name[: -len(_ENTRY_SUFFIX)] + _ATIME_SUFFIX)):
      with contextlib.suppress(FileNotFoundError):
        path.unlink()
  return bad


@contextlib.contextmanager
def _pruning_on_read_errors(folder: pathlib.Path | None) -> Iterator[None]:
  """Shows warnings as usual; when one says a cache entry did not load, deletes the folder's
  :func:`unreadable_entries` there and then. JAX warns before it compiles the program again and
  writes it after, so the fresh entry then takes the broken one's place."""
  show = warnings.showwarning

  def note(message, category, filename, lineno, file=None, line=None):
    show(message, category, filename, lineno, file, line)
    if folder is not None and str(message).startswith(_READ_ERROR):
      removed = prune_unreadable(folder)
      if removed:
        print(
          f"featviz: removed {len(removed)} unreadable "
          f"entr{'y' if len(removed) == 1 else 'ies'} of the compilation cache {folder}; "
          "this run stores them again",
          file=sys.stderr,
        )

  warnings.showwarning = note
  try:
    yield
  finally:
    warnings.showwarning = show


@contextlib.contextmanager
def enabled(path: str | os.PathLike | None = None, **options) -> Iterator[pathlib.Path | None]:
  """:func:`enable` for the ``with`` block only; yields what :func:`enable` returns.

  On exit the options :func:`enable` set get their old values back, and when it
  set the folder JAX's cache is reset (``reset_cache``), so that later compiles in
  this process neither read nor write it. When JAX warns inside the block that an entry
  did not load, the entries of the folder that do not decompress are deleted
  (:func:`prune_unreadable`), so JAX stores them again instead of warning on every run.
  """
  before = {name: getattr(jax.config, name) for name in _OPTIONS}
  try:
    folder = enable(path, **options)
    with _pruning_on_read_errors(folder):
      yield folder
  finally:
    changed = {name: value for name, value in before.items() if getattr(jax.config, name) != value}
    for name, value in changed.items():
      jax.config.update(name, value)
    if "jax_compilation_cache_dir" in changed:
      jax_cache.reset_cache()


__all__ = [
  "ENV_VAR",
  "MIN_COMPILE_TIME_SECS",
  "SUBDIR",
  "default_dir",
  "enable",
  "enabled",
  "enabled_by_env",
  "prune_unreadable",
  "unreadable_entries",
]
