"""``featviz invert MODEL IMAGE --layers L1,L2,L3``: reconstruct a photo from its activations."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import finite_float

_EPILOG = """Examples:
  featviz invert efficientnet_lite0 bird.jpg --layers stem,block3,block8,block12 --out inv.png
  featviz invert efficientnet_lite0 bird.jpg --layers block1,block12 --size 128 --steps 128

Every layer is inverted at once, one image each, in one compiled render loop (Mahendran and
Vedaldi's normalized loss plus a small total-variation prior; featviz.analysis.inversion).
"""


def register(sub) -> None:
  from featviz.analysis import inversion

  p = sub.add_parser(
    "invert",
    help="reconstruct a photo from its activations at some layers",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("image", metavar="IMAGE", help="the photo")
  p.add_argument("--layers", required=True, help="comma-separated layer names")
  p.add_argument("--steps", type=int, default=inversion.STEPS, help="Adam steps")
  p.add_argument(
    "--size", type=int, default=None, help="photo side in pixels (default: the model's input size)"
  )
  p.add_argument(
    "--tv",
    type=finite_float,
    default=inversion.TV_WEIGHT,
    help="weight of the total variation per pixel value",
  )
  p.add_argument(
    "--lr", type=finite_float, default=inversion.LEARNING_RATE, help="Adam learning rate"
  )
  p.add_argument(
    "--param",
    choices=["fourier", "pixel"],
    default="fourier",
    help="fourier: Lucid's decorrelated Fourier image; pixel: plain pixels",
  )
  p.add_argument("--seed", type=int, default=0, help="seed of the initial images")
  p.add_argument("--out", default="invert.png", help="the figure, a PNG file")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def run(args) -> int:
  from featviz import images, photos
  from featviz.analysis import inversion

  out = writable_output(args.out)
  layers = [name.strip() for name in args.layers.split(",") if name.strip()]
  if not layers:
    raise UsageError("--layers needs at least one layer name")
  if args.steps < 1 or args.tv < 0 or args.lr <= 0:
    raise UsageError("--steps and --lr must be positive, --tv not negative")
  model = load_model(args)
  for layer in layers:
    model.spec.check_layer(layer)
  size = args.size or model.spec.image_size
  if size < model.spec.min_size:
    raise UsageError(
      f"--size {size} is below {model.spec.name}'s smallest input ({model.spec.min_size} px)"
    )
  photo = photos.load_image(args.image, size, model.spec.channels)
  result = inversion.invert(
    model,
    photo,
    layers,
    steps=args.steps,
    tv_weight=args.tv,
    lr=args.lr,
    param=args.param,
    seed=args.seed,
    progress_bar=not args.no_progress,
  )
  title = (
    f"{model.spec.name} feature inversion, {plural(args.steps, 'step')}, {size} px, "
    f"tv {args.tv:g}, seed {args.seed}"
  )
  images.save_png(inversion.figure(photo, result, title, scale=max(1, 128 // size)), out)
  print(f"inverted {plural(len(layers), 'layer')} at {size} px in {result.seconds:.1f} s")
  for layer, psnr, mse, loss in zip(result.layers, result.psnr, result.mse, result.loss):
    print(f"{layer:>14s}  PSNR {psnr:5.2f} dB  MSE {mse:.5f}  feature loss {loss:.4f}")
  print(f"wrote {out}")
  return 0
