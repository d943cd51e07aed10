"""The gallery's stylesheet and script, as strings that ``featviz.gallery`` writes into a site.

They live in Python rather than as package data so that an installed featviz (wheel,
sdist or editable) always has them, with no ``package-data`` rule to forget.

The script is plain JavaScript (ES5-compatible syntax, no framework, no network): it must
run from ``file://``, where ``fetch`` of a local JSON file is refused by browsers. So the
site's unit list is a *script* (``assets/units.js``) that sets ``window.FEATVIZ_INDEX``
before ``gallery.js`` runs (both ``defer``, which keeps their order). It does three things:

* the search box on every page: ``layer:unit`` (or ``layer``, or ``model/layer:unit``)
  goes to that page, looking in the current model first; anything else shows
  "not found" beside the box;
* keys on every page: ArrowLeft / ArrowRight follow ``<link rel="prev">`` /
  ``<link rel="next">``, ArrowUp follows ``<link rel="up">``, "/" focuses the search
  box; keys typed into a form field, or with a modifier held, are left alone;
* the "sort by" control of layer pages: tiles by unit or by ratio.
"""

CSS = """\
:root { --ink: #1d2430; --muted: #5b6575; --line: #d9dee7; --paper: #f5f6f8; --card: #fff;
  --accent: #2456c7; --bar: #161b26; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--paper); }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
header.bar { position: sticky; top: 0; z-index: 2; display: flex; align-items: center;
  gap: 18px; flex-wrap: wrap; padding: 8px 20px; background: var(--bar); color: #e8ebf1; }
header.bar a { color: #e8ebf1; }
header.bar .brand { font-weight: 700; letter-spacing: .02em; }
nav.crumbs { flex: 1; color: #9aa4b5; font-size: 14px; }
nav.crumbs a { color: #c9d3e6; }
nav.crumbs span + span::before { content: "\\203a"; margin: 0 7px; color: #6c768a; }
form.search { display: flex; align-items: center; gap: 6px; }
form.search input { width: 13em; padding: 5px 8px; border: 1px solid #3a4356; border-radius: 5px;
  background: #232a38; color: #f1f3f7; font: inherit; font-size: 14px; }
form.search button { padding: 5px 10px; border: 0; border-radius: 5px; background: #3b63c9;
  color: #fff; font: inherit; font-size: 14px; cursor: pointer; }
form.search output { min-width: 7em; font-size: 13px; color: #ffb4a8; }
main { max-width: 1240px; margin: 0 auto; padding: 18px 20px 40px; }
h1 { margin: 6px 0 4px; font-size: 24px; }
h2 { margin: 26px 0 8px; font-size: 19px; }
h3 { margin: 18px 0 8px; font-size: 16px; }
section.card > h2:first-child { margin-top: 4px; }
p.lead, .muted { color: var(--muted); }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 13px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 18px; margin: 14px 0; }
table { border-collapse: collapse; }
table.layers { width: 100%; }
table.layers th, table.layers td { padding: 6px 10px; border-bottom: 1px solid var(--line);
  text-align: left; vertical-align: middle; }
table.layers td.num, table.layers th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.layers .strip img { width: 40px; height: 40px; margin-right: 2px; border-radius: 3px;
  vertical-align: middle; }
table.facts th { padding: 3px 14px 3px 0; text-align: left; color: var(--muted);
  font-weight: 500; vertical-align: top; white-space: nowrap; }
table.facts td { padding: 3px 0; font-variant-numeric: tabular-nums; word-break: break-all; }
.tools { display: flex; gap: 14px; align-items: center; margin: 8px 0 12px; color: var(--muted); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(108px, 1fr)); gap: 10px; }
.grid > a { display: block; background: var(--card); border: 1px solid var(--line);
  border-radius: 6px; padding: 5px; color: var(--ink); text-align: center; font-size: 12px; }
.grid > a:hover { border-color: var(--accent); text-decoration: none; }
.grid > a img { display: block; width: 100%; height: auto; aspect-ratio: 1; border-radius: 3px;
  background: #e9ecf1; }
.grid > a b { font-weight: 600; }
.unit { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
.unit figure { margin: 0; }
.unit figure img.big { width: 384px; height: 384px; border-radius: 6px; background: #e9ecf1;
  box-shadow: 0 1px 6px rgba(0, 0, 0, .18); }
.unit .side { flex: 1; min-width: 300px; }
ul.chips { display: flex; flex-wrap: wrap; gap: 6px; margin: 6px 0; padding: 0;
  list-style: none; }
ul.chips li { padding: 2px 8px; border: 1px solid var(--line); border-radius: 12px;
  background: var(--card); font-size: 13px; font-variant-numeric: tabular-nums; }
ul.chips li span { color: var(--muted); }
details summary { cursor: pointer; color: var(--muted); margin: 4px 0; }
.pager { display: flex; justify-content: space-between; gap: 10px; margin: 4px 0 8px; }
.examples { display: flex; flex-wrap: wrap; gap: 10px; }
.examples figure { margin: 0; width: 124px; font-size: 12px; color: var(--muted); }
.examples figure img { display: block; width: 124px; height: 124px; border-radius: 4px;
  background: #e9ecf1; }
.examples figcaption { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
/* RGBA renders (RenderConfig(alpha=True)) show over a checkerboard; opaque ones cover it. */
.grid > a img, .unit figure img.big, table.layers .strip img { background-color: #ccc;
  background-image: linear-gradient(45deg, #999 25%, transparent 25%),
    linear-gradient(-45deg, #999 25%, transparent 25%),
    linear-gradient(45deg, transparent 75%, #999 75%),
    linear-gradient(-45deg, transparent 75%, #999 75%);
  background-size: 16px 16px; background-position: 0 0, 0 8px, 8px -8px, -8px 0; }
footer { max-width: 1240px; margin: 0 auto; padding: 0 20px 30px; color: var(--muted);
  font-size: 13px; }
kbd { padding: 1px 5px; border: 1px solid var(--line); border-radius: 3px; background: #fff;
  font-size: 12px; }
"""

JS = """\
(function () {
  "use strict";
  var body = document.body;
  var root = body.getAttribute("data-root") || "";
  var current = body.getAttribute("data-model") || "";
  var index = window.FEATVIZ_INDEX || {models: []};

  function pad(unit) {
    var s = String(unit);
    while (s.length < 4) { s = "0" + s; }
    return s;
  }

  function hasUnit(ranges, unit) {
    for (var i = 0; i < ranges.length; i++) {
      if (unit >= ranges[i][0] && unit < ranges[i][1]) { return true; }
    }
    return false;
  }

  function findLayer(model, name) {
    var lower = name.toLowerCase(), loose = null;
    for (var i = 0; i < model.layers.length; i++) {
      var layer = model.layers[i];
      if (layer.name === name) { return layer; }
      if (loose === null && layer.name.toLowerCase() === lower) { loose = layer; }
    }
    return loose;
  }

  // "layer:unit", "layer" or "model/layer:unit" -> a page of the site, or null.
  function resolve(query) {
    var q = query.trim(), wantModel = null, slash = q.indexOf("/");
    if (slash >= 0) { wantModel = q.slice(0, slash); q = q.slice(slash + 1); }
    var m = /^(.+?)(?:\\s*:\\s*(\\d+))?$/.exec(q);
    if (!m) { return null; }
    var layerName = m[1].trim(), unit = m[2] === undefined ? null : parseInt(m[2], 10);
    var models = index.models.slice().sort(function (a, b) {
      return (b.slug === current) - (a.slug === current);
    });
    for (var i = 0; i < models.length; i++) {
      var model = models[i];
      if (wantModel !== null && model.slug !== wantModel && model.name !== wantModel) { continue; }
      var layer = findLayer(model, layerName);
      if (layer === null) { continue; }
      var base = root + model.slug + "/" + layer.dir + "/";
      if (unit === null) { return base + "index.html"; }
      if (hasUnit(layer.units, unit)) { return base + pad(unit) + ".html"; }
    }
    return null;
  }

  var form = document.getElementById("search");
  if (form) {
    var input = form.querySelector("input");
    var message = form.querySelector("output");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var query = input.value;
      var target = query.trim() ? resolve(query) : null;
      if (target) {
        message.textContent = "";
        window.location.href = target;
      } else {
        message.textContent = query.trim() ? "not found: " + query.trim() : "type layer:unit";
      }
    });
    input.addEventListener("input", function () { message.textContent = ""; });
  }

  function follow(rel) {
    var link = document.querySelector('link[rel="' + rel + '"]');
    if (link) { window.location.href = link.href; return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    var tag = event.target && event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
    var keys = {ArrowLeft: "prev", ArrowRight: "next", ArrowUp: "up"};
    if (keys[event.key]) {
      if (follow(keys[event.key])) { event.preventDefault(); }
    } else if (event.key === "/" && form) {
      event.preventDefault();
      form.querySelector("input").focus();
    }
  });

  var sort = document.getElementById("sort");
  var grid = document.getElementById("units");
  if (sort && grid) {
    sort.addEventListener("change", function () {
      var tiles = Array.prototype.slice.call(grid.children);
      var key = sort.value;
      function unit(tile) { return parseInt(tile.querySelector("b").textContent, 10); }
      function ratio(tile) {
        var r = parseFloat(tile.getAttribute("data-r"));
        return isNaN(r) ? -Infinity : r;
      }
      tiles.sort(function (a, b) {
        if (key === "ratio" && ratio(a) !== ratio(b)) { return ratio(b) - ratio(a); }
        return unit(a) - unit(b);
      });
      for (var i = 0; i < tiles.length; i++) { grid.appendChild(tiles[i]); }
    });
  }
})();
"""
