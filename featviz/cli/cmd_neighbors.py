"""``featviz neighbors MODEL QUERY_IMAGE --dataset DIR --layer L``: nearest photos in a layer."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model, plural
from featviz.cli.errors import UsageError, writable_output

_EPILOG = """Examples:
  featviz neighbors efficientnet_lite0 cat.jpg --dataset photos/ --layer head --out nn.png
  featviz neighbors efficientnet_lite0 cat.jpg --dataset photos/ --layer stem --pool flat

Features are the layer's spatial mean (one number per channel) unless --pool flat keeps
every position; distances are Euclidean (featviz.analysis.feature_space).
"""


def register(sub) -> None:
  p = sub.add_parser(
    "neighbors",
    help="the dataset photos nearest to a query in a layer",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("query", metavar="QUERY_IMAGE", help="the query photo")
  p.add_argument("--dataset", required=True, metavar="DIR", help="a folder of photos")
  p.add_argument("--layer", required=True, help="the layer whose features are compared")
  p.add_argument("--k", type=int, default=8, help="neighbours to show")
  p.add_argument(
    "--pool",
    choices=["mean", "flat"],
    default="mean",
    help="mean: spatial mean per channel; flat: every position",
  )
  p.add_argument("--out", default="neighbors.png", help="the figure, a PNG file")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def run(args) -> int:
  import pathlib
  import time

  import numpy as np

  from featviz import images, photos
  from featviz.analysis import feature_space

  out = writable_output(args.out)
  if args.k < 1:
    raise UsageError("--k must be a positive integer")
  model = load_model(args)
  model.spec.check_layer(args.layer)
  size, channels = model.spec.image_size, model.spec.channels
  query = photos.load_image(args.query, size, channels)
  data, paths = photos.load_folder(args.dataset, size, channels)
  start = time.perf_counter()
  both = np.concatenate([query[None], data])
  feats = feature_space.features(
    model, both, args.layer, args.pool, progress_bar=not args.no_progress
  )
  index, dist = feature_space.nearest_neighbors(feats[:1], feats[1:], min(args.k, len(data)))
  seconds = time.perf_counter() - start
  names = [p.stem for p in paths]
  title = (
    f"{model.spec.name} {args.layer}: {feats.shape[1]}-D {args.pool} features, "
    f"L2 nearest of {len(data)}"
  )
  fig = feature_space.neighbors_figure(
    query, pathlib.Path(args.query).stem, data, names, index[0], dist[0], title
  )
  images.save_png(fig, out)
  print(
    f"{plural(len(data) + 1, 'image')} -> {feats.shape[1]}-D features at {args.layer} "
    f"({args.pool}) in {seconds:.1f} s"
  )
  for rank, (i, d) in enumerate(zip(index[0], dist[0]), 1):
    print(f"{rank:3d}  {d:10.4f}  {paths[i].name}")
  print(f"wrote {out}")
  return 0
