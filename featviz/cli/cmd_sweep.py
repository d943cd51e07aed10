"""``featviz sweep MODEL --layers L1,L2 | --all-layers --out DIR``: every unit, resumable."""

from __future__ import annotations

import sys

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model
from featviz.cli.errors import UsageError, writable_dir
from featviz.cli.render_flags import add_render_arguments, config_from

_EPILOG = """Renders one image per channel of each layer into DIR (DIR/<layer>/<unit>.png,
an index, DIR/<layer>_atlas.png, DIR/summary.json). Re-running the same command renders only
the missing units; other settings are refused (exit 2) with the list of what differs.
--all-layers means every layer of the model's spec, in forward order (`featviz zoo info MODEL`),
the flat logits included (a logit's channel is the logit itself).

Several hosts: run the same command on each, sharing DIR, with --distributed (jax.distributed;
add --coordinator/--num-processes/--process-id outside Slurm, Open MPI and Cloud TPU) or with
--share I/N (no JAX coordination). Each process renders every N-th chunk.

Examples:
  featviz sweep efficientnet_lite0 --layers block5,block10 --units 0-15 --out runs/effnet
  featviz sweep efficientnet_lite0 --all-layers --dataset photos/ --steps 256 --out runs/all
  featviz sweep mnist_cnn --all-layers --size 28 --batch 32 --out runs/mnist
"""


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
    default=8,
    help="units per compiled call (raise it on an accelerator); the images do not "
    "depend on it, and a store may be resumed with another",
  )
  add_render_arguments(p)
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
  config = config_from(args)
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
