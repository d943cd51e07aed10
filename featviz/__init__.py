"""featviz: feature visualization for vision networks, on JAX.

  import featviz
  model = featviz.zoo.load("efficientnet_lite0")
  result = featviz.render(model, featviz.objectives.channel("block10", range(8)), steps=64)

The data path, in order: ``zoo`` (pretrained networks) -> :class:`Model` -> ``objectives``
(what to maximize) -> ``param`` (how an image is parameterized) -> ``transforms`` ->
:func:`render` (the compiled loop, configured by one :class:`RenderConfig`) -> ``images``;
:func:`sweep` renders every unit of some layers, resumably, and ``gallery`` turns sweeps into a
static site. ``analysis`` holds the classic techniques (activation maps, CAM, dataset examples,
DeepDream, inversion, ...).
"""

from featviz import (
  analysis,
  gallery,
  images,
  nonlin,
  objectives,
  param,
  photos,
  regularizers,
  transforms,
  zoo,
)
from featviz._loop.api import NonFiniteError, RenderResult, lower, render, score_images
from featviz._loop.config import ConfigError, RenderConfig
from featviz._sweep.run import sweep
from featviz._sweep.store import SettingsMismatchError
from featviz.home import VERSION as __version__
from featviz.model import (
  ImageShapeError,
  Model,
  ModelSpec,
  UnitOutOfRangeError,
  UnknownLabelError,
  UnknownLayerError,
)
from featviz.nonlin import Ops

__all__ = [
  "ConfigError",
  "ImageShapeError",
  "Model",
  "ModelSpec",
  "NonFiniteError",
  "Ops",
  "RenderConfig",
  "RenderResult",
  "SettingsMismatchError",
  "UnitOutOfRangeError",
  "UnknownLabelError",
  "UnknownLayerError",
  "__version__",
  "analysis",
  "gallery",
  "images",
  "lower",
  "nonlin",
  "objectives",
  "param",
  "photos",
  "regularizers",
  "render",
  "score_images",
  "sweep",
  "transforms",
  "zoo",
]
