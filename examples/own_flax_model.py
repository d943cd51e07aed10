"""Your own network in featviz: a small flax.linen CNN, its layers found, four units rendered.

Run it as a script (``python examples/own_flax_model.py [OUT.png [STEPS]]``) to write
``own_flax_model.png``, a grid of four channels of ``Block_0/Conv_0``; or give its factory to
any command::

  featviz render examples/own_flax_model.py:build Block_0/Conv_0:0-3 --steps 64 --out units.png
  featviz sweep examples/own_flax_model.py:build --all-layers --out runs/own

The weights are a random initialisation (seed 0), so the images show what a random CNN's
units respond to; give ``build`` your trained variables (a checkpoint restored with
``orbax`` or ``flax.serialization``) to see yours.
"""

from __future__ import annotations

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp

import featviz

IMAGE_SIZE = 32  # CIFAR-sized input


class Block(nn.Module):
  """Conv (stride 2) then ReLU: halves the map, ``features`` channels."""

  features: int

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.Conv(self.features, (3, 3), strides=2)(x))


class SmallCNN(nn.Module):
  """32 px RGB -> 10 logits: a 3x3 conv, two blocks, global average pool, dense."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(16, (3, 3))(x))
    x = Block(32)(x)
    x = Block(64)(x)
    return nn.Dense(10)(x.mean(axis=(1, 2)))


def build(weights: str | None = None) -> featviz.Model:
  """The model featviz renders: ``SmallCNN`` with seeded random weights (``weights``: a file
  written by ``flax.serialization.to_bytes`` of the variables, to load trained ones)."""
  module = SmallCNN()
  variables = module.init(jax.random.key(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)))
  if weights is not None:
    from flax import serialization

    with open(weights, "rb") as f:
      variables = serialization.from_bytes(variables, f.read())
  # Inputs in [0, 1] become [-1, 1], as the network would have been trained.
  return featviz.Model.from_flax(module, variables, image_size=IMAGE_SIZE, value_range=(-1, 1))


def main(out: str = "own_flax_model.png", steps: str = "32") -> None:
  from featviz import images, objectives

  model = build()
  print("layers found:", dict(model.spec.layers))
  result = featviz.render(
    model, objectives.channel("Block_0/Conv_0", [0, 1, 2, 3]), steps=int(steps), size=IMAGE_SIZE
  )
  captions = [f"{label} ({v:.2f})" for label, v in zip(result.labels, result.history[-1])]
  images.save_png(images.grid(result.images, captions, scale=3), out)
  print("wrote", out)


if __name__ == "__main__":
  main(*sys.argv[1:])
