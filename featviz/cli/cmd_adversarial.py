"""``featviz adversarial MODEL IMAGE``: FGSM / PGD perturbations within an L-inf ball."""

from __future__ import annotations

import pathlib

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import finite_float

_EPILOG = """With --target: a targeted attack towards that class. Without: untargeted, away
from --label (default: the model's own top-1 class). eps is in [0, 1] pixel units
(0.03 ~ 8/255). The figure shows the original, the perturbation amplified 0.5/eps times
around grey, and the adversarial image, each with its top-3 classes.

Examples:
  featviz adversarial efficientnet_lite0 goldfish.jpg --target 207 --out adv.png
  featviz adversarial efficientnet_lite0 goldfish.jpg --method fgsm --eps 0.01 --out f.png
  featviz adversarial mnist_cnn digit.png --target 3 --eps 0.2 --steps 40 --out d.png
"""


def register(sub) -> None:
  p = sub.add_parser(
    "adversarial",
    help="FGSM / PGD adversarial examples for a photo",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("image", help="a photo (resized on its shorter side, centre-cropped)")
  p.add_argument(
    "--target",
    default=None,
    help="target class: index or name, e.g. goldfish (`featviz zoo labels MODEL`)",
  )
  p.add_argument(
    "--label", default=None, help="untargeted: the true class (index or name; default: the top-1)"
  )
  p.add_argument(
    "--method",
    choices=["fgsm", "pgd"],
    default="pgd",
    help="fgsm: one signed-gradient step of eps; pgd: --steps projected steps",
  )
  p.add_argument(
    "--eps",
    type=finite_float,
    default=0.03,
    help="L-inf radius in [0, 1] pixel units (0.03 is about 8/255)",
  )
  p.add_argument("--steps", type=int, default=10, help="PGD steps (fgsm takes one)")
  p.add_argument(
    "--step-size", type=finite_float, default=None, help="PGD step (default: 2.5 * eps / steps)"
  )
  p.add_argument("--random-start", action="store_true", help="PGD from a random point")
  p.add_argument(
    "--seed", type=int, default=0, help="seed of the random start (with --random-start)"
  )
  p.add_argument("--out", default="adversarial.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def run(args) -> int:
  from featviz import images, photos
  from featviz.analysis import adversarial, predictions

  out = writable_output(args.out)
  if args.target is not None and args.label is not None:
    raise UsageError("give --target (targeted) or --label (untargeted), not both")
  if not 0.0 < args.eps <= 1.0:
    raise UsageError(f"--eps must be in (0, 1] (pixel units), got {args.eps}")
  if args.steps < 1:
    raise UsageError("--steps must be a positive integer")
  if args.step_size is not None and args.step_size <= 0:
    raise UsageError("--step-size must be positive")
  model = load_model(args)
  spec = model.spec
  target = None if args.target is None else predictions.resolve_class(spec, args.target)
  label = None if args.label is None else predictions.resolve_class(spec, args.label)
  image = photos.load_image(args.image, spec.image_size, spec.channels)
  result = adversarial.attack(
    model,
    image[None],
    method=args.method,
    target=target,
    label=label,
    eps=args.eps,
    steps=args.steps,
    step_size=args.step_size,
    random_start=args.random_start,
    seed=args.seed,
  )
  name = pathlib.Path(args.image).name
  images.save_png(adversarial.figure(model, result, name=name), out)
  for line in adversarial.summary(model, result):
    print(line)
  for when, probs in (("before", result.probs_before[0]), ("after", result.probs_after[0])):
    top = probs.argsort()[::-1][:3]
    print(f"top-3 {when}: " + "; ".join(predictions.describe(spec, probs[top], top)))
  print(f"wrote {out} (perturbation shown x {adversarial.amplification(args.eps):.3g})")
  return 0
