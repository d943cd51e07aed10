"""Receptive fields from the traced architecture, checked against gradient support.

The independent measurement: on the network with every ReLU made linear and every weight
made positive (absolute values), the gradient of one unit with respect to the input is a
sum of products of positive numbers along every path, so it is non-zero exactly on the
pixels the unit depends on. Where the network has no max pool, that support must equal
the structural mask pixel for pixel.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from featviz.analysis import receptive_field as rf
from featviz.model import Model, ModelSpec
from featviz.nonlin import Ops

import tiny_cnn

LINEAR = Ops(relu=lambda x: x, relu6=lambda x: x)


def _gradient_support(model, layer, queries, size):
  """``(N, H, W)`` pixels with non-zero gradient of each unit, linear ReLUs, |weights|."""
  weights = jax.tree.map(jnp.abs, model.weights)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(1, size, size, model.spec.channels)), jnp.float32)

  @jax.jit
  def grads(x):
    def unit(x, row, col, c):
      a = model.forward(weights, x, (layer,), LINEAR)[layer][0, row, col]
      return jnp.where(c < 0, jnp.sum(a), a[jnp.maximum(c, 0)])

    q = jnp.asarray(queries)
    return jax.vmap(lambda r, cl, c: jax.grad(unit)(x, r, cl, c))(q[:, 0], q[:, 1], q[:, 2])

  return np.asarray(jnp.max(jnp.abs(grads(x))[:, 0], axis=-1) > 0)


def test_tiny_cnn_masks_equal_gradient_support():
  model = tiny_cnn.make()
  # conv3 is 8x8 at 32 px: corners, an edge, the centre; single units and all units (-1).
  queries = [(0, 0, 0), (4, 4, 1), (7, 2, -1), (7, 7, 2), (3, 0, 7)]
  masks = rf.dependency_masks(model, "conv3", queries, 32)
  np.testing.assert_array_equal(masks, _gradient_support(model, "conv3", queries, 32))
  # Composition by hand: 3x3 (3 px) -> 3x3 stride 2 (+2 = 5) -> 3x3 at stride 2 (+4 = 9).
  box = rf.receptive_fields(model, "conv3", [(4, 4, -1)], 32)[0]
  assert tuple(box[2:] - box[:2]) == (9, 9)


def test_one_pull_back_program_per_architecture_layer_and_size():
  before = rf._pull._cache_size()
  rf.dependency_masks(tiny_cnn.make(seed=5), "conv2", [(0, 0, 0)], 24)
  after = rf._pull._cache_size()
  assert after <= before + 1
  # Other weights of the same architecture, two chunks of queries: jit's cache serves both.
  rf.dependency_masks(tiny_cnn.make(seed=6), "conv2", [(3, 3, -1)] * 9, 24)
  assert rf._pull._cache_size() == after


def test_efficientnet_block3_masks_equal_gradient_support():
  from featviz import zoo

  model = zoo.load("efficientnet_lite0")
  size = 96  # block3 is 12x12 there (stride 8); 96 px keeps the trace and gradients fast
  queries = [(0, 0, 0), (6, 6, 5), (11, 3, -1), (11, 11, 39)]
  masks = rf.dependency_masks(model, "block3", queries, size)
  np.testing.assert_array_equal(masks, _gradient_support(model, "block3", queries, size))
  # stem 3x3/2 (3) -> block0 dw3 at stride 2 (+4 = 7) -> block1 dw3/2 (+4 = 11) ->
  # block2 dw3 at stride 4 (+8 = 19) -> block3 dw5/2 at stride 4 (+16 = 35).
  (h, w), box = rf.centre_field(model, "block3", size)
  assert (h, w) == (12, 12)
  assert (box[2] - box[0], box[3] - box[1]) == (35, 35)


def _pooled_model() -> Model:
  """conv 3x3 -> max pool 3x3 stride 2 (SAME) -> conv 3x3: fields by hand 3, 5, 9."""
  rng = np.random.default_rng(1)
  weights = {
    "a": rng.normal(size=(3, 3, 1, 4)).astype(np.float32),
    "b": rng.normal(size=(3, 3, 4, 4)).astype(np.float32),
  }

  def forward(w, x, layers, ops):
    dn = ("NHWC", "HWIO", "NHWC")
    h = ops.relu(jax.lax.conv_general_dilated(x, w["a"], (1, 1), "SAME", dimension_numbers=dn))
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    h = jax.lax.conv_general_dilated(h, w["b"], (1, 1), "SAME", dimension_numbers=dn)
    return {"out": h}

  spec = ModelSpec("pooled", (0.0, 1.0), "test", 32, 1, {"out": 4})
  return Model(spec, weights, forward)


def test_max_pool_field_is_the_whole_window_not_the_argmax():
  model = _pooled_model()
  queries = [(8, 8, 0), (0, 0, 1)]
  masks = rf.dependency_masks(model, "out", queries, 32)
  boxes = rf.bounding_boxes(masks)
  # Centre: conv 3 -> pool 3 at stride 1 (+2 = 5) -> conv 3 at stride 2 (+4 = 9). TF SAME
  # pads the pool (0, 1), so pool output j reads rows 2j..2j+2; output (8, 8) reads pool
  # rows 7..9, i.e. rows 14..20 of the first conv, i.e. input rows 13..21.
  assert tuple(boxes[0]) == (13, 13, 22, 22)
  # Output (0, 0) reads pool rows -1..1 (row -1 is padding), conv rows 0..4, input 0..5.
  assert tuple(boxes[1]) == (0, 0, 6, 6)
  assert masks[0].sum() == 81  # the whole 9x9 window, no holes
  # The gradient reaches only the arg-max of each pool window: a subset of the field.
  support = _gradient_support(model, "out", queries, 32)
  assert (support <= masks).all() and support.sum() < masks.sum()


def test_flat_layers_see_the_whole_image():
  model = tiny_cnn.make()
  masks = rf.dependency_masks(model, "logits", [(0, 0, 3), (0, 0, -1)], 32)
  assert masks.all()


def test_bad_queries_raise():
  model = tiny_cnn.make()
  with pytest.raises(ValueError, match="outside"):
    rf.dependency_masks(model, "conv3", [(8, 0, 0)], 32)
  with pytest.raises(IndexError):
    rf.dependency_masks(model, "conv3", [(0, 0, 8)], 32)
  with pytest.raises(KeyError):
    rf.dependency_masks(model, "conv9", [(0, 0, 0)], 32)


def test_inception_branches_have_their_own_fields(shared):
  from featviz import zoo

  path = shared / "reference" / "inceptionv1" / "random_inception5h.pth"
  model = zoo.load("inceptionv1", weights=str(path))
  # conv2d0 7x7/2 (7) -> pool 3/2 (+4 = 11) -> conv2d1 1x1 -> conv2d2 3x3 at stride 4
  # (+8 = 19) -> pool 3/2 (+8 = 27) -> mixed3a at stride 8: 1x1 branch (27), 3x3 (+16 = 43),
  # 5x5 (+32 = 59), pool 3x3 + 1x1 (43). Channels: 64 + 128 + 32 + 32.
  boxes = rf.receptive_fields(model, "mixed3a", [(14, 14, u) for u in (0, 100, 200, 255)], 224)
  assert [int(b[2] - b[0]) for b in boxes] == [27, 43, 59, 43]


def _every_query(model, layer, size):
  """Every (row, col, unit) of ``layer`` at ``size`` px, unit -1 included."""
  shape = rf._out_shape(model, layer, (1, size, size, model.spec.channels))
  h, w, c = shape[1:] if len(shape) == 4 else (1, 1, shape[-1])
  grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), np.arange(-1, c), indexing="ij"), -1)
  return grid.reshape(-1, 3)


@pytest.mark.parametrize(
  ("model", "layer", "size"),
  [
    (tiny_cnn.make(), "conv2", 32),
    (tiny_cnn.make(), "conv3", 30),  # odd sizes: SAME padding differs at the two borders
    (tiny_cnn.make(), "logits", 32),
    (_pooled_model(), "out", 31),
  ],
)
def test_pushed_boxes_equal_the_pulled_masks_boxes_everywhere(model, layer, size):
  queries = _every_query(model, layer, size)
  masks = rf.dependency_masks(model, layer, queries, size, chunk=64)
  np.testing.assert_array_equal(
    rf.receptive_fields(model, layer, queries, size), rf.bounding_boxes(masks)
  )


def test_pushed_boxes_equal_the_pulled_masks_boxes_on_efficientnet():
  from featviz import zoo

  model = zoo.load("efficientnet_lite0")
  rng = np.random.default_rng(0)
  for layer, side in (("block3", 12), ("block10", 6)):  # 96 px: strides 8 and 16
    corners = [(0, 0, 0), (side - 1, side - 1, -1), (0, side - 1, 3), (side - 1, 0, 7)]
    inner = np.column_stack([rng.integers(0, side, (2, 12)).T, rng.integers(-1, 40, 12)])
    queries = np.concatenate([corners, inner])
    masks = rf.dependency_masks(model, layer, queries, 96)
    np.testing.assert_array_equal(
      rf.receptive_fields(model, layer, queries, 96), rf.bounding_boxes(masks)
    )


def test_a_channel_that_reads_no_pixel_has_an_empty_box():
  """A constant channel concatenated beside a conv: no pixel reaches it, both ways."""
  rng = np.random.default_rng(2)
  weights = {"a": rng.normal(size=(3, 3, 1, 2)).astype(np.float32)}

  def forward(w, x, layers, ops):
    dn = ("NHWC", "HWIO", "NHWC")
    h = jax.lax.conv_general_dilated(x, w["a"], (2, 2), "SAME", dimension_numbers=dn)
    return {"out": jnp.concatenate([h, jnp.ones_like(h[..., :1]) * 3.0], axis=-1)}

  model = Model(ModelSpec("const", (0.0, 1.0), "test", 16, 1, {"out": 3}), weights, forward)
  queries = [(0, 0, 2), (3, 3, 2), (3, 3, 0), (3, 3, -1)]
  boxes = rf.receptive_fields(model, "out", queries, 16)
  np.testing.assert_array_equal(
    boxes, rf.bounding_boxes(rf.dependency_masks(model, "out", queries, 16))
  )
  assert tuple(boxes[0]) == (0, 0, 0, 0) and tuple(boxes[1]) == (0, 0, 0, 0)
  # 3x3 at stride 2 on 16 px: SAME pads (0, 1), so output row i reads rows 2i..2i+2.
  assert tuple(boxes[2]) == (6, 6, 9, 9)


def test_one_push_program_per_layer_whatever_the_queries():
  model = tiny_cnn.make(seed=7)
  rf.receptive_fields(model, "conv2", [(0, 0, 0)], 26)
  before = rf._push._cache_size()
  rf.receptive_fields(tiny_cnn.make(seed=8), "conv2", _every_query(model, "conv2", 26), 26)
  assert rf._push._cache_size() == before
