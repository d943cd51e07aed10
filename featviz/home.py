"""Where featviz keeps its files (``$FEATVIZ_HOME``), and which featviz version writes them.

The model cache (``featviz.zoo.cache``) and JAX's compilation cache (``featviz.compile_cache``)
live under :func:`root`; both stamp what they write with :data:`VERSION`. Imports nothing of
featviz, so every layer may use it.
"""

from __future__ import annotations

import os
import pathlib
from importlib import metadata

VERSION = metadata.version("featviz")


def root() -> pathlib.Path:
  """The folder featviz writes its caches to: ``$FEATVIZ_HOME`` if set, else
  ``~/.cache/featviz``."""
  home = os.environ.get("FEATVIZ_HOME")
  return pathlib.Path(home) if home else pathlib.Path.home() / ".cache" / "featviz"
