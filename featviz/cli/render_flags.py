"""The render settings as command-line flags: one set for ``render`` and ``sweep`` alike.

Every flag is a field of :class:`featviz.RenderConfig` and takes its default from there, so the
CLI, the Python API and a sweep's manifest cannot disagree; :func:`config_from` builds the
config once from the parsed flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from featviz import param as param_lib
from featviz._loop import config as config_lib
from featviz.cli.errors import UsageError

_DEFAULTS = config_lib.RenderConfig()
_FLAGS = {  # flag -> config field
  "steps": "steps",
  "size": "size",
  "lr": "learning_rate",
  "param": "param",
  "transforms": "transforms",
  "kernels": "kernels",
  "input_size": "input_size",
  "compute_dtype": "compute_dtype",
  "redirect_relu_steps": "redirect_relu_steps",
  "chunk": "chunk",
  "rewrites": "rewrites",
  "alpha": "alpha",
}
# --transforms' default: MACO's crops and noise for --param maco, Lucid's five otherwise.
_DEFAULT_TRANSFORMS = {"maco": "maco"}


def finite_float(text: str) -> float:
  """argparse type: a finite float (``nan``, ``inf`` and ``1e999`` are refused)."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
  return value


def seed_int(text: str) -> int:
  """argparse type: an integer seed that fits in 64 bits, as ``jax.random.key`` takes."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
  if not -(2**63) <= value < 2**64:
    raise argparse.ArgumentTypeError(
      f"{text if len(text) <= 40 else text[:37] + '...'} does not fit in 64 bits: give an "
      "integer from -2**63 to 2**64 - 1"
    )
  return value


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the render settings' flags (defaults: :meth:`featviz.RenderConfig.lucid`)."""
  d = _DEFAULTS
  g = parser.add_argument_group("render settings (featviz.RenderConfig; defaults are Lucid's)")
  g.add_argument("--steps", type=int, default=d.steps, help="optimization steps")
  g.add_argument("--size", type=int, default=d.size, help="image side in pixels")
  g.add_argument(
    "--seed",
    type=seed_int,
    default=0,
    help="seeds every random draw; an image depends on the seed, its layer and its unit only",
  )
  g.add_argument("--lr", type=finite_float, default=d.learning_rate, help="Adam's learning rate")
  g.add_argument(
    "--param",
    choices=sorted(param_lib.PARAMETERIZATIONS),
    default=d.param,
    help="image parameterization: fourier (Lucid's, decorrelated colour), pixel, lowres "
    "(1/4 side, upsampled), laplacian (Lucid's 4-level pyramid), cppn (Lucid's, a network "
    "per image; try --lr 0.005), maco (Fel et al. 2023: natural magnitude, optimized phase; "
    "writes each image's transparency map too)",
  )
  g.add_argument(
    "--alpha",
    action="store_true",
    help="RGBA images: composited onto a random background each step, the objective "
    "weighted by transparency (Lucid's recipe); PNGs are written with their alpha",
  )
  g.add_argument(
    "--transforms",
    choices=config_lib.TRANSFORMS,
    default=None,
    help="standard: Lucid's five with a draw per image; shared: one draw for the "
    "whole batch, as Lucid; maco: MACO's random crop and noise; none. Default: maco for "
    f"--param maco, else {d.transforms}",
  )
  g.add_argument(
    "--kernels",
    choices=config_lib.KERNELS,
    default=d.kernels,
    help="implementation of the one-pass transforms and the Fourier decode: auto "
    "uses Pallas only on GPUs where it was measured faster (none so far, so "
    "XLA); pallas forces it (interpreted, slow, off a GPU)",
  )
  g.add_argument(
    "--rewrites",
    choices=config_lib.REWRITES,
    default=d.rewrites,
    help="the zoo layers' CPU rewrites of convolution and max pool: auto uses them on a CPU only",
  )
  g.add_argument(
    "--input-size",
    type=int,
    default=d.input_size,
    help="resize images to this side before the network (lucent uses 224); "
    "default: the render size",
  )
  g.add_argument(
    "--compute-dtype",
    choices=["float32", "bfloat16"],
    default="float32",
    help="arithmetic dtype of the network's dense convolutions; parameters, "
    "gradients and activations stay float32",
  )
  g.add_argument(
    "--redirect-relu-steps",
    type=int,
    default=d.redirect_relu_steps,
    help="steps of Lucid's redirected ReLU gradient at the start; 0 turns it off",
  )
  g.add_argument(
    "--chunk",
    type=int,
    default=d.chunk,
    help="steps per compiled call (progress between calls; never changes the "
    "images); default: a divisor of --steps up to 32",
  )


def step_list(text: str) -> tuple[int, ...]:
  """argparse type: comma-separated steps such as ``16,64,256`` (RenderConfig checks them)."""
  try:
    return tuple(int(part) for part in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"{text!r} is not a comma-separated list of steps such as 16,64,256"
    ) from None


# --gif without --snapshots: a frame every this many steps (16 frames of Lucid's 512 steps).
GIF_EVERY = 32


def add_snapshot_arguments(parser: argparse.ArgumentParser) -> None:
  """``--snapshots`` (``RenderConfig.snapshots``) and ``--gif``: for ``render`` only."""
  g = parser.add_argument_group("snapshots of the optimization")
  g.add_argument(
    "--snapshots",
    type=step_list,
    default=None,
    metavar="STEPS",
    help="also write the images after these steps (comma-separated, increasing, each from 1 "
    "to --steps, e.g. 16,64,256) as <out stem>_images/NNNN_<label>_step<k>.png; default: "
    "only the final images",
  )
  g.add_argument(
    "--gif",
    default=None,
    metavar="PATH.gif",
    help="write an animated GIF of the optimization, one frame (the grid) per snapshot and "
    f"one of the final images; without --snapshots a frame every {GIF_EVERY} steps "
    f"(every step when --steps is under {GIF_EVERY})",
  )


def snapshots_of(args: argparse.Namespace) -> tuple[int, ...]:
  """The snapshot steps the flags ask for: ``--snapshots``, or with ``--gif`` alone every
  :data:`GIF_EVERY` steps (every step below it); ``()`` for neither (or for commands without
  these flags)."""
  steps = getattr(args, "snapshots", None)
  if steps is not None:
    return steps
  if getattr(args, "gif", None) is None:
    return ()
  every = GIF_EVERY if args.steps >= GIF_EVERY else 1
  return tuple(range(every, args.steps + 1, every)) if args.steps >= 1 else ()


def config_from(args: argparse.Namespace) -> config_lib.RenderConfig:
  """The :class:`featviz.RenderConfig` of the parsed flags; bad values are a UsageError that
  names the flag."""
  values = {field: getattr(args, flag) for flag, field in _FLAGS.items()}
  values["snapshots"] = snapshots_of(args)
  if values["transforms"] is None:
    values["transforms"] = _DEFAULT_TRANSFORMS.get(values["param"], _DEFAULTS.transforms)
  if values["compute_dtype"] == "float32":
    values["compute_dtype"] = None
  try:
    return dataclasses.replace(_DEFAULTS, **values)
  except config_lib.ConfigError as e:
    message = str(e)
    for flag, field in [*_FLAGS.items(), ("snapshots", "snapshots")]:
      if message.startswith(field):
        message = "--" + flag.replace("_", "-") + message[len(field) :]
        break
    raise UsageError(message) from None
