"""Who renders what: units into chunks, chunks into processes, chunks onto devices.

Pure functions (no JAX), so the multi-host logic is tested on one host.

**Chunks are anchored at unit 0.** With ``B`` units per chunk, chunk ``c`` of a
layer holds units ``cB .. cB + B - 1`` and unit ``u`` always sits in slot
``u % B``, whatever ``--units`` range asked for it. A render of unit ``u``
therefore depends only on the settings and on ``u``: resuming, widening the
range, or changing the number of processes or devices gives the same images.
Slots whose unit is not wanted (outside the range, already rendered, or past the
layer's channel count) are *padding*: they repeat a wanted unit and their
results are dropped.

**Processes split the full list of chunks, round-robin** (chunk ``i`` of the
sweep goes to process ``i % count``), not the list of chunks still missing. So
every process agrees on the split without talking to the others, even while
they write the store, and no two processes ever render the same chunk.

**Devices split the batch.** A chunk of ``B`` slots runs as one batch of
:func:`padded_batch` ``(B, devices)`` images: ``B`` rounded up to a multiple of
the device count; the extra slots are padding too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from featviz.model import UnitOutOfRangeError


@dataclasses.dataclass(frozen=True)
class Chunk:
  """One compiled-loop call: ``slots`` units of ``layer`` starting at ``index * slots``.

  Attributes:
    layer: the layer.
    index: chunk number within the layer (units ``index * slots ...``).
    slots: units per chunk (the sweep's ``batch``).
    units: the wanted units of this chunk, ascending (a subset of its slots).
  """

  layer: str
  index: int
  slots: int
  units: tuple[int, ...]

  @property
  def first(self) -> int:
    """The unit in slot 0."""
    return self.index * self.slots


def parse_units(text: str) -> tuple[int, int]:
  """A channel range as every featviz command writes it -> ``(start, stop)``, half-open.

  Ranges are inclusive, as in the SPEC grammar (``block10:0-7``): ``"0-7"`` is units 0 to 7,
  ``(0, 8)``; ``"5"`` is unit 5 alone; ``"4-"`` runs to each layer's last channel, returned
  with ``stop = -1``. Python's ``"A:B"`` is refused with the inclusive spelling to use instead,
  so that no command reads a range differently from another.
  """
  text = text.strip()
  if ":" in text:
    a, _, b = text.partition(":")
    hint = ""
    if a.strip().isdigit() and b.strip().isdigit() and int(b) > int(a):
      hint = f"; for Python's {a.strip()}:{b.strip()} write {int(a)}-{int(b) - 1}"
    raise ValueError(
      f"units range {text!r}: ranges are inclusive A-B in every featviz command, as in a "
      f"SPEC (0-7 is units 0 to 7){hint}"
    )
  a, dash, b = text.partition("-")
  try:
    start = int(a)
    stop = (int(b) + 1 if b.strip() else -1) if dash else start + 1
  except ValueError:
    raise ValueError(
      f"units range {text!r} must be N, A-B (inclusive, e.g. 0-7) or A- (to the last channel)"
    ) from None
  if start < 0 or (stop != -1 and stop <= start):
    raise ValueError(f"units range {text!r} is empty or negative (write A-B with A <= B)")
  return start, stop


def layer_units(
  channels: Mapping[str, int], layers: Sequence[str], units: tuple[int, int] | None
) -> dict[str, tuple[int, ...]]:
  """The units to render per layer: ``range(A, min(B, channels))`` of each layer.

  Raises :class:`featviz.model.UnitOutOfRangeError` when ``A`` is past a layer's
  last channel: a range that selects nothing is a mistake, not a no-op.
  """
  out = {}
  for layer in layers:
    n = channels[layer]
    start, stop = units if units is not None else (0, -1)
    stop = n if stop == -1 else min(stop, n)
    if start >= n:
      raise UnitOutOfRangeError(
        f"units {start}: start past the last channel of layer {layer!r} "
        f"({n} channels, units 0-{n - 1})"
      )
    out[layer] = tuple(range(start, stop))
  return out


def chunks(wanted: Mapping[str, Sequence[int]], slots: int) -> list[Chunk]:
  """Every chunk that holds a wanted unit, layer by layer in the order given."""
  if slots < 1:
    raise ValueError(f"batch must be at least 1, got {slots}")
  out = []
  for layer, units in wanted.items():
    by_chunk: dict[int, list[int]] = {}
    for u in sorted(set(units)):
      by_chunk.setdefault(u // slots, []).append(u)
    out.extend(Chunk(layer, c, slots, tuple(us)) for c, us in sorted(by_chunk.items()))
  return out


def for_process(work: Sequence[Chunk], index: int, count: int) -> list[Chunk]:
  """Process ``index`` of ``count``'s share: chunks ``index, index + count, ...``.

  Round-robin over the whole sweep, so each process gets chunks of every layer
  (deeper layers cost more per chunk) and the shares differ by at most one chunk.
  """
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"process {index} of {count}: need 0 <= index < count")
  return list(work[index::count])


def padded_batch(slots: int, devices: int) -> int:
  """``slots`` rounded up to a multiple of ``devices``, so each device gets as many images."""
  return math.ceil(slots / devices) * devices


def slot_units(chunk: Chunk, todo: Sequence[int], batch: int) -> tuple[list[int], list[bool]]:
  """The unit of every slot of a ``batch``-image render of ``chunk``, and which slots are kept.

  Slot ``j`` holds unit ``chunk.first + j``; it is kept when that unit is in ``todo``. A slot
  whose unit is done already (or not wanted) renders it again, unkept; a slot past the
  chunk's last wanted unit (the end of the layer, padding to a multiple of the devices)
  repeats ``todo[0]``, whose own slot comes earlier. Either way a kept unit is the
  first image of its label in the batch, so its key, and its image, are those it gets in any
  other batch (``featviz._loop.keys``).
  """
  if not todo:
    raise ValueError(f"chunk {chunk.index} of {chunk.layer!r} has nothing to render")
  todo_set = set(todo)
  units, keep = [], []
  for j in range(batch):
    u = chunk.first + j
    inside = u <= chunk.units[-1]  # a channel of the layer: at most its last wanted unit
    units.append(u if inside else todo[0])
    keep.append(inside and u in todo_set)
  return units, keep
