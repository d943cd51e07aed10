"""Activation atlas: the grid and cell means by hand, the class filter, and on real MNIST digits
with the trained mnist_cnn: a cell of one class's digits renders an image the model gives that
class a higher logit than the other classes' cells do."""

import numpy as np
import pytest

from featviz.analysis import atlas
from featviz.cli import main

CLASSES = (0, 1, 7)
PER_CLASS = 12


def test_grid_cells_and_their_mean_directions_by_hand():
  unit = np.array([[0.1, 0.9], [0.2, 0.8], [0.9, 0.1], [0.95, 0.05], [0.6, 0.9], [1.0, 1.0]])
  cells, cell_of = atlas.grid_cells(unit, 2, min_points=2)
  # Row 0 is the top (y near 1): points 0, 1 in (0, 0); 2, 3 in (1, 1); 4, 5 in (0, 1).
  assert cells == [(0, 0), (0, 1), (1, 1)]
  np.testing.assert_array_equal(cell_of, [0, 0, 2, 2, 1, 1])
  vectors = np.arange(12, dtype=np.float32).reshape(6, 2)
  np.testing.assert_allclose(atlas.cell_directions(vectors, cell_of, 3), [[1, 2], [9, 10], [5, 6]])
  weighted = atlas.cell_directions(vectors, cell_of, 3, np.array([1, 3, 1, 1, 1, 1.0]))
  np.testing.assert_allclose(weighted[0], (vectors[0] + 3 * vectors[1]) / 4)
  _, sparse = atlas.grid_cells(unit, 2, min_points=3)
  assert np.all(sparse == -1)


def test_class_filter_keeps_the_top_positive_fraction():
  a = np.array([0.5, -1.0, 2.0, 0.1, 3.0, -0.2, 0.0, 1.0, 0.3, 0.2])
  s = atlas.Samples(np.zeros((10, 2)), np.arange(10), np.zeros(10), np.zeros(10), a)
  np.testing.assert_array_equal(atlas.class_filter(s, 0.3), [2, 4, 7])
  np.testing.assert_array_equal(atlas.class_filter(s, 1.0), [0, 2, 3, 4, 7, 8, 9])
  with pytest.raises(atlas.AtlasError, match=r"\(0, 1\]"):
    atlas.class_filter(s, 0.0)


@pytest.fixture(scope="module")
def digits(shared):
  with np.load(shared / "data" / "mnist.npz") as f:
    x, y = f["x_test"], f["y_test"]
  index = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in CLASSES])
  return x[index].astype(np.float32)[..., None] / 255.0, y[index].astype(int)


def test_a_cell_of_one_class_renders_that_class(digits):
  from featviz import zoo

  model = zoo.load("mnist_cnn")  # the committed, trained weights
  images, labels = digits
  fast = dict(param="pixel", transforms="none", redirect_relu_steps=0)  # a quick compile
  # fc, one vector per digit: the t-SNE layout separates the classes, so cells are pure.
  result = atlas.atlas(model, images, "fc", 4, per_image=1, steps=32, size=28, **fast)
  assert result.renders.shape == (len(result.cells), 28, 28, 1)
  logits = np.asarray(model.activations(result.renders, ("logits",))["logits"])
  purity = [np.unique(labels[result.photos_of(k)]) for k in range(len(result.cells))]
  pure = {c: [k for k, p in enumerate(purity) if list(p) == [c]] for c in CLASSES}
  assert all(pure.values()), pure  # every class has a cell of its own digits only
  for c in CLASSES:
    others = [k for d in CLASSES if d != c for k in pure[d]]
    # Every render of a c-cell beats every render of another class's cell at c's logit.
    assert logits[pure[c], c].min() > logits[others, c].max(), (c, pure, logits)


def test_cli_atlas_and_its_refusals(digits, tmp_path, capsys):
  from PIL import Image

  folder = tmp_path / "digits"
  folder.mkdir()
  images, _ = digits
  for i, image in enumerate(images[::3]):
    Image.fromarray(np.uint8(np.rint(image[..., 0] * 255))).save(folder / f"{i:02d}.png")
  out = tmp_path / "atlas.png"
  argv = ["atlas", "mnist_cnn", str(folder), "--layer", "conv4", "--out", str(out)]
  fast = ["--steps", "8", "--size", "28", "--param", "pixel", "--transforms", "none"]
  fast += ["--redirect-relu-steps", "0", "--no-progress", "--grid", "3", "--per-image", "8"]
  assert main(argv + fast + ["--class", "7", "--html", str(tmp_path / "a.html")]) == 0
  assert "class activation atlas of 7" in (tmp_path / "a.html").read_text()
  assert out.stat().st_size > 0
  capsys.readouterr()
  assert main(argv + ["--per-image", "65"]) == 2
  assert "at most 64" in capsys.readouterr().err
  assert main(argv[:4] + ["fc", "--per-image", "2", "--out", str(tmp_path / "no" / "x.png")]) == 2
  assert not (tmp_path / "no").exists()
