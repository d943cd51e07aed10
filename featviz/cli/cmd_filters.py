"""``featviz filters MODEL``: first-layer kernels, or optimized images for a layer's units."""

from __future__ import annotations

import re

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output

_EPILOG = """Without --layer: the first convolution's kernels, one tile per filter, scaled
symmetrically around 0 (grey = 0). With --layer: images that maximize each unit's mean
activation, rendered together in one compiled program.

Examples:
  featviz filters efficientnet_lite0 --out stem.png
  featviz filters mnist_cnn --out conv1.png
  featviz filters efficientnet_lite0 --layer block10 --units 0-7 --steps 256 --out b10.png
"""


def register(sub) -> None:
  p = sub.add_parser(
    "filters",
    help="first-layer filters, or optimized images for units",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument(
    "--layer",
    default=None,
    help="render images for units of this layer instead of showing the first kernels",
  )
  p.add_argument(
    "--units",
    default=None,
    help="with --layer: N or A-B inclusive (default: 0-7, or every channel if fewer)",
  )
  p.add_argument(
    "--scale",
    choices=["filter", "global"],
    default="filter",
    help="kernels: scale each filter by its own max |w|, or all by the largest",
  )
  p.add_argument("--steps", type=int, default=512, help="render steps (Lucid: 512)")
  p.add_argument("--size", type=int, default=128, help="render side in pixels (Lucid: 128)")
  p.add_argument("--seed", type=int, default=0, help="seed of the render")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.add_argument("--out", default="filters.png", help="the figure, a PNG file")
  p.set_defaults(func=run)


def parse_units(text: str | None, channels: int) -> list[int]:
  """``"5"`` -> [5], ``"0-7"`` -> [0..7]; None -> the first min(8, channels)."""
  if text is None:
    return list(range(min(8, channels)))
  match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
  if not match:
    raise UsageError(f"--units must be N or A-B (inclusive), got {text!r}")
  start = int(match.group(1))
  stop = int(match.group(2)) if match.group(2) else start
  if stop < start:
    raise UsageError(f"--units {text!r}: the range is empty (B < A)")
  return list(range(start, stop + 1))


def run(args) -> int:
  from featviz import images
  from featviz.analysis import filters

  out = writable_output(args.out)
  if args.layer is None and args.units is not None:
    raise UsageError("--units needs --layer (without it the first-layer kernels are shown)")
  for name in ("steps", "size"):
    if getattr(args, name) < 1:
      raise UsageError(f"--{name} must be a positive integer")
  model = load_model(args)
  if args.layer is None:
    try:
      conv = filters.first_conv(model)
    except ValueError as e:
      raise UsageError(str(e)) from e
    images.save_png(filters.kernel_figure(model, args.scale), out)
    kh, kw, cin, k = conv.kernel.shape
    print(
      f"wrote {out}: {plural(k, 'first-layer filter')} ({conv.path}, {kh}x{kw}x{cin}), "
      f"scaled per {args.scale} symmetrically around 0"
    )
    return 0
  model.spec.check_layer(args.layer)
  units = parse_units(args.units, model.spec.layers[args.layer])
  model.spec.check_units(args.layer, units)
  result = filters.optimized_filters(
    model,
    args.layer,
    units,
    steps=args.steps,
    size=args.size,
    seed=args.seed,
    progress_bar=not args.no_progress,
  )
  images.save_png(filters.optimized_figure(model, result, args.layer), out)
  print(
    f"wrote {out}: {plural(len(units), 'unit')} of {args.layer} "
    f"({result.run_seconds:.1f} s run, {result.compile_seconds:.1f} s compile)"
  )
  return 0
