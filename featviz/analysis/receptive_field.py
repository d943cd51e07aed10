"""Receptive fields read off the architecture: which input pixels a unit depends on.

A unit ``(row, col, channel)`` of a layer *depends on* an input pixel when some chain of
operations in the forward pass carries that pixel to the unit. That set is a property of
the architecture alone (kernel sizes, strides, paddings, pools, branches, residuals), not
of the weights or of the image, so we compute it from the structure of the forward pass:

1. Trace :meth:`Model.activations <featviz.model.Model.activations>` once into a jaxpr, the
   list of primitive operations JAX records ("Understanding Jaxprs" in the JAX docs).
   Nothing about the zoo architectures is hard-coded here: SAME paddings computed for the
   input size, depthwise convolutions written as shifted slices, Inception's concatenated
   branches and max pools all appear as the primitives they are.
2. Walk the jaxpr *backwards* from a one-hot mask on the chosen unit, turning each
   operation into its non-negative linear *skeleton* and pulling the mask through the
   skeleton's transpose (``jax.vjp``), then thresholding ``> 0``:

   * convolutions and matrix products use an all-ones kernel (every tap counts, whatever
     its trained weight, so no cancellation can hide a pixel);
   * max and min pools (``reduce_window_max``), ``reduce_max`` and friends become sums
     (every element of a window can be the maximum, so every element is a dependency);
   * element-wise operations (ReLU, batch norm, residual ``add``, ``mul``) pass the
     mask to every operand that depends on the input;
   * data movement (``pad``, ``slice``, ``reshape``, ``concatenate``, ...) is already
     linear and is transposed as it is: padding pixels are constants, so a unit near the
     border depends on fewer pixels (the field is clipped by the image).

   Nested programs (``jit``, ``custom_jvp_call`` for ``relu6``, ...) are entered.

The result is the exact dependency set as a mask ``(H, W)`` (:func:`dependency_masks`),
one pull-back per unit. :func:`receptive_fields` wants only the mask's bounding box, and
gets it for every position and channel of the layer in one pass the other way (step 2
read forwards): each element carries the least and greatest row and column of the input
pixels it depends on, and each skeleton becomes a min or max over what its output reads
(``_push``). For EfficientNet-Lite0's ``block15`` at 224 px, 8 fields by pull-back took
3.2 s on a 2-core CPU, every field of the layer by push 1 s, compile included; the boxes
equal the masks' (tests/test_receptive_field.py). The mask equals the support of the
gradient of the unit with respect to the input on the network with every ReLU made linear
and every weight made positive (the same tests check that on tiny_cnn and
EfficientNet-Lite0 ``block3``), and unlike that measurement it stays exact through max
pools, whose gradient reaches only the arg-max of each window.

Different channels can have different fields: in InceptionV1's ``mixed3a`` the 1x1 branch
sees less than the 5x5 branch. Pass a unit to get its own field, or ``-1`` for the union
over the layer's channels. Flat layers (``logits``, ``(B, C)``) see the whole image; a token
of a ``(B, T, C)`` layer (a ViT) is position ``(0, t)``: its patch alone after the patch
embedding, usually the whole image after an attention block.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jcore

from featviz.model import Model, as_map
from featviz.nonlin import STANDARD_OPS

# Element-wise primitives: output element i depends on element i of each operand (scalar
# operands broadcast). ``convert_element_type`` and ``copy`` are element-wise too.
_ELEMENTWISE = frozenset(
  """
    abs add and atan2 cbrt ceil clamp convert_element_type copy copy_p cos cosh div eq erf
    erf_inv erfc exp exp2 expm1 floor ge gt integer_pow is_finite le log log1p logistic lt max min
    mul ne neg nextafter not or pow reduce_precision rem round rsqrt select_n sign sin sinh
    sqrt square stop_gradient sub tan tanh xor
    """.split()
)
# Already linear in their array operands (data movement and sums): transposed as they are.
_LINEAR = frozenset(
  """
    broadcast_in_dim concatenate expand_dims pad reduce_sum reduce_window_sum reshape rev
    slice squeeze transpose
    """.split()
)
# Selections over windows or axes: every element can be the one selected, so their
# skeleton is the sum over the same window or axes.
_WINDOW_SELECT = frozenset(["reduce_window_max", "reduce_window_min"])
_AXIS_SELECT = frozenset(["reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin"])
# Products with a weight operand: the skeleton puts all-ones in place of the other operand.
_PRODUCTS = frozenset(["conv_general_dilated", "dot_general"])
# Primitives that call a sub-program held in their parameters.
_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


class UnsupportedOperationError(NotImplementedError):
  """The forward pass uses a primitive whose dependency structure is not described here."""


def _sub_jaxpr(eqn) -> jcore.Jaxpr | None:
  for key in _CALLS:
    inner = eqn.params.get(key)
    if isinstance(inner, jcore.ClosedJaxpr):
      return inner.jaxpr
    if isinstance(inner, jcore.Jaxpr):
      return inner
  return None


def _is_var(v) -> bool:
  return isinstance(v, jcore.Var) and not isinstance(v, jcore.DropVar)


def _unbroadcast(mask: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """An output mask folded onto an operand of ``shape`` (scalars: any element)."""
  if tuple(mask.shape) == tuple(shape):
    return mask
  return jnp.broadcast_to((jnp.max(mask) > 0).astype(jnp.float32), shape)


def _skeleton_pullback(eqn, tainted: Sequence[bool], out_mask: jax.Array) -> list:
  """Masks of the tainted operands of one primitive, from the mask of its output."""
  name = eqn.primitive.name
  avals = [v.aval for v in eqn.invars]
  params = dict(eqn.params)
  if name in _ELEMENTWISE:
    return [_unbroadcast(out_mask, a.shape) if t else None for a, t in zip(avals, tainted)]
  if name in _WINDOW_SELECT:

    def skeleton(x):
      return lax.reduce_window_sum_p.bind(x, **params)
  elif name in _AXIS_SELECT:
    axes = tuple(params["axes"] if "axes" in params else (params["axis"],))

    def skeleton(x):
      return jnp.sum(x, axis=axes)
  elif name in _PRODUCTS or name in _LINEAR:

    def skeleton(*xs):
      it = iter(xs)
      args = [
        next(it)
        if t
        else jnp.ones(a.shape, jnp.float32)
        if name in _PRODUCTS
        else jnp.zeros(a.shape, a.dtype)
        for a, t in zip(avals, tainted)
      ]
      return eqn.primitive.bind(*args, **params)
  else:
    raise UnsupportedOperationError(
      f"receptive fields: the forward pass uses the primitive {name!r}, whose dependency "
      "structure featviz.analysis.receptive_field does not describe; add it to one of "
      "_ELEMENTWISE, _LINEAR, _WINDOW_SELECT, _AXIS_SELECT or _PRODUCTS there"
    )
  primals = [jnp.ones(a.shape, jnp.float32) for a, t in zip(avals, tainted) if t]
  _, pullback = jax.vjp(skeleton, *primals)
  cotangents = iter(pullback(out_mask.astype(jnp.float32)))
  return [(next(cotangents) > 0).astype(jnp.float32) if t else None for t in tainted]


def _pull_masks(
  jaxpr: jcore.Jaxpr, in_tainted: Sequence[bool], out_masks: Sequence[jax.Array | None]
) -> list[jax.Array | None]:
  """Pulls 0/1 masks on ``jaxpr``'s outputs back to its inputs (None: no dependency).

  First a forward sweep marks the variables that depend on a tainted input; then a
  backward sweep pulls masks through each operation that touches one, accumulating by OR
  (``max``) where a variable feeds several operations (residuals, branches).
  """
  tainted = {v for v, t in zip(jaxpr.invars, in_tainted) if t}
  per_eqn = []
  for eqn in jaxpr.eqns:
    flags = [_is_var(v) and v in tainted for v in eqn.invars]
    per_eqn.append(flags)
    if any(flags):
      tainted.update(v for v in eqn.outvars if _is_var(v))
  masks: dict = {}

  def add(v, m):
    masks[v] = m if v not in masks else jnp.maximum(masks[v], m)

  for v, m in zip(jaxpr.outvars, out_masks):
    if m is not None and _is_var(v) and v in tainted:
      add(v, m)
  for eqn, flags in zip(reversed(jaxpr.eqns), reversed(per_eqn)):
    outs = [masks.get(v) if _is_var(v) else None for v in eqn.outvars]
    if not any(flags) or all(m is None for m in outs):
      continue
    inner = _sub_jaxpr(eqn)
    if inner is not None:
      outs = [
        jnp.zeros(v.aval.shape, jnp.float32) if m is None else m for v, m in zip(eqn.outvars, outs)
      ]
      # A call's operands may carry leading constants the sub-program does not bind as
      # inputs (custom_jvp_call's num_consts are still inputs; we align from the end).
      offset = len(eqn.invars) - len(inner.invars)
      pulled = [None] * offset + _pull_masks(inner, flags[offset:], outs)
    else:
      if len(eqn.outvars) != 1:
        raise UnsupportedOperationError(
          f"receptive fields: primitive {eqn.primitive.name!r} has several results"
        )
      pulled = _skeleton_pullback(eqn, flags, outs[0])
    for v, t, m in zip(eqn.invars, flags, pulled):
      if t and m is not None:
        add(v, m)
  return [masks.get(v) if _is_var(v) else None for v in jaxpr.invars]


@functools.partial(jax.jit, static_argnums=2)
def _layer(model: Model, images: jax.Array, layer: str) -> jax.Array:
  """``layer``'s activations for ``images`` in [0, 1]: the program whose structure is read.

  Jitted so that ``_layer.eval_shape`` and ``jax.make_jaxpr(_layer)`` reuse one trace per
  model architecture, layer and image shape (jit's own cache).
  """
  return model.activations(images, (layer,), ops=STANDARD_OPS)[layer]


def _abstract(tree):
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)), tree)


def _out_shape(model: Model, layer: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The shape of ``layer``'s activations for images of ``shape`` (traced once, cached)."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return tuple(_layer.eval_shape(_abstract(model), x, layer).shape)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _pull(model: Model, seed: jax.Array, layer: str, shape: tuple[int, ...]) -> jax.Array:
  """The input pixels ``(B, H, W)`` that the units marked in ``seed`` depend on.

  ``seed`` is a 0/1 mask shaped like ``layer``'s activations for images of ``shape``. Only the
  model's structure is read (its weights are unused and pruned from the program), so jit
  compiles once per architecture, layer and image shape, and caches it.
  """
  closed = jax.make_jaxpr(_layer, static_argnums=2)(
    _abstract(model), jax.ShapeDtypeStruct(shape, jnp.float32), layer
  )
  in_tainted = [False] * (len(closed.jaxpr.invars) - 1) + [True]  # the image is the last input
  mask = _pull_masks(closed.jaxpr, in_tainted, [seed])[-1]
  if mask is None:
    return jnp.zeros(shape[:3], bool)
  return jnp.max(mask, axis=-1) > 0  # a pixel counts when any of its colours does


# Boxes by pushing bounds forward. A box needs only the extremes of the dependency set, and
# the extremes of a union are the extremes of its parts, so instead of pulling one mask back
# per unit we push four numbers per element *forward*: the least row, the least column and
# the negated greatest row and column of the input pixels the element depends on (+inf:
# none). Negating the two maxima lets all four travel through the same min-semantics ops, as
# one array of shape (4, *shape). Each primitive's skeleton becomes a min over what its
# output element reads: the same dependency structure ``_skeleton_pullback`` transposes, so
# the boxes equal ``bounding_boxes(dependency_masks(...))`` (tests/test_receptive_field.py),
# for every position and channel of the layer in one pass at batch 1.
_EMPTY = np.inf  # the bound of an element that depends on no input pixel


def _min_window(x: jax.Array, params: dict) -> jax.Array:
  return lax.reduce_window(
    x,
    _EMPTY,
    lax.min,
    params["window_dimensions"],
    params["window_strides"],
    params["padding"],
    params.get("base_dilation"),
    params.get("window_dilation"),
  )


def _conv_bounds(eqn, x: jax.Array) -> jax.Array:
  """``conv_general_dilated`` on its input's bounds: the min over every tap and channel read."""
  p = eqn.params
  if p["batch_group_count"] != 1:
    raise UnsupportedOperationError("receptive fields: batch_group_count > 1 convolutions")
  lhs_spec, rhs_spec, out_spec = p["dimension_numbers"]
  kernel = eqn.invars[1].aval.shape
  groups = p["feature_group_count"]
  x = jnp.transpose(x, lhs_spec)  # (N, C, spatial...)
  n, c, *spatial = x.shape
  x = jnp.min(x.reshape(n, groups, c // groups, *spatial), axis=2)  # (N, G, spatial...)
  ones = (1, 1)
  x = lax.reduce_window(
    x,
    _EMPTY,
    lax.min,
    ones + tuple(kernel[d] for d in rhs_spec[2:]),
    ones + tuple(p["window_strides"]),
    ((0, 0), (0, 0)) + tuple(tuple(pad) for pad in p["padding"]),
    ones + tuple(p["lhs_dilation"]),
    ones + tuple(p["rhs_dilation"]),
  )
  x = jnp.repeat(x, kernel[rhs_spec[0]] // groups, axis=1)  # (N, C_out, out spatial...)
  return jnp.transpose(x, np.argsort(out_spec))


def _dot_bounds(eqn, tainted: Sequence[bool], xs: Sequence) -> jax.Array:
  """``dot_general``: each output element reads its operands' contracted axes."""
  (contract, batch) = eqn.params["dimension_numbers"]
  out_shape = eqn.outvars[0].aval.shape
  ranks = [len(v.aval.shape) for v in eqn.invars]
  free = [
    [d for d in range(r) if d not in contract[i] and d not in batch[i]] for i, r in enumerate(ranks)
  ]
  out = None
  for i, (t, x) in enumerate(zip(tainted, xs)):
    if not t:
      continue
    order = (*batch[i], *free[i], *contract[i])
    x = jnp.transpose(x, (0, *(1 + d for d in order)))
    x = jnp.min(x, axis=tuple(range(1 + len(batch[i]) + len(free[i]), x.ndim)))
    # The result's axes are (batch, lhs free, rhs free): the other operand's free axes are
    # new, size 1, and broadcast.
    cut = 1 + len(batch[i]) + (len(free[0]) if i == 0 else 0)
    ones = (1,) * len(free[1 - i])
    x = x.reshape(x.shape[:cut] + ones + x.shape[cut:])
    x = jnp.broadcast_to(x, (4, *out_shape))
    out = x if out is None else jnp.minimum(out, x)
  return out


def _bounds_forward(eqn, tainted: Sequence[bool], xs: Sequence) -> jax.Array:
  """The bounds ``(4, *out)`` of one primitive's result from those of its tainted operands."""
  name = eqn.primitive.name
  avals = [v.aval for v in eqn.invars]
  out_shape = tuple(eqn.outvars[0].aval.shape)
  params = dict(eqn.params)
  if name in _ELEMENTWISE:
    parts = [jnp.broadcast_to(x, (4, *out_shape)) for x, t in zip(xs, tainted) if t]
    return functools.reduce(jnp.minimum, parts)
  if name in _PRODUCTS:
    if name == "dot_general":
      return _dot_bounds(eqn, tainted, xs)
    if tainted[1]:
      raise UnsupportedOperationError(
        "receptive fields: a convolution kernel that depends on the image"
      )
    return jax.vmap(lambda x: _conv_bounds(eqn, x))(xs[0])
  if name in _WINDOW_SELECT or name == "reduce_window_sum":
    return jax.vmap(lambda x: _min_window(x, params))(xs[0])
  if name in _AXIS_SELECT or name == "reduce_sum":
    axes = tuple(params["axes"] if "axes" in params else (params["axis"],))
    return jnp.min(xs[0], axis=tuple(1 + a for a in axes))
  if name in _LINEAR:
    if name == "pad" and tainted[1]:
      raise UnsupportedOperationError("receptive fields: a padding value that depends on the image")
    args = [
      x if t else jnp.full((4, *a.shape), _EMPTY, jnp.float32)
      for x, t, a in zip(xs, tainted, avals)
    ]
    if name == "pad":
      args[1] = jnp.full((4,), _EMPTY, jnp.float32)  # padded elements depend on nothing
    return jax.vmap(lambda *a: eqn.primitive.bind(*a, **params))(*args)
  raise UnsupportedOperationError(
    f"receptive fields: the forward pass uses the primitive {name!r}, whose dependency "
    "structure featviz.analysis.receptive_field does not describe; add it to one of "
    "_ELEMENTWISE, _LINEAR, _WINDOW_SELECT, _AXIS_SELECT or _PRODUCTS there"
  )


def _push_bounds(jaxpr: jcore.Jaxpr, inputs: Sequence[jax.Array | None]) -> list:
  """Pushes bounds ``(4, *shape)`` (None: depends on no pixel) from inputs to outputs."""
  env = {v: x for v, x in zip(jaxpr.invars, inputs) if x is not None}
  for eqn in jaxpr.eqns:
    xs = [env.get(v) if _is_var(v) else None for v in eqn.invars]
    tainted = [x is not None for x in xs]
    if not any(tainted):
      continue
    inner = _sub_jaxpr(eqn)
    if inner is not None:
      offset = len(eqn.invars) - len(inner.invars)  # as in _pull_masks
      outs = _push_bounds(inner, xs[offset:])
    else:
      if len(eqn.outvars) != 1:
        raise UnsupportedOperationError(
          f"receptive fields: primitive {eqn.primitive.name!r} has several results"
        )
      outs = [_bounds_forward(eqn, tainted, xs)]
    for v, x in zip(eqn.outvars, outs):
      if _is_var(v) and x is not None:
        env[v] = x
  return [env.get(v) if _is_var(v) else None for v in jaxpr.outvars]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _push(model: Model, layer: str, shape: tuple[int, ...]) -> jax.Array:
  """Bounds ``(4, 1, *map, C)`` of every element of ``layer`` for one image of ``shape``.

  Along the first axis: the least row and column read, then minus the greatest (+inf where
  no pixel is read). Like :func:`_pull`, only the structure is read, and jit compiles once
  per architecture, layer and image shape.
  """
  closed = jax.make_jaxpr(_layer, static_argnums=2)(
    _abstract(model), jax.ShapeDtypeStruct(shape, jnp.float32), layer
  )
  _, h, w, c = shape
  rows = jnp.broadcast_to(jnp.arange(h, dtype=jnp.float32)[:, None, None], (h, w, c))
  cols = jnp.broadcast_to(jnp.arange(w, dtype=jnp.float32)[None, :, None], (h, w, c))
  image = jnp.stack([rows, cols, -rows, -cols])[:, None]  # (4, 1, H, W, C)
  inputs = [None] * (len(closed.jaxpr.invars) - 1) + [image]  # the image is the last input
  out = _push_bounds(closed.jaxpr, inputs)[0]
  out_shape = closed.jaxpr.outvars[0].aval.shape
  return jnp.full((4, *out_shape), _EMPTY, jnp.float32) if out is None else out


def _checked(model: Model, layer: str, queries, size, batch: int):
  """Validated ``queries (N, 3)``, the input ``(h, w)`` and the layer's activation shape."""
  model.spec.check_layer(layer)
  size = model.spec.image_size if size is None else size
  h, w = (size, size) if np.ndim(size) == 0 else tuple(size)
  shape = (int(batch), int(h), int(w), model.spec.channels)
  out_shape = _out_shape(model, layer, shape)
  queries = np.asarray(queries, np.int64).reshape(-1, 3)
  spatial = out_shape[1:-1]
  if len(spatial) == 1 and queries.size:  # tokens (B, T, C): row 0, column the token
    bad = (queries[:, 0] != 0) | (queries[:, 1] < 0) | (queries[:, 1] >= spatial[0])
    if bad.any():
      raise ValueError(
        f"position {tuple(queries[bad][0, :2])} is not a token of layer {layer!r}: its "
        f"{spatial[0]} tokens are positions (0, t), t in 0-{spatial[0] - 1} (as_map's 1 x T map)"
      )
  if len(spatial) == 2 and queries.size:
    bad = (
      (queries[:, 0] < 0)
      | (queries[:, 0] >= spatial[0])
      | (queries[:, 1] < 0)
      | (queries[:, 1] >= spatial[1])
    )
    if bad.any():
      raise ValueError(
        f"position {tuple(queries[bad][0, :2])} is outside layer {layer!r}'s "
        f"{spatial[0]}x{spatial[1]} map at {h}x{w} px input"
      )
  model.spec.check_units(layer, queries[queries[:, 2] >= 0, 2])
  return queries, (int(h), int(w)), shape, out_shape


def dependency_masks(
  model: Model, layer: str, queries, size: int | tuple[int, int] | None = None, chunk: int = 8
) -> np.ndarray:
  """The input pixels each queried unit depends on.

  Args:
    model: any model; its forward pass is traced, never run on data.
    layer: a layer name of ``model.spec``.
    queries: ``(N, 3)`` integers ``(row, col, unit)``: a position of the layer's activation
      map and a channel, or ``unit = -1`` for every channel at that position. Flat layers
      ignore ``row`` and ``col``; token layers ``(B, T, C)`` take ``(0, t, unit)``, token ``t``
      (:func:`featviz.model.as_map`'s ``1 x T`` map).
    size: the input side ``S`` or ``(H, W)`` in pixels the fields are computed for;
      defaults to ``model.spec.image_size``. Fields near the border depend on it.
    chunk: queries per pull-back (the batch of the compiled program; one compile per
      ``chunk``, 8 keeps EfficientNet at 224 px under ~1 GB).

  Returns:
    ``(N, H, W)`` bool: True where the unit depends on the pixel.
  """
  queries, (h, w), shape, out_shape = _checked(model, layer, queries, size, chunk)
  spatial = out_shape[1:-1]
  out = np.zeros((len(queries), h, w), bool)
  for start in range(0, len(queries), chunk):
    part = queries[start : start + chunk]
    seed = np.zeros((chunk,) + tuple(out_shape[1:]), np.float32)
    for b, (row, col, unit) in enumerate(part):
      where = {0: (b,), 1: (b, col)}.get(len(spatial), (b, row, col))
      units = slice(None) if unit < 0 else int(unit)
      seed[where + (units,)] = 1.0
    out[start : start + len(part)] = np.asarray(_pull(model, seed, layer, shape))[: len(part)]
  return out


def bounding_boxes(masks: np.ndarray) -> np.ndarray:
  """``(N, H, W)`` masks -> ``(N, 4)`` boxes ``(top, left, bottom, right)``, ends exclusive.

  An empty mask (a unit that depends on no pixel) gets ``(0, 0, 0, 0)``.
  """
  masks = np.asarray(masks, bool)
  boxes = np.zeros((len(masks), 4), np.int64)
  for i, m in enumerate(masks):
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size:
      boxes[i] = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
  return boxes


def receptive_fields(
  model: Model, layer: str, queries, size: int | tuple[int, int] | None = None
) -> np.ndarray:
  """Bounding boxes ``(N, 4)`` ``(top, left, bottom, right)`` of the queried units' fields.

  Ends are exclusive, in input pixels: ``image[top:bottom, left:right]`` is the patch the
  unit sees (clipped by the image border); a unit that depends on no pixel gets ``(0, 0, 0,
  0)``. ``queries`` and ``size`` as in :func:`dependency_masks`, whose masks these boxes
  bound exactly; but one forward pass of bounds (:func:`_push`) gives the boxes of every
  position and channel of the layer at once, so the number of queries costs nothing.
  """
  queries, hw, _, _ = _checked(model, layer, queries, size, 1)
  bounds = np.asarray(_push(model, layer, (1, *hw, model.spec.channels)))[:, 0]
  if bounds.ndim == 2:  # flat (C,): the position is ignored
    at = bounds[:, None, None, :]
  elif bounds.ndim == 3:  # tokens (T, C): token t is position (0, t)
    at = bounds[:, None, :, :]
  else:
    at = bounds
  every = at.min(axis=-1)  # unit -1: the union over the channels
  rows, cols, units = queries.T
  rows = np.zeros_like(rows) if bounds.ndim == 2 else rows
  cols = np.zeros_like(cols) if bounds.ndim == 2 else cols
  picked = np.where(
    units >= 0, at[:, rows, cols, np.maximum(units, 0)], every[:, rows, cols]
  ).T  # (N, 4)
  empty = ~np.isfinite(picked[:, 0])
  boxes = np.stack([picked[:, 0], picked[:, 1], 1 - picked[:, 2], 1 - picked[:, 3]], axis=-1)
  boxes[empty] = 0
  return boxes.astype(np.int64)


def centre_field(
  model: Model, layer: str, size: int | None = None, unit: int = -1
) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
  """The layer's map size and the field of its centre position ``(h // 2, w // 2)``.

  Returns ``((h, w), box)``; at a large enough input the box's height and width are the
  layer's full (unclipped) receptive field.
  """
  size = model.spec.image_size if size is None else size
  hw = (size, size) if np.ndim(size) == 0 else tuple(size)
  model.spec.check_layer(layer)
  shape = _out_shape(model, layer, (1, *hw, model.spec.channels))
  h, w = as_map(jax.ShapeDtypeStruct(shape, jnp.float32)).shape[1:3]
  box = receptive_fields(model, layer, [(h // 2, w // 2, unit)], size)[0]
  return (h, w), tuple(int(v) for v in box)
