"""The installed package is what users get: every source package is listed in pyproject."""

import pathlib
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = {"featviz": "featviz", "model_zoo": "featviz.zoo", "kernels": "featviz.kernels"}


def test_every_package_folder_is_listed_in_pyproject():
  pyproject = ROOT / "pyproject.toml"
  if not pyproject.exists():
    pytest.skip("not run from a source checkout")
  listed = set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"])
  found = set()
  for folder, name in FOLDERS.items():
    for init in (ROOT / folder).rglob("__init__.py"):
      rel = init.parent.relative_to(ROOT / folder).parts
      found.add(".".join((name,) + rel))
  assert found == listed, f"missing from pyproject: {found - listed}; extra: {listed - found}"


def test_installed_package_has_every_subpackage():
  import featviz._loop.api  # noqa: F401
  import featviz._sweep.run  # noqa: F401
  import featviz.analysis.cam  # noqa: F401
  import featviz.cli.cmd_render  # noqa: F401
  import featviz.gallery.build  # noqa: F401
  import featviz.kernels.affine_resample  # noqa: F401
  import featviz.zoo.catalogue  # noqa: F401

  assert featviz.__version__
