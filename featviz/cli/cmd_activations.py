"""``featviz activations MODEL IMAGE --layer L``: every channel of a layer, and sparsity."""

from __future__ import annotations

import pathlib

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output

_EPILOG = """Prints the fraction of exactly-zero activations of every layer, and draws it.

Examples:
  featviz activations efficientnet_lite0 photo.jpg --layer block5 --out block5.png
  featviz activations mnist_cnn digit.png --layer conv2 --normalize layer --out conv2.png
"""


def register(sub) -> None:
  p = sub.add_parser(
    "activations",
    help="activation maps of a layer for a photo, and sparsity",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("image", help="a photo (resized on its shorter side, centre-cropped)")
  p.add_argument("--layer", required=True, help="a spatial layer (see `featviz zoo info`)")
  p.add_argument(
    "--normalize",
    choices=["channel", "layer"],
    default="channel",
    help="channel: each map min-max scaled on its own; layer: one scale for all",
  )
  p.add_argument(
    "--size", type=int, default=None, help="input side in pixels (default: the model's, e.g. 224)"
  )
  p.add_argument("--out", default="activations.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def run(args) -> int:
  from featviz import images, photos
  from featviz.analysis import activation_maps

  out = writable_output(args.out)
  model = load_model(args)
  model.spec.check_layer(args.layer)
  size = args.size or model.spec.image_size
  image = photos.load_image(args.image, size, model.spec.channels)
  acts, sparsity = activation_maps.activations_and_sparsity(model, image[None], args.layer)
  if acts.ndim != 4:
    raise UsageError(
      f"layer {args.layer!r} is flat {acts.shape[1:]}, not a spatial map; "
      "choose a convolutional layer"
    )
  name = pathlib.Path(args.image).name
  fig = activation_maps.figure(
    image,
    acts[0],
    sparsity,
    layer=args.layer,
    model_name=model.spec.name,
    normalize=args.normalize,
    image_name=name,
  )
  images.save_png(fig, out)
  width = max(len(n) for n in sparsity)
  print("sparsity (fraction of exactly-zero activations):")
  for layer, value in sparsity.items():
    print(f"  {layer:<{width}}  {value:7.2%}")
  print(
    f"wrote {out}: {plural(acts.shape[-1], 'channel')} of {args.layer} "
    f"({acts.shape[1]}x{acts.shape[2]}, normalized per {args.normalize})"
  )
  return 0
