"""Progress bars of the passes over a folder of photos: photos done / the photo count, photos/s on
stderr, and nothing at all with progress_bar=False (or --no-progress)."""

import pathlib
import re

import numpy as np
import pytest

from featviz import images, photos
from featviz._sweep import quality
from featviz.analysis import dataset_examples, feature_space
from featviz.cli import main
from featviz.cli.common import load_source

TINY = f"{pathlib.Path(__file__).with_name('tiny_cnn.py')}:make"
MODEL = load_source(TINY)  # as the CLI loads it, so that the CLI test reuses the compiled pass
N = 5  # photos: with batches of 2, three calls (2, 2 and 1 photos)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  path = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(N):
    images.save_png(rng.uniform(0, 1, (40, 48, 3)).astype(np.float32), path / f"p{i}.png")
  return path


@pytest.fixture(scope="module")
def data(folder):
  return photos.load_folder(folder, MODEL.spec.image_size, MODEL.spec.channels)[0]


def _counts(err: str, desc: str) -> list[tuple[int, int]]:
  """The ``done/total`` pairs of the bar named ``desc`` in captured stderr."""
  return [(int(a), int(b)) for a, b in re.findall(rf"{re.escape(desc)}.*?(\d+)/(\d+)", err)]


def _check_bar(err: str, desc: str) -> None:
  counts = _counts(err, desc)
  assert counts and {total for _, total in counts} == {N}, err  # photos, not padded batches
  assert counts[-1] == (N, N) and "photo/s" in err, err


PASSES = {
  "scan tiny_cnn conv2": lambda bar, d, f: (
    dataset_examples.scan_layer(MODEL, d, "conv2", batch=2, progress_bar=bar).mean
  ),
  "features tiny_cnn conv2": lambda bar, d, f: feature_space.features(
    MODEL, d, "conv2", progress_bar=bar
  ),
  "dataset scores tiny_cnn": lambda bar, d, f: quality.dataset_best(
    MODEL, ["conv2"], f, MODEL.spec.image_size, batch=2, progress_bar=bar
  )["conv2"][0],
}


@pytest.mark.parametrize("desc", list(PASSES))
def test_bar_counts_photos_and_progress_bar_false_prints_nothing(desc, data, folder, capfd):
  shown = PASSES[desc](True, data, folder)
  _check_bar(capfd.readouterr().err, desc)
  quiet = PASSES[desc](False, data, folder)
  assert capfd.readouterr().err == ""
  np.testing.assert_array_equal(quiet, shown)  # the bar changes nothing computed


def test_cli_no_progress_hides_the_bar(folder, tmp_path, capfd, featviz_home):
  argv = ["embed", TINY, "--dataset", str(folder), "--layer", "conv2", "--out"]
  assert main([*argv, str(tmp_path / "a.png")]) == 0
  _check_bar(capfd.readouterr().err, "features tiny_cnn conv2")
  assert main([*argv, str(tmp_path / "b.png"), "--no-progress"]) == 0
  assert capfd.readouterr().err == ""
