"""featviz model zoo (installed as ``featviz.zoo``): pretrained networks as featviz models.

  import featviz.zoo
  featviz.zoo.list_models()                  # ['mnist_cnn', 'inceptionv1', 'efficientnet_lite0']
  model = featviz.zoo.load("efficientnet_lite0")
  model.activations(images, ["block5"])      # images (B, H, W, 3) in [0, 1]
  featviz.zoo.load("inceptionv1", weights="/path/inception5h.pth")  # a local file instead

The first load of a model reads its weight file (PyTorch checkpoints are read without torch, by
``torch_pickle``), converts it and caches the result under ``$FEATVIZ_HOME`` (default
``~/.cache/featviz``); later loads restore the cache (``cache``). ``catalogue`` lists the models,
their sources, pinned hashes and licences.
"""

from .cache import CorruptCacheError
from .catalogue import (
  Entry,
  UnknownModelError,
  convert,
  describe,
  entry,
  list_models,
  load,
  read_weight_file,
)
from .sources import Digest, HashMismatchError, Source, WeightsUnavailableError
from .state_dict import WeightMismatchError
from .torch_pickle import CheckpointError, UnsafeCheckpointError

__all__ = [
  "CheckpointError",
  "CorruptCacheError",
  "Digest",
  "Entry",
  "HashMismatchError",
  "Source",
  "UnknownModelError",
  "UnsafeCheckpointError",
  "WeightMismatchError",
  "WeightsUnavailableError",
  "convert",
  "describe",
  "entry",
  "list_models",
  "load",
  "read_weight_file",
]
