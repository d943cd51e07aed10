"""Issue proof: a rendered EfficientNet-Lite0 unit excites that unit more than any of the 264
ImageNet sample photos does, scored the same way (channel mean, no transforms)."""

import numpy as np

from featviz import objectives, zoo
from featviz._loop import api as render
from featviz._sweep import quality as sweep_quality

LAYER, UNITS, SIZE, STEPS = "block8", np.arange(4), 96, 96


def test_rendered_units_beat_every_photo(shared):
  model = zoo.load("efficientnet_lite0")
  folder = shared / "images" / "imagenet-sample"
  result = render.render(
    model, objectives.channel(LAYER, UNITS), size=SIZE, steps=STEPS, progress_bar=False
  )
  rendered = render.score_images(model, objectives.channel(LAYER, UNITS), result.images)
  # Photos at the render's scale (shorter side to 96 px, centre crop): a channel's response
  # depends on the scale of what it sees. (At 224 px the photos score lower still.)
  best, files = sweep_quality.dataset_best(model, [LAYER], folder, SIZE)[LAYER]
  print(
    f"rendered {np.round(rendered, 2)} vs best photo {np.round(best[UNITS], 2)} "
    f"({[files[u] for u in UNITS]})"
  )
  assert np.all(rendered > best[UNITS])
