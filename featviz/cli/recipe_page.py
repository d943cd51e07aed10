"""``--html PAGE`` of the recipe commands (groups, atlas, attribution): one self-contained page.

The page carries the figure as a ``data:`` PNG and a table of facts, with the gallery's
stylesheet (:data:`featviz.gallery.assets.CSS`) inline and every text through the gallery's
:func:`featviz.gallery.pages.esc`: it opens from ``file://`` and moves as one file. It is not
part of a sweep's gallery site (that indexes sweeps' units; a recipe has none).
"""

from __future__ import annotations

import base64
import pathlib
from collections.abc import Iterable

from featviz import images as images_lib


def page(title: str, figure, facts: Iterable[tuple[str, object]], note: str = "") -> str:
  """The HTML of one recipe's page: title, facts, the figure (a PIL image or array)."""
  from featviz.gallery.assets import CSS
  from featviz.gallery.pages import esc

  if not hasattr(figure, "save"):
    figure = images_lib.encode_png(figure)
  else:
    import io

    buf = io.BytesIO()
    figure.save(buf, format="PNG")
    figure = buf.getvalue()
  data = base64.b64encode(figure).decode("ascii")
  rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
  return (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
    f"<main><h1>{esc(title)}</h1>"
    + (f"<p>{esc(note)}</p>" if note else "")
    + f'<table class="facts">{rows}</table>'
    f'<p><img src="data:image/png;base64,{data}" alt="{esc(title)}" '
    'style="max-width:100%"></p></main></body></html>\n'
  )


def write(path: pathlib.Path, text: str) -> None:
  """Writes the page atomically (``featviz.images.atomic_write``)."""
  with images_lib.atomic_write(path, "w") as f:
    f.write(text)
