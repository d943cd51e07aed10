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
  proc = subprocess.run(
    [sys.executable, "-m", "benchmarks.continuous_batching", "--photos", str(photos),
     "--compile-cache", str(cache), "--no-record"],
    cwd=ROOT, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert proc.returncode == 2, proc.stderr
  assert "--compile-cache" in proc.stderr and "must be empty or new" in proc.stderr
  assert [p.name for p in cache.iterdir()] == ["left-over"]  # nothing written, nothing removed
