"""featviz: feature visualization for vision networks, on JAX.

  import featviz
  model = featviz.zoo.load("efficientnet_lite0")
  result = featviz.render(model, featviz.objectives.channel("block10", jnp.arange(8)))

Submodules load on first use (PEP 562), so ``import featviz`` stays light:
``featviz.render`` (the render loop; the module is callable as the function),
``featviz.objectives``, ``featviz.regularizers``, ``featviz.param``,
``featviz.transforms``, ``featviz.images``, ``featviz.zoo`` (the model zoo),
``featviz.sweep``, ``featviz.gallery`` and ``featviz.analysis``.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("analysis", "compile_cache", "gallery", "images", "model", "objectives", "param",
               "regularizers", "render", "sweep", "transforms", "zoo")

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str):
  if name == "sweep":
    return importlib.import_module(f"{__name__}._sweep.run")
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module 'featviz' has no attribute {name!r}")


def __dir__():
  return sorted(__all__)
