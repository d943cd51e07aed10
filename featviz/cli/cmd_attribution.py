"""``featviz attribution MODEL PHOTO --layer A``: what in layer A feeds a class or a unit."""

from __future__ import annotations

import pathlib

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model
from featviz.cli.errors import UsageError, writable_output

_EPILOG = """Gradient x activation of layer A (Olah et al., "The Building Blocks of
Interpretability", 2018) for a class logit (default: the model's top-1 class) or for a unit of
a later layer (--unit LAYER:CHANNEL, its mean over positions). The figure: where on the photo
the attribution is positive and negative (summed over channels), and the channels with the
largest |attribution| (summed over positions); with --groups K, also the photo's K neuron
groups at A (NMF), each with its share.

Examples:
  featviz attribution efficientnet_lite0 dog.jpg --layer block10 --out attr.png
  featviz attribution efficientnet_lite0 dog.jpg --layer block10 --label tennis_ball --groups 6
  featviz attribution efficientnet_lite0 dog.jpg --layer block5 --unit block10:17
"""


def register(sub) -> None:
  p = sub.add_parser(
    "attribution",
    help="attribution of a layer's positions and channels to a class or a later unit",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("photo", help="a photo (resized on its shorter side, centre-cropped)")
  p.add_argument("--layer", required=True, help="layer A, whose activations are attributed")
  which = p.add_mutually_exclusive_group()
  which.add_argument(
    "--label",
    default=None,
    help="a class index or name (default: the model's top-1 class)",
  )
  which.add_argument("--unit", default=None, metavar="LAYER:CHANNEL", help="a later layer's unit")
  p.add_argument("--groups", type=int, default=0, help="also attribute to K neuron groups (NMF)")
  p.add_argument("--top", type=int, default=10, help="channels shown in the bar chart")
  p.add_argument("--html", default=None, metavar="PAGE", help="also write a self-contained page")
  p.add_argument("--out", default="attribution.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def run(args) -> int:
  import numpy as np

  from featviz import images, photos
  from featviz.analysis import attribution, layer_grad, neuron_groups, predictions
  from featviz.cli import recipe_page

  if args.groups < 0 or args.top < 1:
    raise UsageError("--groups must be 0 or more and --top at least 1")
  model = load_model(args)
  spec = model.spec
  spec.check_layer(args.layer)
  image = photos.load_image(args.photo, spec.image_size, spec.channels)
  if args.unit is not None:
    try:
      target = attribution.parse_unit(args.unit)
    except attribution.TargetError as e:
      raise UsageError(str(e)) from None
  else:
    if args.label is None:
      index = int(predictions.top_classes(model, image[None], 1)[1][0, 0])
    else:
      index = spec.label_index(int(args.label) if args.label.strip().isdigit() else args.label)
    target = attribution.Target("logits", index)
  shape = layer_grad.layer_shapes(model)[args.layer]
  if len(shape) != 4:
    raise UsageError(
      f"the figure maps attribution over positions: give a spatial layer; {args.layer!r} is "
      f"flat {shape[1:]} (featviz.analysis.attribution.attribute takes it in Python)"
    )
  if args.groups:
    most = min(shape[1] * shape[2], shape[3])
    if args.groups > most:
      raise UsageError(f"--groups must be at most {most} for {args.layer}; got {args.groups}")
  try:
    result = attribution.attribute(model, image, args.layer, target)
  except attribution.TargetError as e:
    raise UsageError(str(e)) from None
  out = writable_output(args.out)  # only now: a refused input leaves nothing behind
  html = writable_output(args.html, ".html") if args.html else None
  text = (
    predictions.class_text(spec, target.index)
    if target.layer == "logits"
    else target.describe(model)
  )
  group_values = tiles = None
  if args.groups:
    acts = result.acts
    fact = neuron_groups.factorize(acts.reshape(-1, acts.shape[-1]), args.groups)
    maps = fact.spatial.reshape(acts.shape[0], acts.shape[1], -1)
    group_values = result.groups(maps, fact.directions)
    cols = neuron_groups.colours(args.groups)
    tiles = np.stack(
      [
        neuron_groups.tint(image, maps[..., k] / (float(maps[..., k].max()) or 1.0), c)
        for k, c in enumerate(cols)
      ]
    )
  name = pathlib.Path(args.photo).name
  title = f"{spec.name}: attribution of {args.layer} to {text} on {name}"
  fig = attribution.figure(
    image, result, title, text, top=args.top, group_values=group_values, group_tiles=tiles
  )
  images.save_png(fig, out)
  ch = result.channels
  order = np.argsort(-np.abs(ch), kind="stable")[: args.top]
  if html:
    facts = [
      ("model", spec.name),
      ("layer", args.layer),
      ("target", text),
      ("target value", f"{result.value:.4g}"),
      ("total attribution", f"{result.total:.4g}"),
      ("top channels", ", ".join(f"{i} ({ch[i]:+.3g})" for i in order)),
    ]
    recipe_page.write(html, recipe_page.page(title, fig, facts))
  print(f"{text}: value {result.value:.4g}, attribution of {args.layer} totals {result.total:.4g}")
  print("top channels: " + ", ".join(f"{i} ({ch[i]:+.3g})" for i in order))
  if group_values is not None:
    print("groups: " + ", ".join(f"{k} ({v:+.3g})" for k, v in enumerate(group_values)))
  print(f"wrote {out}{f' and {html}' if html else ''}")
  return 0
