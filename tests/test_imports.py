"""DESIGN.md's import rules, read off the source with ast (module-level and lazy imports alike)."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = {"featviz": "featviz", "model_zoo": "featviz.zoo", "kernels": "featviz.kernels"}
# Module prefix -> the featviz modules it may import (besides its own package).
ALLOWED = {
  "featviz.home": set(),
  "featviz.nonlin": set(),
  "featviz.kernels": set(),
  # model's from_flax / from_function import their adapters lazily (they import model).
  "featviz.model": {
    "featviz.nonlin",
    "featviz.class_names",
    "featviz.flax_models",
    "featviz.function_models",
  },
  "featviz.relu_swap": {"featviz.nonlin"},
  "featviz.function_models": {"featviz.model", "featviz.nonlin", "featviz.relu_swap"},
  "featviz.flax_models": {"featviz.function_models", "featviz.model"},
  "featviz.class_names": {"featviz.model"},
  "featviz.param": {"featviz.kernels"},
  "featviz.transforms": {"featviz.kernels"},
  "featviz.objective_algebra": {"featviz.model"},
  "featviz.objectives": {"featviz.objective_algebra", "featviz.model"},
  "featviz.regularizers": {"featviz.objectives", "featviz.objective_algebra", "featviz.model"},
  "featviz.zoo": {"featviz.model", "featviz.nonlin", "featviz.home"},
  "featviz.compile_cache": {"featviz.home"},
  "featviz.cpu_devices": set(),
}
# Packages that nothing below them may import.
NEVER_FROM = {
  "featviz._loop": {
    "featviz._sweep",
    "featviz.gallery",
    "featviz.analysis",
    "featviz.cli",
    "featviz.zoo",
  },
  "featviz._sweep": {"featviz.gallery", "featviz.analysis", "featviz.cli"},
  "featviz.gallery": {"featviz.cli"},
}


def _modules():
  for folder, name in FOLDERS.items():
    for path in (ROOT / folder).rglob("*.py"):
      parts = path.relative_to(ROOT / folder).with_suffix("").parts
      module = ".".join((name,) + parts).removesuffix(".__init__")
      yield module, path


def _imports(module: str, path: pathlib.Path) -> set[str]:
  package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      found |= {f"{base}.{a.name}" for a in node.names}
  return {name for name in found if name.startswith("featviz")}


def _top(name: str) -> str:
  parts = name.split(".")
  return ".".join(parts[:2])


def _under(name: str, prefix: str) -> bool:
  return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("module, path", sorted(_modules()), ids=lambda x: str(x))
def test_imports_follow_the_design(module, path):
  # `import featviz` stays "featviz": the whole package, which no module below it may import.
  imported = {_top(n) for n in _imports(module, path)} - {_top(module)}
  for prefix, allowed in ALLOWED.items():
    if _under(module, prefix):
      assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"
  for prefix, banned in NEVER_FROM.items():
    if _under(module, prefix):
      assert not imported & banned, f"{module} imports {sorted(imported & banned)}"
  if not _under(module, "featviz.cli") and module != "featviz":
    assert not {n for n in imported if _under(n, "featviz.cli")}, f"{module} imports the CLI"
