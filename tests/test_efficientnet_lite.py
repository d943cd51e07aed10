"""EfficientNet-Lite1 and -Lite2: the family's block tables, offline loading, ImageNet accuracy.

The independent references: each pip package's weight file (its tensor names and shapes must
be exactly the ones the width and depth multipliers give) and the task itself (with the
weights' own evaluation crop at each model's resolution, the real weights must classify sample
photos of ``shared/images/imagenet-sample/``). The shared architecture code is checked on all
264 photos by ``tests/test_efficientnet_lite0.py``; here one batch of 24 (every 11th photo)
per model keeps the compile count at one each. On all 264 photos, measured with this crop:
Lite1 top-1 88.3 %, top-5 97.7 %; Lite2 top-1 92.0 %, top-5 98.5 % (Lite0: 89.4 %, 98.1 %).
"""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from featviz import model as fv_model
from featviz import zoo
from featviz.zoo import catalogue, efficientnet_lite0, sources, torch_pickle
from featviz.zoo import efficientnet_lite as lite
from featviz.zoo import state_dict as sd

VARIANTS = {"efficientnet_lite1": lite.lite1, "efficientnet_lite2": lite.lite2}
CROP_PADDING = 32  # tensorflow/tpu efficientnet preprocessing: CROP_PADDING = 32.
EVERY = 11  # 264 photos / 11 = 24, one batch.
# (top-1, top-5) at least, of 24 photos; measured 22, 24 (Lite1) and 21, 24 (Lite2).
BAND = (20, 23)


def _package_state(name: str):
  pytest.importorskip(catalogue.entry(name).source.locator.partition(":")[0])
  path = sources.locate(name, catalogue.entry(name).source)
  return torch_pickle.load_state_dict(path, lazy=True)


def _photo(path, size: int) -> np.ndarray:
  """TF's eval crop: a centre square of ``size / (size + 32)`` of the shorter side, resized
  to ``size`` (bicubic); RGB in ``[0, 1]``."""
  image = Image.open(path).convert("RGB")  # 5 of the photos are greyscale.
  w, h = image.size
  crop = int(size / (size + CROP_PADDING) * min(w, h))
  left, top = (w - crop + 1) // 2, (h - crop + 1) // 2
  image = image.crop((left, top, left + crop, top + crop))
  image = image.resize((size, size), Image.Resampling.BICUBIC)
  return np.asarray(image, np.float32) / 255.0


@pytest.mark.parametrize("name", VARIANTS)
def test_block_table_is_the_package_files(name):
  """Width and depth scaling (round_filters, ceil of the repeats, first and last stage fixed)
  give exactly the tensors of the weight file: names, shapes, and nothing else."""
  arch = VARIANTS[name]
  state = _package_state(name)
  floats = {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}
  assert floats == arch.expected_shapes()
  assert len(arch.variant.blocks) == 21 and len(floats) == 322


def test_round_filters_is_the_reference_rounding():
  # efficientnet_model.round_filters at width 1.1: 16 * 1.1 = 17.6 -> 16, 40 * 1.1 = 44 -> 48
  # (nearest multiple of 8, halves up), 112 * 1.1 = 123.2 -> 120, 320 * 1.1 = 352 -> 352.
  assert [lite.round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [
    16,
    24,
    48,
    88,
    120,
    208,
    352,
  ]
  assert lite.round_filters(4, 1.0) == 8  # At least one multiple of 8.
  assert [lite.round_filters(c, 1.0) for c in (16, 24, 40, 80, 112, 192, 320)] == [
    16,
    24,
    40,
    80,
    112,
    192,
    320,
  ]


@pytest.mark.parametrize("name", VARIANTS)
def test_imagenet_sample_accuracy_offline(name, shared, featviz_home):
  """``zoo.load`` with no weights argument: the pip package's file, hash-checked, offline."""
  pytest.importorskip(catalogue.entry(name).source.locator.partition(":")[0])
  model = zoo.load(name)
  assert model.metadata["verified"] is True and model.forward is VARIANTS[name].forward
  size = model.spec.image_size
  folder = shared / "images" / "imagenet-sample"
  with open(folder / "labels.tsv", newline="") as f:
    rows = list(csv.DictReader(f, delimiter="\t"))[::EVERY]
  assert len(rows) == 24
  photos = jnp.asarray(np.stack([_photo(folder / r["file"], size) for r in rows]))
  truth = np.array([int(r["class_index"]) for r in rows])
  logits = np.asarray(jax.jit(lambda m, x: m.activations(x, ("logits",)))(model, photos)["logits"])
  top5 = np.argsort(-logits, axis=1)[:, :5]
  top1, top5 = int((top5[:, 0] == truth).sum()), int((top5 == truth[:, None]).any(axis=1).sum())
  print(f"\n{name} at {size} px on 24 sample photos: top-1 {top1} / 24, top-5 {top5} / 24")
  assert top1 >= BAND[0] and top5 >= BAND[1], (top1, top5)


def test_variants_and_resolutions():
  assert [a.variant.image_size for a in (lite.lite0, lite.lite1, lite.lite2)] == [224, 240, 260]
  for name, arch in VARIANTS.items():
    assert catalogue.architecture(name) is arch
    spec = arch.spec()
    assert spec is arch.spec() and spec.name == name and not spec.fixed_size
    assert list(spec.layers) == (
      ["stem_pre_act", "stem"] + [f"block{i}" for i in range(21)] + ["head_pre_act", "head"]
    ) + ["logits"]
    assert spec.labels == efficientnet_lite0.spec().labels and spec.labels[1] == "goldfish"
  np.testing.assert_allclose(lite.lite2.spec().to_input(jnp.array([0.0, 1.0])), [-127 / 128, 1])
  assert lite.lite2.spec().layers["block20"] == 352 and lite.lite2.spec().layers["block4"] == 48


def test_lite0_is_the_family_variant():
  """``featviz.zoo.efficientnet_lite0`` keeps its names, and they are the family's Lite0."""
  assert efficientnet_lite0.forward is lite.lite0.forward
  assert efficientnet_lite0.spec() is lite.lite0.spec()
  assert efficientnet_lite0.BLOCKS == lite.LITE0.blocks and len(efficientnet_lite0.BLOCKS) == 16
  assert catalogue.architecture("efficientnet_lite0") is efficientnet_lite0


def test_activations_have_the_spec_channels_and_every_relu6_is_ops():
  calls = []

  def counting_relu6(h):
    calls.append(h.shape[-1])
    return jax.nn.relu6(h)

  arch = lite.lite2
  weights = jax.tree.map(
    lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
    arch.convert({k: np.ones(s, np.float32) for k, s in arch.expected_shapes().items()}),
  )
  x = jax.ShapeDtypeStruct((1, 260, 260, 3), jnp.float32)
  ops = fv_model.Ops(relu6=counting_relu6)
  layers = tuple(arch.spec().layers)
  out = jax.eval_shape(lambda w, x: arch.forward(w, x, layers, ops), weights, x)
  assert {k: v.shape[-1] for k, v in out.items()} == dict(arch.spec().layers)
  assert out["head"].shape == (1, 9, 9, 1280) and out["block0"].shape == (1, 130, 130, 16)
  assert len(calls) == 1 + 1 + 20 * 2 + 1  # Stem; block0 has no expand; head.


def test_another_variants_file_is_refused():
  state = _package_state("efficientnet_lite2")
  with pytest.raises(sd.WeightMismatchError) as err:
    lite.lite1.convert(state)
  message = str(err.value)
  assert "not a EfficientNet-Lite1 (lukemelas layout) state dict" in message
  assert "_blocks.4._project_conv.weight is (48, 144, 1, 1), expected (40, 144, 1, 1)" in message
