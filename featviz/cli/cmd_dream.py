"""``featviz dream MODEL IMAGE --layer L``: DeepDream on a photo, photo and dream side by side."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import finite_float

_EPILOG = """Examples:
  featviz dream efficientnet_lite0 bird.jpg --layer block5 --out dream.png
  featviz dream efficientnet_lite0 bird.jpg --layer block8 --octaves 5 --steps 10

The defaults are the DeepDream notebook's (google/deepdream): 4 octaves 1.4 apart, a step of
1.5/255 per pixel on average, random rolls up to 32 px; 20 steps per octave (notebook: 10).
"""


def register(sub) -> None:
  from featviz.analysis import dream

  p = sub.add_parser(
    "dream",
    help="DeepDream on a photo (multi-scale, jittered)",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("image", metavar="IMAGE", help="the photo")
  p.add_argument("--layer", required=True, help="the layer whose mean squared activation grows")
  p.add_argument(
    "--octaves",
    type=int,
    default=dream.OCTAVES,
    help="image scales to dream at, smallest first, the last at --size",
  )
  p.add_argument(
    "--octave-scale",
    type=finite_float,
    default=dream.OCTAVE_SCALE,
    help="size ratio of one octave to the next",
  )
  p.add_argument("--steps", type=int, default=dream.STEPS, help="gradient steps per octave")
  p.add_argument(
    "--lr",
    type=finite_float,
    default=dream.LEARNING_RATE,
    help="mean pixel change per step in [0, 1] units "
    "(default: 1.5/255 = %(default).4g, the notebook's)",
  )
  p.add_argument("--jitter", type=int, default=dream.JITTER, help="largest random roll, in pixels")
  p.add_argument(
    "--size", type=int, default=None, help="photo side in pixels (default: the model's input size)"
  )
  p.add_argument("--seed", type=int, default=0, help="seed of the random rolls")
  p.add_argument("--out", default="dream.png", help="the figure, a PNG file")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def run(args) -> int:
  import time

  import numpy as np

  from featviz import images, photos
  from featviz.analysis import dream

  out = writable_output(args.out)
  if args.octaves < 1 or args.steps < 1 or args.jitter < 0:
    raise UsageError("--octaves and --steps must be positive, --jitter not negative")
  if args.octave_scale <= 1.0 or args.lr <= 0:
    raise UsageError("--octave-scale must be above 1 and --lr positive")
  model = load_model(args)
  model.spec.check_layer(args.layer)
  size = args.size or model.spec.image_size
  if size < model.spec.min_size or (model.spec.fixed_size and size != model.spec.image_size):
    raise UsageError(f"--size {size} is not an input size {model.spec.name} takes")
  photo = photos.load_image(args.image, size, model.spec.channels)
  start = time.perf_counter()
  result = dream.dream(
    model,
    photo,
    args.layer,
    args.octaves,
    args.octave_scale,
    args.steps,
    args.lr,
    args.jitter,
    args.seed,
    progress_bar=not args.no_progress,
  )
  seconds = time.perf_counter() - start
  before, after = dream.scores(model, np.stack([photo, result.image]), args.layer)
  title = (
    f"{model.spec.name} deepdream:{args.layer}, {plural(len(result.sizes), 'octave')} x "
    f"{plural(args.steps, 'step')}, lr {args.lr:.3g}, seed {args.seed}"
  )
  images.save_png(dream.figure(photo, result, title, before, after, scale=max(1, 128 // size)), out)
  print(
    f"octaves {' > '.join(f'{h}x{w}' for h, w in result.sizes)} px: {seconds:.1f} s "
    f"({dream.trace_count()} octave programs compiled)"
  )
  print(f"deepdream:{args.layer} objective {before:.4g} on the photo -> {after:.4g} on the dream")
  print(f"wrote {out}")
  return 0
