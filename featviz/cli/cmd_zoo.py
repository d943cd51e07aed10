"""``featviz zoo list | info MODEL | convert MODEL [--weights PATH]``."""

from __future__ import annotations


def register(sub) -> None:
  parser = sub.add_parser("zoo", help="list, describe and convert the pretrained models")
  zsub = parser.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
  zsub.add_parser("list", help="the models featviz can load").set_defaults(func=_list)
  info = zsub.add_parser("info", help="layers, channel counts, value range, source, licence")
  info.add_argument("model")
  info.set_defaults(func=_info)
  conv = zsub.add_parser("convert", help="convert a weight file once into the cache")
  conv.add_argument("model")
  conv.add_argument("--weights", help="a local weight file (.pth in either torch format, or .npz)")
  conv.set_defaults(func=_convert)


def _list(args) -> int:
  from featviz import zoo
  for name in zoo.list_models():
    print(f"{name:20s} {zoo.entry(name).description}")
  return 0


def _info(args) -> int:
  from featviz import zoo
  print(zoo.describe(args.model))
  return 0


def _convert(args) -> int:
  from featviz import zoo
  path = zoo.convert(args.model, weights=args.weights)
  print(f"converted {args.model} -> {path}")
  return 0
