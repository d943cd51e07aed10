"""The gallery's HTML: the index, layer and unit pages, and the search box's unit list.

Pages are strings made here and written by ``featviz.gallery``; they link to each other
by relative paths (:func:`_rel`), so a site opens from ``file://`` and moves as a folder.
Every piece of text in a page goes through :func:`esc`, and the JSON in a script through
:func:`_script_json`. Pages carry no timestamps: a page that did not change is byte for
byte the same, which is what lets a re-run write nothing.

Site-relative paths of the pages::

  index.html                      every model and its layers (:func:`index_html`)
  <model>/<layer>/index.html      every unit of the layer (:func:`layer_html`)
  <model>/<layer>/<unit>.html     one unit (:func:`unit_html`)
  assets/units.js                 which units exist, for the search box (:func:`units_js`)
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from featviz._sweep import quality as sweep_quality
from featviz.gallery.read import STOP_REASONS, Layer, Sweep


def esc(value: Any) -> str:
  """Text (or a number) made safe for HTML content and quoted attribute values."""
  return html.escape(str(value), quote=True)


def _num(value: Any, spec: str = ".4g") -> str:
  return "–" if value is None else format(value, spec)


def _script_json(obj: Any) -> str:
  """JSON that is safe inside a ``<script>``: no ``<`` that could close it."""
  return json.dumps(obj, sort_keys=True).replace("<", "\\u003c")  # the rest is ASCII


def unit_page(sweep: Sweep, layer: Layer, unit: int) -> str:
  """The site-relative path of a unit's page."""
  return f"{sweep.slug}/{layer.dir}/{unit:04d}.html"


def layer_page(sweep: Sweep, layer: Layer) -> str:
  """The site-relative path of a layer's page."""
  return f"{sweep.slug}/{layer.dir}/index.html"


def _rel(target: str, page: str) -> str:
  """The link from site-relative ``page`` to site-relative ``target``."""
  return os.path.relpath(target, os.path.dirname(page) or ".").replace(os.sep, "/")


def _shell(
  page: str,
  title: str,
  crumbs: Sequence[tuple[str, str | None]],
  main: str,
  *,
  model: str = "",
  links: Mapping[str, str] | None = None,
) -> str:
  """A whole HTML page: head, the bar (crumbs and search box), ``main`` and the footer."""
  root = _rel("index.html", page)[: -len("index.html")]
  head_links = "".join(
    f'\n<link rel="{esc(rel)}" href="{esc(_rel(href, page))}">'
    for rel, href in (links or {}).items()
  )
  trail = "".join(
    f'<span><a href="{esc(_rel(href, page))}">{esc(text)}</a></span>'
    if href
    else f"<span>{esc(text)}</span>"
    for text, href in crumbs
  )
  return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<link rel="stylesheet" href="{root}assets/gallery.css">{head_links}
<script src="{root}assets/units.js" defer></script>
<script src="{root}assets/gallery.js" defer></script>
</head>
<body data-root="{esc(root)}" data-model="{esc(model)}">
<header class="bar">
<a class="brand" href="{root}index.html">featviz gallery</a>
<nav class="crumbs">{trail}</nav>
<form class="search" id="search" role="search" autocomplete="off">
<input name="q" type="search" placeholder="layer:unit" aria-label="go to layer:unit"
 spellcheck="false"><button type="submit">Go</button><output aria-live="polite"></output>
</form>
</header>
<main>
{main}
</main>
<footer>Keys: <kbd>&larr;</kbd> <kbd>&rarr;</kbd> previous / next unit, <kbd>&uarr;</kbd> up,
<kbd>/</kbd> search. Made by featviz.</footer>
</body>
</html>
"""


def _facts(pairs: Iterable[tuple[str, Any]]) -> str:
  rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>\n" for k, v in pairs)
  return f'<table class="facts">\n{rows}</table>'


def _ratio_summary(layer: Layer) -> dict[str, Any] | None:
  """``sweep_quality.ratio_stats`` of the layer's units; None when the sweep had no photos."""
  if not any("ratio" in r for r in layer.rows.values()):
    return None
  return sweep_quality.ratio_stats([r.get("ratio") for r in layer.rows.values()])


def _steps_summary(layer: Layer) -> str | None:
  """``"steps median 96 (ratio 12, max_steps 4)"`` when the layer's rows say why they stopped
  (a sweep with a stopping rule); None for older stores, whose units all took ``config.steps``."""
  rows = [r for r in layer.rows.values() if r.get("stopped") is not None]
  if not rows:
    return None
  steps = [r["steps"] for r in rows if r.get("steps") is not None]
  counts: dict[str, int] = {}
  for r in rows:
    counts[r["stopped"]] = counts.get(r["stopped"], 0) + 1
  reasons = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
  median = f"steps median {float(np.median(steps)):.0f} " if steps else ""
  return f"{median}(stopped by {reasons})"


def _model_facts(sweep: Sweep) -> list[tuple[str, Any]]:
  """The sweep's record: model, weights, version, and every render setting."""
  m = sweep.manifest
  pairs = [
    ("model", sweep.model),
    ("weights sha256", m.get("weights_sha256", "–")),
    ("featviz", m.get("featviz_version", "–")),
    ("sweep created", m.get("created", "–")),
  ]
  pairs += [(k, v) for k, v in sorted(dict(m["settings"]).items())]
  data = m.get("dataset")
  if data:
    pairs.append(("ratio photos", f"{data.get('files')}, {data.get('preprocess', '')}"))
  return pairs


def _chips(pairs: Iterable[tuple[str, Any]]) -> str:
  """Settings as compact ``name value`` chips; long values (hashes) are cut, kept in a title."""
  items = []
  for k, v in pairs:
    text = str(v)
    short = text if len(text) <= 40 else text[:12] + "…"
    items.append(f'<li title="{esc(k)}: {esc(text)}"><span>{esc(k)}</span> {esc(short)}</li>')
  return f'<ul class="chips">{"".join(items)}</ul>'


def index_html(sweeps: Sequence[Sweep]) -> str:
  """The site's front page: a card per sweep, a row per layer with its first units."""
  parts = [
    f"<h1>{len(sweeps)} model{'s' if len(sweeps) != 1 else ''}</h1>",
    (
      '<p class="lead">Every swept unit of every layer. Open a layer for its units, a unit '
      "for its image, its dataset examples and the settings that made it.</p>"
    ),
  ]
  for sweep in sweeps:
    body = []
    has_ratio = any(_ratio_summary(layer) for layer in sweep.layers)
    has_stops = any(_steps_summary(layer) for layer in sweep.layers)
    head = (
      "<tr><th>layer</th><th class=num>units</th><th>first units</th>"
      "<th class=num>final median</th>"
    )
    if has_stops:
      head += "<th>steps</th>"
    if has_ratio:
      head += (
        "<th class=num>ratio min</th><th class=num>median</th><th class=num>max</th>"
        "<th class=num>&gt; 1</th>"
      )
    body.append(f'<table class="layers">\n<thead>{head}</tr></thead>\n<tbody>')
    for layer in sweep.layers:
      units = list(layer.rows)
      name = esc(layer.name)
      if units:
        name = f'<a href="{esc(layer_page(sweep, layer))}">{name}</a>'
      strip = "".join(
        f'<a href="{esc(unit_page(sweep, layer, u))}"><img src="{sweep.slug}/{layer.dir}/'
        f'{u:04d}.png" loading="lazy" width="40" height="40" alt="{u}"></a>'
        for u in units[:8]
      )
      finals = [r["final"] for r in layer.rows.values() if r.get("final") is not None]
      final = _num(float(np.median(finals)), ".3g") if finals else "–"
      row = (
        f"<tr><td>{name}</td><td class=num>{len(units)} / {layer.channels}</td>"
        f'<td class="strip">{strip}</td><td class=num>{final}</td>'
      )
      if has_stops:
        row += f"<td>{esc(_steps_summary(layer) or '–')}</td>"
      if has_ratio:
        r = _ratio_summary(layer) or {}
        row += "".join(
          f"<td class=num>{_num(r.get(k), '.2f')}</td>" for k in ("min", "median", "max")
        )
        row += f"<td class=num>{_num(r.get('above_1'), '.0%')}</td>"
      body.append(row + "</tr>")
    body.append("</tbody></table>")
    if sweep.missing:
      body.append(
        f'<p class="muted">{len(sweep.missing)} indexed units have no PNG in the '
        f"store and are left out: {esc(', '.join(sweep.missing[:5]))}</p>"
      )
    parts.append(
      f'<section class="card" id="{esc(sweep.slug)}">\n<h2>{esc(sweep.model)} '
      f'<span class="muted mono">{esc(sweep.root.resolve().name)}</span></h2>\n'
      f"<details><summary>settings</summary>{_chips(_model_facts(sweep))}</details>\n"
      + "\n".join(body)
      + "\n</section>"
    )
  return _shell("index.html", "featviz gallery", [("models", None)], "\n".join(parts))


def layer_html(sweep: Sweep, layer: Layer) -> str:
  """A layer's page: a tile per unit, with its ratio when the sweep scored photos."""
  page = layer_page(sweep, layer)
  tiles = []
  for unit, row in layer.rows.items():
    ratio = row.get("ratio")
    caption = f"<b>{unit}</b>" + (f" {ratio:.2f}" if ratio is not None else "")
    # Every byte counts here, times the layer's units: no class, one short data attribute.
    # The size attributes let the browser lay out (and so lazily skip) images not yet seen.
    data = "" if ratio is None else f' data-r="{ratio:.4g}"'
    if row.get("stopped") is not None:  # a sweep with a stopping rule: steps and why, on hover
      data += f' title="{esc(row.get("steps", "?"))} steps, stopped: {esc(row["stopped"])}"'
    tiles.append(
      f'<a href="{unit:04d}.html"{data}><img src="{unit:04d}.png" loading="lazy" '
      f'width="96" height="96" alt="{unit}">{caption}</a>'
    )
  r = _ratio_summary(layer)
  stats = f"{len(layer.rows)} of {layer.channels} units rendered"
  if r and r.get("with_ratio"):
    stats += (
      f"; ratio rendered / best photo: median {r['median']:.2f} "
      f"(min {r['min']:.2f}, max {r['max']:.2f}), {r['above_1']:.0%} above 1"
    )
  steps = _steps_summary(layer)
  if steps:
    stats += f"; {steps}"
  sort = ""
  if r:
    sort = (
      '<label>sort by <select id="sort"><option value="unit">unit</option>'
      '<option value="ratio">ratio</option></select></label>'
    )
  main = (
    f'<h1>{esc(layer.name)}</h1>\n<p class="lead">{esc(sweep.model)}: {esc(stats)}.'
    f'</p>\n<div class="tools">{sort}<span>captions: unit'
    f"{' and ratio' if r else ''}{'; hover: steps and why it stopped' if steps else ''}"
    f'</span></div>\n<div class="grid" id="units">\n' + "\n".join(tiles) + "\n</div>"
  )
  return _shell(
    page,
    f"{layer.name} · {sweep.model} · featviz gallery",
    [(sweep.model, f"index.html#{sweep.slug}"), (layer.name, None)],
    main,
    model=sweep.slug,
    links={"up": f"index.html#{sweep.slug}"},
  )


def _examples_html(page: str, found: Mapping[str, Any] | None) -> str:
  if not found:
    return (
      '<p class="muted">No dataset examples: run <code>featviz gallery SWEEP --out SITE '
      "--dataset PHOTOS</code> to add them.</p>"
    )

  def figure(item, value):
    return (
      f'<figure><img src="{esc(_rel(item["src"], page))}" loading="lazy" width="124" '
      f'height="124" alt="{esc(item["name"])}"><figcaption title="{esc(item["name"])}">'
      f"{esc(item['name'])}</figcaption><figcaption>{value}</figcaption></figure>"
    )

  tops = "".join(figure(x, f"mean {x['mean']:.4g}") for x in found["images"])
  patches = "".join(
    figure(x, f"max {x['max']:.4g} at {x['at'][0]},{x['at'][1]}") for x in found["patches"]
  )
  h, w = found["field"]
  return (
    f'<h3>Top photos, by channel mean</h3>\n<div class="examples">{tops}</div>\n'
    f"<h3>Top patches, by largest activation, cropped to the receptive field "
    f'({h}x{w} px)</h3>\n<div class="examples">{patches}</div>'
  )


def unit_html(
  sweep: Sweep,
  layer: Layer,
  unit: int,
  prev: tuple[str, str] | None,
  nxt: tuple[str, str] | None,
  found: Mapping[str, Any] | None,
) -> str:
  """One unit's page; ``prev`` and ``nxt`` are ``(page, "layer:unit")`` of its neighbours."""
  page = unit_page(sweep, layer, unit)
  row = layer.rows[unit]
  name = f"{layer.name}:{unit}"
  numbers = [
    ("final activation", _num(row.get("final"))),
    ("objective at step 0", _num(row.get("start"))),
    ("objective at the last step", _num(row.get("last_step"))),
  ]
  if row.get("steps") is not None:
    numbers.append(("steps taken", row["steps"]))
  stopped = row.get("stopped")
  if stopped is not None:
    why = STOP_REASONS.get(stopped)
    numbers.append(("stopped", f"{stopped}: {why}" if why else stopped))
  if "dataset_max" in row:
    numbers += [
      ("best photo's activation", _num(row.get("dataset_max"))),
      ("best photo", row.get("dataset_argmax", "–")),
      ("ratio rendered / best photo", _num(row.get("ratio"), ".3f")),
    ]
  made = [
    (k, row[k]) for k in ("chunk", "slot", "devices", "chunk_seconds", "finished") if k in row
  ]
  pager = []
  for near, rel, label in ((prev, "prev", "&larr; {}"), (nxt, "next", "{} &rarr;")):
    pager.append(
      f'<a id="{rel}" href="{esc(_rel(near[0], page))}">{label.format(esc(near[1]))}</a>'
      if near
      else "<span></span>"
    )
  main = f"""<div class="pager">{pager[0]}{pager[1]}</div>
<div class="unit">
<figure><img class="big" src="{unit:04d}.png" width="384" height="384" alt="{esc(name)}"></figure>
<div class="side">
<h1>{esc(name)}</h1>
<p class="lead">{esc(sweep.model)}, layer {esc(layer.name)}, channel {unit} of {layer.channels}:
an image optimized to maximize the channel's mean activation.</p>
{_facts(numbers)}
<h3>Made with</h3>
{_chips(_model_facts(sweep) + made)}
</div>
</div>
<section class="card">
<h2>Dataset examples</h2>
{_examples_html(page, found)}
</section>"""
  links = {"up": layer_page(sweep, layer)}
  if prev:
    links["prev"] = prev[0]
  if nxt:
    links["next"] = nxt[0]
  return _shell(
    page,
    f"{name} · {sweep.model} · featviz gallery",
    [
      (sweep.model, f"index.html#{sweep.slug}"),
      (layer.name, layer_page(sweep, layer)),
      (str(unit), None),
    ],
    main,
    model=sweep.slug,
    links=links,
  )


def _ranges(units: Iterable[int]) -> list[list[int]]:
  """Sorted units as half-open ``[start, stop)`` runs: ``[0, 1, 2, 5]`` -> ``[[0, 3], [5, 6]]``."""
  out: list[list[int]] = []
  for u in sorted(units):
    if out and out[-1][1] == u:
      out[-1][1] = u + 1
    else:
      out.append([u, u + 1])
  return out


def units_js(sweeps: Sequence[Sweep]) -> str:
  """``assets/units.js``: every model's layers and their units, as ranges, for the search box."""
  index = {
    "models": [
      {
        "slug": s.slug,
        "name": s.model,
        "layers": [
          {"name": x.name, "dir": x.dir, "units": _ranges(x.rows)} for x in s.layers if x.rows
        ],
      }
      for s in sweeps
    ]
  }
  return f"window.FEATVIZ_INDEX = {_script_json(index)};\n"
