"""Property tests of the SPEC grammar (issue 17): every SPEC the grammar describes parses, its
labels say what was written and parse back to themselves, and any text at all either parses or
raises SpecError, never another exception, and quickly.

Budget: parsing is pure Python on at most ``MAX_SPEC_CHARS`` characters (well under 1 ms); the
time goes into drawing the examples, about 10 ms each, so 300 a test keep this file near 10 s on
a 2-core CPU (the CLI file takes most of the rest of the suite's 60 s). The deadline, 500 ms, is
hundreds of times a parse: it catches super-linear work (a regex that backtracks, a range
expanded before its length is checked), not a slow machine; hypothesis reruns an example before
it reports it as too slow. ``database=None``: no ``.hypothesis/`` folder in the working tree, and
each run explores afresh (a failure found once is pinned with ``@example``).
"""

import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from featviz.cli import spec_grammar
from featviz.objectives import Objective

SETTINGS = settings(
  max_examples=300, deadline=500, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Layer names as the grammar reads them ([A-Za-z_]\w*), but not "logit" or "deepdream", whose
# "NAME:" starts the other two kinds of atom.
# Names, flax module paths (Block_0/Conv_1) and torchvision module paths (layer3.5, features.29).
LAYERS = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,11}([./][A-Za-z0-9_]{1,4}){0,2}\Z").filter(
  lambda s: s not in ("logit", "deepdream")
)
UNIT = st.integers(0, 2**31 - 1)
# Class names: words of letters joined by one space or "-" (the grammar's NAME).
WORD = st.from_regex(r"\A[A-Za-z][a-z']{0,7}\Z")
NAME = st.lists(WORD, min_size=1, max_size=3).flatmap(
  lambda words: st.lists(
    st.sampled_from([" ", "-"]), min_size=len(words) - 1, max_size=len(words) - 1
  ).map(lambda seps: words[0] + "".join(s + w for s, w in zip(seps, words[1:])))
)
# Weights as a user writes them: a mantissa and maybe an exponent ("0.5", "3", "2e-3", ".25").
WEIGHT = st.one_of(
  st.integers(0, 10**6).map(str),
  st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
  st.integers(1, 999).map(lambda n: f".{n}"),
  st.tuples(st.integers(1, 99), st.integers(-30, 30)).map(lambda t: f"{t[0]}e{t[1]}"),
)


@st.composite
def atoms(draw, length):
  """``(source text, labels of its images)`` of one atom; a range spans ``length`` units."""
  start = draw(st.integers(0, 2**31 - length))
  span = draw(st.booleans()) and length > 1
  units = list(range(start, start + length)) if span else [start] * length
  text = f"{start}-{start + length - 1}" if span else str(start)
  kind = draw(st.sampled_from(["channel", "neuron", "logit", "name", "deepdream"]))
  if kind == "channel":
    layer = draw(LAYERS)
    return f"{layer}:{text}", [f"{layer}:{u}" for u in units], span
  if kind == "neuron":
    layer, x, y = draw(LAYERS), draw(UNIT), draw(UNIT)
    return f"{layer}:{text}@{x},{y}", [f"{layer}:{u}@{x},{y}" for u in units], span
  if kind == "logit":
    return f"logit:{text}", [f"logit:{u}" for u in units], span
  if kind == "name":
    name = draw(NAME)
    return f"logit:{name}", [f"logit:{name}"] * length, False
  layer = draw(LAYERS)
  return f"deepdream:{layer}", [f"deepdream:{layer}"] * length, False


@st.composite
def specs(draw):
  """``(SPEC, its images' labels)``: up to 6 terms, with ranges of one length."""
  length = draw(st.integers(1, 5))
  n = draw(st.integers(1, 6))
  text, labels, any_range = "", [""] * length, False
  for i in range(n):
    source, term_labels, span = draw(atoms(length))
    any_range |= span
    negative = draw(st.booleans()) if i else draw(st.booleans()) and draw(st.booleans())
    weight = draw(st.none() | WEIGHT)
    value = 1.0 if weight is None else float(weight)
    space = draw(st.sampled_from(["", " "]))
    text += ("-" if negative else "+" if i else "") + space
    text += ("" if weight is None else f"{weight}*") + source + space
    if n == 1 and not negative and value == 1.0:
      labels = term_labels  # one plain term is the atom itself
      continue
    sign = "-" if negative and value != 0 else "+"
    mag = "" if value == 1.0 else f"{value:g}*"
    if i == 0:  # a label's first term has no sign unless negative; the others " + " or " - "
      labels = [("-" if sign == "-" else "") + mag + t for t in term_labels]
    else:
      labels = [f"{lab} {sign} {mag}{t}" for lab, t in zip(labels, term_labels)]
  return text, labels if any_range else labels[:1]


@SETTINGS
@given(specs())
@example(("logit:A'", ["logit:A'"]))  # found by this test: a NAME's last "'" was stripped
def test_any_valid_spec_parses_and_its_labels_round_trip(case):
  text, want = case
  objective = spec_grammar.parse(text)
  assert isinstance(objective, Objective)
  batch = objective.batch or 1
  assert batch == len(want)
  labels = objective.labels(batch)
  assert labels == want
  for label in labels:  # a label is itself a SPEC, of one image, that labels itself the same
    again = spec_grammar.parse(label)
    assert again.batch is None and again.labels(1) == [label]


GRAMMAR_CHARS = list("ab_xyz019:-+*@,.eE \t'\"") + ["logit:", "deepdream:", "conv1:", "1e999"]


def _parses_or_spec_error(text):
  try:
    objective = spec_grammar.parse(text)
  except spec_grammar.SpecError as e:
    assert str(e)  # the message says what is wrong
    return None
  assert isinstance(objective, Objective)
  batch = objective.batch
  assert batch is None or 1 <= batch <= spec_grammar.MAX_RANGE
  for w in getattr(objective, "weights", ()):
    assert math.isfinite(w)
  return objective


@SETTINGS
@given(st.text(max_size=80) | st.lists(st.sampled_from(GRAMMAR_CHARS), max_size=40).map("".join))
def test_any_text_parses_or_raises_spec_error(text):
  _parses_or_spec_error(text)


@SETTINGS
@given(specs(), st.data())
def test_a_valid_spec_with_one_edit_parses_or_raises_spec_error(case, data):
  text = case[0]
  i = data.draw(st.integers(0, len(text)))
  edit = data.draw(st.sampled_from(["insert", "delete", "replace"]))
  char = data.draw(st.sampled_from(GRAMMAR_CHARS + ["9" * 30, "-" * 3, "\x00", "é"]))
  if edit == "insert":
    text = text[:i] + char + text[i:]
  elif edit == "delete":
    text = text[:i] + text[i + 1 :]
  else:
    text = text[:i] + char + text[i + 1 :]
  _parses_or_spec_error(text)


@settings(max_examples=20, deadline=2000, database=None)  # a few kB each: fewer, longer
@given(
  st.integers(spec_grammar.MAX_SPEC_CHARS + 1, 20 * spec_grammar.MAX_SPEC_CHARS),
  st.sampled_from(["conv1:1+", "1", "logit:a b ", "x"]),
)
def test_long_text_is_refused_by_length_at_once(n, unit):
  text = (unit * (n // len(unit) + 1))[:n]
  try:
    spec_grammar.parse(text)
  except spec_grammar.SpecError as e:
    assert f"at most {spec_grammar.MAX_SPEC_CHARS}" in str(e)
  else:
    raise AssertionError("a SPEC over the length limit parsed")
