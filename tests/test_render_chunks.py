"""The render loop in chunks: bitwise the images of one chunk, one program with or without a bar."""

import re

import jax.numpy as jnp
import numpy as np
import pytest

from featviz import objectives as O
from featviz import transforms
from featviz._loop import api as render
from featviz._loop import program

import tiny_cnn

MODEL = tiny_cnn.make()
# Jitter only: the standard preset's resampling takes seconds to compile on CPU (test_render.py).
FAST = dict(size=16, progress_bar=False, transforms=transforms.jitter(2))


def test_chunk_lengths():
  assert program.chunk_lengths(512) == (32,) * 16  # Lucid's count: the largest divisor <= 32
  assert program.chunk_lengths(100) == (25,) * 4
  assert program.chunk_lengths(12) == (12,)
  assert program.chunk_lengths(37) == (1,) * 37  # a prime: short calls, still one program
  assert program.chunk_lengths(21, chunk=8) == (8, 8, 5)
  assert program.chunk_lengths(5, chunk=8) == (5,)
  for steps in range(1, 200):
    lengths = program.chunk_lengths(steps)
    assert sum(lengths) == steps and max(lengths) <= program.MAX_CHUNK
    assert len(set(lengths)) == 1
  with pytest.raises(ValueError, match="steps"):
    program.chunk_lengths(0)
  with pytest.raises(ValueError, match="chunk"):
    program.chunk_lengths(4, chunk=0)


def test_chunks_give_bitwise_the_images_of_one_chunk():
  """21 steps in chunks of 8 (8 + 8 + 5: not a multiple), the redirected-ReLU window (12
  steps) ending inside the second chunk, against one chunk of all 21 steps."""
  kw = dict(FAST, steps=21, redirect_relu_steps=12, seed=7)
  obj = O.channel("conv3", np.arange(3))
  whole = render.render(MODEL, obj, chunk=21, **kw)
  chunked = render.render(MODEL, obj, chunk=8, **kw)
  np.testing.assert_array_equal(chunked.images, whole.images)
  np.testing.assert_array_equal(chunked.history, whole.history)
  assert chunked.history.shape == (21, 3)
  # The window matters here (so that the check above covers it): without it other images.
  plain = render.render(MODEL, obj, chunk=21, **dict(kw, redirect_relu_steps=0))
  assert not np.array_equal(plain.images, whole.images)


def test_step_counts_with_one_chunk_length_share_a_program():
  obj = O.channel("conv2", np.arange(2))
  render.render(MODEL, obj, steps=24, **FAST)  # one chunk of 24
  before = program.trace_count()
  r = render.render(MODEL, obj, steps=48, **FAST)  # two chunks of 24: the same program
  assert program.trace_count() == before and r.compile_seconds == 0.0
  assert r.history.shape == (48, 2)


def test_progress_bar_is_the_same_program_and_images(capsys):
  obj = O.channel("conv3", np.arange(2))
  kw = dict(FAST, steps=18, seed=2)
  quiet = render.render(MODEL, obj, **kw)
  before = program.trace_count()
  shown = render.render(MODEL, obj, **dict(kw, progress_bar=True))
  assert program.trace_count() == before and shown.compile_seconds == 0.0
  np.testing.assert_array_equal(shown.images, quiet.images)
  np.testing.assert_array_equal(shown.history, quiet.history)
  err = capsys.readouterr().err
  assert "18/18" in err and "render tiny_cnn conv3:0 (+1)" in err


@O.register()
class _NaNAfterChunks(O.Objective):
  """Mean image intensity, with NaN once the image is bright enough (a real blow-up)."""

  def score(self, ctx):
    m = ctx.image.mean(axis=(1, 2, 3))
    return jnp.where(m > 0.6, jnp.nan, m)


def test_non_finite_step_and_images_do_not_depend_on_the_chunks():
  """The run stops after the chunk that follows the bad one; the error still names the first
  bad step and carries the images of the last finite step: those of a render that stops
  just before it."""
  kw = dict(steps=200, size=16, param="pixel", progress_bar=False, transforms=transforms.identity())
  steps = set()
  for chunk in (7, 200):
    with pytest.raises(render.NonFiniteError, match=r"non-finite at step (\d+) of 200") as err:
      render.render(MODEL, _NaNAfterChunks(), chunk=chunk, **kw)
    step = int(re.search(r"step (\d+)", str(err.value)).group(1))
    assert err.value.step == step and 0 < step < 200
    finite = render.render(MODEL, _NaNAfterChunks(), **dict(kw, steps=step))
    np.testing.assert_array_equal(err.value.images, finite.images)
    steps.add(step)
  assert len(steps) == 1
