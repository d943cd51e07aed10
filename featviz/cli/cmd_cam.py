"""``featviz cam MODEL IMAGE``: CAM, Grad-CAM, guided backprop, guided Grad-CAM, deconvnet."""

from __future__ import annotations

import pathlib

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import finite_float

_EPILOG = """Explains one class (default: the model's top-1) on a photo. The figure shows the
photo, the method's picture (heat map blended on the photo for cam/gradcam; the gradient image
for the others) and the model's top-5 classes with probabilities.

Examples:
  featviz cam efficientnet_lite0 goldfish.jpg --method cam --out cam.png
  featviz cam efficientnet_lite0 goldfish.jpg --label goldfish --layer block10 --out g.png
  featviz cam mnist_cnn digit.png --method guided-gradcam --out digit.png
"""

METHODS = ("cam", "gradcam", "guided", "guided-gradcam", "deconvnet")


def register(sub) -> None:
  p = sub.add_parser(
    "cam",
    help="class activation maps and gradient explanations of a photo",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("image", help="a photo (resized on its shorter side, centre-cropped)")
  which = p.add_mutually_exclusive_group()
  which.add_argument(
    "--class",
    dest="cls",
    type=int,
    default=None,
    help="class index (default: the model's top-1 class)",
  )
  which.add_argument(
    "--label",
    default=None,
    help="class name in any case, e.g. goldfish or golden_retriever "
    "(`featviz zoo labels MODEL`; default: the model's top-1 class)",
  )
  p.add_argument(
    "--layer",
    default=None,
    help="Grad-CAM layer (default: the GAP head's layer, else the last spatial "
    "layer); CAM always uses the head's layer",
  )
  p.add_argument(
    "--method",
    choices=METHODS,
    default="gradcam",
    help="cam: the class map of the global-average-pool head; gradcam: Grad-CAM at "
    "--layer; guided: guided backprop; guided-gradcam: the two multiplied; "
    "deconvnet: Zeiler and Fergus's backward pass",
  )
  p.add_argument("--alpha", type=finite_float, default=0.5, help="heat map weight in the overlay")
  p.add_argument("--out", default="cam.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def run(args) -> int:
  from featviz import images, photos
  from featviz.analysis import cam, figures, layer_grad, predictions
  from featviz.zoo import heads

  out = writable_output(args.out)
  if not 0.0 <= args.alpha <= 1.0:
    raise UsageError(f"--alpha must be in [0, 1], got {args.alpha}")
  model = load_model(args)
  spec = model.spec
  head = heads.linear_head(spec.name, model.weights)
  if args.method == "cam":
    if head is None:
      raise UsageError(
        f"CAM needs a global-average-pool + linear head; {spec.name} has none "
        "(its head is known for: " + ", ".join(heads.HEADS) + "); use "
        "--method gradcam"
      )
    if args.layer not in (None, head[0]):
      raise UsageError(f"CAM reads the head's layer {head[0]!r}; drop --layer or use gradcam")
  layer = args.layer or (head[0] if head else layer_grad.last_spatial_layer(model))
  spec.check_layer(layer)
  if args.method in ("gradcam", "guided-gradcam"):
    shape = layer_grad.layer_shapes(model)[layer]
    if len(shape) != 4:
      raise UsageError(f"Grad-CAM needs a spatial layer; {layer!r} is flat {shape[1:]}")
  target = None
  if args.cls is not None:
    target = spec.label_index(args.cls)
  elif args.label is not None:
    target = spec.label_index(args.label)
  image = photos.load_image(args.image, spec.image_size, spec.channels)
  top_p, top_i = predictions.top_classes(model, image[None], 5)
  if target is None:
    target = int(top_i[0, 0])
  result = cam.explain(
    model, image[None], target, args.method, layer=layer, head=head, alpha=args.alpha
  )
  lines = predictions.describe(spec, top_p[0], top_i[0])
  where = "" if args.method in ("guided", "deconvnet") else f" at {result.layer}"
  explained = f"{args.method}{where} for {predictions.class_text(spec, target)}"
  items = [(image, [pathlib.Path(args.image).name])]
  if args.method == "guided-gradcam":
    overlay = figures.overlay(image, result.heat[0], args.alpha)
    items.append((overlay, [f"gradcam at {layer}"]))
  caption = {
    "cam": "CAM, min-max scaled",
    "gradcam": "Grad-CAM / its max",
    "guided": "guided backprop",
    "deconvnet": "deconvnet",
    "guided-gradcam": "guided Grad-CAM",
  }[args.method]
  if args.method not in ("cam", "gradcam"):
    caption += " (grey = mean, 0.1 per std)"
  items.append((result.pictures[0], [caption]))
  scale = max(1, 160 // spec.image_size)  # mnist's 28 px -> 5x
  body = figures.panels(items, scale=scale)
  text = figures.text_block(lines, 0, title="top-5 (probability):")
  fig = figures.stack(
    [
      figures.text_block([], body.width, title=f"{spec.name}: {explained}"),
      figures.panels([(body, []), (text, [])]),
    ]
  )
  images.save_png(fig, out)
  print(f"{spec.name} top-5 on {pathlib.Path(args.image).name}:")
  for line in lines:
    print(f"  {line}")
  print(f"wrote {out}: {explained}")
  return 0
