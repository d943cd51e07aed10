"""Arguments shared by the subcommands: the model and its weights."""

from __future__ import annotations


def add_model_arguments(parser) -> None:
  parser.add_argument("model", help="a zoo model (see `featviz zoo list`)")
  parser.add_argument("--weights", default=None,
                      help="a local weight file for the model (.pth in either torch format, "
                           "or .npz), instead of the catalogue's source")


def load_model(args):
  from featviz import zoo
  return zoo.load(args.model, weights=args.weights)
