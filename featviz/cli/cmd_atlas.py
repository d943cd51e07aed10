"""``featviz atlas MODEL PHOTO_DIR --layer L --grid N``: an activation atlas of a folder."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import add_render_arguments, config_from, finite_float

_EPILOG = """Activations at random positions of every photo, laid out by t-SNE (scikit-learn), cut
into an N x N grid; each cell with enough vectors is rendered as their mean direction, every cell
in one compiled render (Carter et al., "Activation Atlas", 2019). With --class, only the
positions that push that class's logit up most (gradient x activation) are kept: a class
activation atlas.

Examples:
  featviz atlas efficientnet_lite0 photos/ --layer block15 --grid 8 --out atlas.png
  featviz atlas efficientnet_lite0 photos/ --layer block15 --class goldfish --out fish.png
"""


def register(sub) -> None:
  from featviz.analysis import atlas

  p = sub.add_parser(
    "atlas",
    help="activation atlas of a folder of photos: a grid of rendered directions",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("photo_dir", metavar="PHOTO_DIR", help="a folder of photos")
  p.add_argument(
    "--layer", required=True, help="a layer (see `featviz zoo info`); a flat one has 1 position"
  )
  p.add_argument("--grid", type=int, default=8, help="cells per side of the atlas")
  p.add_argument(
    "--per-image", type=int, default=atlas.PER_IMAGE, help="random positions kept per photo"
  )
  p.add_argument(
    "--min-points", type=int, default=atlas.MIN_POINTS, help="vectors a cell needs to be rendered"
  )
  p.add_argument(
    "--class",
    dest="cls",
    default=None,
    metavar="NAME",
    help="a class index or name: keep only positions attributed to it (class activation atlas)",
  )
  p.add_argument(
    "--class-fraction",
    type=finite_float,
    default=atlas.CLASS_FRACTION,
    help="with --class: the fraction of positions kept, those of highest attribution",
  )
  p.add_argument(
    "--cossim-pow",
    type=finite_float,
    default=atlas.COSSIM_POW,
    help="cosine power of the direction objective (Lucid's atlas: 4; 0: plain dot product)",
  )
  add_render_arguments(p)
  p.set_defaults(size=atlas.RENDER_SIZE)
  p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
  p.add_argument("--html", default=None, metavar="PAGE", help="also write a self-contained page")
  p.add_argument("--out", default="atlas.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def run(args) -> int:
  import numpy as np

  from featviz import images, photos
  from featviz.analysis import atlas, layer_grad, predictions
  from featviz.cli import recipe_page

  config = config_from(args)
  for name in ("grid", "per_image", "min_points"):
    if getattr(args, name) < 1:
      raise UsageError(f"--{name.replace('_', '-')} must be a positive integer")
  if not 0.0 < args.class_fraction <= 1.0:
    raise UsageError(f"--class-fraction must be in (0, 1], got {args.class_fraction}")
  if args.cossim_pow < 0:
    raise UsageError(f"--cossim-pow must be 0 or more, got {args.cossim_pow}")
  model = load_model(args)
  spec = model.spec
  spec.check_layer(args.layer)
  shape = layer_grad.layer_shapes(model)[args.layer]
  h, w = shape[1:3] if len(shape) == 4 else (1, 1)  # a flat layer: one position per photo
  if args.per_image > h * w:
    raise UsageError(
      f"--per-image must be at most {h * w}, the positions of {args.layer} ({h} x {w})"
    )
  target = None
  if args.cls is not None:
    target = spec.label_index(int(args.cls) if args.cls.strip().isdigit() else args.cls)
  data, paths = photos.load_folder(args.photo_dir, spec.image_size, spec.channels)
  if len(data) * args.per_image < 4:
    raise UsageError(f"an atlas needs at least 4 positions; {args.photo_dir!r} gives fewer")
  out = writable_output(args.out)  # only now: a refused input leaves nothing behind
  html = writable_output(args.html, ".html") if args.html else None
  try:
    result = atlas.atlas(
      model,
      data,
      args.layer,
      args.grid,
      config,
      per_image=args.per_image,
      min_points=args.min_points,
      target=target,
      class_fraction=args.class_fraction,
      cossim_pow=args.cossim_pow,
      seed=args.seed,
      progress_bar=not args.no_progress,
    )
  except atlas.AtlasError as e:
    raise UsageError(str(e)) from None
  which = (
    f"class activation atlas of {predictions.class_text(spec, target)}"
    if target is not None
    else "activation atlas"
  )
  title = (
    f"{spec.name} {args.layer}: {which} of {plural(len(data), 'photo')} "
    f"({config.steps} steps, {config.size} px, cossim^{args.cossim_pow:g}, seed {args.seed})"
  )
  fig = atlas.figure(result, title)
  images.save_png(fig, out)
  counts = result.counts()
  if html:
    facts = [
      ("model", spec.name),
      ("layer", args.layer),
      ("photos", f"{len(data)} in {args.photo_dir}"),
      ("positions laid out", len(result.kept)),
      ("cells rendered", f"{len(result.cells)} of {args.grid} x {args.grid}"),
      ("vectors per cell", f"{int(counts.min())} to {int(counts.max())}"),
      ("render", f"{config.steps} steps, {config.size} px, seed {args.seed}"),
    ]
    recipe_page.write(html, recipe_page.page(title, fig, facts))
  print(
    f"{len(result.kept)} of {len(result.samples.vectors)} positions laid out; "
    f"{len(result.cells)} of {args.grid * args.grid} cells rendered "
    f"({int(np.median(counts))} vectors in the median cell)"
  )
  print(f"wrote {out}{f' and {html}' if html else ''} ({result.seconds:.1f} s render)")
  return 0
