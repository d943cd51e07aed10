"""``featviz gallery SWEEP_DIR... --out SITE_DIR [--dataset DIR]``: a static site of sweeps."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, plural
from featviz.cli.errors import UsageError, writable_dir

_EPILOG = """Writes a static web site (open SITE_DIR/index.html; no server, no network): an index of
the models and their layers with the ratio summaries of a sweep that scored a dataset, a page per
layer with every unit, and a page per unit with its image, its numbers, the settings that made it
and, with --dataset, its top photos and receptive-field patches (one pass of the photos per layer).
On a unit page, the left and right arrow keys go to the previous and next unit, the up arrow to
the layer; every page has a search box for layer:unit.

Run it again as the sweep grows: only new or changed pages and images are written (SITE_DIR/
site.json remembers what was). Without --dataset, examples computed by an earlier run are kept.
SITE_DIR must be new, empty, or a site an earlier run wrote: a folder holding other files is
refused, and only files the gallery wrote are ever removed. Unit images are copied, never linked.

Examples:
  featviz gallery runs/effnet --out site
  featviz gallery runs/effnet --out site --dataset photos/ --top 8
  featviz gallery runs/effnet runs/inception --out site
"""


def register(sub) -> None:
  p = sub.add_parser(
    "gallery",
    help="a static web site of every unit of sweeps",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  p.add_argument("sweeps", nargs="+", metavar="SWEEP_DIR", help="sweep folders (featviz sweep)")
  p.add_argument("--out", required=True, metavar="SITE_DIR", help="the site folder")
  p.add_argument(
    "--dataset",
    default=None,
    metavar="DIR",
    help="a folder of photos: each unit's top photos and patches",
  )
  p.add_argument("--top", type=int, default=8, help="dataset examples per unit")
  p.add_argument(
    "--weights",
    default=None,
    help="with --dataset: the weight file the sweeps used, if not the catalogue's",
  )
  p.add_argument(
    "--copy",
    action="store_true",
    help="(the default now: unit images are always copied, never hard-linked)",
  )
  p.set_defaults(func=run)


def load_model(source: str, weights: str | None):
  """The sweep's model, for its dataset examples, from its manifest's ``model_source``
  (``zoo:NAME``, ``file:PATH.py:FUNCTION``, ``module:MODULE:FUNCTION``) or, for a store made
  before sources were recorded, its zoo name (tests replace this)."""
  from featviz.cli import common

  kind, _, rest = source.partition(":")
  if kind in ("zoo", "file", "module"):
    return common.load_source(rest, weights)
  if kind == "python":
    raise UsageError(
      f"the sweep's model was built in Python ({source}), so the command line cannot load it "
      "again: build the gallery from Python, featviz.gallery.build(..., load_model=...)"
    )
  return common.load_source(source, weights)


def run(args) -> int:
  import pathlib
  import sys

  from featviz import gallery

  if args.top < 1:
    raise UsageError("--top must be a positive integer")
  try:
    sweeps = [gallery.read_sweep(path) for path in args.sweeps]
  except gallery.NotASweepError as e:
    raise UsageError(str(e)) from None
  if args.dataset is not None and not pathlib.Path(args.dataset).is_dir():
    raise UsageError(f"--dataset {args.dataset!r} is not a folder of photos")
  for sweep in sweeps:
    if pathlib.Path(args.out).resolve() == sweep.root.resolve():
      raise UsageError(f"--out {args.out!r} is the sweep folder: give the site its own folder")
  out = writable_dir(args.out)
  try:
    report = gallery.build(
      sweeps,
      out,
      dataset=args.dataset,
      top=args.top,
      load_model=lambda name: load_model(name, args.weights),
      log=lambda line: print(line, file=sys.stderr, flush=True),
    )
  except (gallery.NotASweepError, gallery.WeightsMismatchError, gallery.SiteFolderError) as e:
    raise UsageError(str(e)) from None
  print_report(report, len(sweeps))
  return 0


def print_report(report, sweeps: int) -> None:
  """What a ``gallery.build`` wrote, and the page to open (``featviz microscope`` too)."""
  import sys

  for line in report.missing[:5]:
    print(f"warning: no PNG for {line}", file=sys.stderr)
  print(
    f"{plural(report.units, 'unit')} of {plural(sweeps, 'sweep')}: "
    f"wrote {len(report.written)} files, {report.unchanged} unchanged, "
    f"removed {len(report.removed)}"
  )
  print(f"open {(report.out / 'index.html').resolve().as_uri()}")
