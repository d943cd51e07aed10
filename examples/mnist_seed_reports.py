"""Reproduces the seed reports' MNIST experiments with featviz's own ``mnist_cnn``.

  python examples/mnist_seed_reports.py --data PATH/mnist.npz --out docs/mnist

Writes three figures:

* ``digits_tv_sweep.png``: class-logit visualizations of the ten digits (columns)
  for a sweep of total-variation weights (rows), every row one compiled render
  of ten images.
* ``two_classes.png``: two classes maximized at once (1 and 7; 0 and 1), beside
  each class alone.
* ``activation_maps.png``: the activation maps of every conv layer for six test
  digits, and the ``fc`` layer as a bar strip.

``--data`` is only needed for the activation maps (test digits).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
from PIL import Image

from featviz import images, transforms, zoo
from featviz import objectives as O
from featviz import regularizers as R
from featviz._loop import api as render

# Rendering settings for 28 px digits. Lucid's standard transforms pad by 12 px,
# almost half a digit; a 2 px jitter on a black (0) border keeps digits whole.
STEPS = 256
SIZE = 28
TRANSFORMS = transforms.compose(
  [transforms.pad(2, mode="constant", value=0.0), transforms.jitter(2)]
)
TV_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3)


def _render(model, objective, seed=0):
  return render.render(
    model, objective, steps=STEPS, size=SIZE, transforms=TRANSFORMS, seed=seed, progress_bar=False
  )


def tv_sweep(model) -> Image.Image:
  rows, labels = [], []
  for weight in TV_WEIGHTS:
    result = _render(model, O.class_logit(np.arange(10)) - weight * R.total_variation())
    rows.append(result.images)
    labels += [f"{d} tv={weight:g}" for d in range(10)]
    print(
      f"tv {weight:g}: objective (logit - tv * TV) at the last step "
      f"{np.round(result.history[-1], 1).tolist()}"
    )
  return images.grid(
    np.concatenate(rows),
    labels,
    cols=10,
    scale=4,
    title="mnist_cnn class logits 0-9 (columns) by total-variation weight (rows)",
  )


def two_classes(model) -> Image.Image:
  pairs = [(1, 7), (0, 1)]
  objectives, labels = [], []
  for a, b in pairs:
    for obj, label in [
      (O.class_logit(a), f"logit {a}"),
      (O.class_logit(b), f"logit {b}"),
      (O.class_logit(a) + O.class_logit(b), f"logit {a} + {b}"),
    ]:
      objectives.append(obj - 0.03 * R.total_variation())
      labels.append(label)
  result = _render(model, O.stack(objectives))
  probs = _softmax(model, result.images)
  captions = [
    f"{lab}: p{a} {p[a]:.2f}, p{b} {p[b]:.2f}"
    for lab, p, (a, b) in zip(labels, probs, [pair for pair in pairs for _ in range(3)])
  ]
  for c in captions:
    print(c)
  return images.grid(
    result.images,
    captions,
    cols=3,
    scale=8,
    title="two classes at once (tv 0.03): each alone, then their sum",
  )


def _softmax(model, batch):
  logits = np.asarray(model.activations(batch, ["logits"])["logits"], np.float64)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def activation_maps(model, digits: np.ndarray, labels: np.ndarray) -> Image.Image:
  acts = model.activations(digits, list(model.spec.layers))
  panels = []
  for layer in ("conv1", "conv2", "conv3", "conv4"):
    a = np.asarray(acts[layer])  # (6, h, w, C)
    tiles = []
    for d in range(len(digits)):
      scale = a[d].max() or 1.0  # each digit's maps share one scale: comparable brightness
      tiles += [a[d, :, :, c] / scale for c in range(a.shape[-1])]
    cols = a.shape[-1]
    panels.append(
      images.grid(
        np.stack(tiles)[..., None],
        cols=cols,
        scale=max(2, 24 // a.shape[1]),
        pad=1,
        title=f"{layer}: {cols} channels (rows: digits {', '.join(map(str, labels))})",
      )
    )
  fc = np.asarray(acts["fc"])
  fc = fc / max(fc.max(), 1e-9)
  strip = np.repeat(fc[:, None, :], 6, axis=1)[..., None]  # (6, 6, 128, 1)
  panels.append(
    images.grid(
      strip, [f"digit {d}" for d in labels], cols=1, scale=2, pad=2, title="fc: 128 units"
    )
  )
  inputs = images.grid(digits, [f"input {d}" for d in labels], cols=len(digits), scale=3)
  panels.insert(0, inputs)
  width = max(p.width for p in panels)
  canvas = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
  y = 0
  for p in panels:
    canvas.paste(p, (0, y))
    y += p.height
  return canvas


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--data", help="mnist.npz (x_test, y_test), for the activation maps")
  parser.add_argument("--out", default="docs/mnist")
  args = parser.parse_args()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  model = zoo.load("mnist_cnn")
  images.save_png(tv_sweep(model), out / "digits_tv_sweep.png")
  images.save_png(two_classes(model), out / "two_classes.png")
  if args.data:
    with np.load(args.data) as data:
      x, y = data["x_test"], data["y_test"]
    pick = [int(np.flatnonzero(y == d)[0]) for d in (0, 1, 3, 5, 7, 9)]
    digits = (x[pick].astype(np.float32) / 255.0)[..., None]
    images.save_png(activation_maps(model, digits, y[pick]), out / "activation_maps.png")
  print(f"wrote figures to {out}/")


if __name__ == "__main__":
  main()
