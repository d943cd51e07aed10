"""``featviz embed MODEL --dataset DIR --layer L [--method pca|tsne]``: a map of photos."""

from __future__ import annotations

from featviz.cli.common import HelpFormatter, add_model_arguments, load_model
from featviz.cli.errors import UsageError, writable_output
from featviz.cli.render_flags import finite_float

_EPILOG = """Examples:
  featviz embed efficientnet_lite0 --dataset photos/ --layer head --out pca.png
  featviz embed efficientnet_lite0 --dataset photos/ --layer head --method tsne --out tsne.png

Each photo is placed at its first two principal components (pca), or at its t-SNE
coordinates (van der Maaten and Hinton, 2008; scikit-learn's Barnes-Hut t-SNE, after PCA to 30
dimensions as the paper, 1000 iterations).
"""


def register(sub) -> None:
  p = sub.add_parser(
    "embed",
    help="PCA or t-SNE map of a folder of photos in a layer",
    epilog=_EPILOG,
    formatter_class=HelpFormatter,
  )
  add_model_arguments(p)
  p.add_argument("--dataset", required=True, metavar="DIR", help="a folder of photos")
  p.add_argument("--layer", required=True, help="the layer whose features are embedded")
  p.add_argument(
    "--method",
    choices=["pca", "tsne"],
    default="pca",
    help="pca: the first two principal components; tsne: t-SNE",
  )
  p.add_argument(
    "--pool",
    choices=["mean", "flat"],
    default="mean",
    help="mean: spatial mean per channel; flat: every position",
  )
  p.add_argument(
    "--perplexity",
    type=finite_float,
    default=None,
    help="t-SNE perplexity (default: 30, the paper's, or (N - 1) / 3 if smaller)",
  )
  p.add_argument(
    "--iterations", type=int, default=1000, help="t-SNE iterations (paper: 1000; at least 250)"
  )
  p.add_argument("--seed", type=int, default=0, help="seed of t-SNE's initial map")
  p.add_argument("--thumb", type=int, default=48, help="thumbnail side in pixels")
  p.add_argument("--out", default="embed.png", help="the figure, a PNG file")
  p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  p.set_defaults(func=run)


def run(args) -> int:
  import time

  from featviz import images, photos
  from featviz.analysis import feature_space

  out = writable_output(args.out)
  if args.iterations < 250 or args.thumb < 1:
    raise UsageError(
      "--iterations must be at least 250 (scikit-learn's t-SNE) and --thumb positive"
    )
  model = load_model(args)
  model.spec.check_layer(args.layer)
  data, paths = photos.load_folder(args.dataset, model.spec.image_size, model.spec.channels)
  n = len(data)
  if n < 4:
    raise UsageError(f"embedding needs at least 4 photos; {args.dataset!r} has {n}")
  perplexity = args.perplexity
  if perplexity is None:
    perplexity = feature_space.default_perplexity(n)
  if args.method == "tsne" and not 1.0 <= perplexity < n:
    raise UsageError(f"--perplexity must be at least 1 and below N = {n} photos")
  start = time.perf_counter()
  feats = feature_space.features(
    model, data, args.layer, args.pool, progress_bar=not args.no_progress
  )
  featured = time.perf_counter()
  name = f"{model.spec.name} {args.layer} ({feats.shape[1]}-D {args.pool} features, {n} photos)"
  if args.method == "pca":
    fit = feature_space.pca(feats, 2)
    coords = fit.transform(feats)
    ratio = fit.explained_variance_ratio
    axes = (f"PC1 ({ratio[0]:.1%} of variance)", f"PC2 ({ratio[1]:.1%})")
    summary = f"PCA: PC1 explains {ratio[0]:.1%}, PC2 {ratio[1]:.1%} of the variance"
    title = f"PCA of {name}"
  else:
    result = feature_space.tsne(
      feats, perplexity=perplexity, iterations=args.iterations, seed=args.seed
    )
    coords = result.embedding
    axes = ("t-SNE 1", "t-SNE 2")
    summary = f"t-SNE: perplexity {perplexity:.3g}, KL(P||Q) {result.kl:.4f}"
    title = f"t-SNE of {name}, perplexity {perplexity:.3g}"
  fitted = time.perf_counter()
  fig = feature_space.scatter(data, coords, thumb=args.thumb, title=title, axes=axes)
  images.save_png(fig, out)
  print(
    f"features {feats.shape} in {featured - start:.1f} s; {args.method} in "
    f"{fitted - featured:.1f} s"
  )
  print(summary)
  print(f"wrote {out}")
  return 0
