"""Progress bars for loops of compiled programs.

The render loop runs its steps as compiled chunks called from Python and calls :func:`advance`
with its bar after each chunk (never from compiled code: a host callback would keep the program
out of JAX's persistent compilation cache, and showing a bar or not would be two programs). The
render's bar shows image-steps/s beside the steps/s. The analysis passes over a folder of photos
(``featviz.analysis.dataset_examples.scan_layer``, ``feature_space.features``, the sweep's
dataset scores) count photos (``unit="photo"``): tqdm's own rate is then photos/s.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from tqdm.auto import tqdm


@contextlib.contextmanager
def bar(
  total: int,
  desc: str,
  unit: str = "step",
  enabled: bool = True,
  images_per_step: int | None = None,
) -> Iterator[tqdm | None]:
  """A tqdm bar on stderr for :func:`advance`; yields None when disabled.

  ``images_per_step``: the render's batch, shown as image-steps/s beside the rate; None: the
  rate alone (photos/s, octaves/s).
  """
  if not enabled:
    yield None
    return
  pbar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True)
  pbar.images_per_step = images_per_step
  try:
    yield pbar
  finally:
    pbar.close()


def advance(pbar: tqdm | None, done: int) -> None:
  """Moves ``pbar`` (from :func:`bar`; None: nothing) to ``done`` steps done."""
  if pbar is None:
    return
  pbar.update(int(done) - pbar.n)
  rate = pbar.format_dict.get("rate")
  if rate and pbar.images_per_step:
    pbar.set_postfix_str(f"{rate * pbar.images_per_step:.1f} image-steps/s", refresh=False)
