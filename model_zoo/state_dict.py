"""Checking a PyTorch ``state_dict`` against an architecture, and re-laying its tensors.

A converter first checks the whole file (:func:`check_state_dict`), then re-lays each tensor
from PyTorch's layout into Flax's. A partial load is never silent: a missing, unexpected or
wrongly shaped tensor raises :class:`WeightMismatchError` before any conversion happens.

Layouts (PyTorch -> Flax/TF):

=================  ==========================  ===============================
layer              PyTorch                     Flax (``nn.Conv`` / ``nn.Dense``)
=================  ==========================  ===============================
conv               ``(O, I, kh, kw)`` (OIHW)   ``(kh, kw, I, O)`` (HWIO)
depthwise conv     ``(C, 1, kh, kw)``          ``(kh, kw, 1, C)``, ``groups=C``
linear             ``(out, in)``               ``(in, out)``
=================  ==========================  ===============================
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ("WeightMismatchError", "check_state_dict", "conv_kernel", "depthwise_kernel",
           "dense_kernel", "vector")

_SHOWN = 5  # How many keys of each kind an error message lists before "and N more".


class WeightMismatchError(ValueError):
  """A weight file does not hold exactly the tensors an architecture needs."""


def _listing(what: str, items: list[str]) -> str:
  shown = ", ".join(items[:_SHOWN])
  more = f", and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
  return f"{len(items)} {what}: {shown}{more}"


def check_state_dict(state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]],
                     model: str) -> None:
  """Raises unless ``state`` has exactly the keys and shapes of ``expected``.

  Args:
    state: ``{name: array}`` as read from the weight file.
    expected: ``{name: shape}`` the architecture needs.
    model: what the file was expected to hold, e.g. ``"InceptionV1 (inception5h)"``;
      it leads the message so that a wrong file is recognisable at a glance.

  Raises:
    WeightMismatchError: listing the missing keys, the unexpected keys and the shape
      mismatches, the first few of each by name and shape, with their counts.
  """
  missing = [f"{k} {tuple(expected[k])}" for k in expected if k not in state]
  unexpected = [f"{k} {tuple(np.shape(state[k]))}" for k in state if k not in expected]
  mismatched = [f"{k} is {tuple(np.shape(state[k]))}, expected {tuple(expected[k])}"
                for k in expected
                if k in state and tuple(np.shape(state[k])) != tuple(expected[k])]
  problems = [_listing(what, items) for what, items in (
      ("missing keys", missing), ("unexpected keys", unexpected),
      ("shape mismatches", mismatched)) if items]
  if problems:
    raise WeightMismatchError(
        f"the weights are not a {model} state dict ({len(state)} tensors given, "
        f"{len(expected)} expected): " + "; ".join(problems))


def conv_kernel(weight: np.ndarray) -> np.ndarray:
  """PyTorch conv weight ``(O, I, kh, kw)`` -> Flax kernel ``(kh, kw, I, O)``, float32."""
  return np.ascontiguousarray(np.transpose(np.asarray(weight, np.float32), (2, 3, 1, 0)))


def depthwise_kernel(weight: np.ndarray) -> np.ndarray:
  """PyTorch depthwise weight ``(C, 1, kh, kw)`` -> Flax kernel ``(kh, kw, 1, C)``.

  PyTorch's grouped conv stores ``(O, I / groups, kh, kw)``; with ``groups = C`` that is
  ``(C, 1, kh, kw)``. Flax (``feature_group_count=C``) wants ``(kh, kw, I / groups, O)``,
  so it is the same transpose as a plain conv.
  """
  weight = np.asarray(weight, np.float32)
  if weight.ndim != 4 or weight.shape[1] != 1:
    raise WeightMismatchError(f"a depthwise weight is (C, 1, kh, kw); got {weight.shape}")
  return conv_kernel(weight)


def dense_kernel(weight: np.ndarray) -> np.ndarray:
  """PyTorch ``Linear`` weight ``(out, in)`` -> Flax ``Dense`` kernel ``(in, out)``."""
  return np.ascontiguousarray(np.asarray(weight, np.float32).T)


def vector(value: np.ndarray) -> np.ndarray:
  """A bias or batch-norm vector, unchanged but for the dtype (float32)."""
  return np.asarray(value, np.float32)
