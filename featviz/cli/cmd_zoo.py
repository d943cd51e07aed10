"""``featviz zoo list | info MODEL | labels MODEL [--grep WORD] | convert MODEL``."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, weights_file
from featviz.cli.errors import UsageError

_LABELS_EPILOG = """Prints one class a line: its index (the logit) and its name. A name can be
given to `logit:NAME`, `--label` or `--target` in any case, with spaces or underscores
(`logit:golden_retriever`, `logit:Goldfish`). --grep compares the same way.

Examples:
  featviz zoo labels efficientnet_lite0 --grep retriever
  featviz render efficientnet_lite0 logit:golden_retriever --out dog.png
"""


def register(sub) -> None:
  parser = sub.add_parser(
    "zoo", help="list, describe and convert the pretrained models", formatter_class=HelpFormatter
  )
  zsub = parser.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND")
  parser.set_defaults(func=lambda args: parser.print_help() or 0)
  zsub.add_parser(
    "list", help="the models featviz can load", formatter_class=HelpFormatter
  ).set_defaults(func=_list)
  info = zsub.add_parser(
    "info",
    help="layers, channel counts, value range, source, licence",
    formatter_class=HelpFormatter,
  )
  info.add_argument("model", help="a zoo model (see `featviz zoo list`)")
  info.set_defaults(func=_info)
  labels = zsub.add_parser(
    "labels",
    help="the class names and their indices",
    epilog=_LABELS_EPILOG,
    formatter_class=HelpFormatter,
  )
  labels.add_argument("model", help="a zoo model (see `featviz zoo list`)")
  labels.add_argument(
    "--grep",
    metavar="WORD",
    default=None,
    help="only the names that contain WORD (any case; spaces and underscores ignored)",
  )
  labels.set_defaults(func=_labels)
  conv = zsub.add_parser(
    "convert", help="convert a weight file once into the cache", formatter_class=HelpFormatter
  )
  conv.add_argument("model", help="a zoo model (see `featviz zoo list`)")
  conv.add_argument(
    "--weights",
    metavar="PATH",
    default=None,
    type=weights_file,
    help="a local weight file (.pth in either torch format, or .npz), instead "
    "of the catalogue's source",
  )
  conv.set_defaults(func=_convert)


def _list(args) -> int:
  from featviz import zoo

  for name in zoo.list_models():
    print(f"{name:20s} {zoo.entry(name).description}")
  return 0


def _info(args) -> int:
  from featviz import zoo

  print(zoo.describe(args.model))
  if _spec(args.model).labels:
    print(f"  class names: `featviz zoo labels {args.model} [--grep WORD]`")
  return 0


def _spec(name: str):
  """The model's spec, without loading (or downloading) its weights."""
  from featviz.zoo import catalogue

  return catalogue.architecture(name).spec()


def _labels(args) -> int:
  from featviz import class_names

  spec = _spec(args.model)
  n = spec.layers.get("logits", len(spec.labels))
  if not spec.labels:
    raise UsageError(
      f"{args.model} has no class names; address its {n} classes by index "
      f"(logit:0 to logit:{n - 1})"
    )
  indices = range(len(spec.labels))
  if args.grep is not None:
    indices = class_names.search(spec.labels, args.grep)
    if not indices:
      close = class_names.suggest(spec.labels, args.grep)
      hint = "; closest: " + ", ".join(f"{i} {spec.labels[i]!r}" for i in close) if close else ""
      raise UsageError(f"no class name of {args.model} contains {args.grep!r}{hint}")
  width = len(str(len(spec.labels) - 1))
  for i in indices:
    print(f"{i:>{width}}  {spec.labels[i]}")
  return 0


def _convert(args) -> int:
  from featviz import zoo

  path = zoo.convert(args.model, weights=args.weights)
  print(f"converted {args.model} -> {path}")
  return 0
