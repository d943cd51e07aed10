"""When a unit of a continuous sweep is done: its step limit, a quality ratio, or a plateau.

A unit's score is the sweep's own quality score (``featviz._sweep.quality``): its objective on
its un-transformed image, the same number the index records as ``final``. The continuous
scheduler (``featviz._sweep.continuous``) scores every slot after each chunk of steps and asks
:meth:`StopRule.reason` whether the unit is done. Pure functions of a unit's own scores, so a
unit stops at the same step whatever else shares its batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

# Why a unit stopped, as the index records it.
RATIO, PLATEAU, MAX_STEPS, NON_FINITE = "ratio", "plateau", "max_steps", "non_finite"

# Steps over which --until-plateau measures the gain, by default: 64 is where featviz reaches
# lucent's 512-step quality on EfficientNet-Lite0 block10 at Lucid's defaults (issue 20), so a
# unit still gaining then is worth its next 64.
PLATEAU_WINDOW = 64


class StopRuleError(ValueError):
  """A stopping rule out of range, or one that needs what the sweep was not given."""


@dataclasses.dataclass(frozen=True)
class StopRule:
  """When a unit stops, checked every ``every`` steps (the sweep's chunk of steps).

  Attributes:
    max_steps: the most steps any unit runs (``RenderConfig.steps``); always applies.
    until_ratio: stop once the unit's score reaches this many times the best photo's
      (needs a dataset); None: off.
    until_plateau: stop once the score gained less than this fraction of its value over the
      last ``plateau_window`` steps; None: off.
    plateau_window: the steps that gain is measured over (rounded up to a multiple of
      ``every``).
    every: steps between checks: a divisor of ``max_steps``.
  """

  max_steps: int
  every: int
  until_ratio: float | None = None
  until_plateau: float | None = None
  plateau_window: int = PLATEAU_WINDOW

  def __post_init__(self):
    if self.every < 1 or self.max_steps % self.every:
      raise StopRuleError(f"every={self.every} must divide max_steps={self.max_steps}")
    for name in ("until_ratio", "until_plateau"):
      value = getattr(self, name)
      if value is not None and (not math.isfinite(value) or value <= 0):
        raise StopRuleError(f"{name} must be a number above 0, got {value!r}")
    if self.plateau_window < 1:
      raise StopRuleError(f"plateau_window must be at least 1 step, got {self.plateau_window}")

  @property
  def active(self) -> bool:
    """Whether any rule can stop a unit before ``max_steps``."""
    return self.until_ratio is not None or self.until_plateau is not None

  def window_checks(self) -> int:
    """The plateau window in checks (at least one)."""
    return max(1, math.ceil(self.plateau_window / self.every))

  def reason(self, steps: int, scores: Sequence[float], best: float | None) -> str | None:
    """Why the unit stops after ``steps`` steps, or None to go on.

    Args:
      steps: the steps the unit has run.
      scores: its score after each check so far (the last one is after ``steps`` steps).
      best: the best photo's score for the unit (None without a dataset, or where it is
        not positive: the ratio is undefined then, as ``quality.ratio`` says).
    """
    score = scores[-1]
    if self.until_ratio is not None and best is not None and best > 0:
      if score >= self.until_ratio * best:
        return RATIO
    if self.until_plateau is not None:
      k = self.window_checks()
      if len(scores) > k:
        before = scores[-1 - k]
        if score - before < self.until_plateau * max(abs(before), 1e-12):
          return PLATEAU
    if steps >= self.max_steps:
      return MAX_STEPS
    return None

  def to_dict(self) -> dict[str, Any]:
    """What a sweep's manifest records (a resume must stop units the same way)."""
    out: dict[str, Any] = {"until_ratio": self.until_ratio, "until_plateau": self.until_plateau}
    if self.until_plateau is not None:
      out["plateau_window"] = self.plateau_window
    out["every"] = self.every
    return out


def check_interval(max_steps: int, most: int) -> int:
  """The largest divisor of ``max_steps`` that is at most ``most``: the steps between checks
  (every unit's steps are then a multiple of it, and its last check falls on ``max_steps``)."""
  return max(d for d in range(1, min(max_steps, most) + 1) if max_steps % d == 0)
