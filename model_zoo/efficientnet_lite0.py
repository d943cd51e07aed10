"""EfficientNet-Lite0, the first of the :mod:`featviz.zoo.efficientnet_lite` family.

The catalogue's ``efficientnet_lite0`` entry names this module, and code that imports it
(``from featviz.zoo import efficientnet_lite0``) keeps its names: :func:`spec`,
:func:`convert`, :func:`forward`, :func:`expected_shapes`, :data:`BLOCKS` and the Flax module
:class:`EfficientNetLite0`. They are ``efficientnet_lite.lite0``'s, so Lite0 loads exactly as
the family's other variants do. The architecture, weights, input range and evaluation crop
are described in :mod:`featviz.zoo.efficientnet_lite`.
"""

from __future__ import annotations

from featviz.zoo import efficientnet_lite as _family
from featviz.zoo.efficientnet_lite import Block, labels

__all__ = (
  "BLOCKS",
  "Block",
  "EfficientNetLite0",
  "convert",
  "expected_shapes",
  "forward",
  "labels",
  "spec",
)

IMAGE_SIZE = _family.LITE0.image_size  # EfficientNet-B0's (and Lite0's) training resolution.
MIN_SIZE = _family.MIN_SIZE
BN_EPS = _family.BN_EPS
STEM = _family.STEM
HEAD = _family.HEAD
CLASSES = _family.CLASSES
BLOCKS: tuple[Block, ...] = _family.LITE0.blocks

spec = _family.lite0.spec
convert = _family.lite0.convert
forward = _family.lite0.forward
expected_shapes = _family.lite0.expected_shapes


class EfficientNetLite0(_family.EfficientNetLite):
  """The Lite0 network (:class:`featviz.zoo.efficientnet_lite.EfficientNetLite` of Lite0)."""

  variant: _family.Variant = _family.LITE0
