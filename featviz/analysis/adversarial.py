"""Adversarial examples: small L-inf perturbations that change the model's answer.

Both attacks step on the sign of the input gradient of a cross-entropy loss and
stay in the L-inf ball ``|x' - x| <= eps`` around the photo ``x`` (in ``[0, 1]``
pixel units, so ``eps = 0.03`` is about 8 of 255 grey levels), and in ``[0, 1]``.

- **FGSM** (Goodfellow et al. 2015): one step of size ``eps``. Untargeted, it
  raises the loss of the true class: ``x' = x + eps * sign(d CE(x, y) / dx)``;
  targeted, it lowers the loss of the target: ``x' = x - eps * sign(d CE(x, t) / dx)``.
- **PGD** (Madry et al. 2018): ``steps`` such steps of size ``step_size``, each followed
  by projection onto the ball and clipping to ``[0, 1]``, optionally from a uniform
  random start in the ball. Default ``step_size = 2.5 * eps / steps``, the rule of
  thumb of the Madry lab's ``robustness`` library (enough to cross the ball and back).

FGSM is PGD with one step of size ``eps`` and no random start, so both run the
same compiled program; ``eps``, the step size, the number of steps, the classes
and the targeted/untargeted choice are all data, never recompiled. Projection
onto the ball then clipping to ``[0, 1]`` is the exact projection onto their
intersection, since both are boxes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from featviz.analysis import figures, predictions
from featviz.model import Model
from featviz.nonlin import STANDARD_OPS

METHODS = ("fgsm", "pgd")
DEFAULT_EPS = 0.03
DEFAULT_STEPS = 10


@jax.jit
def _attack(model: Model, images, classes, sign, eps, step_size, steps, start, key):
  """``steps`` signed-gradient steps on ``sign * CE(classes)``; returns images and logits.

  ``sign`` (B,) is +1 (untargeted: ascend the true class's loss) or -1 (targeted:
  descend the target's loss); ``start`` 0 or 1 scales the uniform random start.
  """

  def loss(x):
    logits = model.activations(x, ("logits",))["logits"]
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), classes[:, None], axis=1)[:, 0]
    return jnp.sum(sign * ce)  # images are independent: each gets its own gradient

  def project(x):
    return jnp.clip(jnp.clip(x, images - eps, images + eps), 0.0, 1.0)

  def body(_, x):
    return project(x + step_size * jnp.sign(jax.grad(loss)(x)))

  noise = jax.random.uniform(key, images.shape, images.dtype, -1.0, 1.0) * eps * start
  adv = jax.lax.fori_loop(0, steps, body, project(images + noise))
  both = model.activations(jnp.concatenate([images, adv]), ("logits",), ops=STANDARD_OPS)["logits"]
  return adv, both[: images.shape[0]], both[images.shape[0] :]


@dataclasses.dataclass
class AttackResult:
  """What :func:`attack` returns, per image ``b`` of a batch of ``B``.

  Attributes:
    method: "fgsm" or "pgd"; ``targeted``: whether it aimed at ``classes``.
    classes: ``(B,)``: the target (targeted) or the true class it moved away from.
    original, adversarial: ``(B, H, W, C)`` in ``[0, 1]``.
    perturbation: ``adversarial - original``.
    linf: ``(B,)`` ``max |perturbation|``; ``l2``: ``(B,)`` its Euclidean norm over all
      ``H * W * C`` values, both in ``[0, 1]`` pixel units.
    probs_before, probs_after: softmax ``(B, K)`` on the original and adversarial images.
    eps, steps, step_size: the settings used.
  """

  method: str
  targeted: bool
  classes: np.ndarray
  original: np.ndarray
  adversarial: np.ndarray
  perturbation: np.ndarray
  linf: np.ndarray
  l2: np.ndarray
  probs_before: np.ndarray
  probs_after: np.ndarray
  eps: float
  steps: int
  step_size: float

  @property
  def class_prob_before(self) -> np.ndarray:
    """``(B,)``: probability of ``classes`` before the attack."""
    return np.take_along_axis(self.probs_before, self.classes[:, None], axis=1)[:, 0]

  @property
  def class_prob_after(self) -> np.ndarray:
    """``(B,)``: probability of ``classes`` after (the target confidence reached, if targeted)."""
    return np.take_along_axis(self.probs_after, self.classes[:, None], axis=1)[:, 0]


def attack(
  model: Model,
  images,
  *,
  method: str = "pgd",
  target=None,
  label=None,
  eps: float = DEFAULT_EPS,
  steps: int = DEFAULT_STEPS,
  step_size: float | None = None,
  random_start: bool = False,
  seed: int = 0,
) -> AttackResult:
  """FGSM or PGD on a batch, targeted (``target``) or untargeted.

  Args:
    model: the network.
    images: ``(B, H, W, C)`` in ``[0, 1]``.
    method: "fgsm" (one step of ``eps``; ``steps``, ``step_size``, ``random_start`` ignored)
      or "pgd".
    target: class index (or ``(B,)``) to push each image towards; None: untargeted.
    label: untargeted only: the true class (or ``(B,)``) to push away from; None means
      the model's own top-1 class on the original.
    eps: L-inf radius in ``[0, 1]`` pixel units (0.03 ~ 8/255).
    steps: PGD steps.
    step_size: PGD step; None means ``2.5 * eps / steps``.
    random_start: PGD from a uniform random point in the ball (drawn from ``seed``).

  Raises:
    ValueError: bad method, ``eps`` <= 0, ``steps`` < 1, or both target and label.
    UnitOutOfRangeError: a class index outside the logits.
  """
  if method not in METHODS:
    raise ValueError(f"unknown attack {method!r}; valid: {', '.join(METHODS)}")
  if not eps > 0:
    raise ValueError(f"eps must be positive, got {eps}")
  if target is not None and label is not None:
    raise ValueError("give a target (targeted attack) or a label (untargeted), not both")
  model.check_images(images)
  images = jnp.asarray(images, jnp.float32)
  b = images.shape[0]
  if method == "fgsm":
    steps, step_size, random_start = 1, eps, False
  elif steps < 1:
    raise ValueError(f"steps must be at least 1, got {steps}")
  step_size = 2.5 * eps / steps if step_size is None else float(step_size)
  targeted = target is not None
  classes = target if targeted else label
  if classes is None:
    _, top = predictions.top_classes(model, images, 1)
    classes = top[:, 0]
  classes = np.broadcast_to(np.asarray(classes), (b,)).astype(np.int32)
  for c in classes:
    model.spec.label_index(int(c))
  sign = jnp.full((b,), -1.0 if targeted else 1.0, jnp.float32)
  adv, before, after = _attack(
    model,
    images,
    jnp.asarray(classes),
    sign,
    jnp.float32(eps),
    jnp.float32(step_size),
    jnp.int32(steps),
    jnp.float32(random_start),
    jax.random.key(seed),
  )
  adv, before, after = (np.asarray(x) for x in (adv, before, after))
  original = np.asarray(images)
  delta = adv - original
  flat = delta.reshape(b, -1)
  return AttackResult(
    method,
    targeted,
    classes,
    original,
    adv,
    delta,
    np.abs(flat).max(axis=1),
    np.sqrt((flat.astype(np.float64) ** 2).sum(axis=1)).astype(np.float32),
    np.asarray(jax.nn.softmax(before, axis=-1)),
    np.asarray(jax.nn.softmax(after, axis=-1)),
    float(eps),
    int(steps),
    float(step_size),
  )


def fgsm(model: Model, images, target=None, label=None, eps: float = DEFAULT_EPS) -> AttackResult:
  """Fast gradient sign method: :func:`attack` with ``method="fgsm"``."""
  return attack(model, images, method="fgsm", target=target, label=label, eps=eps)


def pgd(
  model: Model,
  images,
  target=None,
  label=None,
  eps: float = DEFAULT_EPS,
  steps: int = DEFAULT_STEPS,
  step_size: float | None = None,
  random_start: bool = False,
  seed: int = 0,
) -> AttackResult:
  """Projected gradient descent in the L-inf ball: :func:`attack` with ``method="pgd"``."""
  return attack(
    model,
    images,
    method="pgd",
    target=target,
    label=label,
    eps=eps,
    steps=steps,
    step_size=step_size,
    random_start=random_start,
    seed=seed,
  )


def amplification(eps: float) -> float:
  """Display gain for the perturbation: ``0.5 / eps`` maps ``[-eps, eps]`` onto ``[0, 1]``."""
  return 0.5 / eps


def summary(model: Model, result: AttackResult, i: int = 0) -> list[str]:
  """Plain-text lines about image ``i`` of ``result``: the class moved, the norms."""
  spec = model.spec
  c = int(result.classes[i])
  what = "target" if result.targeted else "true class"
  settings = f"eps {result.eps:g}" + (
    f", {result.steps} steps of {result.step_size:.4g}" if result.method == "pgd" else ""
  )
  return [
    f"{result.method} ({'targeted' if result.targeted else 'untargeted'}, {settings})",
    f"{what} {predictions.class_text(spec, c)}: p {result.class_prob_before[i]:.4f} -> "
    f"{result.class_prob_after[i]:.4f}",
    f"perturbation L-inf {result.linf[i]:.4f} ({result.linf[i] * 255:.1f}/255), "
    f"L2 {result.l2[i]:.3f}",
  ]


def figure(
  model: Model, result: AttackResult, i: int = 0, k: int = 3, name: str = ""
) -> Image.Image:
  """Original, amplified perturbation, adversarial image; top-``k`` classes under each."""
  spec = model.spec

  def top(probs):
    idx = np.argsort(-probs)[:k]
    return predictions.describe(spec, probs[idx], idx)

  gain = amplification(result.eps)
  shown = np.clip(0.5 + gain * result.perturbation[i], 0.0, 1.0)
  scale = max(1, 160 // result.original.shape[1])  # mnist's 28 px -> 5x
  items = [
    (result.original[i], [name or "original"] + top(result.probs_before[i])),
    (
      shown,
      [
        f"perturbation x {gain:.3g}",
        "(grey = 0, 0/1 = -/+ eps)",
        f"L-inf {result.linf[i]:.4f}",
        f"L2 {result.l2[i]:.3f}",
      ],
    ),
    (result.adversarial[i], ["adversarial"] + top(result.probs_after[i])),
  ]
  body = figures.panels(items, scale=scale)
  heading = figures.text_block(summary(model, result, i), body.width, title=spec.name)
  return figures.stack([heading, body])
