"""``featviz examples MODEL LAYER:UNIT --dataset DIR``: the photos and patches a unit likes."""

from __future__ import annotations

import re

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output

_EPILOG = """Examples:
  featviz examples efficientnet_lite0 block3:5 --dataset photos/ --out block3_5.png
  featviz examples inceptionv1 mixed4a:0-3 --dataset photos/ --top 6 --out mixed4a.png

One pass over the folder records every unit of the layer; the patches are cropped to each
unit's receptive field, computed from the architecture (featviz.analysis.receptive_field).
"""

# LAYER as in a SPEC (featviz.cli.spec_grammar): module paths joined by "/" or ".".
_UNIT = re.compile(r"^(?P<layer>[A-Za-z_]\w*(?:[./]\w+)*):(?P<start>\d+)(?:-(?P<stop>\d+))?$")


def register(sub) -> None:
  p = sub.add_parser(
    "examples",
    help="top dataset images and receptive-field patches of units",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("unit", metavar="LAYER:UNIT", help="a unit, or units A-B inclusive, of a layer")
  p.add_argument("--dataset", required=True, metavar="DIR", help="a folder of photos")
  p.add_argument("--top", type=int, default=9, help="examples per unit")
  p.add_argument("--out", default="examples.png", help="the figure, a PNG file")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def parse_units(text: str) -> tuple[str, list[int]]:
  """``"block3:5"`` -> ``("block3", [5])``; ``"block3:0-3"`` -> ``("block3", [0, 1, 2, 3])``."""
  m = _UNIT.match(text.strip())
  if not m:
    raise UsageError(f"cannot parse {text!r}: give LAYER:UNIT or LAYER:A-B, e.g. block3:5")
  start = int(m.group("start"))
  stop = int(m.group("stop")) if m.group("stop") else start
  if stop < start:
    raise UsageError(f"empty unit range {start}-{stop} in {text!r}")
  return m.group("layer"), list(range(start, stop + 1))


def run(args) -> int:
  import time

  import numpy as np

  from featviz import images, photos
  from featviz.analysis import dataset_examples

  out = writable_output(args.out)
  layer, units = parse_units(args.unit)
  if args.top < 1:
    raise UsageError("--top must be a positive integer")
  model = load_model(args)
  model.spec.check_units(layer, np.asarray(units))
  data, paths = photos.load_folder(args.dataset, model.spec.image_size, model.spec.channels)
  start = time.perf_counter()
  scan = dataset_examples.scan_layer(model, data, layer, progress_bar=not args.no_progress)
  scanned = time.perf_counter()
  examples = dataset_examples.unit_examples(model, scan, units, min(args.top, len(data)))
  names = [p.stem for p in paths]
  fig = dataset_examples.figure(data, names, scan, examples, model.spec.name)
  images.save_png(fig, out)
  print(
    f"scanned {plural(len(data), 'image')} through {model.spec.name} {layer} "
    f"({scan.map_size[0]}x{scan.map_size[1]} map, {plural(scan.mean.shape[1], 'unit')}) in "
    f"{scanned - start:.1f} s; fields and figure in {time.perf_counter() - scanned:.1f} s"
  )
  for e in examples:
    box = e.boxes[0]
    print(
      f"{layer}:{e.unit}  top image {names[e.images[0]]} (mean {e.image_values[0]:.4g})  "
      f"top patch {names[e.patches[0]]} (max {e.patch_values[0]:.4g} at row "
      f"{e.patch_at[0][0]}, col {e.patch_at[0][1]}; field rows {box[0]}-{box[2] - 1}, "
      f"cols {box[1]}-{box[3] - 1})"
    )
  print(f"wrote {out}")
  return 0
