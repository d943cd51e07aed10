"""The one door for swapping a network's primitives: :class:`Ops`, and the rules it carries.

An architecture calls ``ops.relu`` / ``ops.relu6`` wherever it has a ReLU and passes
``ops.rewrites`` to the layers that have a CPU rewrite, so the render loop can swap in
Lucid's redirected gradient, the analysis code guided backprop or deconvnet, and the config
the faster CPU convolutions, without the model knowing. ``Ops`` is static (hashable): it is
part of every compiled program's identity.

**Lucid's redirected ReLU gradient, for units that start dead.**

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
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# The zoo's TF-semantics layers' CPU rewrites, by name (model_zoo/tf_layers.py implements them;
# benchmarks/README.md has what each saved). A model that has none ignores them.
CPU_REWRITES = frozenset({"conv_flipped_backward", "depthwise_shifted", "max_pool_shifted"})


class Ops(NamedTuple):
  """The primitives an architecture calls: ReLU, ReLU6, and which CPU rewrites its layers use."""

  relu: Callable[[jax.Array], jax.Array] = jax.nn.relu
  relu6: Callable[[jax.Array], jax.Array] = jax.nn.relu6
  rewrites: frozenset[str] = frozenset()


STANDARD_OPS = Ops()


def rewrites_for(choice: str | frozenset[str] | tuple[str, ...], platform: str) -> frozenset[str]:
  """The CPU rewrites a program for ``platform`` uses: ``"auto"`` all of them on ``"cpu"`` and
  none elsewhere (measured on CPU only), ``"none"``, ``"all"``, or a set of names."""
  if isinstance(choice, str):
    if choice == "auto":
      return CPU_REWRITES if platform == "cpu" else frozenset()
    if choice == "all":
      return CPU_REWRITES
    if choice == "none":
      return frozenset()
    raise ValueError(
      f"rewrites {choice!r}: choose auto, all, none or a set of {', '.join(sorted(CPU_REWRITES))}"
    )
  names = frozenset(choice)
  if names - CPU_REWRITES:
    raise ValueError(
      f"unknown rewrites {sorted(names - CPU_REWRITES)}; valid: {', '.join(sorted(CPU_REWRITES))}"
    )
  return names


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


def _switch(active: jax.Array, on: Callable[[], jax.Array], relu_grad: jax.Array) -> jax.Array:
  """The redirected gradient ``on()`` where ``active``, else ``relu_grad``.

  ``active`` is one bool for the batch (a render: every image is at the same step), or one per
  batch item (the sweep's continuous batching, ``featviz._loop.program.Plan.per_slot``: each
  slot is at its own step). Either way ``on()`` runs only while some item needs it, so the
  steps after the window cost what a plain ReLU's do. An array whose leading axis is not the
  batch (a network that folds the batch into another axis) redirects while any item is active.
  """
  active = jnp.asarray(active)
  if active.ndim == 0:
    return jax.lax.cond(active, on, lambda: relu_grad)
  if relu_grad.ndim == 0 or relu_grad.shape[0] != active.shape[0]:
    return jax.lax.cond(jnp.any(active), on, lambda: relu_grad)
  per_item = active.reshape(active.shape + (1,) * (relu_grad.ndim - 1))
  return jax.lax.cond(
    jnp.any(active), lambda: jnp.where(per_item, on(), relu_grad), lambda: relu_grad
  )


def _relu_bwd(res, g):
  x, active = res
  relu_grad = jnp.where(x > 0, g, 0)

  def blocked(x, g):  # Lucid: neg_pushing_lower = x < 0 and grad > 0 (descent lowers x further)
    return (x < 0) & (g > 0)

  return _switch(active, _redirect(x, g, relu_grad, blocked), relu_grad), None


redirected_relu.defvjp(_relu_fwd, _relu_bwd)


@jax.custom_vjp
def redirected_relu6(x: jax.Array, active: jax.Array) -> jax.Array:
  return jnp.clip(x, 0, 6)


def _relu6_fwd(x, active):
  return jnp.clip(x, 0, 6), (x, active)


def _relu6_bwd(res, g):
  x, active = res
  relu_grad = jnp.where((x > 0) & (x < 6), g, 0)

  def blocked(x, g):  # Lucid's redirected_relu6_grad: also block pushing x > 6 higher
    return ((x < 0) & (g > 0)) | ((x > 6) & (g < 0))

  return _switch(active, _redirect(x, g, relu_grad, blocked), relu_grad), None


redirected_relu6.defvjp(_relu6_fwd, _relu6_bwd)


def redirecting(active: jax.Array, rewrites: frozenset[str] = frozenset()) -> Ops:
  """Ops whose ReLU gradients redirect while ``active`` is true: a traced bool, or one per
  batch item (``(B,)``, each image at its own step)."""
  return Ops(
    relu=lambda x: redirected_relu(x, active),
    relu6=lambda x: redirected_relu6(x, active),
    rewrites=rewrites,
  )


# ---- Guided backprop and deconvnet (featviz.analysis.cam): other backward rules for ReLU ----


@jax.custom_vjp
def guided_relu(x: jax.Array) -> jax.Array:
  return jnp.maximum(x, 0)


def _guided_relu_fwd(x):
  return jnp.maximum(x, 0), x


def _guided_relu_bwd(x, g):
  return (jnp.where((x > 0) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


@jax.custom_vjp
def guided_relu6(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0, 6)


def _guided_relu6_fwd(x):
  return jnp.clip(x, 0, 6), x


def _guided_relu6_bwd(x, g):
  return (jnp.where((x > 0) & (x < 6) & (g > 0), g, jnp.zeros_like(g)),)


guided_relu6.defvjp(_guided_relu6_fwd, _guided_relu6_bwd)


@jax.custom_vjp
def deconv_relu(x: jax.Array) -> jax.Array:
  return jnp.maximum(x, 0)


def _deconv_fwd(x):
  return jnp.maximum(x, 0), None


def _deconv_bwd(_, g):
  return (jnp.maximum(g, 0),)


deconv_relu.defvjp(_deconv_fwd, _deconv_bwd)


@jax.custom_vjp
def deconv_relu6(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0, 6)


def _deconv6_fwd(x):
  return jnp.clip(x, 0, 6), None


deconv_relu6.defvjp(_deconv6_fwd, _deconv_bwd)

GUIDED = Ops(relu=guided_relu, relu6=guided_relu6)  # Springenberg et al. 2015
DECONVNET = Ops(relu=deconv_relu, relu6=deconv_relu6)  # Zeiler & Fergus 2014
