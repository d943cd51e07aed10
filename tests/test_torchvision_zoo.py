"""The torchvision-layout zoo models against torchvision's own forward pass.

The independent reference is torchvision itself (a test-only dependency; the library never
imports torch): each architecture is built by ``torchvision.models`` with random weights and
randomised batch-norm statistics, in eval mode; its ``state_dict`` is saved with
``torch.save`` and read back by featviz's torch-free reader; every named layer is then compared
with what a forward hook on torchvision's module of that name sees, for two real photos at
97 px (an odd size: the pads and the ceil-mode pools must follow PyTorch's rounding). The
normalisation is torchvision's ``Normalize`` on the reference side and ``ModelSpec.mean`` /
``std`` on featviz's. The error measure is per layer: max |featviz - torchvision| / max
|torchvision|, which must stay below 1e-4 (float32 summation order differs; measured about
1e-6).
"""

import functools
import importlib
import urllib.error

import jax
import numpy as np
import pytest

import featviz.zoo
from featviz import model as fv_model
from featviz import photos
from featviz.cli import main
from featviz.zoo import catalogue, sources
from featviz.zoo import state_dict as sd

import jaxpr_ops

torch = pytest.importorskip("torch", reason="torch (CPU) is the reference: pip install '.[test]'")
torchvision = pytest.importorskip(
  "torchvision", reason="torchvision is the reference: pip install --no-deps torchvision==0.16.2"
)

SIZE = 97  # Odd, and above every model's min_size (VGG's 32, GoogLeNet's 15).
PHOTOS = ("n01443537_goldfish.JPEG", "n02099601_golden_retriever.JPEG")
TOLERANCE = 1e-4
MODELS = (
  "resnet18",
  "resnet50",
  "vgg16",
  "vgg19",
  "googlenet",
  "mobilenet_v2",
  "mobilenet_v3_large",
)
# The module whose output is "logits", by model; every other layer is named by its module path.
LOGITS = {
  "resnet18": "fc",
  "resnet50": "fc",
  "vgg16": "classifier.6",
  "vgg19": "classifier.6",
  "googlenet": "fc",
  "mobilenet_v2": "classifier.1",
  "mobilenet_v3_large": "classifier.3",
}


def _randomise_batch_norm(net, generator) -> None:
  """Random BN statistics and affine parameters, so a wrong mean/var/eps cannot hide."""
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        c = m.num_features
        m.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
        m.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
        m.weight.copy_(1 + torch.randn(c, generator=generator) * 0.2)
        m.bias.copy_(torch.randn(c, generator=generator) * 0.1)


@pytest.fixture(scope="module")
def vgg_classifier():
  """VGG-16's and VGG-19's classifier (the same 123M-parameter shapes), built once."""
  torch.manual_seed(1)
  return torchvision.models.vgg16(init_weights=False).classifier


def _torchvision_net(name: str, vgg_classifier):
  """torchvision's ``name`` in eval mode, random weights, randomised BN statistics."""
  torch.manual_seed(0)
  if name == "googlenet":
    # As the pretrained weights are built: transform_input, and the aux heads in the file.
    net = torchvision.models.googlenet(aux_logits=True, transform_input=True, init_weights=True)
  elif name.startswith("vgg"):
    with torch.device("meta"):  # Its own classifier would be a second 123M parameters.
      net = getattr(torchvision.models, name)(init_weights=False)
    config = {"vgg16": "D", "vgg19": "E"}[name]  # torchvision.models.vgg's names for them.
    net.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs[config])
    net.classifier = vgg_classifier
  else:
    net = getattr(torchvision.models, name)()
  _randomise_batch_norm(net, torch.Generator().manual_seed(0))
  return net.eval()


@pytest.fixture(scope="module")
def images(shared):
  """Two ImageNet sample photos, ``(2, 97, 97, 3)`` in [0, 1]."""
  folder = shared / "images" / "imagenet-sample"
  return np.stack([photos.load_image(folder / name, SIZE) for name in PHOTOS])


def _reference(net, name: str, images: np.ndarray, layers) -> tuple[dict[str, np.ndarray], int]:
  """torchvision's activations of ``layers`` (NHWC), by forward hooks, on normalised input;
  and how many ReLUs ran: calls of its ReLU / ReLU6 modules, plus GoogLeNet's BasicConv2d
  modules, which each end in one functional ``F.relu``."""
  googlenet = importlib.import_module("torchvision.models.googlenet")  # Not the function.
  relu_modules = (torch.nn.ReLU, torch.nn.ReLU6, googlenet.BasicConv2d)
  modules = dict(net.named_modules())
  acts, handles, relus = {}, [], []
  handles += [
    m.register_forward_hook(lambda *_: relus.append(1))
    for m in net.modules()
    if isinstance(m, relu_modules)
  ]
  for layer in layers:

    def hook(module, inputs, output, layer=layer):
      acts[layer] = output.detach().clone()  # clone: VGG's ReLUs run in place afterwards.

    target = LOGITS[name] if layer == "logits" else layer
    handles.append(modules[target].register_forward_hook(hook))
  normalise = torchvision.transforms.Normalize(
    featviz.zoo.torchvision_layers.IMAGENET_MEAN, featviz.zoo.torchvision_layers.IMAGENET_STD
  )
  x = normalise(torch.from_numpy(images).permute(0, 3, 1, 2))
  with torch.no_grad():
    net(x)
  for handle in handles:
    handle.remove()
  acts = {k: (v.permute(0, 2, 3, 1) if v.ndim == 4 else v).numpy() for k, v in acts.items()}
  return acts, len(relus)


@jax.jit
def _activations(model, images):
  return model.activations(images)  # Every layer; this machine's default ops (CPU rewrites).


def _relative_errors(ours, reference) -> dict[str, float]:
  assert set(ours) == set(reference)
  errors = {}
  for layer, ref in reference.items():
    got = np.asarray(ours[layer])
    assert got.shape == ref.shape, (layer, got.shape, ref.shape)
    errors[layer] = float(np.abs(got - ref).max() / np.abs(ref).max())
  return errors


def _our_relu_calls(model, images) -> int:
  calls = []

  def counting(f):
    def wrapped(h):
      calls.append(1)
      return f(h)

    return wrapped

  ops = fv_model.Ops(relu=counting(jax.nn.relu), relu6=counting(jax.nn.relu6))
  jax.eval_shape(lambda m, x: m.activations(x, ["logits"], ops=ops), model, images[:1])
  return len(calls)


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
  """A torchvision ResNet-18 state dict with random weights, saved by torch.save."""
  path = tmp_path_factory.mktemp("resnet18") / "resnet18-random.pth"
  torch.save(_torchvision_net("resnet18", None).state_dict(), path)
  return path


# ---- every layer of every model against torchvision ----


def test_resnet50_through_the_zoo_matches_torchvision(tmp_path, featviz_home, images):
  net = _torchvision_net("resnet50", None)
  path = tmp_path / "resnet50-random.pth"
  torch.save(net.state_dict(), path)
  model = featviz.zoo.load("resnet50", weights=path)  # Converted into the cache, restored.
  assert model.metadata["verified"] is False  # Random weights are not torchvision's file.
  assert model.metadata["cache_path"].startswith(str(featviz_home / "models"))
  reference, relus = _reference(net, "resnet50", images, model.spec.layers)
  errors = _relative_errors(_activations(model, images), reference)
  print(f"\nresnet50: {len(errors)} layers, worst {max(errors.values()):.2e}")
  assert max(errors.values()) < TOLERANCE, {k: v for k, v in errors.items() if v >= TOLERANCE}
  assert _our_relu_calls(model, images) == relus == 1 + 16 * 3  # Stem; 3 per bottleneck.


@pytest.mark.parametrize("name", [m for m in MODELS if m != "resnet50"])
def test_every_layer_matches_torchvision(name, tmp_path, images, vgg_classifier):
  net = _torchvision_net(name, vgg_classifier)
  path = tmp_path / f"{name}-random.pth"
  torch.save(net.state_dict(), path)
  arch = catalogue.architecture(name)
  weights = arch.convert(catalogue.read_weight_file(path))  # The torch-free reader.
  model = fv_model.Model(spec=arch.spec(), weights=jax.device_put(weights), forward=arch.forward)
  del weights
  reference, relus = _reference(net, name, images, model.spec.layers)
  errors = _relative_errors(_activations(model, images), reference)
  print(f"\n{name}: {len(errors)} layers, worst {max(errors.values()):.2e}")
  assert max(errors.values()) < TOLERANCE, {k: v for k, v in errors.items() if v >= TOLERANCE}
  assert _our_relu_calls(model, images) == relus > 0  # Every ReLU goes through ops.


# ---- what the catalogue says, and what it refuses ----


def test_zoo_list_and_labels_show_the_torchvision_models(capsys):
  assert main(["zoo", "list"]) == 0
  listed = capsys.readouterr().out
  assert all(f"\n{name} " in f"\n{listed}" for name in MODELS)
  assert len(listed.strip().splitlines()) >= 11
  assert main(["zoo", "labels", "resnet50", "--grep", "goldfish"]) == 0
  assert capsys.readouterr().out.split() == ["1", "goldfish"]
  assert main(["zoo", "info", "googlenet"]) == 0
  info = capsys.readouterr().out
  assert "inception4e" in info and "1000 classes" in info and "sha256 starting 1378be20" in info


def test_load_without_the_file_says_where_to_get_it(featviz_home, monkeypatch):
  def offline(*args, **kwargs):
    raise urllib.error.URLError("offline (test)")

  monkeypatch.setattr(sources.urllib.request, "urlopen", offline)
  with pytest.raises(featviz.zoo.WeightsUnavailableError) as info:
    featviz.zoo.load("mobilenet_v3_large")
  message = str(info.value)
  assert "https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth" in message
  assert 'weights="/path/mobilenet_v3_large-8738ca79.pth"' in message
  assert str(featviz_home / "downloads" / "mobilenet_v3_large-8738ca79.pth") in message


def test_the_catalogue_pins_the_prefix_in_each_file_name():
  for name in MODELS:
    source = catalogue.entry(name).source
    assert source.location == f"https://download.pytorch.org/models/{source.filename}"
    assert source.digest.kind == "sha256-prefix"
    assert source.filename == f"{name}-{source.digest.value}.pth"
    assert len(source.digest.value) == 8
  digest = sources.Digest("sha256-prefix", sources.sha256_hex(b"abc")[:8])
  assert digest.of(b"abc") == digest.value and digest.of(b"abd") != digest.value


def test_a_file_for_another_architecture_is_refused(resnet18_file):
  state = catalogue.read_weight_file(resnet18_file, lazy=True)
  with pytest.raises(sd.WeightMismatchError) as info:
    catalogue.architecture("resnet50").convert(state)
  assert "ResNet-50 (torchvision)" in str(info.value)
  assert "layer1.0.conv3.weight (256, 64, 1, 1)" in str(info.value)  # Missing in ResNet-18.


def test_googlenet_drops_only_complete_aux_heads():
  net = torchvision.models.googlenet(aux_logits=True, init_weights=False)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  convert = catalogue.architecture("googlenet").convert
  assert "aux1" not in convert(state)
  without_aux = {k: v for k, v in state.items() if not k.startswith("aux")}
  assert convert(without_aux).keys() == convert(state).keys()
  del state["aux2.fc1.bias"]
  with pytest.raises(sd.WeightMismatchError, match="1 missing keys: aux2.fc1.bias"):
    convert(state)


def test_forward_stops_after_the_deepest_layer(resnet18_file):
  arch = catalogue.architecture("resnet18")
  weights = arch.convert(catalogue.read_weight_file(resnet18_file))
  x = jax.ShapeDtypeStruct((1, 33, 33, 3), np.float32)

  def convs(layers):
    jaxpr = jax.make_jaxpr(lambda w, x: arch.forward(w, x, layers))(weights, x)
    return jaxpr_ops.primitive_counts(jaxpr)["conv_general_dilated"]

  assert convs(("relu",)) == 1
  assert convs(("layer1.0",)) == 3
  assert convs(("layer2",)) == 1 + 4 * 2 + 1  # Stem, 4 blocks of 2 convs, 1 downsample.
  assert convs(("logits",)) == 1 + 8 * 2 + 3


# ---- render and sweep on one of them ----


def test_render_and_sweep_run_on_resnet18(resnet18_file, tmp_path, featviz_home, capsys):
  tiny = ["--steps", "4", "--size", "48", "--no-progress", "--weights", str(resnet18_file)]
  out = tmp_path / "render.png"
  # The SPEC grammar does not take a "." in a layer name yet: render names layer2, the sweep
  # (whose --layers is a plain list) a block, layer1.0.
  assert main(["render", "resnet18", "layer2:0-1", *tiny, "--out", str(out)]) == 0
  store = tmp_path / "sweep"
  sweep = ["sweep", "resnet18", "--layers", "layer1.0", "--units", "0-1", "--batch", "2"]
  assert main([*sweep, *tiny, "--out", str(store)]) == 0
  singles = sorted(p.name for p in (tmp_path / "render_images").glob("*.png"))
  assert singles == ["0000_layer2_0.png", "0001_layer2_1.png"]
  assert sorted(p.name for p in (store / "layer1.0").glob("*.png")) == ["0000.png", "0001.png"]


def test_min_size_is_the_smallest_input_torchvision_takes():
  """GoogLeNet's 15 px and VGG's 32 px: torchvision runs at min_size and refuses one less;
  featviz's forward at min_size keeps every map at least one pixel wide."""
  vgg_features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
  nets = {
    "googlenet": torchvision.models.googlenet(aux_logits=False, init_weights=False).eval(),
    "vgg16": vgg_features,  # The classifier's shapes do not depend on the input size.
  }
  for name, net in nets.items():
    arch = catalogue.architecture(name)
    size = arch.spec().min_size
    with torch.no_grad():
      net(torch.zeros(1, 3, size, size))
      with pytest.raises(RuntimeError):
        net(torch.zeros(1, 3, size - 1, size - 1))
    layers = tuple(arch.spec().layers)
    if name == "vgg16":  # The forward stops at the last pool: the classifier is not needed.
      layers = tuple(layer for layer in layers if layer.startswith("features."))
      features = {}
      for key, value in net.state_dict().items():
        index, leaf = key.split(".")
        convert = sd.conv_kernel if leaf == "weight" else sd.vector
        features.setdefault(index, {})["kernel" if leaf == "weight" else "bias"] = convert(value)
      weights = {"features": features}
    else:
      weights = arch.convert({k: v.numpy() for k, v in net.state_dict().items()})
    x = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
    out = jax.eval_shape(functools.partial(arch.forward, layers=layers), weights, x)
    assert min(min(a.shape[1:3]) for a in out.values() if a.ndim == 4) >= 1, name
