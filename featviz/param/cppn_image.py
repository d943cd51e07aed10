"""Lucid's CPPN (``lucid/optvis/param/cppn.py``), with its own weights for every image.

A compositional pattern-producing network maps each pixel's coordinates to a colour:
``(x, y)`` on ``linspace(-sqrt(3), sqrt(3), side)`` (standard deviation 1), ``num_layers``
1x1 convolutions of ``num_hidden`` channels, each followed by Lucid's composite activation
``concat(atan(z) / 0.67, atan(z)**2 / 0.6)`` (so the next layer reads twice the channels),
then a 1x1 convolution to the image's channels and a sigmoid. Lucid's initializers: weights
``variance_scaling()`` (TF1: truncated normal, ``sqrt(1 / fan_in) / 0.8796``), biases
``N(0, 0.1)``, the output layer's weights zero. Lucid shares one network across the batch;
here every image has its own (the batch axis), so a batch renders different units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from featviz.param.core import Param, side

# Lucid's defaults (cppn(width, num_hidden_channels=24, num_layers=8)).
NUM_HIDDEN = 24
NUM_LAYERS = 8
# Lucid's composite activation: RMS of atan(z) and atan(z)**2 for z ~ N(0, 1) ("biased").
ATAN_RMS, ATAN_SQUARED_RMS = 0.67, 0.6
BIAS_SD = 0.1
# The standard deviation of a unit normal truncated to (-2, 2), by which TF's variance-scaling
# initializer divides (tf.initializers.variance_scaling, distribution "truncated_normal").
TRUNCATED_NORMAL_SD = 0.87962566103423978


def coordinates(h: int, w: int) -> np.ndarray:
  """``(H, W, 2)`` float32: ``(x, y)`` per pixel, each on ``linspace(-sqrt 3, sqrt 3)``."""
  r = 3.0**0.5  # a uniform grid on (-r, r) has standard deviation 1
  ys, xs = np.meshgrid(np.linspace(-r, r, h), np.linspace(-r, r, w), indexing="ij")
  return np.stack([xs, ys], -1).astype(np.float32)


def composite_activation(z: jax.Array) -> jax.Array:
  """Lucid's ``_composite_activation(biased=True)``."""
  a = jnp.arctan(z)
  return jnp.concatenate([a / ATAN_RMS, a * a / ATAN_SQUARED_RMS], axis=-1)


def layer_shapes(channels: int, num_hidden: int, num_layers: int) -> list[tuple[int, int]]:
  """``(inputs, outputs)`` of every 1x1 convolution, the output layer last."""
  shapes = [(2, num_hidden)] + [(2 * num_hidden, num_hidden)] * (num_layers - 1)
  return shapes + [(2 * num_hidden, channels)]


def cppn(
  size: int | tuple[int, int],
  batch: int = 1,
  channels: int = 3,
  *,
  num_hidden: int = NUM_HIDDEN,
  num_layers: int = NUM_LAYERS,
) -> Param:
  """Lucid's CPPN parameterization, a network per image.

  Params are a list of ``num_layers + 1`` pairs ``(w (B, in, out), b (B, out))``. Images are
  ``sigmoid(network(coordinates))``, ``(B, H, W, C)``; no colour decorrelation (Lucid has
  none for the CPPN). Lucid's CPPN notebook optimizes it with Adam at learning rate 0.005.
  A CPPN has no inverse: ``from_image`` raises ``ParamError``.
  """
  h, w = side(size)
  shapes = layer_shapes(channels, num_hidden, num_layers)
  grid = coordinates(h, w)

  def init(key):
    params = []
    for i, (k, (n_in, n_out)) in enumerate(zip(jax.random.split(key, len(shapes)), shapes)):
      kw, kb = jax.random.split(k)
      if i == len(shapes) - 1:
        weight = jnp.zeros((batch, n_in, n_out), jnp.float32)
      else:
        flat = jax.random.truncated_normal(kw, -2.0, 2.0, (batch * n_in * n_out,), jnp.float32)
        sd = (1.0 / n_in) ** 0.5 / TRUNCATED_NORMAL_SD
        weight = sd * flat.reshape(batch, n_in, n_out)
      bias = BIAS_SD * jax.random.normal(kb, (batch * n_out,), jnp.float32).reshape(batch, n_out)
      params.append((weight, bias))
    return params

  def to_image(params):
    with jax.named_scope("cppn_image"):
      net = jnp.broadcast_to(jnp.asarray(grid), (len(params[0][0]), h, w, 2))
      mm = jax.lax.Precision.HIGHEST
      for weight, bias in params[:-1]:
        z = jnp.einsum("byxi,bio->byxo", net, weight, precision=mm) + bias[:, None, None]
        net = composite_activation(z)
      weight, bias = params[-1]
      out = jnp.einsum("byxi,bio->byxo", net, weight, precision=mm) + bias[:, None, None]
      return jax.nn.sigmoid(out)

  return Param("cppn", init, to_image, batch, (h, w), channels)
