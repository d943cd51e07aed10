"""featviz.analysis.filters: kernel tiles are the kernels, scaled around 0; one render for units."""

import numpy as np
import pytest

from featviz._loop import program
from featviz.analysis import filters
from featviz.cli import main

import tiny_cnn


def _zoo(name):
  from featviz import zoo

  try:
    return zoo.load(name)
  except zoo.WeightsUnavailableError as e:
    pytest.skip(f"{name} weights not available: {e}")


def _numpy_tile(kernel, k, global_max=None):
  """Independent reference: filter k as an image, 0.5 + 0.5 * w / max|w|."""
  w = np.asarray(kernel, np.float64)[:, :, :, k]
  m = np.abs(w).max() if global_max is None else global_max
  return 0.5 + 0.5 * w / m


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mnist_cnn", "tiny1", "tiny3"])
def test_tile_k_is_kernel_k_scaled_symmetrically(name):
  if name.startswith("tiny"):
    model = tiny_cnn.make(int(name[-1]))
  else:
    model = _zoo(name)
  conv = filters.first_conv(model)
  expected_path = {"efficientnet_lite0": "stem/kernel", "mnist_cnn": "conv1/kernel"}.get(
    name, "conv1/w"
  )
  assert conv.path == expected_path
  kh, kw, cin, k = conv.kernel.shape
  assert cin == model.spec.channels
  tiles = filters.kernel_tiles(conv.kernel)
  assert tiles.shape == (k, kh, kw, cin)
  for unit in range(k):
    np.testing.assert_allclose(tiles[unit], _numpy_tile(conv.kernel, unit), atol=1e-6)
    assert np.isclose(np.abs(tiles[unit] - 0.5).max(), 0.5)  # full contrast per filter
  top = np.abs(conv.kernel).max()
  glob = filters.kernel_tiles(conv.kernel, "global")
  np.testing.assert_allclose(glob[k - 1], _numpy_tile(conv.kernel, k - 1, top), atol=1e-6)


def test_zero_filter_is_flat_grey_and_bad_scale():
  kernel = np.zeros((3, 3, 3, 2), np.float32)
  kernel[..., 1] = 1.0
  tiles = filters.kernel_tiles(kernel)
  np.testing.assert_array_equal(tiles[0], 0.5)
  np.testing.assert_array_equal(tiles[1], 1.0)
  with pytest.raises(ValueError, match="scale"):
    filters.kernel_tiles(kernel, "sideways")


def test_kernel_figure_for_greyscale_and_rgb():
  for channels in (1, 3):
    fig = filters.kernel_figure(tiny_cnn.make(channels))
    assert fig.mode == "RGB" and fig.width > 0


def test_optimized_filters_share_one_compile():
  model = tiny_cnn.make(3)
  kwargs = dict(steps=3, size=16, progress_bar=False, seed=1)
  result = filters.optimized_filters(model, "conv2", [0, 1, 2], **kwargs)
  assert result.images.shape == (3, 16, 16, 3)
  assert result.labels == ["conv2:0", "conv2:1", "conv2:2"]
  before = program.trace_count()
  again = filters.optimized_filters(model, "conv2", [3, 4, 5], **kwargs)  # other units
  assert program.trace_count() == before
  assert not np.allclose(again.images, result.images)
  assert result.history.shape == (3, 3) and np.isfinite(result.history).all()
  with pytest.raises(ValueError, match="out of range"):
    filters.optimized_filters(model, "conv2", [6], **kwargs)


def test_cli(tmp_path, capsys):
  _zoo("mnist_cnn")
  out = tmp_path / "f.png"
  assert main(["filters", "mnist_cnn", "--out", str(out)]) == 0
  assert "32 first-layer filters" in capsys.readouterr().out and out.exists()
  assert main(["filters", "mnist_cnn", "--units", "0-3", "--out", str(out)]) == 2
  assert (
    main(["filters", "mnist_cnn", "--layer", "conv2", "--units", "3-1", "--out", str(out)]) == 2
  )
  assert (
    main(["filters", "mnist_cnn", "--layer", "conv2", "--units", "0-40", "--out", str(out)]) == 2
  )
  out2 = tmp_path / "r.png"
  assert (
    main(
      [
        "filters",
        "mnist_cnn",
        "--layer",
        "conv2",
        "--units",
        "0-1",
        "--steps",
        "2",
        "--size",
        "28",
        "--no-progress",
        "--out",
        str(out2),
      ]
    )
    == 0
  )
  assert out2.exists()
