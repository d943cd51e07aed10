"""``featviz microscope MODEL --dataset DIR --out SITE``: a whole model's gallery in one command.

Sweeps every layer (or ``--layers``) into the store ``SITE/sweep``, scoring each unit against
the photos and stopping it once it is good enough (``featviz sweep``'s stopping rules), then
builds the static site of that store in ``SITE`` with each unit's dataset examples
(``featviz gallery``). Both steps resume: a second run renders only the missing units and writes
only the pages that changed.
"""

from __future__ import annotations

import pathlib
import sys

from featviz.cli import cmd_gallery, cmd_sweep
from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_dir
from featviz.cli.render_flags import add_render_arguments

# The stopping rule with --dataset: issue 20's bar for "good enough" (its sweep of 16 units at
# --until-ratio 4 --max-steps 256). On efficientnet_lite0 block10 at Lucid's defaults the median
# unit passes 4 at about 64 steps (benchmarks/time_to_quality.py: 4.42 at 64, 6.21 at 512), and
# in benchmarks/continuous_batching.py 14 of 16 units reached it, in 72 steps on average.
UNTIL_RATIO = 4.0
MAX_STEPS = 256

_EPILOG = f"""A Microscope of MODEL in SITE: sweeps every layer (or --layers) into the store
SITE/sweep, one progress bar with units/s and time left for the whole model, then builds the
static site SITE/index.html with each unit's page, its steps, why it stopped, its ratio to the
best photo and, with --dataset, its top photos and patches.

Run the same command again to resume: only the units missing from SITE/sweep render, and only
the pages that changed are written. Other render settings are refused (exit 2) with the list of
what differs. SITE must be new, empty, or a site an earlier run wrote.

With --dataset each unit stops once its activation reaches --until-ratio ({UNTIL_RATIO:g}) times
the best photo's, or after --max-steps ({MAX_STEPS}): on efficientnet_lite0 block10 the median
unit passes {UNTIL_RATIO:g} at about 64 steps at Lucid's defaults (benchmarks/RESULTS.md), so
this stops most units early and caps the slow ones at half Lucid's 512. Without --dataset
every unit takes --steps (Lucid's 512), or stops by --until-plateau.

Examples:
  featviz microscope efficientnet_lite0 --dataset photos/ --out site
  featviz microscope efficientnet_lite0 --dataset photos/ --layers block5,block10 --out site
  featviz microscope net.py:build --size 32 --steps 128 --out site
"""


def register(sub) -> None:
  p = sub.add_parser(
    "microscope",
    help="sweep every layer and build its gallery site, resumable",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument(
    "--dataset",
    default=None,
    metavar="DIR",
    help="a folder of photos: each unit's ratio to its best photo, the --until-ratio rule "
    "and the dataset examples",
  )
  p.add_argument(
    "--out", required=True, metavar="SITE", help="the site folder; its sweep store is SITE/sweep"
  )
  p.add_argument(
    "--layers", default=None, help="comma-separated layer names; default: every layer of the spec"
  )
  p.add_argument(
    "--units",
    default=None,
    metavar="A-B",
    help="channel range, inclusive (0-7), clipped to each layer's channels; default: all",
  )
  p.add_argument(
    "--batch",
    type=int,
    default=cmd_sweep.DEFAULT_BATCH,
    help="units per compiled call (raise it on an accelerator); the images do not depend on it",
  )
  p.add_argument("--top", type=int, default=8, help="dataset examples per unit")
  add_render_arguments(p)
  cmd_sweep.add_stopping_arguments(p, dataset_defaults=(UNTIL_RATIO, MAX_STEPS))
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def run(args) -> int:
  from featviz import gallery
  from featviz._sweep import partition
  from featviz._sweep import run as sweep
  from featviz.gallery.build import STORE_DIR, claim, unclaim

  config, stopping = cmd_sweep.stopping_from(args, dataset_defaults=(UNTIL_RATIO, MAX_STEPS))
  if args.batch < 1:
    raise UsageError(f"--batch must be a positive integer, got {args.batch}")
  if args.top < 1:
    raise UsageError(f"--top must be a positive integer, got {args.top}")
  try:
    units = partition.parse_units(args.units) if args.units is not None else None
  except ValueError as e:
    raise UsageError(str(e)) from None
  if args.dataset is not None and not pathlib.Path(args.dataset).is_dir():
    raise UsageError(f"--dataset {args.dataset!r} is not a folder of photos")
  model = load_model(args)
  layers = list(model.spec.layers)
  if args.layers is not None:
    layers = [x.strip() for x in args.layers.split(",") if x.strip()]
    if not layers:
      raise UsageError("--layers names no layer")
  layers = model.layers_in_order(layers)  # an unknown layer is refused before SITE exists
  site = writable_dir(args.out)
  store = site / STORE_DIR
  try:
    claimed = claim(site)  # before the store goes in: SITE is a site, SITE/sweep its store
  except gallery.SiteFolderError as e:
    raise UsageError(str(e)) from None
  try:
    summary = sweep.sweep(
      model,
      layers,
      config,
      out=store,
      units=units,
      batch=args.batch,
      seed=args.seed,
      dataset=args.dataset,
      progress_bar=not args.no_progress,
      **stopping,
    )
  except BaseException:
    if claimed and not store.exists():  # bad input the sweep found: leave no site behind
      unclaim(site)
    raise
  print(sweep.table(summary))
  for failure in summary["failed"]:
    failed = failure["units"]
    print(
      f"featviz microscope: {failure['layer']} units {failed[0]}-{failed[-1]} not rendered: "
      f"{failure['error']}",
      file=sys.stderr,
    )
  done = sum(entry["done"] for entry in summary["layers"].values())
  print(
    f"gallery: writing {site}/ from {plural(done, 'unit')} of {plural(len(layers), 'layer')}"
    + (f", with the top {args.top} photos of {args.dataset} per unit" if args.dataset else ""),
    file=sys.stderr,
    flush=True,
  )
  try:
    report = gallery.build(
      store,
      site,
      dataset=args.dataset,
      top=args.top,
      load_model=lambda source: model,  # the sweep's own model, loaded once
      log=lambda line: print(f"gallery: {line}", file=sys.stderr, flush=True),
      progress_bar=not args.no_progress,
    )
  except (gallery.NotASweepError, gallery.WeightsMismatchError, gallery.SiteFolderError) as e:
    raise UsageError(str(e)) from None
  cmd_gallery.print_report(report, 1)
  print(f"the site is {site}/ (index.html), its sweep store {store}/; run again to resume")
  return 1 if summary["failed"] else 0
