"""Lucid's redirected ReLU gradient, for units that start dead.

From a random image, a unit behind a ReLU that is off everywhere gets no
gradient, and ascent never starts. Lucid overrides the ReLU gradient for the
first 16 steps (``lucid/optvis/overrides/redirected_relu_grad.py``): for a batch
item whose ordinary ReLU gradient is entirely zero, it lets the upstream
gradient through, except where it would push a negative input further down.

Here the override is a ``custom_vjp`` whose switch ``active`` is a traced
boolean, so it turns off at step 16 inside the one compiled loop. The switch is a
``lax.cond``, not a ``where``: the 496 steps after the 16 run only the plain ReLU
gradient instead of computing both and selecting (``benchmarks/README.md`` has
what that saved). Signs follow Lucid's: ``g`` is the gradient of the *loss*
(minus the objective).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from featviz.model import Nonlinearities

# Lucid: the override is active while global_step <= 16.
LUCID_REDIRECT_STEPS = 16


def _per_item_has_grad(grad: jax.Array) -> jax.Array:
  """True for each batch item whose gradient is not all zero, broadcastable to ``grad``."""
  b = grad.shape[0]
  mag = jnp.sum(jnp.abs(grad.reshape(b, -1)), axis=1)
  return (mag > 0).reshape((b,) + (1,) * (grad.ndim - 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=())
def redirected_relu(x: jax.Array, active: jax.Array) -> jax.Array:
  return jnp.maximum(x, 0)


def _relu_fwd(x, active):
  return jnp.maximum(x, 0), (x, active)


def _redirect(x, g, relu_grad, blocked):
  """Lucid's choice per batch item: the ReLU gradient if any of it is non-zero, else ``g``
  except where ``blocked``. Runs only while the override is active."""
  def on():
    redirected = jnp.where(blocked(x, g), 0, g)
    return jnp.where(_per_item_has_grad(relu_grad), relu_grad, redirected)
  return on


def _relu_bwd(res, g):
  x, active = res
  relu_grad = jnp.where(x > 0, g, 0)
  # Lucid: neg_pushing_lower = x < 0 and grad > 0 (descent would lower x further).
  blocked = lambda x, g: (x < 0) & (g > 0)
  return jax.lax.cond(active, _redirect(x, g, relu_grad, blocked), lambda: relu_grad), None


redirected_relu.defvjp(_relu_fwd, _relu_bwd)


@jax.custom_vjp
def redirected_relu6(x: jax.Array, active: jax.Array) -> jax.Array:
  return jnp.clip(x, 0, 6)


def _relu6_fwd(x, active):
  return jnp.clip(x, 0, 6), (x, active)


def _relu6_bwd(res, g):
  x, active = res
  relu_grad = jnp.where((x > 0) & (x < 6), g, 0)
  # Lucid's redirected_relu6_grad: also block pushing x > 6 higher.
  blocked = lambda x, g: ((x < 0) & (g > 0)) | ((x > 6) & (g < 0))
  return jax.lax.cond(active, _redirect(x, g, relu_grad, blocked), lambda: relu_grad), None


redirected_relu6.defvjp(_relu6_fwd, _relu6_bwd)


def redirecting(active: jax.Array) -> Nonlinearities:
  """Nonlinearities whose gradients redirect while ``active`` (a traced bool) is true."""
  return Nonlinearities(
      relu=lambda x: redirected_relu(x, active),
      relu6=lambda x: redirected_relu6(x, active))
