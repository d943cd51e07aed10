"""examples/quickstart.ipynb runs: every code cell, in order, in one namespace, as a kernel would,
and what each cell's last expression shows is what Jupyter would display (issue 18).

No Jupyter here: a cell's last expression is evaluated and displayed the way IPython does, by its
``_repr_png_`` (a RenderResult, a PIL image) or ``repr``.
"""

import ast
import io
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

NOTEBOOK = pathlib.Path(__file__).parent.parent / "examples" / "quickstart.ipynb"


def run_cells(notebook: dict) -> list:
  """Each code cell's displayed value (None when its last line is a statement)."""
  namespace: dict = {"__name__": "__main__"}
  shown = []
  for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
      continue
    tree = ast.parse("".join(cell["source"]))
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, "<cell>", "exec"), namespace)
    value = None
    if last is not None:
      value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
    shown.append(value)
  return shown


@pytest.fixture(scope="module")
def shown():
  if not NOTEBOOK.is_file():
    pytest.skip("examples/ is not next to the tests (an installed copy)")
  return run_cells(json.loads(NOTEBOOK.read_text()))


def test_the_notebook_is_nbformat_4_with_cell_ids():
  nb = json.loads(NOTEBOOK.read_text())
  assert nb["nbformat"] == 4 and nb["nbformat_minor"] >= 5
  assert all(c["cell_type"] in ("code", "markdown") and c["id"] for c in nb["cells"])
  assert all(c["outputs"] == [] for c in nb["cells"] if c["cell_type"] == "code")  # stored clean


def _png(value) -> Image.Image:
  return Image.open(io.BytesIO(value._repr_png_()))


def test_the_render_shows_itself_as_its_captioned_grid(shown):
  from featviz import images

  result = shown[1]
  assert result.images.shape == (4, 96, 96, 3) and result.labels == [
    f"block10:{u}" for u in range(4)
  ]
  picture = _png(result)
  captions = [f"{lab} ({v:.3g})" for lab, v in zip(result.labels, result.history[-1])]
  expected = images.grid(result.images, captions)
  assert picture.size == expected.size
  np.testing.assert_array_equal(np.asarray(picture.convert("RGB")), np.asarray(expected))


def test_the_grid_and_the_class_names_cells_show_what_they_say(shown):
  picture = _png(shown[2])
  assert min(picture.size) >= 2 * 96 * 2  # four tiles at scale 2, about square: 2 x 2
  names = shown[3]
  assert "goldfish" in names and all("fish" in n.lower() for n in names)
