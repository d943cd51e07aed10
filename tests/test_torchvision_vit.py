"""torchvision's ViT-B/16 through the zoo: every named layer against torchvision's own forward.

The independent reference is ``torchvision.models.vit_b_16`` itself (torch is a test-only
dependency): built once with random weights (every tensor random, so no layer is trivially
zero), saved as a ``state_dict`` file, loaded through ``featviz.zoo.load("vit_b_16",
weights=PATH)`` (the torch-free reader and the converter), then run on 2 real photos. Each
named layer must match the activation torchvision computes (hooks on the same modules) to a
relative error (Frobenius norm of the difference over that of torchvision's) under 2e-4.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from featviz import model as fv_model
from featviz import zoo
from featviz.zoo import catalogue, sources, torchvision_vit
from featviz.zoo import state_dict as sd

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

VIT = torchvision_vit.vit_b_16
PHOTOS = ("n01443537_goldfish.JPEG", "n02099601_golden_retriever.JPEG")
REL_ERR = 2e-4  # The bound for the whole network in float32.


def _photo(path) -> np.ndarray:
  """torchvision's ImageClassification crop: shorter side 256 (bilinear), centre 224, [0, 1]."""
  image = Image.open(path).convert("RGB")
  w, h = image.size
  scale = 256 / min(w, h)
  image = image.resize(
    (max(256, round(w * scale)), max(256, round(h * scale))), Image.Resampling.BILINEAR
  )
  w, h = image.size
  left, top = (w - 224) // 2, (h - 224) // 2
  return np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255.0


def _random_vit():
  """torchvision's ViT-B/16 with every parameter random: built on the meta device (its own
  init would take seconds, and leaves the head, class token and LayerNorms constant), then
  filled: weights normal / sqrt(fan in), LayerNorm scales 1 + 0.2 normal, the rest 0.2 normal."""
  torch.manual_seed(0)
  with torch.device("meta"):
    net = torchvision.models.vit_b_16(weights=None)
  net = net.to_empty(device="cpu").eval()
  with torch.no_grad():
    for name, p in net.named_parameters():
      if name.endswith(("ln_1.weight", "ln_2.weight", "ln.weight")):
        p.copy_(1 + 0.2 * torch.randn_like(p))
      elif p.ndim == 1 or name in ("class_token", "encoder.pos_embedding"):
        p.copy_(0.2 * torch.randn_like(p))
      else:
        p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
  return net


@pytest.fixture(scope="module")
def pair(tmp_path_factory, shared):
  """(zoo model, {layer: torchvision activation as NumPy}, photos): built once (86M params)."""
  folder = tmp_path_factory.mktemp("vit")
  net = _random_vit()
  path = folder / "random_vit_b_16.pth"
  torch.save(net.state_dict(), path)
  photos = np.stack([_photo(shared / "images" / "imagenet-sample" / p) for p in PHOTOS])
  reference = {}
  modules = {"conv_proj": net.conv_proj, "encoder.ln": net.encoder.ln}
  modules.update({f"encoder.layers.{n}": m for n, m in net.encoder.layers.named_children()})

  def hook(name):
    def record(module, args, output):
      reference[name] = output.detach().numpy()

    return record

  handles = [m.register_forward_hook(hook(name)) for name, m in modules.items()]
  mean = torch.tensor(torchvision_vit.IMAGENET_MEAN).view(1, 3, 1, 1)
  std = torch.tensor(torchvision_vit.IMAGENET_STD).view(1, 3, 1, 1)
  x = (torch.from_numpy(photos).permute(0, 3, 1, 2) - mean) / std
  with torch.no_grad():
    reference["logits"] = net(x).numpy()
  for h in handles:
    h.remove()
  reference["conv_proj"] = reference["conv_proj"].transpose(0, 2, 3, 1)  # NCHW -> NHWC.
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("FEATVIZ_HOME", str(folder / "home"))
    model = zoo.load("vit_b_16", weights=path)
  return model, reference, photos


@functools.partial(jax.jit, static_argnums=(2,))
def _activations(model, photos, layers):
  return model.activations(photos, layers)


def test_every_named_layer_matches_torchvision(pair):
  model, reference, photos = pair
  assert set(reference) == set(model.spec.layers)
  out = _activations(model, jnp.asarray(photos), tuple(model.spec.layers))
  errors = {}
  for name, ref in reference.items():
    got = np.asarray(out[name])
    assert got.shape == ref.shape, name
    errors[name] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
  print("\nrelative error per layer:", {k: f"{v:.1e}" for k, v in errors.items()})
  assert max(errors.values()) < REL_ERR, errors
  assert np.argmax(out["logits"], 1).tolist() == np.argmax(reference["logits"], 1).tolist()


def test_spec_shapes_and_metadata(pair):
  model, reference, _ = pair
  spec = model.spec
  assert catalogue.architecture("vit_b_16") is VIT
  assert model.forward is VIT.forward  # The same object on every load: programs are reused.
  assert (spec.image_size, spec.fixed_size, spec.channels) == (224, True, 3)
  assert list(spec.layers) == (
    ["conv_proj"] + [f"encoder.layers.encoder_layer_{k}" for k in range(12)]
  ) + ["encoder.ln", "logits"]
  assert reference["encoder.layers.encoder_layer_5"].shape == (2, 197, 768)
  assert reference["conv_proj"].shape == (2, 14, 14, 768)
  for name, act in reference.items():
    assert act.shape[-1] == spec.layers[name], name
  assert len(spec.labels) == 1000 and spec.labels[1] == "goldfish"
  assert model.metadata["verified"] is False  # A user file is not held to the catalogue's pin.


def test_other_sizes_are_resized_to_224(pair):
  model, _, photos = pair
  small = jax.image.resize(jnp.asarray(photos), (2, 160, 160, 3), "linear")
  out = _activations(model, small, ("encoder.layers.encoder_layer_0",))
  assert out["encoder.layers.encoder_layer_0"].shape == (2, 197, 768)


def test_forward_stops_after_the_deepest_requested_layer(pair):
  model, _, _ = pair
  x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)

  def count_dots(layers):
    jaxpr = jax.make_jaxpr(lambda w, x: VIT.forward(w, x, layers))(model.weights, x)
    return str(jaxpr).count("dot_general")

  # conv_proj: 1 matmul; each encoder layer: qkv, 2 attention einsums, out, mlp.0, mlp.3.
  assert count_dots(("conv_proj",)) == 1
  assert count_dots(("encoder.layers.encoder_layer_1",)) == 1 + 2 * 6
  assert count_dots(("logits",)) == 1 + 12 * 6 + 1


def test_without_weights_it_says_where_to_get_them(featviz_home, monkeypatch):
  def offline(*args, **kwargs):
    raise OSError("offline (this test never downloads the 330 MB file)")

  monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
  with pytest.raises(zoo.WeightsUnavailableError) as err:
    zoo.load("vit_b_16")
  message = str(err.value)
  for hint in (
    "https://download.pytorch.org/models/vit_b_16-c867db91.pth",
    "c867db91",
    "--weights",
    "featviz zoo convert vit_b_16",
  ):
    assert hint in message


def test_a_wrong_file_is_refused():
  from featviz.zoo import efficientnet_lite0

  state = {k: np.zeros(s, np.float32) for k, s in efficientnet_lite0.expected_shapes().items()}
  with pytest.raises(sd.WeightMismatchError, match=r"ViT-B/16.*152 missing keys: class_token"):
    VIT.convert(state)


def test_bad_sizes_are_refused(pair):
  model, _, _ = pair
  with pytest.raises(fv_model.ImageShapeError, match="224x224 input only, got 160x160"):
    VIT.forward(model.weights, jnp.zeros((1, 160, 160, 3)), ("conv_proj",))
