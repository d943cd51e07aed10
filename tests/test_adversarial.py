"""featviz.analysis.adversarial: FGSM and PGD stay in the ball and move the probabilities."""

import functools

import numpy as np
import pytest
from PIL import Image

from featviz import photos
from featviz.analysis import adversarial as adv
from featviz.cli import main

import tiny_cnn

EPS = 0.03  # ~8/255, the usual ImageNet L-inf budget
# float32 rounding of clip(x, x - eps, x + eps) - x: a few ulps of values <= 1.
BOUND_SLACK = 1e-6


@functools.cache
def _efficientnet():
  from featviz import zoo

  return zoo.load("efficientnet_lite0")


@pytest.fixture(scope="module")
def goldfish(shared):
  return photos.load_image(shared / "images/imagenet-sample/n01443537_goldfish.JPEG", 224, 3)


def _tiny_images(n=2, seed=0):
  return np.random.default_rng(seed).uniform(size=(n, 16, 16, 3)).astype(np.float32)


def test_fgsm_is_one_pgd_step_of_eps_and_both_share_a_compile():
  model = tiny_cnn.make(3)
  x = _tiny_images()
  size = adv._attack._cache_size()
  f = adv.fgsm(model, x, target=3, eps=0.05)
  p = adv.pgd(model, x, target=3, eps=0.05, steps=1, step_size=0.05)
  np.testing.assert_array_equal(f.adversarial, p.adversarial)
  adv.pgd(model, x, label=[0, 1], eps=0.02, steps=4, random_start=True, seed=3)
  assert adv._attack._cache_size() == size + 1  # eps, steps, classes, direction are data


def test_bounds_norms_and_defaults_on_tiny():
  model = tiny_cnn.make(3)
  x = _tiny_images(3)
  r = adv.pgd(model, x, target=[0, 1, 2], eps=0.04, steps=5, random_start=True, seed=1)
  assert r.step_size == pytest.approx(2.5 * 0.04 / 5)
  assert np.all(r.linf <= 0.04 + BOUND_SLACK)
  assert r.adversarial.min() >= 0.0 and r.adversarial.max() <= 1.0
  delta = (r.adversarial - x).reshape(3, -1)
  np.testing.assert_allclose(r.linf, np.abs(delta).max(axis=1), rtol=1e-6)
  np.testing.assert_allclose(r.l2, np.sqrt((delta.astype(np.float64) ** 2).sum(axis=1)), rtol=1e-5)
  np.testing.assert_array_equal(r.classes, [0, 1, 2])
  assert r.targeted and np.allclose(r.probs_after.sum(axis=1), 1.0, atol=1e-5)
  # Untargeted with no label: away from the model's own top-1 class.
  u = adv.fgsm(model, x, eps=0.04)
  np.testing.assert_array_equal(u.classes, r.probs_before.argmax(axis=1))
  assert not u.targeted


def test_bad_arguments():
  model = tiny_cnn.make(3)
  x = _tiny_images(1)
  with pytest.raises(ValueError, match="not both"):
    adv.attack(model, x, target=1, label=2)
  with pytest.raises(ValueError, match="eps"):
    adv.fgsm(model, x, eps=0.0)
  with pytest.raises(ValueError, match="unknown attack"):
    adv.attack(model, x, method="cw")
  with pytest.raises(ValueError, match="out of range"):
    adv.fgsm(model, x, target=5)


def test_fgsm_lowers_the_true_class_on_a_real_photo(goldfish):
  model = _efficientnet()
  r = adv.fgsm(model, goldfish[None], label=1, eps=EPS)
  before, after = r.class_prob_before[0], r.class_prob_after[0]
  assert before > 0.5  # EfficientNet-Lite0 is sure of this goldfish (0.94 measured)
  assert after < before - 0.1  # measured 0.94 -> 0.29
  assert r.linf[0] <= EPS + BOUND_SLACK


def test_targeted_pgd_raises_the_target_within_eps(goldfish):
  model = _efficientnet()
  target = 207  # golden retriever
  r = adv.pgd(model, goldfish[None], target=target, eps=EPS, steps=10)
  assert r.linf[0] <= EPS + BOUND_SLACK
  assert r.adversarial.min() >= 0.0 and r.adversarial.max() <= 1.0
  assert r.class_prob_after[0] > r.class_prob_before[0] + 0.5  # measured 0.0000 -> 0.9995
  assert r.probs_after[0].argmax() == target
  lines = adv.summary(model, r)
  assert "golden retriever" in lines[1] and "L-inf 0.03" in lines[2]
  fig = adv.figure(model, r)
  assert fig.width > 3 * 224


def test_cli_on_mnist(tmp_path, capsys):
  from featviz import zoo

  try:
    zoo.load("mnist_cnn")
  except zoo.WeightsUnavailableError as e:
    pytest.skip(f"mnist_cnn weights not available: {e}")
  digit = np.zeros((28, 28), np.uint8)
  digit[6:22, 12:16] = 255
  path = tmp_path / "one.png"
  Image.fromarray(digit).save(path)
  out = tmp_path / "a.png"
  assert (
    main(
      [
        "adversarial",
        "mnist_cnn",
        str(path),
        "--target",
        "7",
        "--eps",
        "0.2",
        "--steps",
        "20",
        "--out",
        str(out),
      ]
    )
    == 0
  )
  printed = capsys.readouterr().out
  assert "target 7" in printed and "L-inf" in printed and out.exists()
  assert main(["adversarial", "mnist_cnn", str(path), "--eps", "0", "--out", str(out)]) == 2
  assert main(["adversarial", "mnist_cnn", str(path), "--target", "ten", "--out", str(out)]) == 2
  assert (
    main(
      ["adversarial", "mnist_cnn", str(path), "--target", "1", "--label", "2", "--out", str(out)]
    )
    == 2
  )
