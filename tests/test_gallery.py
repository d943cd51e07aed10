"""Gallery (no browser): pages, links, escaping, incremental updates, lazy images, the CLI.

Most tests use stores written directly through ``sweep_store.Store`` (tiny random PNGs, no
rendering), so they take milliseconds; one renders a real sweep of tiny_cnn for the dataset
examples. tests/test_gallery_browser.py opens a real site in Chromium.
"""

import html.parser
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from featviz import cli, gallery, images
from featviz._sweep import store as S
from featviz.cli import cmd_gallery

import tiny_cnn

SETTINGS = {
  "batch": 8,
  "steps": 4,
  "size": 8,
  "seed": 0,
  "param": "fourier",
  "learning_rate": 0.05,
  "transforms": "none",
  "redirect_relu_steps": 16,
}


def make_store(
  root, layers, *, model="tiny", chunk=0, units=None, ratio=True, seed=0, weights="ab" * 32
):
  """A store with random 8x8 PNGs: ``layers`` is ``{name: channels}``; ``units`` a range."""
  store = S.Store(root)
  store.open(
    {
      "format": S.FORMAT,
      "model": model,
      "weights_sha256": weights,
      "featviz_version": "0.1.0",
      "settings": SETTINGS,
      "dataset": None,
      "layers": dict(layers),
      "created": "2026-01-01T00:00:00+00:00",
    }
  )
  rng = np.random.default_rng(seed)
  for layer, channels in layers.items():
    wanted = list(units if units is not None else range(channels))
    pictures = {u: rng.uniform(size=(8, 8, 3)) for u in wanted}
    rows = [
      {
        "layer": layer,
        "unit": u,
        "png": f"{images.safe_name(layer)}/{u:04d}.png",
        "final": float(u + 1),
        "start": 0.0,
        "last_step": float(u),
        "seed": 0,
        "steps": 4,
        "size": 8,
        "chunk": chunk,
        "slot": u % 8,
        **(
          {"ratio": 1.0 + u / 10, "dataset_max": 1.0, "dataset_argmax": "photo.jpg"}
          if ratio
          else {}
        ),
      }
      for u in wanted
    ]
    store.commit(layer, chunk, pictures, rows)
  return root


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.links, self.lazy, self.images = [], 0, 0

  def handle_starttag(self, tag, attrs):
    a = dict(attrs)
    for key in ("href", "src"):
      if a.get(key):
        self.links.append(a[key])
    if tag == "img":
      self.images += 1
      self.lazy += a.get("loading") == "lazy"


def parse(path):
  p = _Links()
  p.feed(pathlib.Path(path).read_text())
  return p


def all_files(site):
  return {
    p.relative_to(site).as_posix(): p.stat().st_mtime_ns
    for p in pathlib.Path(site).rglob("*")
    if p.is_file()
  }


def test_pages_exist_and_every_link_resolves(tmp_path):
  store = make_store(tmp_path / "store", {"conv1": 3, "conv10": 2, "conv2": 2})
  report = gallery.build(store, tmp_path / "site")
  site = tmp_path / "site"
  assert report.units == 7 and not report.removed and not report.missing
  for rel in (
    "index.html",
    "assets/gallery.css",
    "assets/gallery.js",
    "assets/units.js",
    "tiny/conv1/index.html",
    "tiny/conv1/0002.html",
    "tiny/conv10/0001.png",
  ):
    assert (site / rel).is_file(), rel
  pages = sorted(site.rglob("*.html"))
  assert len(pages) == 1 + 3 + 7
  for page in pages:
    for link in parse(page).links:
      target = link.split("#")[0]
      assert "://" not in link, f"{page}: external resource {link}"
      assert (page.parent / target).resolve().is_file(), f"{page}: {link} is broken"
  # Layers in natural order on the index; the PNG is the store's, byte for byte.
  index = (site / "index.html").read_text()
  assert index.index(">conv1<") < index.index(">conv2<") < index.index(">conv10<")
  assert (site / "tiny/conv2/0001.png").read_bytes() == (store / "conv2/0001.png").read_bytes()


def test_unit_pages_link_neighbours_across_layers_and_show_settings(tmp_path):
  site = tmp_path / "site"
  gallery.build(make_store(tmp_path / "store", {"conv1": 2, "conv2": 2}), site)
  page = (site / "tiny/conv1/0001.html").read_text()
  assert '<link rel="prev" href="0000.html">' in page
  assert '<link rel="next" href="../conv2/0000.html">' in page
  assert '<link rel="up" href="index.html">' in page
  assert "learning_rate</span> 0.05" in page and "ratio rendered / best photo" in page
  first = (site / "tiny/conv1/0000.html").read_text()
  assert 'rel="prev"' not in first
  units = (site / "assets/units.js").read_text()
  data = json.loads(units[units.index("{") : units.rindex("}") + 1])
  assert data["models"][0]["layers"][0] == {"name": "conv1", "dir": "conv1", "units": [[0, 2]]}


def test_all_text_is_escaped(tmp_path):
  evil, model = '<script>alert(1)</script>&"', "m<i onclick=x>"
  store = make_store(tmp_path / "store", {evil: 2}, model=model)
  site = tmp_path / "site"
  gallery.build(store, site)
  for page in site.rglob("*.html"):
    text = page.read_text()
    assert "<script>alert" not in text and "<i onclick" not in text, page
  page = (site / images.safe_name(model) / images.safe_name(evil) / "0001.html").read_text()
  assert "<h1>&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;:1</h1>" in page
  assert "m&lt;i onclick=x&gt;" in page
  assert "<" not in (site / "assets/units.js").read_text()  # nothing can close the script


def test_second_run_writes_nothing_and_new_units_add_pages(tmp_path):
  store, site = tmp_path / "store", tmp_path / "site"
  make_store(store, {"conv1": 8}, units=range(4))
  first = gallery.build(store, site)
  assert "tiny/conv1/0003.html" in first.written
  before = all_files(site)
  again = gallery.build(store, site)
  assert again.written == [] and again.removed == [] and all_files(site) == before

  make_store(store, {"conv1": 8}, units=range(4, 6), chunk=1, seed=1)  # the sweep grew
  grown = gallery.build(store, site)
  assert set(grown.written) == {
    "tiny/conv1/0004.html",
    "tiny/conv1/0005.html",
    "tiny/conv1/0004.png",
    "tiny/conv1/0005.png",
    "tiny/conv1/0003.html",  # its "next" link now points at unit 4
    "tiny/conv1/index.html",
    "index.html",
    "assets/units.js",
  }
  after = all_files(site)
  assert after["tiny/conv1/0000.html"] == before["tiny/conv1/0000.html"]


def test_a_rerendered_png_is_copied_again_and_stale_files_go(tmp_path):
  site = tmp_path / "site"
  a = make_store(tmp_path / "a", {"conv1": 2}, model="alpha")
  b = make_store(tmp_path / "b", {"conv1": 2}, model="beta")
  gallery.build([a, b], site)
  assert (site / "beta/conv1/0001.html").is_file()
  make_store(a, {"conv1": 2}, model="alpha", units=[1], seed=7)  # unit 1 rendered anew
  report = gallery.build([a], site)
  assert "alpha/conv1/0001.png" in report.written
  assert (site / "alpha/conv1/0001.png").read_bytes() == (a / "conv1/0001.png").read_bytes()
  assert "beta/conv1/0001.html" in report.removed and not (site / "beta").exists()
  (site / "unrelated.txt").write_text("mine")  # files the gallery did not write stay
  gallery.build([a], site)
  assert (site / "unrelated.txt").read_text() == "mine"


def test_pngs_are_copied_never_linked_and_readable(tmp_path):
  store, site = make_store(tmp_path / "store", {"conv1": 2}), tmp_path / "site"
  mode = 0o666 & ~_umask()
  os.chmod(store / "conv1/0000.png", mode)  # the site's mode: a link used to be made here
  os.chmod(store / "conv1/0001.png", 0o600)  # private: the copy gets the site's mode
  gallery.build(store, site)
  for unit in ("0000", "0001"):
    assert not (site / f"tiny/conv1/{unit}.png").samefile(store / f"conv1/{unit}.png")
  for p in site.rglob("*"):
    if p.is_file():
      assert p.stat().st_mode & 0o777 == mode, p


def _umask():
  umask = os.umask(0)
  os.umask(umask)
  return umask


def test_a_layer_of_1000_units_has_a_small_page_with_lazy_images(tmp_path, monkeypatch):
  monkeypatch.setattr(os, "fsync", lambda fd: None)  # 2,000 fsyncs take seconds; not tested here
  store = make_store(tmp_path / "store", {"big": 1000})
  site = tmp_path / "site"
  report = gallery.build(store, site)
  assert report.units == 1000
  page = site / "tiny/big/index.html"
  links = parse(page)
  assert links.images == 1000 and links.lazy == 1000
  assert page.stat().st_size < 150_000  # about 120 bytes per unit
  index = parse(site / "index.html")
  assert index.images == index.lazy == 8  # a strip of the first units per layer


# ----------------------------------------------------------------------------- dataset examples


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
  """A store "of" tiny_cnn (random PNGs, its real weight hash) and 6 random photos."""
  out = tmp_path_factory.mktemp("tiny_sweep")
  digest, _ = S.weights_sha256(tiny_cnn.make())
  make_store(out, {"conv2": 6, "conv3": 8}, units=range(4), model="tiny_cnn", weights=digest)
  photos = tmp_path_factory.mktemp("photos")
  rng = np.random.default_rng(0)
  for i in range(6):
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), np.uint8)).save(photos / f"p{i}.png")
  return out, photos


def test_dataset_examples_are_computed_once_per_layer_and_kept(tmp_path, tiny_sweep):
  store, photos = tiny_sweep
  model, loads = tiny_cnn.make(), []

  def load(name):
    loads.append(name)
    return model

  site = tmp_path / "site"
  report = gallery.build(store, site, dataset=photos, load_model=load, top=3)
  assert report.scanned == ["tiny_cnn/conv2", "tiny_cnn/conv3"] and loads == ["tiny_cnn"]
  examples = json.loads((site / "tiny_cnn/conv3/examples.json").read_text())
  unit = examples["units"]["2"]
  assert len(unit["images"]) == len(unit["patches"]) == 3
  page = site / "tiny_cnn/conv3/0002.html"
  srcs = [x for x in parse(page).links if x.endswith(".jpg")]
  assert len(srcs) == 6 and all((page.parent / s).is_file() for s in srcs)
  assert "Top patches" in page.read_text()
  # Same inputs: nothing scanned or written; without --dataset the examples stay.
  again = gallery.build(store, site, dataset=photos, load_model=load, top=3)
  assert again.scanned == [] and again.written == [] and loads == ["tiny_cnn"]
  kept = gallery.build(store, site)
  assert kept.written == [] and kept.removed == []
  # Another top: scanned again.
  assert gallery.build(store, site, dataset=photos, load_model=load, top=2).scanned


def test_examples_refuse_a_model_with_other_weights(tmp_path, tiny_sweep):
  store, photos = tiny_sweep
  with pytest.raises(gallery.WeightsMismatchError, match="rendered with weights"):
    gallery.build(
      store, tmp_path / "site", dataset=photos, load_model=lambda name: tiny_cnn.make(seed=1)
    )


# ----------------------------------------------------------------------------- CLI


def _cli(capsys, *args):
  code = cli.main(["gallery", *map(str, args)])
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.parametrize(
  "setup, message",
  [
    (lambda d: None, "does not exist"),
    (lambda d: d.mkdir(), "it has no manifest.json"),
    (lambda d: (d.mkdir(), (d / "manifest.json").write_text("{")), "is not valid JSON"),
    (
      lambda d: (d.mkdir(), (d / "manifest.json").write_text('{"model": "m"}')),
      "lacks 'layers', 'settings'",
    ),
    (
      lambda d: (
        d.mkdir(),
        (d / "manifest.json").write_text('{"model": "m", "layers": {}, "settings": {}}'),
      ),
      "no _index/ folder",
    ),
    (
      lambda d: (
        d.mkdir(),
        (d / "_index").mkdir(),
        (d / "manifest.json").write_text('{"model": "m", "layers": {}, "settings": {}}'),
      ),
      "no rendered units yet",
    ),
  ],
)
def test_cli_exits_2_on_a_folder_that_is_not_a_sweep(tmp_path, capsys, setup, message):
  folder = tmp_path / "notasweep"
  setup(folder)
  code, _, err = _cli(capsys, folder, "--out", tmp_path / "site")
  assert code == 2 and message in err
  assert not (tmp_path / "site").exists()  # nothing written


def test_cli_builds_and_reports(tmp_path, capsys, monkeypatch, tiny_sweep):
  store, photos = tiny_sweep
  monkeypatch.setattr(cmd_gallery, "load_model", lambda name, weights: tiny_cnn.make())
  code, out, err = _cli(
    capsys, store, "--out", tmp_path / "site", "--dataset", photos, "--top", "2"
  )
  assert code == 0 and "8 units of 1 sweep" in out and "file://" in out
  assert "tiny_cnn conv3: scanning 6 photos" in err
  code, out, _ = _cli(capsys, store, "--out", tmp_path / "site")
  assert code == 0 and "wrote 0 files" in out
  code, _, err = _cli(capsys, store, "--out", tmp_path / "site", "--dataset", tmp_path / "no")
  assert code == 2 and "is not a folder of photos" in err
  code, _, err = _cli(capsys, store, "--out", store)
  assert code == 2 and "is the sweep folder" in err
