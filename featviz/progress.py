"""Progress bars for loops of compiled programs.

The render loop runs its steps as compiled chunks called from Python and calls
:func:`tick` after each chunk (never from compiled code: a host callback would
keep the program out of JAX's persistent compilation cache, and showing a bar
or not would be two programs). :func:`tick` updates whichever bar :func:`bar`
has opened, and shows image-steps/s beside the steps/s.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from tqdm.auto import tqdm



class _State:
  bar = None


# A module global, not thread-local: a bar opened on one thread may be advanced on another.
_state = _State()


@contextlib.contextmanager
def bar(total: int, desc: str, unit: str = "step", enabled: bool = True,
        images_per_step: int = 1) -> Iterator[tqdm | None]:
  """Opens a bar that :func:`tick` advances; yields None when disabled."""
  if not enabled:
    yield None
    return
  pbar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
              leave=True)
  pbar.images_per_step = images_per_step
  previous = getattr(_state, "bar", None)
  _state.bar = pbar
  try:
    yield pbar
  finally:
    _state.bar = previous
    pbar.close()


def tick(step) -> None:
  """Advances the open bar to ``step + 1`` steps done."""
  pbar = getattr(_state, "bar", None)
  if pbar is None:
    return
  done = int(step) + 1
  pbar.update(done - pbar.n)
  rate = pbar.format_dict.get("rate")
  if rate:
    pbar.set_postfix_str(f"{rate * pbar.images_per_step:.1f} image-steps/s", refresh=False)
