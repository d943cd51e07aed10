"""The command line's little language for objectives.

A SPEC is a weighted sum of terms::

  SPEC  := TERM (("+" | "-") TERM)*
  TERM  := [NUMBER "*"] ATOM
  ATOM  := LAYER ":" UNITS ["@" X "," Y]     channel, or neuron at column X, row Y
         | LAYER ":" UNITS "@" T               neuron at token T of a (B, T, C) layer
         | "logit:" (UNITS | NAME | "QUOTED NAME")     class logits by index or class name
         | "deepdream:" LAYER
  UNITS := N | A "-" B                         one unit, or units A..B inclusive
  LAYER := NAME (("/" | ".") NAME)*            block10, Block_2/Conv_1 (flax), layer3.5

Examples: ``mixed4a:476``, ``block10:0-63`` (64 images), ``conv2:5@3,4``, ``block1:5@0``
(a ViT block's channel 5 at token 0, the CLS token),
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

import math
import re

from featviz import objectives as obj_lib

GRAMMAR = __doc__.split("::")[1].split("Examples")[0].rstrip()

# Limits that turn a typo or a hostile argument into a message instead of minutes of work. Each
# term is traced into the compiled loop on its own, so compile time grows with the terms (the
# red team measured 3 s for 50 mnist_cnn terms, 8 s for 200, over 600 s for 3000): 64 terms is
# more than any hand-written objective. 2048 characters is 64 terms of 32 characters
# (``0.125*mixed4a_3x3_bottleneck:0-63`` is 33), and under Python's 4300-digit limit on int(), so
# every number of a SPEC that passes converts. A range renders one image per unit in one batch:
# 4096 is over 3 times the widest layer of the zoo (1280 channels); `featviz sweep` renders more.
MAX_SPEC_CHARS = 2048
MAX_TERMS = 64
MAX_RANGE = 4096

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# A layer: a name, or a module path of names joined by "/" (flax: ``Block_2/Conv_1``) or "."
# (torchvision: ``layer3.5``, ``features.29``, ``encoder.layers.encoder_layer_5``).
_LAYER = r"[A-Za-z_]\w*(?:[./]\w+)*"
# A class name's words: joined by spaces or "-", never across the start of another "LAYER:" term.
_WORD = r"[A-Za-z_][\w']*"
_NAME = rf"{_WORD}(?:(?:[ \t]+|-)(?!{_LAYER}:){_WORD})*"
_TERM = re.compile(
  rf"""\s*(?P<sign>[+-])?\s*
    (?:(?P<weight>{_NUMBER})\s*\*\s*)?
    (?:
      logit:(?:(?P<lstart>\d+)(?:-(?P<lstop>\d+)(?![\d.*eE]))?
             |(?P<logit>"[^"]+"|'[^']+'|{_NAME}))
     |deepdream:(?P<dream>{_LAYER})
     |(?P<layer>{_LAYER}):(?P<start>\d+)(?:-(?P<stop>\d+)(?![\d.*eE]))?(?:@(?P<x>\d+)(?:,(?P<y>\d+))?)?
    )\s*""",
  re.VERBOSE,
)


# How far a term that does not parse got: the error points past its sign, weight and "LAYER:".
_HEAD = re.compile(
  rf"\s*[+-]?\s*(?:{_NUMBER}\s*\*\s*)?(?:(?:logit|deepdream|{_LAYER}):(?:\d+-?)?)?"
)


class SpecError(ValueError):
  """A SPEC that does not follow the grammar."""


def parse(spec: str) -> obj_lib.Objective:
  """Parses one SPEC into an objective (validated against a model later, by ``bind``).

  Raises:
    SpecError: for any text that is not a SPEC of at most ``MAX_SPEC_CHARS`` characters and
      ``MAX_TERMS`` terms, with finite weights, ranges of at most ``MAX_RANGE`` units, and
      ranges of one length; the message says where and why.
  """
  if len(spec) > MAX_SPEC_CHARS:
    raise SpecError(
      f"SPEC of {len(spec)} characters: at most {MAX_SPEC_CHARS} (and "
      f"{MAX_TERMS} terms); give several SPECs, or use `featviz sweep`"
    )
  text = spec.strip()
  offset = len(spec) - len(spec.lstrip())  # character numbers count in what the user wrote
  if not text:
    raise SpecError(f"empty SPEC; the grammar is:\n{GRAMMAR}")
  pos, terms, weights, sources = 0, [], [], []
  while pos < len(text):
    m = _TERM.match(text, pos)
    if not m or m.end() == pos or (terms and not m.group("sign")):
      where = (
        pos + len(text[pos:]) - len(text[pos:].lstrip()) if m else _HEAD.match(text, pos).end()
      )
      why = "terms are joined by + or -" if m and m.end() > pos else repr(text[where : where + 12])
      raise SpecError(
        f"cannot parse SPEC {spec!r} at character {offset + where + 1} ({why}); "
        f"the grammar is:\n{GRAMMAR}"
      )
    source = m.group(0).strip()
    if len(terms) == MAX_TERMS:
      raise SpecError(
        f"SPEC {spec[:40]!r}... has more than {MAX_TERMS} terms; a SPEC has at "
        f"most {MAX_TERMS} terms: give several SPECs"
      )
    weight = float(m.group("weight")) if m.group("weight") else 1.0
    if not math.isfinite(weight):
      raise SpecError(
        f"the weight {m.group('weight')} of {source!r} is not a finite number; "
        "weights are finite numbers such as 0.5 or 2e-3"
      )
    if m.group("sign") == "-":
      weight = -weight
    try:
      terms.append(_atom(m))
    except SpecError:
      raise
    except ValueError as e:  # e.g. a unit past 64 bits, from the objective's constructor
      raise SpecError(f"{source!r}: {e}") from None
    weights.append(weight)
    sources.append(source.lstrip("+-").strip())
    pos = m.end()
  ranges = [(src, t.batch) for src, t in zip(sources, terms) if t.batch is not None]
  for src, n in ranges[1:]:
    if n != ranges[0][1]:
      raise SpecError(
        f"{ranges[0][0]} ({ranges[0][1]} units) and {src} ({n} units) render different "
        "numbers of images: ranges in one SPEC pair up image by image, so give them the same "
        "length, or put them in separate SPECs (each gets its own images)"
      )
  if len(terms) == 1 and weights[0] == 1.0:
    return terms[0]
  return obj_lib.Sum(tuple(terms), tuple(weights))


def _atom(m: re.Match) -> obj_lib.Objective:
  if m.group("logit") is not None:
    name = m.group("logit")
    quoted = name[0] in "\"'" and name[-1] == name[0] and len(name) > 1
    return obj_lib.class_logit(name[1:-1] if quoted else name)  # a NAME may end in "'"
  if m.group("lstart") is not None:
    return obj_lib.class_logit(_units(m.group("lstart"), m.group("lstop")))
  if m.group("dream") is not None:
    return obj_lib.deepdream(m.group("dream"))
  units = _units(m.group("start"), m.group("stop"))
  if m.group("x") is not None and m.group("y") is None:
    return obj_lib.neuron(m.group("layer"), units, token=int(m.group("x")))
  if m.group("x") is not None:
    return obj_lib.neuron(m.group("layer"), units, int(m.group("x")), int(m.group("y")))
  return obj_lib.channel(m.group("layer"), units)


def _units(start: str, stop: str | None) -> int | list[int]:
  """``"3"`` -> 3; ``"3", "5"`` -> [3, 4, 5] (at most ``MAX_RANGE`` units)."""
  if stop is None:
    return int(start)
  a, b = int(start), int(stop)
  if b < a:
    raise SpecError(f"empty unit range {start}-{stop}: write the smaller unit first")
  if b - a + 1 > MAX_RANGE:
    raise SpecError(
      f"unit range {start}-{stop} has {b - a + 1} units: a range renders one "
      f"image per unit, at most {MAX_RANGE} in one SPEC; split it, or use "
      "`featviz sweep`"
    )
  return list(range(a, b + 1))


def parse_all(specs: list[str]) -> obj_lib.Objective:
  """Several SPECs side by side: each gets its own images (one per unit of a range)."""
  objectives = [parse(s) for s in specs]
  if len(objectives) == 1:
    return objectives[0]
  return obj_lib.stack(objectives)
