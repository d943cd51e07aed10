"""Every core of a CPU for one batch: the CPU as several XLA devices, the batch split over them.

XLA's CPU backend runs a render step on about one core: measured on EfficientNet-Lite0
``block10`` (128 px, batch 8, Lucid's settings, jax 0.10.2, a 2-core AMD EPYC), a step takes
205 ms pinned to one core and 180 ms with both. Exposing the CPU as one XLA device per core
(JAX's ``jax_num_cpu_devices``) and splitting the batch over them (``featviz.render``'s and
``featviz.sweep``'s default mesh) runs the parts at once: 134 ms per step with 2 devices on
the same 2 cores. Every image has its own parameters, so the devices never wait for each other
except for the loop's per-step finiteness check (``featviz._loop.program``).

The setting must be made before JAX starts its backends (its first computation, or
``jax.devices()``), so the ``featviz`` command makes it first thing (:func:`enable`), and a
program of your own calls :func:`enable` right after its imports. Importing featviz changes no
JAX setting. A unit's image does not depend on the device count, up to the rounding of
batch-size-dependent kernels (``tests/test_sweep_multidevice.py``: bitwise equal PNGs on CPU).
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np
from jax._src import xla_bridge

# FEATVIZ_CPU_DEVICES=N asks for N devices; 0, 1, off, no or false leaves JAX's one CPU device.
ENV_VAR = "FEATVIZ_CPU_DEVICES"
_OFF = ("0", "1", "false", "no", "off")
# XLA's own flag for the same thing; a user who set it has chosen, and it wins.
_XLA_FLAG = "--xla_force_host_platform_device_count"


def available_cores() -> int:
  """The cores this process may run on (its affinity mask, as ``taskset`` or a container
  sets it), not the machine's count."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # macOS, Windows
    return os.cpu_count() or 1


def requested() -> int | None:
  """The device count ``FEATVIZ_CPU_DEVICES`` asks for: ``None`` when unset (one per core),
  1 when it says off. Raises ValueError on anything else that is not a positive integer."""
  value = os.environ.get(ENV_VAR)
  if value is None or not value.strip():
    return None
  if value.strip().lower() in _OFF:
    return 1
  try:
    count = int(value)
  except ValueError:
    count = 0
  if count < 1:
    raise ValueError(f"{ENV_VAR}={value!r}: give a positive device count, or 0/off for one device")
  return count


def enable(count: int | None = None) -> int:
  """Exposes the CPU as ``count`` XLA devices (default: ``FEATVIZ_CPU_DEVICES``, else one per
  available core) and returns the CPU device count JAX will have.

  Changes nothing, and returns what JAX has or will have, when ``XLA_FLAGS`` already sets
  ``--xla_force_host_platform_device_count`` (the user's choice wins) or when JAX's backends
  have started: the count can no longer change then, which a count asked for (``count`` or
  the environment variable) is warned of.
  """
  asked = count if count is not None else requested()
  count = asked or available_cores()
  flags = os.environ.get("XLA_FLAGS", "")
  if _XLA_FLAG in flags:
    return int(flags.split(_XLA_FLAG + "=")[1].split()[0])
  if xla_bridge.backends_are_initialized():
    try:
      have = jax.device_count("cpu")
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu)
      have = max(1, jax.config.jax_num_cpu_devices)
    if asked is not None and have != count:
      warnings.warn(
        f"JAX has started with {have} CPU device(s); featviz.cpu_devices.enable({count}) must "
        "run before JAX's first computation (right after the imports)",
        stacklevel=2,
      )
    return have
  jax.config.update("jax_num_cpu_devices", int(count))
  return int(count)


def batch_mesh(batch: int, devices=None) -> jax.sharding.Mesh | None:
  """The mesh a batch of ``batch`` images is split over by default: every local device of the
  default backend when there are several and they divide the batch, else ``None`` (the
  default device alone)."""
  devices = list(devices) if devices is not None else jax.local_devices()
  if len(devices) < 2 or batch % len(devices):
    return None
  return jax.sharding.Mesh(np.asarray(devices), ("batch",))
