"""``featviz render MODEL SPEC [SPEC ...]``: feature visualizations to PNG."""

from __future__ import annotations

import re

from featviz.cli import spec_grammar
from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import (
  add_render_arguments,
  add_snapshot_arguments,
  config_from,
  finite_float,
)

_EPILOG = f"""SPEC grammar:
{spec_grammar.GRAMMAR}

Examples:
  featviz render efficientnet_lite0 block10:0-7 --out block10.png
  featviz render mnist_cnn logit:0-9 --size 28 --tv 0.05 --out digits.png
  featviz render efficientnet_lite0 "0.5*block5:3+0.5*block5:9" logit:goldfish
  featviz render efficientnet_lite0 block10:0-7 --param maco --out maco.png
  featviz render efficientnet_lite0 block10:3 --alpha --out alpha.png
  featviz render efficientnet_lite0 block10:3 --init photo.jpg --steps 64
  featviz render efficientnet_lite0 block10:3 --snapshots 16,64,256 --gif block10_3.gif
"""


def register(sub) -> None:
  p = sub.add_parser(
    "render",
    help="render images that maximize objectives",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("specs", nargs="+", metavar="SPEC", help="objectives (grammar below)")
  add_render_arguments(p)
  add_snapshot_arguments(p)
  p.add_argument(
    "--batch",
    type=int,
    default=None,
    help="images per SPEC when it names one unit (each draws its own start)",
  )
  for name, what in [
    ("tv", "total variation"),
    ("l1", "L1 norm"),
    ("l2", "L2 norm"),
    ("blur", "blur"),
  ]:
    p.add_argument(
      f"--{name}", type=finite_float, default=0.0, help=f"weight of the {what} penalty"
    )
  p.add_argument(
    "--diversity",
    type=finite_float,
    default=0.0,
    help="weight of Lucid's diversity term on the first SPEC's layer",
  )
  p.add_argument(
    "--init",
    metavar="PHOTO",
    default=None,
    help="start every image from this photo (resized and centre-cropped to --size) instead "
    "of a random draw; every --param but cppn",
  )
  p.add_argument(
    "--out",
    default="render.png",
    help="grid PNG; one PNG per image goes to <out stem>_images/, replacing an earlier "
    "render's NNNN_*.png there (with --param maco also NAME_transparency.png, the transparency "
    "map, and NAME_overlay.png, the image faded by it)",
  )
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def build_objective(args):
  """The SPECs' objective, and that objective with the penalties and diversity added."""
  from featviz import regularizers

  specs = objective = spec_grammar.parse_all(args.specs)
  penalties = [
    (args.tv, regularizers.total_variation()),
    (args.l1, regularizers.l1()),
    (args.l2, regularizers.l2()),
    (args.blur, regularizers.blur()),
  ]
  for weight, penalty in penalties:
    if weight < 0:
      raise UsageError("penalty weights are subtracted: give them as positive numbers")
    if weight:
      objective = objective - weight * penalty
  if args.diversity:
    layers = sorted(spec_grammar.parse(args.specs[0]).layers)
    if not layers:
      raise UsageError("--diversity needs a SPEC that reads a layer")
    objective = objective + args.diversity * regularizers.diversity(layers[0])
  return specs, objective


def run(args) -> int:
  from featviz import images
  from featviz._loop import api

  config = config_from(args)
  if args.batch is not None and args.batch < 1:
    raise UsageError(f"--batch must be a positive integer, got {args.batch}")
  specs, objective = build_objective(args)
  model = load_model(args)
  api.check_positions(model, objective, config)  # before --out is touched
  objective.bind(model.spec, api.resolve_batch(objective, args.batch))  # units, labels, layers
  start = None
  if args.init is not None:
    from featviz import photos

    start = photos.load_image(args.init, config.size, model.spec.channels)
    if config.param == "cppn":
      raise UsageError("--init: a cppn cannot start from a photo; choose another --param")
  out = writable_output(args.out)  # only now: a refused input leaves no folder behind
  gif = writable_output(args.gif, ".gif") if args.gif is not None else None
  folder = out.with_name(out.stem + "_images")
  if folder.exists() and not folder.is_dir():  # checked before the render, not after it
    raise UsageError(
      f"{folder} is a file, but --out {args.out} writes one PNG per image into that folder: "
      "move the file, or give another --out"
    )
  result = api.render(
    model,
    objective,
    config,
    seed=args.seed,
    batch=args.batch,
    progress_bar=not args.no_progress,
    init=start,
  )
  labels = specs.labels(len(result.labels))  # the SPECs alone, without the penalties
  captions = [f"{label} ({value:.3g})" for label, value in zip(labels, result.history[-1])]
  made = not folder.exists()
  folder.mkdir(exist_ok=True)
  try:
    _write_images(folder, result, labels, args.snapshots or ())
  except BaseException:
    if made and not any(folder.iterdir()):  # no empty folder left by a full disk
      folder.rmdir()
    raise
  scale = max(1, 96 // args.size)  # small renders (MNIST: 28 px) upscaled to a 96 px tile, so
  # a caption fits under each
  penalties = "".join(
    f", {name} {getattr(args, name):g}"
    for name in ("tv", "l1", "l2", "blur", "diversity")
    if getattr(args, name)
  )
  dtype = f", {config.compute_dtype}" if config.compute_dtype else ""
  param = f", {config.param}" + (" + alpha" if config.alpha else "")
  title = (
    f"{model.spec.name}, {args.steps} steps, {args.size} px, seed {args.seed}"
    f"{param}{dtype}{penalties}"
  )
  note = "(n): each image's objective at the last step, on its transformed image"
  images.save_png(images.grid(result.images, captions, scale=scale, title=title, note=note), out)
  if gif is not None:
    _write_gif(gif, result, labels, scale, title)
  units_per_s = len(result.labels) / max(result.run_seconds, 1e-9)
  maps = " and their transparency maps" if result.transparency is not None else ""
  if args.snapshots:
    maps += f" and their images after {plural(len(args.snapshots), 'snapshot step')}"
  animation = f", {gif} ({plural(len(result.snapshots), 'frame')})" if gif is not None else ""
  print(
    f"wrote {out}{animation} and {plural(len(result.labels), 'image')}{maps} in {folder}/ "
    f"({result.run_seconds:.1f} s run, {result.compile_seconds:.1f} s compile, "
    f"{units_per_s:.2f} images/s)"
  )
  return 0


# The per-image PNGs a render writes: NNNN_<label>.png (and _transparency, _overlay with maco).
_OWN_PNG = re.compile(r"\d{4}_.+\.png")


def _write_images(folder, result, labels, snapshots=()) -> None:
  """One PNG per image into ``folder``, after deleting an earlier render's (``NNNN_*.png``), so
  that a render of 1 unit after one of 4 does not leave 3 stale images beside its own; with
  ``snapshots`` (steps) also each image at each of them, ``NNNN_<label>_step<k>.png``."""
  from featviz import images

  digits = len(str(result.steps))  # step numbers padded, so that the files sort by step

  for old in folder.iterdir():
    if _OWN_PNG.fullmatch(old.name) and old.is_file() and not old.is_symlink():
      old.unlink()
  for i, (image, label) in enumerate(zip(result.images, labels)):
    name = f"{i:04d}_{images.safe_name(label)}"
    images.save_png(image, folder / f"{name}.png")
    if result.transparency is not None:
      t = result.transparency[i]
      images.save_png(
        images.normalized_transparency(t)[..., None], folder / f"{name}_transparency.png"
      )
      images.save_png(images.overlay_transparency(image, t), folder / f"{name}_overlay.png")
    for step in snapshots:
      images.save_png(result.snapshots[step][i], folder / f"{name}_step{step:0{digits}d}.png")


# Each GIF frame shows this long, in milliseconds; the last (the final images) holds longer.
GIF_FRAME_MS = 200
GIF_LAST_MS = 2000


def _write_gif(path, result, labels, scale: int, title: str) -> None:
  """An animated GIF of the optimization, atomically: one frame per snapshot, each the grid of
  the batch's images at that step, padded onto one canvas size (the titles' widths differ)."""
  from PIL import Image

  from featviz import images

  frames = [
    images.grid(batch, list(labels), scale=scale, title=f"{title}\nstep {step} of {result.steps}")
    for step, batch in result.snapshots.items()
  ]
  size = (max(f.width for f in frames), max(f.height for f in frames))
  canvases = []
  for frame in frames:
    canvas = Image.new("RGB", size, "white")
    canvas.paste(frame, (0, 0))
    canvases.append(canvas)
  durations = [GIF_FRAME_MS] * (len(canvases) - 1) + [GIF_LAST_MS]
  with images.atomic_write(path) as f:
    canvases[0].save(
      f, format="GIF", save_all=True, append_images=canvases[1:], duration=durations, loop=0
    )
