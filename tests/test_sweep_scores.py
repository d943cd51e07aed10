"""How a sweep scores renders against photos, for layers and images beyond NHWC and RGB: a token
layer ``(B, T, C)``'s channel is the mean over tokens, as its objective (it used to average over
tokens and channels, then fail with an IndexError; found sweeping vit_b_16), and RGBA renders are
scored on grey."""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
from test_token_objectives import SIZE, TinyViT

import featviz
from featviz._sweep import quality


def test_channel_means_of_tokens_match_numpy_and_a_sweep_scores_them(tmp_path):
  variables = jax.jit(TinyViT().init)(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  vit = featviz.Model.from_flax(TinyViT(), variables, image_size=SIZE)
  photos = np.random.default_rng(1).uniform(0, 1, (3, SIZE, SIZE, 3)).astype(np.float32)
  tokens = np.asarray(vit.activations(photos, ["EncoderBlock_0"])["EncoderBlock_0"])
  means = quality.channel_means(vit, ["EncoderBlock_0"], photos)["EncoderBlock_0"]
  np.testing.assert_allclose(means, tokens.mean(axis=1), rtol=1e-5, atol=1e-6)

  folder = tmp_path / "photos"
  folder.mkdir()
  for i, p in enumerate(photos):
    Image.fromarray((p * 255).astype(np.uint8)).save(folder / f"{i}.png")
  summary = featviz.sweep(
    vit,
    ["EncoderBlock_0"],
    out=tmp_path / "S",
    units=(0, 2),
    dataset=folder,
    steps=4,
    size=SIZE,
    transforms="none",
    progress_bar=False,
  )
  assert summary["failed"] == []
  rows = featviz._sweep.store.Store(tmp_path / "S").rows()
  assert sorted(rows) == [("EncoderBlock_0", 0), ("EncoderBlock_0", 1)]
  assert all(row["dataset_max"] is not None for row in rows.values())


def test_rgba_renders_are_scored_on_grey():
  """A sweep with alpha=True scores its (B, H, W, 4) renders composited on grey 0.5."""
  import tiny_cnn

  model = tiny_cnn.make()
  rgba = np.random.default_rng(2).uniform(0, 1, (3, 20, 20, 4)).astype(np.float32)
  grey = rgba[..., :3] * rgba[..., 3:] + 0.5 * (1 - rgba[..., 3:])
  got = quality.channel_means(model, ["conv2"], rgba)["conv2"]
  want = quality.channel_means(model, ["conv2"], grey)["conv2"]
  np.testing.assert_allclose(got, want, rtol=1e-6)
