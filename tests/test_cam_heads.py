"""Each CAM head of the grown zoo reproduces its model's own logits: the mean over positions of
the head's layer, times its kernel, plus its bias (``featviz.zoo.heads``; issue 14's models).

The torchvision-layout models with random weights (torchvision builds them; test-only), the
EfficientNet-Lite1/2 with their real weights from the pip packages.
"""

import numpy as np
import pytest

from featviz import Model
from featviz.zoo import catalogue, heads

PHOTOS = np.random.default_rng(0).uniform(0, 1, (2, 67, 67, 3)).astype(np.float32)


def _check(model: Model):
  layer, kernel, bias = heads.linear_head(model.spec.name, model.weights)
  acts = model.activations(PHOTOS, [layer, "logits"])
  pooled = np.asarray(acts[layer], np.float64).mean(axis=(1, 2))
  expected = pooled @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64)
  got = np.asarray(acts["logits"])
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "mobilenet_v2"])
def test_torchvision_heads_reproduce_the_logits(name):
  torch = pytest.importorskip("torch", reason="torch is a test-only dependency")
  tm = pytest.importorskip("torchvision.models", reason="torchvision is a test-only dependency")
  torch.manual_seed(0)
  if name == "googlenet":
    net = tm.googlenet(weights=None, aux_logits=False, init_weights=True)
  else:
    net = getattr(tm, name)(weights=None)
  state = {k: v.numpy() for k, v in net.state_dict().items()}
  arch = catalogue.architecture(name)
  _check(Model(spec=arch.spec(), weights=arch.convert(state), forward=arch.forward))


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite_heads_reproduce_the_logits(name):
  from featviz import zoo

  _check(zoo.load(name))
