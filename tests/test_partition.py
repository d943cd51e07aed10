"""Partitioning as pure functions: chunks anchored at unit 0, shares per process, padding."""

import itertools
import random

import pytest

from featviz._sweep import partition
from featviz.model import UnitOutOfRangeError

CHANNELS = {"a": 10, "b": 3, "c": 33}


@pytest.mark.parametrize(
  "text, expected",
  [("0-7", (0, 8)), ("8", (8, 9)), ("4-", (4, -1)), ("3-3", (3, 4)), (" 2-5 ", (2, 6))],
)
def test_parse_units_is_inclusive_as_a_spec(text, expected):
  assert partition.parse_units(text) == expected


@pytest.mark.parametrize("text", ["6-2", "-1", "-1-3", "a-b", "1-2-3", "", "x"])
def test_parse_units_rejects(text):
  with pytest.raises(ValueError, match="units range"):
    partition.parse_units(text)


def test_parse_units_refuses_python_ranges_and_spells_the_inclusive_one():
  with pytest.raises(ValueError, match="inclusive A-B in every featviz command.*write 0-7"):
    partition.parse_units("0:8")
  with pytest.raises(ValueError, match="inclusive A-B"):
    partition.parse_units(":8")


def test_layer_units_clip_to_each_layer():
  got = partition.layer_units(CHANNELS, ["a", "c"], (2, 12))
  assert got == {"a": tuple(range(2, 10)), "c": tuple(range(2, 12))}
  assert partition.layer_units(CHANNELS, ["b"], None) == {"b": (0, 1, 2)}
  assert partition.layer_units(CHANNELS, ["b"], (1, -1)) == {"b": (1, 2)}


def test_layer_units_start_past_a_layer_is_an_error():
  with pytest.raises(UnitOutOfRangeError, match="layer 'b' .3 channels, units 0-2"):
    partition.layer_units(CHANNELS, ["a", "b"], (5, 8))


def test_chunks_are_anchored_at_unit_zero():
  work = partition.chunks({"a": range(5, 10), "b": (0, 1, 2)}, 4)
  assert [(c.layer, c.index, c.units) for c in work] == [
    ("a", 1, (5, 6, 7)),
    ("a", 2, (8, 9)),
    ("b", 0, (0, 1, 2)),
  ]
  assert work[1].first == 8


def test_a_unit_sits_in_the_same_slot_whatever_the_range():
  """The reason for anchoring: a unit's image depends only on its own index."""
  rng = random.Random(0)
  for _ in range(200):
    slots = rng.randint(1, 9)
    start = rng.randint(0, 20)
    wanted = {"c": range(start, rng.randint(start + 1, 33))}
    for chunk in partition.chunks(wanted, slots):
      units, keep = partition.slot_units(chunk, chunk.units, partition.padded_batch(slots, 4))
      for j, (u, k) in enumerate(zip(units, keep)):
        if k:
          assert j == u % slots


def test_slot_units_pads_after_each_kept_unit_appears_first():
  """A kept unit must be the first image of its label (its key is then batch-independent)."""
  chunk = partition.Chunk("a", 1, 4, (4, 5, 6, 7))
  units, keep = partition.slot_units(chunk, [5, 7], 8)
  assert units == [4, 5, 6, 7, 5, 5, 5, 5]
  assert keep == [False, True, False, True, False, False, False, False]
  for j, (u, k) in enumerate(zip(units, keep)):
    if k:
      assert units.index(u) == j
  with pytest.raises(ValueError, match="nothing to render"):
    partition.slot_units(chunk, [], 4)


@pytest.mark.parametrize(
  "slots, devices, expected", [(8, 1, 8), (8, 4, 8), (6, 4, 8), (1, 8, 8), (9, 8, 16), (32, 3, 33)]
)
def test_padded_batch(slots, devices, expected):
  assert partition.padded_batch(slots, devices) == expected


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16])
def test_process_shares_cover_everything_once_and_balance(count):
  work = partition.chunks(partition.layer_units(CHANNELS, list(CHANNELS), None), 4)
  shares = [partition.for_process(work, i, count) for i in range(count)]
  flat = [c for share in shares for c in share]
  assert sorted(flat, key=work.index) == work  # every chunk, once
  sizes = [len(s) for s in shares]
  assert max(sizes) - min(sizes) <= 1
  assert shares == [partition.for_process(work, i, count) for i in range(count)]  # agreed


def test_processes_resuming_a_half_done_store_never_overlap():
  """Each process filters its own share by what is done, so shares stay disjoint."""
  wanted = partition.layer_units(CHANNELS, list(CHANNELS), None)
  work = partition.chunks(wanted, 4)
  every = {(layer, u) for layer, units in wanted.items() for u in units}
  rng = random.Random(1)
  for count in (2, 3, 7):
    done = {x for x in every if rng.random() < 0.4}
    todo = [
      [
        (c.layer, u)
        for c in partition.for_process(work, i, count)
        for u in c.units
        if (c.layer, u) not in done
      ]
      for i in range(count)
    ]
    flat = list(itertools.chain.from_iterable(todo))
    assert len(flat) == len(set(flat)) and set(flat) == every - done


@pytest.mark.parametrize("index, count", [(0, 0), (2, 2), (-1, 3)])
def test_for_process_rejects_bad_indices(index, count):
  with pytest.raises(ValueError, match="process"):
    partition.for_process([], index, count)
