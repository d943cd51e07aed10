"""Checking a PyTorch ``state_dict`` against an architecture, and re-laying its tensors.

A converter first checks the whole file (:func:`check_state_dict`), then re-lays each tensor
from PyTorch's layout into Flax's. A partial load is never silent: a missing, unexpected or
wrongly shaped tensor raises :class:`WeightMismatchError` before any conversion happens.

:func:`convert_checked` runs a converter on a lazily read file (``torch_pickle.LazyTensor``:
names and shapes are checked before any tensor is read), warns naming every tensor whose dtype
was cast (int64, float64, float16 to float32), and refuses converted weights holding NaN or
inf (:class:`NonFiniteWeightsError`): cached, they would surface much later as a render that
"became non-finite" and a hint to lower the learning rate.

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

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = (
  "NonFiniteWeightsError",
  "WeightMismatchError",
  "check_finite",
  "check_state_dict",
  "conv_kernel",
  "convert_checked",
  "depthwise_kernel",
  "dense_kernel",
  "vector",
)

_SHOWN = 5  # How many keys of each kind an error message lists before "and N more".


class WeightMismatchError(ValueError):
  """A weight file does not hold exactly the tensors an architecture needs."""


class NonFiniteWeightsError(WeightMismatchError):
  """Converted weights hold NaN or inf; the message names the tensors and counts."""


def _listing(what: str, items: list[str]) -> str:
  shown = ", ".join(items[:_SHOWN])
  more = f", and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
  return f"{len(items)} {what}: {shown}{more}"


def check_state_dict(
  state: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], model: str
) -> None:
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
  mismatched = [
    f"{k} is {tuple(np.shape(state[k]))}, expected {tuple(expected[k])}"
    for k in expected
    if k in state and tuple(np.shape(state[k])) != tuple(expected[k])
  ]
  problems = [
    _listing(what, items)
    for what, items in (
      ("missing keys", missing),
      ("unexpected keys", unexpected),
      ("shape mismatches", mismatched),
    )
    if items
  ]
  if problems:
    raise WeightMismatchError(
      f"the weights are not a {model} state dict ({len(state)} tensors given, "
      f"{len(expected)} expected): " + "; ".join(problems)
    )


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


def _leaves(tree: Any, prefix: str = ""):
  if isinstance(tree, Mapping):
    for key, value in tree.items():
      yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
  else:
    yield prefix, tree


def check_finite(weights: Any, model: str) -> None:
  """Raises :class:`NonFiniteWeightsError` naming each leaf of ``weights`` with NaN or inf."""
  bad = []
  for path, leaf in _leaves(weights):
    array = np.asarray(leaf)
    if array.dtype.kind in "fc":
      count = int(array.size - np.count_nonzero(np.isfinite(array)))
      if count:
        bad.append(f"{path} ({count} of {array.size} values)")
  if bad:
    raise NonFiniteWeightsError(
      f"the {model} weights hold NaN or inf: {_listing('tensors', bad)}; weights must be "
      "finite numbers (was the file saved from a training run that diverged?)"
    )


def convert_checked(
  convert: Callable[[Mapping[str, Any]], Any], state: Mapping[str, Any], model: str
) -> Any:
  """``convert(state)``, warning about dtype casts and refusing non-finite results.

  Args:
    convert: an architecture's ``convert`` (checks names and shapes, then re-lays tensors).
    state: ``{name: array}``, best ``torch_pickle.LazyTensor`` s (``lazy=True``): a tensor is
      then read only after ``convert`` has checked every name and shape.
    model: the model's name, for the messages.

  Returns:
    The converted weights.

  Raises:
    WeightMismatchError: from ``convert`` (a plain ``ValueError`` of a converter that does not
      raise the specific class yet, mnist_cnn's, becomes one, with its message);
      :class:`NonFiniteWeightsError` for NaN or inf.
  """
  try:
    weights = convert(state)
  except ValueError as e:
    if type(e) is not ValueError:
      raise
    raise WeightMismatchError(f"{model}: {e}") from e
  casts = [
    f"{name} ({value.dtype})"
    for name, value in state.items()
    if getattr(value, "materialized", True)
    and np.dtype(getattr(value, "dtype", np.float32)) != np.float32
  ]
  if casts:
    warnings.warn(
      f"the {model} weight file's {_listing('tensors', casts)} were cast to "
      "float32 by the conversion",
      stacklevel=2,
    )
  check_finite(weights, model)
  return weights
