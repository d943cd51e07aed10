"""Lets ``featviz.render(...)`` call the function while ``featviz.render`` stays the module.

The issues name the entry points ``featviz.render(model, objective, ...)`` and
``featviz.sweep(...)``, and the code base imports the modules of the same names
(``from featviz import render; render.render(...)``). Giving the module a
``__call__`` serves both without renaming either.
"""

from __future__ import annotations

import sys
import types


def make_callable(module_name: str, function_name: str) -> None:
  """Makes module ``module_name`` callable as its function ``function_name``."""
  module = sys.modules[module_name]

  class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
      return getattr(self, function_name)(*args, **kwargs)

  _CallableModule.__name__ = f"CallableModule[{module_name}]"
  module.__class__ = _CallableModule
