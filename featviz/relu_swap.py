"""Lucid's ReLU rules inside a user's own network: ``jax.nn.relu`` / ``relu6`` swapped in its jaxpr.

A zoo architecture calls ``ops.relu`` (:class:`featviz.nonlin.Ops`), so the render loop can swap
in the redirected gradient and the analysis code guided backprop. A network written elsewhere
(any ``flax.linen`` or ``flax.nnx`` module, any JAX function) calls ``jax.nn.relu`` (``nn.relu``
is the same function) or ``jax.nn.relu6``. :func:`call_with_ops` reaches those: it traces the
function to a jaxpr (``jax.make_jaxpr``), then evaluates that jaxpr equation by equation, with
every ``custom_jvp_call`` of ``jax.nn.relu`` replaced by ``ops.relu`` and of ``jax.nn.relu6`` by
``ops.relu6``. The evaluation happens inside the caller's trace, so the swap is part of the
compiled program and nothing global is patched (thread-safe, pure).

``jax.nn.relu`` is a ``jax.custom_jvp`` around a ``jit`` named ``relu`` (``relu6`` likewise), so
an equation is a ReLU when it is a ``custom_jvp_call`` whose body is exactly one ``jit`` equation
named ``relu`` or ``relu6``.

What it cannot reach (those keep their plain gradient; ``tests/test_own_model.py`` tests it):

* a ReLU written by hand, ``jnp.maximum(x, 0)`` or ``x * (x > 0)``: it is a ``max``, not a
  call of ``jax.nn.relu``;
* a ReLU inside the body of ``lax.scan``, ``lax.while_loop``, ``lax.cond`` or ``lax.switch``
  (``flax.linen.scan``, ``nn.while_loop``, ``nn.cond``, ``nnx.scan``): those bodies are bound
  as they are. ``jit`` (``nn.jit``, ``nnx.jit``) and ``jax.checkpoint`` (``nn.remat``) bodies
  are entered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax.extend import core as jcore

from featviz.nonlin import Ops

# Primitives whose body is a jaxpr that is entered (inlined): jit (``pjit`` before JAX 0.7) and
# jax.checkpoint (``remat2``, the name of ``checkpoint_p``).
_ENTERED = frozenset({"jit", "pjit", "remat2", "checkpoint"})
_RELU_NAMES = frozenset({"relu", "relu6"})


def plain(ops: Ops) -> bool:
  """True when ``ops`` has JAX's own ReLU and ReLU6: nothing to swap."""
  return ops.relu is jax.nn.relu and ops.relu6 is jax.nn.relu6


def call_with_ops(fn: Callable[..., Any], ops: Ops, *args: Any) -> Any:
  """``fn(*args)`` with its ``jax.nn.relu`` / ``relu6`` calls replaced by ``ops``'.

  ``fn`` takes and returns pytrees of arrays. With plain ``ops`` it is called as it is.
  """
  if plain(ops):
    return fn(*args)
  closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
  flat = jax.tree.leaves(args)
  outs = _eval(closed.jaxpr, closed.consts, flat, ops)
  return jax.tree.unflatten(jax.tree.structure(out_shape), outs)


def relu_kind(eqn) -> str | None:
  """``"relu"`` or ``"relu6"`` when ``eqn`` is a call of ``jax.nn.relu`` / ``relu6``, else None."""
  if eqn.primitive.name != "custom_jvp_call":
    return None
  body = eqn.params["call_jaxpr"].jaxpr
  if len(body.eqns) != 1 or body.eqns[0].primitive.name not in ("jit", "pjit"):
    return None
  name = body.eqns[0].params.get("name")
  return name if name in _RELU_NAMES else None


def _bind(eqn, invals: list[Any]) -> list[Any]:
  bind_params = eqn.primitive.get_bind_params(eqn.params)
  with eqn.ctx.manager:
    if isinstance(bind_params, tuple):  # JAX < 0.7: (subfuns, params)
      subfuns, params = bind_params
      ans = eqn.primitive.bind(*subfuns, *invals, **params)
    else:
      ans = eqn.primitive.bind(*invals, **bind_params)
  return list(ans) if eqn.primitive.multiple_results else [ans]


def _eval(jaxpr, consts, args, ops: Ops) -> list[Any]:
  env: dict[Any, Any] = {}

  def read(v):
    return v.val if isinstance(v, jcore.Literal) else env[v]

  for v, value in zip(jaxpr.constvars, consts):
    env[v] = value
  for v, value in zip(jaxpr.invars, args):
    env[v] = value
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    kind = relu_kind(eqn)
    name = eqn.primitive.name
    if kind is not None:
      x = invals[eqn.params["num_consts"]]
      outs = [ops.relu(x) if kind == "relu" else ops.relu6(x)]
    elif name in _ENTERED and "jaxpr" in eqn.params:
      body = eqn.params["jaxpr"]
      if isinstance(body, jcore.ClosedJaxpr):
        outs = _eval(body.jaxpr, body.consts, invals, ops)
      else:
        outs = _eval(body, (), invals, ops)
    else:
      outs = _bind(eqn, invals)
    for v, value in zip(eqn.outvars, outs):
      env[v] = value
  return [read(v) for v in jaxpr.outvars]
