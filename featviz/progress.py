"""Progress bars that a compiled loop can drive.

The render loop runs every step inside one ``jit``; to show progress it calls
:func:`tick` through ``jax.debug.callback`` every few steps. The callback is a
module-level function, so it never changes the compiled program; it updates
whichever bar :func:`bar` has opened.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from tqdm.auto import tqdm



class _State:
  bar = None


# A module global, not thread-local: XLA runs host callbacks on its own threads.
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
  """Advances the open bar to ``step + 1`` steps done (called from compiled code)."""
  pbar = getattr(_state, "bar", None)
  if pbar is None:
    return
  done = int(step) + 1
  pbar.update(done - pbar.n)
  rate = pbar.format_dict.get("rate")
  if rate:
    pbar.set_postfix_str(f"{rate * pbar.images_per_step:.1f} image-steps/s", refresh=False)
