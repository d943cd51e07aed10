"""A benchmark's bad arguments are refused before it measures anything (exit 2, argparse)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent


def test_continuous_batching_refuses_a_compile_cache_that_is_not_empty(tmp_path):
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / "left-over").write_text("a program from another run")
  photos = tmp_path / "photos"
  photos.mkdir()
  # ROOT appended, not first: from the repo root `python -m` would import the source folder
  # `featviz/` over the installed package, which maps `kernels/` and `model_zoo/` into it
  script = (
    f"import sys; sys.path.append({str(ROOT)!r}); "
    "from benchmarks import continuous_batching; "
    "sys.exit(continuous_batching.main(sys.argv[1:]))"
  )
  proc = subprocess.run(
    [sys.executable, "-c", script, "--photos", str(photos), "--compile-cache", str(cache),
     "--no-record"],
    cwd=tmp_path, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert proc.returncode == 2, proc.stderr
  assert "--compile-cache" in proc.stderr and "must be empty or new" in proc.stderr
  assert [p.name for p in cache.iterdir()] == ["left-over"]  # nothing written, nothing removed
