"""featviz.cpu_devices: the CPU as one XLA device per core, and the default mesh of a batch.

JAX fixes its CPU device count when its backends start, so what a fresh process gets is checked
in subprocesses; this process has started JAX with its single CPU device.
"""

import os
import subprocess
import sys

import jax
import pytest

from featviz import cpu_devices
from featviz.cli import main


def test_the_environment_variable_reads_as_a_count_or_off(monkeypatch):
  for value, count in {"3": 3, " 2 ": 2, "off": 1, "0": 1, "1": 1, "No": 1, "": None}.items():
    monkeypatch.setenv(cpu_devices.ENV_VAR, value)
    assert cpu_devices.requested() == count, value
  monkeypatch.delenv(cpu_devices.ENV_VAR)
  assert cpu_devices.requested() is None
  for bad in ("two", "-2", "1.5"):
    monkeypatch.setenv(cpu_devices.ENV_VAR, bad)
    with pytest.raises(ValueError, match=cpu_devices.ENV_VAR):
      cpu_devices.requested()


def test_a_bad_count_is_a_usage_error_of_the_command(monkeypatch, capsys):
  monkeypatch.setenv(cpu_devices.ENV_VAR, "many")
  assert main(["zoo"]) == 2
  assert "FEATVIZ_CPU_DEVICES='many'" in capsys.readouterr().err


def test_once_jax_has_started_nothing_changes_and_an_asked_count_is_warned_of():
  jax.devices()  # the backends start (if no other test started them)
  have = jax.device_count("cpu")
  assert cpu_devices.enable() == have  # the default: quietly what JAX has
  with pytest.warns(UserWarning, match="before JAX's first computation"):
    assert cpu_devices.enable(have + 1) == have
  assert jax.device_count("cpu") == have


def test_one_device_or_an_uneven_batch_gets_no_mesh():
  assert cpu_devices.batch_mesh(8, jax.devices()[:1]) is None


def _fresh(code: str, cwd, **env) -> str:
  environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", cpu_devices.ENV_VAR)}
  environ.update(env, JAX_PLATFORMS="cpu")
  # cwd away from the repo root: there `python -c` would import the source folders
  proc = subprocess.run(
    [sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120, cwd=cwd
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  return proc.stdout.split()


SCRIPT = """
from featviz import cpu_devices
n = cpu_devices.enable({count})
import jax
mesh = cpu_devices.batch_mesh(6)
print(n, jax.device_count(), mesh.size if mesh is not None else None,
      cpu_devices.batch_mesh(5))
"""


def test_a_fresh_process_gets_the_count_it_asks_for_and_batches_split_over_it(tmp_path):
  assert _fresh(SCRIPT.format(count=3), tmp_path) == ["3", "3", "3", "None"]
  asked = _fresh(SCRIPT.format(count=None), tmp_path, FEATVIZ_CPU_DEVICES="2")
  assert asked == ["2", "2", "2", "None"]
  default = cpu_devices.available_cores()
  mesh = str(default) if default > 1 and 6 % default == 0 else "None"
  assert _fresh(SCRIPT.format(count=None), tmp_path) == [str(default), str(default), mesh, "None"]


def test_the_users_xla_flag_wins(tmp_path):
  flags = "--xla_force_host_platform_device_count=2"
  assert _fresh(SCRIPT.format(count=3), tmp_path, XLA_FLAGS=flags) == ["2", "2", "2", "None"]
