"""``featviz sweep MODEL --layers L1,L2 | --all-layers --out DIR``: every unit, resumable."""

from __future__ import annotations

import argparse
import sys

from featviz._loop.config import RenderConfig
from featviz._sweep.run import DEFAULT_BATCH
from featviz._sweep.stopping import PLATEAU_WINDOW
from featviz.cli.common import HelpFormatter, add_model_arguments, load_model
from featviz.cli.errors import UsageError, writable_dir
from featviz.cli.render_flags import add_render_arguments, config_from, finite_float

_EPILOG = """Renders one image per channel of each layer into DIR (DIR/<layer>/<unit>.png,
an index, DIR/<layer>_atlas.png, DIR/summary.json). Re-running the same command renders only
the missing units; other settings are refused (exit 2) with the list of what differs.
--all-layers means every layer of the model's spec, in forward order (`featviz zoo info MODEL`),
the flat logits included (a logit's channel is the logit itself).

Stopping: every unit takes --max-steps steps (the same as --steps) unless a rule stops it
sooner: --until-ratio R (with --dataset) once its activation reaches R times the best photo's,
--until-plateau TOL once its objective gained less than TOL (a fraction) over the last
--plateau-window steps. The index records each unit's steps and why it stopped.

Several hosts: run the same command on each, sharing DIR, with --distributed (jax.distributed;
add --coordinator/--num-processes/--process-id outside Slurm, Open MPI and Cloud TPU) or with
--share I/N (no JAX coordination). Each process renders every N-th chunk.

Examples:
  featviz sweep efficientnet_lite0 --layers block5,block10 --units 0-15 --out runs/effnet
  featviz sweep efficientnet_lite0 --all-layers --dataset photos/ --steps 256 --out runs/all
  featviz sweep mnist_cnn --all-layers --size 28 --batch 32 --out runs/mnist
  featviz sweep efficientnet_lite0 --layers block10 --units 0-15 --dataset photos/ \\
      --until-ratio 4 --max-steps 256 --out runs/until
"""


class _Untyped(int):
  """An int default that argparse hands back as it is (it converts only strings), so that a
  flag left out can be told from the same number typed: ``--steps 512 --max-steps 256``."""


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"{text!r}: give a positive integer")
  return value


def _positive_float(text: str) -> float:
  value = finite_float(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"{text!r}: give a positive number")
  return value


def _ratio_or_off(text: str) -> float | str:
  return "off" if text == "off" else _positive_float(text)


def add_stopping_arguments(parser, dataset_defaults: tuple[float, int] | None = None) -> None:
  """Adds --max-steps, --until-ratio, --until-plateau and --plateau-window (after the render
  flags, whose --steps they share). ``dataset_defaults`` is ``(ratio, max steps)`` used when
  --dataset is given and the flags are not (``featviz microscope``); --until-ratio then also
  takes ``off``."""
  g = parser.add_argument_group("stopping rules (each unit renders until it is good enough)")
  with_data = ""
  if dataset_defaults is not None:
    with_data = f" (default with --dataset: {dataset_defaults[1]}; without: --steps)"
  g.add_argument(
    "--max-steps",
    type=_positive_int,
    default=None,
    metavar="N",
    help="the most steps any unit takes: --steps under a name that says so; give one of the "
    "two" + with_data,
  )
  ratio_help = (
    "needs --dataset: a unit stops once its activation on its un-transformed image reaches R "
    "times the best photo's (the ratio the sweep reports)"
  )
  if dataset_defaults is not None:
    ratio_help += f" (default with --dataset: {dataset_defaults[0]:g}; off: every unit "
    ratio_help += "takes --max-steps)"
  g.add_argument(
    "--until-ratio",
    type=_positive_float if dataset_defaults is None else _ratio_or_off,
    default=None,
    metavar="R",
    help=ratio_help,
  )
  g.add_argument(
    "--until-plateau",
    type=_positive_float,
    default=None,
    metavar="TOL",
    help="a unit stops once its objective gained less than this fraction (0.01 is 1%%) over "
    "the last --plateau-window steps",
  )
  g.add_argument(
    "--plateau-window",
    type=_positive_int,
    default=_Untyped(PLATEAU_WINDOW),
    metavar="K",
    help="with --until-plateau: the steps over which the gain is measured",
  )
  parser.set_defaults(steps=_Untyped(RenderConfig().steps))


def stopping_from(
  args: argparse.Namespace, dataset_defaults: tuple[float, int] | None = None
) -> tuple[RenderConfig, dict]:
  """The render config (its ``steps`` the most steps a unit takes) and the stopping keyword
  arguments of ``featviz.sweep``, only those given, from flags of
  :func:`add_stopping_arguments`; UsageError for flags that do not go together."""
  steps_typed = not isinstance(args.steps, _Untyped)
  max_steps, until_ratio = args.max_steps, args.until_ratio
  if max_steps is not None and steps_typed and args.steps != max_steps:
    raise UsageError(
      f"--max-steps {max_steps} and --steps {args.steps} both set the most steps a unit "
      "takes: give one of them"
    )
  if dataset_defaults is not None and args.dataset is not None:
    until_ratio = dataset_defaults[0] if until_ratio is None else until_ratio
    if max_steps is None and not steps_typed:
      max_steps = dataset_defaults[1]
  if until_ratio == "off":
    until_ratio = None
  if until_ratio is not None and args.dataset is None:
    raise UsageError(
      f"--until-ratio {until_ratio:g} needs --dataset DIR: the ratio is a unit's activation "
      "over the best photo's"
    )
  window_typed = not isinstance(args.plateau_window, _Untyped)
  if window_typed and args.until_plateau is None:
    raise UsageError(f"--plateau-window {args.plateau_window} goes with --until-plateau TOL")
  args.steps = int(max_steps if max_steps is not None else args.steps)
  stopping: dict = {}
  if until_ratio is not None:
    stopping["until_ratio"] = until_ratio
  if args.until_plateau is not None:
    stopping["until_plateau"] = args.until_plateau
    if window_typed:
      stopping["plateau_window"] = args.plateau_window
  return config_from(args), stopping


def register(sub) -> None:
  p = sub.add_parser(
    "sweep",
    help="render every unit of some layers, resumable",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  which = p.add_mutually_exclusive_group(required=True)
  which.add_argument("--layers", help="comma-separated layer names")
  which.add_argument("--all-layers", action="store_true", help="every layer of the spec")
  p.add_argument(
    "--units",
    default=None,
    metavar="A-B",
    help="channel range, inclusive as in a SPEC (0-7 is units 0 to 7; 5 is unit 5; "
    "16- runs to the last channel), clipped to each layer's channels; default: all",
  )
  p.add_argument(
    "--batch",
    type=int,
    default=DEFAULT_BATCH,
    help="units per compiled call (raise it on an accelerator); the images do not "
    "depend on it, and a store may be resumed with another",
  )
  add_render_arguments(p)
  add_stopping_arguments(p)
  p.add_argument(
    "--dataset", default=None, help="a folder of photos: score each unit against its best photo"
  )
  p.add_argument("--out", required=True, help="the store folder")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.add_argument(
    "--share",
    default=None,
    metavar="I/N",
    help="render process I's share of N (0-based), without jax.distributed",
  )
  p.add_argument(
    "--distributed",
    action="store_true",
    help="call jax.distributed.initialize() first; share by process index",
  )
  p.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (--distributed)")
  p.add_argument("--num-processes", type=int, default=None, help="(--distributed)")
  p.add_argument("--process-id", type=int, default=None, help="(--distributed)")
  p.set_defaults(func=run)


def _share(text: str | None) -> tuple[int, int] | None:
  if text is None:
    return None
  try:
    i, n = (int(x) for x in text.split("/"))
  except ValueError:
    raise UsageError(f"--share {text!r} must look like I/N, e.g. 0/4") from None
  if n < 1 or not 0 <= i < n:
    raise UsageError(f"--share {text!r}: need 0 <= I < N")
  return i, n


def _check_distributed(args) -> None:
  """The --distributed flags, checked before ``jax.distributed.initialize`` (which would raise a
  bare ValueError, or wait for a coordinator that cannot exist)."""
  given = [
    f"--{name.replace('_', '-')}"
    for name in ("coordinator", "num_processes", "process_id")
    if getattr(args, name) is not None
  ]
  if not args.distributed:
    if given:
      raise UsageError(f"{', '.join(given)} go with --distributed")
    return
  n, i = args.num_processes, args.process_id
  if n is not None and n < 1:
    raise UsageError(f"--num-processes {n}: give at least 1")
  if i is not None and (i < 0 or n is not None and i >= n):
    raise UsageError(
      f"--process-id {i}: give 0 to {'N - 1' if n is None else n - 1} "
      f"(of --num-processes {'N' if n is None else n})"
    )
  if args.coordinator is not None:
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
      raise UsageError(
        f"--coordinator {args.coordinator!r}: give HOST:PORT of process 0, e.g. "
        "10.0.0.1:12345 (a port from 1 to 65535)"
      )


def _initialize_distributed(args) -> None:
  import jax

  try:
    jax.distributed.initialize(
      coordinator_address=args.coordinator,
      num_processes=args.num_processes,
      process_id=args.process_id,
    )
  except ValueError as e:  # what it could not find out from the environment
    raise UsageError(
      f"--distributed: {e} Outside Slurm, Open MPI and Cloud TPU, give "
      "--coordinator HOST:PORT, --num-processes N and --process-id I"
    ) from None


def run(args) -> int:
  from featviz._sweep import partition
  from featviz._sweep import run as sweep
  from featviz._sweep import store as sweep_store

  _check_distributed(args)
  share = _share(args.share)
  if share is not None and args.distributed:
    raise UsageError("--share and --distributed both split the work: give one")
  config, stopping = stopping_from(args)
  if args.batch < 1:
    raise UsageError(f"--batch must be a positive integer, got {args.batch}")
  try:
    units = partition.parse_units(args.units) if args.units is not None else None
  except ValueError as e:
    raise UsageError(str(e)) from None
  if args.distributed:  # after every check: initialize waits for the other processes
    _initialize_distributed(args)
  model = load_model(args)
  layers = (
    list(model.spec.layers)
    if args.all_layers
    else [x.strip() for x in args.layers.split(",") if x.strip()]
  )
  if not layers:
    raise UsageError("--layers names no layer")
  model.layers_in_order(layers)  # an unknown layer is refused before the store folder exists
  out = writable_dir(args.out)
  try:
    summary = sweep.sweep(
      model,
      layers,
      config,
      out=out,
      units=units,
      batch=args.batch,
      seed=args.seed,
      dataset=args.dataset,
      progress_bar=not args.no_progress,
      process=share,
      **stopping,  # only the rules given: a sweep without them runs as before
    )
  except sweep_store.SettingsMismatchError as e:
    raise UsageError(str(e)) from None
  print(sweep.table(summary))
  print(f"wrote {out}/ (summary.json, <layer>_atlas.png, <layer>/<unit>.png)")
  for failure in summary["failed"]:
    units = failure["units"]
    print(
      f"featviz sweep: {failure['layer']} units {units[0]}-{units[-1]} not rendered: "
      f"{failure['error']}",
      file=sys.stderr,
    )
  return 1 if summary["failed"] else 0
