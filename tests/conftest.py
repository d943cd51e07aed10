"""Shared fixtures. Real-data tests find ../shared through FEATVIZ_SHARED."""

import os
import pathlib

import pytest

# Not strict dtype promotion (equinox's conftest sets it): optax's own Adam bias correction
# (`decay ** count`, float ** int32) fails under it with optax 0.2.8.


def _shared_dir() -> pathlib.Path | None:
  value = os.environ.get("FEATVIZ_SHARED")
  if not value:
    return None
  path = pathlib.Path(value)
  return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared() -> pathlib.Path:
  """The ../shared folder (data, reference activations, weights); skips when absent."""
  path = _shared_dir()
  if path is None:
    pytest.skip(
      "real-data test: set FEATVIZ_SHARED to the shared/ folder "
      "(.ci/run does this when ../shared exists)"
    )
  return path


@pytest.fixture()
def featviz_home(tmp_path, monkeypatch) -> pathlib.Path:
  """An empty FEATVIZ_HOME cache directory for one test."""
  home = tmp_path / "featviz_home"
  monkeypatch.setenv("FEATVIZ_HOME", str(home))
  return home
