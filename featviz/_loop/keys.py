"""Per-image random keys: an image's randomness depends on its own identity, not on its batch.

Image ``i`` of a render gets ``fold_in(fold_in(key, crc32(label_i)), n_i)``, where ``label_i`` is
the objective's label for it (``"block10:5"``: the layer and the unit) and ``n_i`` counts the
earlier images of the batch with the same label (so ``--batch 4`` of one unit draws four
different images). Its initial parameters come from the first half of a split of that key and
every step's transform draw from ``fold_in(second half, step)``. A sweep's image of
``(seed, layer, unit)`` is therefore the same whatever the batch size, the padding of its chunk
or the device count. Transforms that share one draw across the batch (Lucid's behaviour,
``RenderConfig(transforms="shared")``) draw from ``shared_key``, a key of the batch.
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def as_key(key: jax.Array | int | None, seed: int) -> jax.Array:
  """A typed PRNG key: ``key`` as given (a ``jax.random.key``, a legacy ``PRNGKey`` or an int
  seed), or ``jax.random.key(seed)`` when ``key`` is None."""
  if key is None:
    return jax.random.key(_seed(seed))
  if isinstance(key, (int, np.integer)):
    return jax.random.key(_seed(key))
  key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    if key.shape != ():
      raise ValueError(f"key must be a single key, got a key array of shape {key.shape}")
    return key
  if key.dtype == jnp.uint32 and key.shape == (2,):
    return jax.random.wrap_key_data(key)
  raise ValueError(
    f"key must be a jax.random.key, a jax.random.PRNGKey or an int seed; got "
    f"an array of shape {key.shape} and dtype {key.dtype}"
  )


def _seed(seed) -> int:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed must be an integer, got {seed!r}")
  if not -(2**63) <= int(seed) < 2**64:
    raise ValueError(f"seed must fit in 64 bits (-2**63 to 2**64 - 1), got {seed}")
  return int(seed)


def image_ids(labels: Sequence[str]) -> np.ndarray:
  """``(B, 2)`` uint32: each image's label hash (CRC-32) and its repeat count in the batch."""
  seen: collections.Counter[str] = collections.Counter()
  ids = []
  for label in labels:
    ids.append((zlib.crc32(label.encode()), seen[label]))
    seen[label] += 1
  return np.asarray(ids, np.uint32).reshape(len(labels), 2)


@jax.jit
def _derive(key: jax.Array, ids: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  def one(pair):
    k = jax.random.fold_in(jax.random.fold_in(key, pair[0]), pair[1])
    k_init, k_steps = jax.random.split(k)
    return k_init, k_steps

  k_init, k_steps = jax.vmap(one)(ids)
  return k_init, k_steps, jax.random.fold_in(key, 0xFFFFFFFF)


def derive(key: jax.Array, labels: Sequence[str]) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(k_init (B,), k_steps (B,), shared_key)`` for a batch of images with these labels."""
  return _derive(key, jnp.asarray(image_ids(labels)))


def derive_first(key: jax.Array, labels: Sequence[str]) -> tuple[jax.Array, jax.Array]:
  """``(k_init (B,), k_steps (B,))`` with every image the first of its label (repeat 0), as
  a sweep's kept unit is in any batch: the keys of the slots of continuous batching
  (``featviz._sweep.continuous``), where a slot's unit is the same image whatever slot, batch
  or schedule renders it."""
  ids = np.asarray([(zlib.crc32(label.encode()), 0) for label in labels], np.uint32)
  k_init, k_steps, _ = _derive(key, jnp.asarray(ids.reshape(len(labels), 2)))
  return k_init, k_steps
