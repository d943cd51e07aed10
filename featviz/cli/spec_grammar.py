"""The command line's little language for objectives.

A SPEC is a weighted sum of terms::

  SPEC  := TERM (("+" | "-") TERM)*
  TERM  := [NUMBER "*"] ATOM
  ATOM  := LAYER ":" UNITS ["@" X "," Y]     channel, or neuron at column X, row Y
         | "logit:" (UNITS | NAME | "QUOTED NAME")     class logits by index or class name
         | "deepdream:" LAYER
  UNITS := N | A "-" B                         one unit, or units A..B inclusive

Examples: ``mixed4a:476``, ``block10:0-63`` (64 images), ``conv2:5@3,4``,
``logit:207``, ``logit:0-9`` (ten images), ``logit:goldfish``, ``deepdream:block5``,
``0.5*block3:1+0.5*block3:2``, ``logit:1-0.2*logit:7``.

A class NAME matches in any case, with spaces, underscores or neither between its words
(``logit:Goldfish``, ``logit:golden_retriever``, ``logit:golden retriever`` as one shell
argument); `featviz zoo labels MODEL --grep WORD` lists the names. Words of a NAME are joined by
spaces or by ``-`` and may hold ``'`` (``logit:jack-o'-lantern``); a ``-`` before a number or
before ``LAYER:`` starts a subtracted term (``logit:goldfish-0.5*logit:tench``). Quote a name
that holds other characters.

``A-B`` followed by ``*`` reads as unit A minus a weighted term
(``logit:1-0.2*logit:7``). A range renders one image per unit; several ranges in one SPEC must
have the same length (they pair up image by image).
"""

from __future__ import annotations

import re

import numpy as np

from featviz import objectives as obj_lib

GRAMMAR = __doc__.split("::")[1].split("Examples")[0].rstrip()

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# A class name's words: joined by spaces or "-", never across the start of another "LAYER:" term.
_WORD = r"[A-Za-z_][\w']*"
_NAME = rf"{_WORD}(?:(?:[ \t]+|-)(?![A-Za-z_]\w*:){_WORD})*"
_TERM = re.compile(
    rf"""\s*(?P<sign>[+-])?\s*
    (?:(?P<weight>{_NUMBER})\s*\*\s*)?
    (?:
      logit:(?:(?P<lstart>\d+)(?:-(?P<lstop>\d+)(?![\d.*eE]))?
             |(?P<logit>"[^"]+"|'[^']+'|{_NAME}))
     |deepdream:(?P<dream>[A-Za-z_][\w]*)
     |(?P<layer>[A-Za-z_][\w]*):(?P<start>\d+)(?:-(?P<stop>\d+)(?![\d.*eE]))?(?:@(?P<x>\d+),(?P<y>\d+))?
    )\s*""", re.VERBOSE)


class SpecError(ValueError):
  """A SPEC that does not follow the grammar."""


def parse(spec: str) -> obj_lib.Objective:
  """Parses one SPEC into an objective (validated against a model later, by ``bind``)."""
  pos, terms, weights = 0, [], []
  text = spec.strip()
  if not text:
    raise SpecError(f"empty SPEC; the grammar is:\n{GRAMMAR}")
  while pos < len(text):
    m = _TERM.match(text, pos)
    if not m or m.end() == pos or (terms and not m.group("sign")):
      raise SpecError(
          f"cannot parse SPEC {spec!r} at character {pos + 1} ({text[pos:pos + 12]!r}); "
          f"the grammar is:\n{GRAMMAR}")
    weight = float(m.group("weight")) if m.group("weight") else 1.0
    if m.group("sign") == "-":
      weight = -weight
    terms.append(_atom(m))
    weights.append(weight)
    pos = m.end()
  if len(terms) == 1 and weights[0] == 1.0:
    return terms[0]
  return obj_lib.Sum(tuple(terms), tuple(weights))


def _atom(m: re.Match) -> obj_lib.Objective:
  if m.group("logit") is not None:
    return obj_lib.class_logit(m.group("logit").strip("\"'"))
  if m.group("lstart") is not None:
    return obj_lib.class_logit(_units(m.group("lstart"), m.group("lstop")))
  if m.group("dream") is not None:
    return obj_lib.deepdream(m.group("dream"))
  units = _units(m.group("start"), m.group("stop"))
  if m.group("x") is not None:
    return obj_lib.neuron(m.group("layer"), units, int(m.group("x")), int(m.group("y")))
  return obj_lib.channel(m.group("layer"), units)


def _units(start: str, stop: str | None):
  """``"3"`` -> 3; ``"3", "5"`` -> [3, 4, 5]."""
  if stop is None:
    return int(start)
  if int(stop) < int(start):
    raise SpecError(f"empty unit range {start}-{stop}: write the smaller unit first")
  return np.arange(int(start), int(stop) + 1)


def parse_all(specs: list[str]) -> obj_lib.Objective:
  """Several SPECs side by side: each gets its own images (one per unit of a range)."""
  objectives = [parse(s) for s in specs]
  if len(objectives) == 1:
    return objectives[0]
  return obj_lib.stack(objectives)
