"""``featviz groups MODEL PHOTO --layer L --groups K``: neuron groups of a photo (NMF)."""

from __future__ import annotations

import pathlib

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import add_render_arguments, config_from

_EPILOG = """The photo's activations at --layer, (h * w positions, C channels), are factorized by
NMF into K groups (Olah et al., "The Building Blocks of Interpretability", 2018); each group's
channel factor is rendered as a direction, all K in one compiled render. The figure: the photo,
every group's map in its own colour, then each group's map and its render.

Examples:
  featviz groups efficientnet_lite0 dog.jpg --layer block10 --groups 6 --out groups.png
  featviz groups mnist_cnn digit.png --layer conv4 --groups 3 --size 28 --steps 128
"""


def register(sub) -> None:
  p = sub.add_parser(
    "groups",
    help="neuron groups of a photo: NMF of a layer, each group rendered",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("photo", help="a photo (resized on its shorter side, centre-cropped)")
  p.add_argument("--layer", required=True, help="a spatial layer (see `featviz zoo info`)")
  p.add_argument("--groups", type=int, default=6, help="number of NMF groups K (Lucid: 6)")
  add_render_arguments(p)
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.add_argument("--html", default=None, metavar="PAGE", help="also write a self-contained page")
  p.add_argument("--out", default="groups.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def run(args) -> int:
  from featviz import images, photos
  from featviz.analysis import layer_grad, neuron_groups
  from featviz.cli import recipe_page

  config = config_from(args)
  model = load_model(args)
  spec = model.spec
  spec.check_layer(args.layer)
  shape = layer_grad.layer_shapes(model)[args.layer]
  if len(shape) != 4:
    raise UsageError(f"neuron groups need a spatial layer; {args.layer!r} is flat {shape[1:]}")
  most = min(shape[1] * shape[2], shape[3])
  if not 1 <= args.groups <= most:
    raise UsageError(
      f"--groups must be from 1 to {most} (min of {args.layer}'s {shape[1]} x {shape[2]} "
      f"positions and {shape[3]} channels); got {args.groups}"
    )
  image = photos.load_image(args.photo, spec.image_size, spec.channels)
  out = writable_output(args.out)  # only now: a refused input leaves nothing behind
  html = writable_output(args.html, ".html") if args.html else None
  result = neuron_groups.neuron_groups(
    model, image, args.layer, args.groups, config, seed=args.seed, progress_bar=not args.no_progress
  )
  name = pathlib.Path(args.photo).name
  title = (
    f"{spec.name} {args.layer}: {plural(args.groups, 'neuron group')} of {name} "
    f"({config.steps} steps, {config.size} px, seed {args.seed})"
  )
  fig = neuron_groups.figure(image, result, title, name)
  images.save_png(fig, out)
  share = result.maps.sum(axis=(0, 1)) / max(float(result.maps.sum()), 1e-12)
  lines = [
    f"group {k}: {share[k]:.1%} of the map, top channels "
    + ", ".join(str(int(c)) for c in (-result.directions[k]).argsort()[:5])
    for k in range(args.groups)
  ]
  if html:
    facts = [
      ("model", spec.name),
      ("layer", args.layer),
      ("photo", name),
      ("NMF reconstruction error", f"{result.error:.2%}"),
      ("render", f"{config.steps} steps, {config.size} px, seed {args.seed}"),
    ] + [(f"group {k}", line.split(": ", 1)[1]) for k, line in enumerate(lines)]
    recipe_page.write(html, recipe_page.page(title, fig, facts))
  print(f"NMF of {args.layer} {shape[1:]}: reconstruction error {result.error:.2%}")
  for line in lines:
    print(f"  {line}")
  print(f"wrote {out}{f' and {html}' if html else ''} ({result.seconds:.1f} s render)")
  return 0
