"""featviz.compile_cache: the folder, the opt-out, the user's own settings, and a second process
that loads the render's programs from JAX's persistent cache instead of compiling them.

Hits and writes are read from JAX's monitoring events, not from timings: jax 0.10.2
(``jax/_src/compiler.py``) records ``/jax/compilation_cache/cache_hits`` for every program
loaded from the cache, and (``compilation_cache.py``) ``/jax/compilation_cache/cache_misses``
for every program it writes after compiling it.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from featviz import compile_cache

TESTS = pathlib.Path(__file__).parent
HITS = "/jax/compilation_cache/cache_hits"
WRITES = "/jax/compilation_cache/cache_misses"
OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


@pytest.fixture()
def clean_jax_cache(monkeypatch):
  """No cache folder configured (whatever the environment says) during the test, and JAX's
  options as they were afterwards."""
  monkeypatch.delenv(compile_cache.ENV_VAR, raising=False)
  before = {name: getattr(jax.config, name) for name in OPTIONS}
  jax.config.update("jax_compilation_cache_dir", None)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  yield
  for name, value in before.items():
    jax.config.update(name, value)
  jax_cache.reset_cache()


def test_enable_puts_the_cache_under_featviz_home(featviz_home, clean_jax_cache):
  folder = compile_cache.enable()
  assert folder == featviz_home / compile_cache.SUBDIR
  assert jax.config.jax_compilation_cache_dir == str(folder)
  assert jax.config.jax_persistent_cache_min_compile_time_secs == (
    compile_cache.MIN_COMPILE_TIME_SECS
  )


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_the_environment_variable_opts_out(featviz_home, clean_jax_cache, monkeypatch, value):
  monkeypatch.setenv(compile_cache.ENV_VAR, value)
  assert compile_cache.enable() is None
  assert jax.config.jax_compilation_cache_dir is None
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0


def test_a_folder_the_user_set_is_kept_with_their_options(featviz_home, clean_jax_cache, tmp_path):
  mine = str(tmp_path / "my_cache")
  jax.config.update("jax_compilation_cache_dir", mine)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.5)
  assert compile_cache.enable() == pathlib.Path(mine)
  assert jax.config.jax_compilation_cache_dir == mine
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 2.5


def test_enabled_restores_the_options(featviz_home, clean_jax_cache):
  with compile_cache.enabled(min_compile_time_secs=0) as folder:
    assert jax.config.jax_compilation_cache_dir == str(folder)
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
  assert jax.config.jax_compilation_cache_dir is None
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0


def test_importing_featviz_changes_no_jax_setting(tmp_path):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
  code = (
    "import jax, featviz, featviz._loop.api, featviz.cli; "
    "print(jax.config.jax_compilation_cache_dir)"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == "None"


RENDER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import jax, numpy as np
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    import tiny_cnn
    from featviz import compile_cache, objectives, transforms
    from featviz._loop import api as render
    from featviz._loop import program

    # 0 s: the tiny programs compile in milliseconds, below any useful threshold.
    folder = compile_cache.enable(min_compile_time_secs=0)
    start = len(events)
    # progress_bar=True: the bar must not put a host callback into the program.
    r = render.render(tiny_cnn.make(), objectives.channel("conv2", np.arange(2)), steps=6,
                      size=16, seed=1, transforms=transforms.jitter(2), progress_bar=True)
    np.save(sys.argv[2], r.images)
    seen = events[start:]
    print(json.dumps({"folder": str(folder), "hits": seen.count(%r), "writes": seen.count(%r),
                      "traces": program.trace_count()}))
    """) % (HITS, WRITES)


def _run(args, home, tmp_path, extra_env=None):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  env.update(FEATVIZ_HOME=str(home), JAX_PLATFORMS="cpu", **(extra_env or {}))
  env.pop(compile_cache.ENV_VAR, None)
  # cwd=tmp_path: from the repo root, `python -c` would import the source folders.
  proc = subprocess.run(
    [sys.executable, "-c", *args],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    cwd=tmp_path,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def test_a_second_process_loads_the_render_from_the_cache(tmp_path):
  home = tmp_path / "home"
  runs = []
  for i in range(2):
    proc = _run([RENDER, str(TESTS), str(tmp_path / f"images{i}.npy")], home, tmp_path)
    runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  first, second = runs
  folder = home / compile_cache.SUBDIR
  assert first["folder"] == second["folder"] == str(folder)
  # init, one chunk of 6 steps, images (and the seed's key, an eager op): compiled and written.
  assert first["writes"] >= 3 and first["hits"] == 0
  assert any(p.name.startswith("jit__optimize_chunk-") for p in folder.iterdir())
  # The second process traces the loop (trace_count) but loads every program.
  assert second["hits"] >= 3 and second["writes"] == 0 and second["traces"] == 1
  np.testing.assert_array_equal(
    np.load(tmp_path / "images0.npy"), np.load(tmp_path / "images1.npy")
  )


CLI = textwrap.dedent("""
    import json, sys
    import jax
    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    from featviz.cli import main
    code = main(sys.argv[1:])
    print(json.dumps({"code": code, "hits": events.count(%r), "writes": events.count(%r),
                      "dir_after": jax.config.jax_compilation_cache_dir}))
    """) % (HITS, WRITES)


def test_the_command_line_caches_its_programs(tmp_path):
  """``featviz render`` twice with one FEATVIZ_HOME (mnist_cnn: its weights ship with the
  package): the second run writes nothing and loads what the first wrote."""
  home = tmp_path / "home"
  args = ["render", "mnist_cnn", "logit:0", "--size", "28", "--steps", "4", "--transforms", "none"]
  # The user's threshold (0 s, for the small test programs) is kept by compile_cache.enable.
  env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  runs = []
  for i in range(2):
    proc = _run([CLI, *args, "--out", str(tmp_path / f"out{i}.png")], home, tmp_path, env)
    runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  first, second = runs
  assert first["code"] == second["code"] == 0
  assert first["writes"] >= 3 and second["writes"] == 0 and second["hits"] >= 3
  assert first["dir_after"] is None  # main leaves JAX's options as it found them
  names = [p.name for p in (home / compile_cache.SUBDIR).iterdir()]
  assert any(n.startswith("jit__optimize_chunk-") for n in names), names
  assert (tmp_path / "out0.png").read_bytes() == (tmp_path / "out1.png").read_bytes()


def test_broken_entries_are_replaced_not_warned_about_forever(tmp_path):
  """Red team (issue 17): every entry cut to half made each later run warn and recompile, as
  JAX never replaces an existing entry. Run 2 warns, prunes and stores them again; run 3 loads
  every program."""
  home = tmp_path / "home"
  args = ["render", "mnist_cnn", "logit:0", "--size", "28", "--steps", "4", "--transforms", "none"]
  env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  runs = [_run([CLI, *args, "--out", str(tmp_path / "out0.png")], home, tmp_path, env)]
  folder = home / compile_cache.SUBDIR
  entries = sorted(folder.glob("*-cache"))
  assert entries and compile_cache.unreadable_entries(folder) == []
  for entry in entries:
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) // 2])
  assert compile_cache.unreadable_entries(folder) == entries
  for i in (1, 2):
    runs.append(_run([CLI, *args, "--out", str(tmp_path / f"out{i}.png")], home, tmp_path, env))
  broken, clean = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs[1:])
  assert "Error reading persistent compilation cache entry" in runs[1].stderr
  assert "unreadable entries of the compilation cache" in runs[1].stderr
  assert broken["writes"] >= 3 and compile_cache.unreadable_entries(folder) == []
  assert "Error reading" not in runs[2].stderr
  assert clean["writes"] == 0 and clean["hits"] >= 3
  assert broken["code"] == clean["code"] == 0
  outs = [(tmp_path / f"out{i}.png").read_bytes() for i in range(3)]
  assert outs[0] == outs[1] == outs[2]
