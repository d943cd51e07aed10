"""Class names as people type them: any case, spaces or underscores, with suggestions.

A model's ``labels`` are its class names in logit order (``ModelSpec.labels``). People type
them as ``Goldfish``, ``golden_retriever``, ``"golden retriever"`` or ``flat coated retriever``
(for ``flat-coated retriever``); :func:`resolve` accepts all of these, and when nothing matches
it raises :class:`featviz.model.UnknownLabelError` naming the closest names (difflib).

Matching compares a *key*: the name case-folded with everything but letters and digits
removed, so ``"Golden_Retriever"``, ``"golden retriever"`` and ``"goldenretriever"`` share the
key ``"goldenretriever"``. An exact spelling wins over a key match, so a name that only differs
from another by case or punctuation can still be chosen exactly. Two classes with one name
(ImageNet has two ``crane``\\ s and two ``maillot``\\ s) are ambiguous: pass the index.

  >>> labels = ("tench", "goldfish", "golden retriever", "flat-coated retriever")
  >>> resolve(labels, "Golden_Retriever")
  2
  >>> search(labels, "RETRIEVER")
  [2, 3]
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from featviz.model import UnknownLabelError

SUGGESTIONS = 5  # closest names an error lists
_CUTOFF = 0.6  # difflib's default similarity threshold for "close"


def key(name: str) -> str:
  """The form names are compared in: case-folded letters and digits only.

  >>> key("Jack-o'-Lantern"), key("golden_retriever")
  ('jackolantern', 'goldenretriever')
  """
  return "".join(ch for ch in name.casefold() if ch.isalnum())


def search(labels: Sequence[str], word: str) -> list[int]:
  """Indices of the names that contain ``word`` (compared as keys), in logit order.

  An empty ``word`` (or one of punctuation only) matches every name.
  """
  needle = key(word)
  return [i for i, name in enumerate(labels) if needle in key(name)]


def suggest(labels: Sequence[str], query: str, n: int = SUGGESTIONS) -> list[int]:
  """Up to ``n`` indices of the names closest to ``query``, best first.

  Names that contain the query come first (``retriever`` -> every retriever), then
  difflib's close matches of the keys (``goldfsh`` -> ``goldfish``).
  """
  q = key(query)
  if not q:
    return []
  keys = [key(name) for name in labels]
  found = [i for i, k in enumerate(keys) if q in k]
  by_key: dict[str, list[int]] = {}
  for i, k in enumerate(keys):
    by_key.setdefault(k, []).append(i)
  for k in difflib.get_close_matches(q, list(by_key), n=n, cutoff=_CUTOFF):
    found += [i for i in by_key[k] if i not in found]
  return found[:n]


def resolve(
  labels: Sequence[str], query: str, *, model: str | None = None, num_classes: int | None = None
) -> int:
  """The logit index of class name ``query``.

  Args:
    labels: class names in logit order.
    query: a name in any case, with spaces, underscores or neither between its words.
    model: the model's name, for messages (and the ``featviz zoo labels`` hint).
    num_classes: the number of logits, for messages (default ``len(labels)``).

  Returns:
    The index ``i`` with ``labels[i]`` spelled exactly as ``query``, or else the one whose
    :func:`key` equals the query's.

  Raises:
    UnknownLabelError: no name matches (the message and the error's ``suggestions``
      attribute give the closest names), or several do (``suggestions`` lists them all).
  """
  n = len(labels) if num_classes is None else num_classes
  where = "" if model is None else f" for {model}"
  exact = [i for i, name in enumerate(labels) if name == query]
  matches = exact or [i for i, name in enumerate(labels) if key(name) == key(query)]
  if len(matches) == 1:
    return matches[0]
  if not labels:
    raise _error(f"no class names{where}; pass a class index 0-{n - 1}", [])
  if matches:
    choices = ", ".join(f"{i} {labels[i]!r}" for i in matches)
    raise _error(
      f"class name {query!r} is ambiguous{where}: it names {choices}; pass the index instead",
      matches,
    )
  close = suggest(labels, query)
  hint = f"; did you mean {', '.join(repr(labels[i]) for i in close)}?" if close else "."
  listing = "" if model is None else f" (`featviz zoo labels {model} --grep WORD` lists them)"
  raise _error(
    f"unknown class name {query!r}{where}{hint} Pass an index 0-{n - 1} or a class name{listing}",
    close,
  )


def _error(message: str, indices: list[int]) -> UnknownLabelError:
  error = UnknownLabelError(message)
  error.suggestions = indices
  return error
