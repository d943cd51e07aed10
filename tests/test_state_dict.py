"""featviz.zoo.state_dict: the loud weight check and the PyTorch -> Flax re-layouts.

Each re-layout is checked against the operation it must preserve, computed independently in
NumPy with PyTorch's conventions (cross-correlation over OIHW weights, ``x @ W.T``).
"""

import numpy as np
import pytest
from jax import lax

from featviz.zoo import state_dict as sd


def _torch_conv2d(x, w, groups=1):
  """PyTorch's ``conv2d`` (no padding, stride 1) in NumPy: x (N, C, H, W), w (O, C/g, kh, kw)."""
  n, c, h, wd = x.shape
  o, cg, kh, kw = w.shape
  out = np.zeros((n, o, h - kh + 1, wd - kw + 1), np.float64)
  per_group = o // groups
  for oc in range(o):
    g = oc // per_group
    xs = x[:, g * cg : (g + 1) * cg]
    for i in range(out.shape[2]):
      for j in range(out.shape[3]):
        out[:, oc, i, j] = np.einsum("nchw,chw->n", xs[:, :, i : i + kh, j : j + kw], w[oc])
  return out


def _flax_conv(x_nchw, kernel_hwio, groups=1):
  y = lax.conv_general_dilated(
    np.transpose(x_nchw, (0, 2, 3, 1)),
    kernel_hwio,
    (1, 1),
    "VALID",
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
    feature_group_count=groups,
  )
  return np.transpose(np.asarray(y), (0, 3, 1, 2))


def test_conv_kernel_preserves_the_convolution():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)
  w = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)  # Non-square: catches a kh/kw swap.
  kernel = sd.conv_kernel(w)
  assert kernel.shape == (3, 2, 3, 4) and kernel.dtype == np.float32
  np.testing.assert_allclose(_flax_conv(x, kernel), _torch_conv2d(x, w), rtol=1e-5, atol=1e-5)


def test_depthwise_kernel_preserves_the_grouped_convolution():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5, 7, 7)).astype(np.float32)
  w = rng.normal(size=(5, 1, 3, 3)).astype(np.float32)
  kernel = sd.depthwise_kernel(w)
  assert kernel.shape == (3, 3, 1, 5)
  np.testing.assert_allclose(
    _flax_conv(x, kernel, groups=5), _torch_conv2d(x, w, groups=5), rtol=1e-5, atol=1e-5
  )


def test_depthwise_kernel_rejects_a_plain_conv_weight():
  with pytest.raises(sd.WeightMismatchError, match=r"\(C, 1, kh, kw\)"):
    sd.depthwise_kernel(np.zeros((4, 3, 3, 3), np.float32))


def test_dense_kernel_preserves_the_linear_map():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(3, 5))
  w = rng.normal(size=(4, 5))  # PyTorch Linear(5, 4): y = x @ w.T.
  kernel = sd.dense_kernel(w)
  assert kernel.shape == (5, 4) and kernel.dtype == np.float32
  np.testing.assert_allclose(x.astype(np.float32) @ kernel, x @ w.T, rtol=1e-5, atol=1e-5)


def test_vector_is_float32():
  assert sd.vector(np.arange(3, dtype=np.float64)).dtype == np.float32


EXPECTED = {"a.weight": (2, 3), "a.bias": (2,), "b.weight": (4, 4)}


def test_exact_state_passes():
  sd.check_state_dict({k: np.zeros(s) for k, s in EXPECTED.items()}, EXPECTED, "toy")


def test_mismatch_error_lists_missing_unexpected_and_shapes():
  state = {"a.weight": np.zeros((3, 2)), "c.weight": np.zeros((1,))}
  with pytest.raises(sd.WeightMismatchError) as info:
    sd.check_state_dict(state, EXPECTED, "ToyNet (test layout)")
  msg = str(info.value)
  assert isinstance(info.value, ValueError)
  assert "ToyNet (test layout)" in msg
  assert "2 missing keys: a.bias (2,), b.weight (4, 4)" in msg
  assert "1 unexpected keys: c.weight (1,)" in msg
  assert "1 shape mismatches: a.weight is (3, 2), expected (2, 3)" in msg


def test_mismatch_error_truncates_long_lists_with_a_count():
  expected = {f"k{i}": (1,) for i in range(12)}
  with pytest.raises(sd.WeightMismatchError) as info:
    sd.check_state_dict({}, expected, "toy")
  msg = str(info.value)
  assert "12 missing keys: k0 (1,), k1 (1,), k2 (1,), k3 (1,), k4 (1,), and 7 more" in msg
  assert "k5" not in msg
