"""Gradients with respect to a named layer, for any model, without the model's help.

Grad-CAM needs ``d score / d A`` for the activations ``A`` of some layer.
:meth:`featviz.model.Model.activations` returns ``A`` but offers no way to feed a
changed ``A`` to the layers above it. So we trace it once into a
jaxpr (the list of primitive operations JAX records), find the variable that
holds ``A``, and evaluate the jaxpr again with ``A + delta`` substituted where
``A`` is produced. The gradient with respect to ``delta`` at ``delta = 0`` is
``d score / d A``. Calls into nested ``jit`` programs are entered when they
produce ``A``, so the substitution reaches every later use.

This is JAX's "custom interpreter" pattern (docs: "Writing custom Jaxpr
interpreters in JAX"); it costs one extra trace, not extra compute. A layer
computed inside a loop or a branch (``scan``, ``cond``) of the forward pass is not
reached; no zoo model has one.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from featviz.model import Model
from featviz.nonlin import STANDARD_OPS, Ops

# Primitives that call a closed sub-jaxpr (``params["jaxpr"]`` or ``["call_jaxpr"]``); entered
# when they produce the tapped variable.
_CALLS = ("jit", "pjit", "closed_call")


def _bind(eqn, invals):
  """``eqn`` applied to ``invals``, as ``jax.core.eval_jaxpr`` does it."""
  bind_params = eqn.primitive.get_bind_params(eqn.params)
  if isinstance(bind_params, tuple):  # JAX before 0.7: (subfuns, params)
    subfuns, bind_params = bind_params
    invals = [*subfuns, *invals]
  with eqn.ctx.manager:
    outs = eqn.primitive.bind(*invals, **bind_params)
  return list(outs) if eqn.primitive.multiple_results else [outs]


def _sub_jaxpr(eqn):
  if eqn.primitive.name not in _CALLS:
    return None
  inner = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
  return inner if isinstance(inner, jcore.ClosedJaxpr) else None


def _eval_with_delta(jaxpr, consts: Sequence, args: Sequence, target, delta):
  """Evaluates ``jaxpr`` with ``delta`` added to variable ``target`` where it is produced."""
  env = {}

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  def write(v, value):
    if not isinstance(v, jcore.DropVar):
      env[v] = value

  for v, value in zip(jaxpr.constvars, consts):
    write(v, value)
  for v, value in zip(jaxpr.invars, args):
    write(v, value)
  if target in jaxpr.invars or target in jaxpr.constvars:
    env[target] = env[target] + delta
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    hit = target in eqn.outvars
    inner = _sub_jaxpr(eqn) if hit else None
    if inner is not None:
      inner_target = inner.jaxpr.outvars[eqn.outvars.index(target)]
      outs = _eval_with_delta(inner.jaxpr, inner.consts, invals, inner_target, delta)
    else:
      outs = _bind(eqn, invals)
      if hit:
        i = eqn.outvars.index(target)
        outs[i] = outs[i] + delta
    for v, value in zip(eqn.outvars, outs):
      write(v, value)
  return [read(v) for v in jaxpr.outvars]


def tapped_activations(
  model: Model, images: jax.Array, layer: str, layers: Sequence[str], ops: Ops | None = None
):
  """:meth:`Model.activations` with an additive tap on ``layer`` (traceable).

  The program traced is ``model.activations`` itself (resize, value range, normalisation,
  forward), so the tap sees the network exactly as every other technique does.

  Args:
    model: the network (its weights may be traced).
    images: ``(B, H, W, C)`` in ``[0, 1]``.
    layer: the layer to tap; must be in ``layers``.
    layers: the layers to return (must include ``layer``).
    ops: the ReLUs to use (guided ones, for guided Grad-CAM and friends).

  Returns:
    ``(f, shape)``: ``f(delta) -> {layer: activations}`` recomputes every layer with
    ``A + delta`` in place of ``layer``'s activations ``A`` (so ``f(0)[layer]`` is ``A``);
    ``shape`` is ``A``'s ``jax.ShapeDtypeStruct``, the shape ``delta`` must have.
  """
  names = model.layers_in_order(layers)

  def run(m, x):
    out = m.activations(x, names, ops=ops)
    return [out[n] for n in names]

  closed, shapes = jax.make_jaxpr(run, return_shape=True)(model, images)
  flat_args = jax.tree.leaves((model, images))
  target = closed.jaxpr.outvars[names.index(layer)]
  if isinstance(target, jcore.Literal):
    raise ValueError(f"layer {layer!r} is a constant of the forward pass; it has no gradient")

  def f(delta):
    outs = _eval_with_delta(closed.jaxpr, closed.consts, flat_args, target, delta)
    return dict(zip(names, outs))

  return f, shapes[names.index(layer)]


def logit_grad_at_layer(
  model: Model, images: jax.Array, layer: str, classes: jax.Array, ops: Ops | None = None
):
  """``A`` and ``d logit[b, classes[b]] / d A`` for every image ``b`` (traceable).

  Images are independent, so the gradient of the *sum* of each image's own class
  logit gives every image its own gradient in one backward pass.

  Args:
    model: the network (its weights may be traced: ``jax.jit`` it as one argument).
    images: ``(B, H, W, C)`` in ``[0, 1]``.
    layer: a layer name.
    classes: ``(B,)`` int class indices into the logits.
    ops: ReLUs for the backward pass (standard, guided, deconvnet); None: the defaults
      (`featviz.model.default_ops`).

  Returns:
    ``(acts, grads, logits)``: ``acts`` and ``grads`` shaped like the layer,
    ``(B, h, w, c)`` or ``(B, c)``; ``logits (B, K)`` with the standard forward pass.
  """
  f, shape = tapped_activations(model, images, layer, (layer, "logits"), ops)

  def score(delta):
    out = f(delta)
    picked = jnp.take_along_axis(out["logits"], classes[:, None], axis=1)
    return jnp.sum(picked), (out[layer], out["logits"])  # at delta = 0, out[layer] is A

  grads, (acts, logits) = jax.grad(score, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
  return acts, grads, logits


def layer_shapes(model: Model, size: int | None = None) -> dict[str, tuple[int, ...]]:
  """Every layer's activation shape for one ``size x size`` image (default: the spec's)."""
  size = size or model.spec.image_size
  x = jax.ShapeDtypeStruct((1, size, size, model.spec.channels), jnp.float32)
  out = jax.eval_shape(lambda m, x: m.activations(x, ops=STANDARD_OPS), model, x)
  return {n: tuple(a.shape) for n, a in out.items()}


def last_spatial_layer(model: Model, size: int | None = None) -> str:
  """The deepest layer with a spatial map ``(B, h, w, c)``: Grad-CAM's usual choice."""
  spatial = [n for n, s in layer_shapes(model, size).items() if len(s) == 4]
  if not spatial:
    raise ValueError(f"{model.spec.name} has no spatial layer")
  return spatial[-1]
