"""Token activations ``(B, T, C)`` (a ViT-shaped toy): channel = mean over tokens, neuron = one
token (the CLS token is 0), checked against NumPy on the model's own activations; the SPEC
grammar's ``LAYER:U@T``; dataset examples and receptive fields of tokens."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import featviz
from featviz import objectives as O
from featviz._loop import api
from featviz.analysis import dataset_examples as dx
from featviz.analysis import receptive_field as rf
from featviz.cli import spec_grammar
from featviz.model import UnitOutOfRangeError

SIZE, PATCH, WIDTH = 16, 4, 8
TOKENS = (SIZE // PATCH) ** 2 + 1  # 16 patches and the CLS token


class PatchEmbed(nn.Module):
  @nn.compact
  def __call__(self, x):
    h = nn.Conv(WIDTH, (PATCH, PATCH), strides=PATCH, padding="VALID")(x)
    return h.reshape(h.shape[0], -1, WIDTH)  # (B, 16, WIDTH): patch (r, c) is token 4r + c


class EncoderBlock(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = x + nn.MultiHeadDotProductAttention(num_heads=2)(nn.LayerNorm()(x))
    return x + nn.Dense(WIDTH)(nn.relu(nn.Dense(2 * WIDTH)(nn.LayerNorm()(x))))


class TinyViT(nn.Module):
  @nn.compact
  def __call__(self, x):
    tokens = PatchEmbed()(x)
    cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, WIDTH))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, WIDTH)), tokens], axis=1)
    x = x + self.param("pos", nn.initializers.normal(0.02), (1, TOKENS, WIDTH))
    x = EncoderBlock()(x)
    return nn.Dense(3)(x[:, 0])


@pytest.fixture(scope="module")
def vit():
  variables = jax.jit(TinyViT().init)(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  return featviz.Model.from_flax(TinyViT(), variables, image_size=SIZE)


@pytest.fixture(scope="module")
def photos():
  return np.random.default_rng(0).uniform(0, 1, (3, SIZE, SIZE, 3)).astype(np.float32)


def test_token_layers_are_found(vit):
  assert vit.spec.layers["PatchEmbed_0"] == WIDTH and vit.spec.layers["EncoderBlock_0"] == WIDTH
  assert vit.metadata["layer_shapes"]["EncoderBlock_0"] == [1, TOKENS, WIDTH]
  assert vit.spec.fixed_size  # the position embedding fixes the size: renders resize to it


@pytest.fixture(scope="module")
def acts(vit, photos):
  return jax.jit(lambda m, x: m.activations(x, ["PatchEmbed_0", "EncoderBlock_0"]))(vit, photos)


def _score(vit, objective, acts, photos):
  bound = objective.bind(vit.spec, len(photos))
  return np.asarray(bound(O.Context(acts, jnp.asarray(photos))))


def test_channel_is_the_mean_over_tokens_and_neuron_one_token(vit, acts, photos):
  a = np.asarray(acts["EncoderBlock_0"])
  units = np.array([1, 5, 7])
  channel = _score(vit, O.channel("EncoderBlock_0", units), acts, photos)
  np.testing.assert_allclose(channel, a.mean(axis=1)[np.arange(3), units], rtol=1e-5)
  cls = _score(vit, O.neuron("EncoderBlock_0", units, token=0), acts, photos)
  np.testing.assert_allclose(cls, a[np.arange(3), 0, units], rtol=1e-5)
  centre = _score(vit, O.neuron("EncoderBlock_0", units), acts, photos)
  np.testing.assert_allclose(centre, a[np.arange(3), TOKENS // 2, units], rtol=1e-5)


def test_spec_grammar_reads_a_token_position():
  objective = spec_grammar.parse("EncoderBlock_0:3@0")
  assert isinstance(objective, O.Neuron) and int(objective.x) == 0 and objective.y is None
  assert objective.labels(1) == ["EncoderBlock_0:3@0"]
  assert spec_grammar.parse("Block_2/Conv_1:0-1").labels(2) == [
    "Block_2/Conv_1:0",
    "Block_2/Conv_1:1",
  ]


@pytest.mark.parametrize(
  "objective,message",
  [
    (O.neuron("EncoderBlock_0", 0, token=TOKENS), f"has {TOKENS} tokens: give tokens 0-16"),
    (O.neuron("EncoderBlock_0", 0, 1, 1), "give a token"),
    (O.neuron("logits", 0, token=0), "has no position"),
  ],
)
def test_a_position_of_the_wrong_kind_is_refused(vit, objective, message):
  config = featviz.RenderConfig(size=SIZE)
  with pytest.raises(UnitOutOfRangeError, match=message):
    api.check_positions(vit, objective.bind(vit.spec, 1), config)


def test_renders_a_channel_and_the_cls_token_neuron(vit):
  objective = O.stack([O.channel("EncoderBlock_0", 2), O.neuron("EncoderBlock_0", 2, token=0)])
  result = featviz.render(vit, objective, steps=4, size=SIZE, progress_bar=False)
  assert result.labels == ["EncoderBlock_0:2", "EncoderBlock_0:2@0"]
  assert result.images.shape == (2, SIZE, SIZE, 3) and np.isfinite(result.history).all()


def test_dataset_examples_and_fields_of_tokens(vit, acts, photos):
  scan = dx.scan_layer(vit, photos, "PatchEmbed_0")
  a = np.asarray(acts["PatchEmbed_0"])
  assert scan.map_size == (1, TOKENS - 1)
  np.testing.assert_array_equal(scan.peak_at[:, 3, 1], a[:, :, 3].argmax(axis=1))
  # Token t of the patch embedding sees its 4 x 4 patch alone; after attention, everything.
  t = 6  # patch row 1, column 2
  box = rf.receptive_fields(vit, "PatchEmbed_0", [(0, t, 0)], SIZE)[0]
  assert tuple(box) == (4, 8, 8, 12)
  box = rf.receptive_fields(vit, "EncoderBlock_0", [(0, 1 + t, 0)], SIZE)[0]
  assert tuple(box) == (0, 0, SIZE, SIZE)
