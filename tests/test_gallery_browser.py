"""The gallery in a real browser: headless Chromium, driven by Playwright, from ``file://``.

A small real sweep of EfficientNet-Lite0 (2 layers x 4 units, 8 steps, 64 px, no transforms:
its two compiles take most of the time), scored and examined on 24 of the shared ImageNet
photos, becomes a site; the tests follow its links, check that every image decodes and that no
script fails, and drive the keys and the search box as a person would.

Needs the Python package ``playwright`` (the ``test`` extra) and a Chromium binary: Debian's
``chromium`` (``/usr/bin/chromium``), or the one named by ``FEATVIZ_CHROMIUM``. Playwright's
own browser download is not used. Without either, the module is skipped, saying which is
missing.
"""

import os
import shutil
import tempfile

import pytest

sync_api = pytest.importorskip(
  "playwright.sync_api",
  reason="browser tests need the Python package playwright (pip install playwright)",
)

CHROMIUM = (
  os.environ.get("FEATVIZ_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
if not CHROMIUM:
  pytest.skip(
    "browser tests need Chromium: apt-get install chromium, or set FEATVIZ_CHROMIUM "
    "to a Chromium binary",
    allow_module_level=True,
  )

from featviz import gallery, zoo  # noqa: E402 - after the skip: without Chromium, nothing to test
from featviz._sweep import run as sweep  # noqa: E402

# Known to work here: no background networking (this machine has no network), a fresh profile.
FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]
LAYERS = ["block3", "block5"]
UNITS = 4


@pytest.fixture(scope="module")
def site(tmp_path_factory, shared):
  """A site made from a real sweep; its photos: the first 24 of the shared ImageNet sample."""
  photos = tmp_path_factory.mktemp("photos")
  sample = sorted((shared / "images" / "imagenet-sample").glob("*.JPEG"))[:24]
  for f in sample:
    shutil.copy(f, photos / f.name)
  model = zoo.load("efficientnet_lite0")
  store = tmp_path_factory.mktemp("sweep")
  sweep.sweep(
    model,
    LAYERS,
    out=store,
    units=(0, UNITS),
    batch=UNITS,
    steps=8,
    size=64,
    transforms="none",
    dataset=photos,
    progress_bar=False,
  )
  out = tmp_path_factory.mktemp("site")
  report = gallery.build(store, out, dataset=photos, load_model=lambda name: model, top=4)
  assert report.units == len(LAYERS) * UNITS
  return out


@pytest.fixture(scope="module")
def browser_page():
  """A Chromium page, and the console errors and page errors it has seen."""
  with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    try:
      context = p.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        args=FLAGS,
        headless=True,
        viewport={"width": 1280, "height": 860},
      )
    except sync_api.Error as e:
      pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {e}")
    page = context.new_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    # A missing file fails with net::ERR_FILE_NOT_FOUND; ERR_ABORTED is a load that a key
    # press cut short by leaving the page, as it should.
    page.on(
      "requestfailed",
      lambda r: (
        "ERR_ABORTED" not in (r.failure or "")
        and errors.append(f"failed to load {r.url}: {r.failure}")
      ),
    )
    yield page, errors
    context.close()


# Scrolls each image into view (so lazy ones load), waits for it, returns those that failed.
BROKEN_IMAGES = """async () => {
  const broken = [];
  for (const img of Array.from(document.images)) {
    img.scrollIntoView();
    if (!img.complete) {
      await new Promise(done => {
        img.addEventListener("load", done, {once: true});
        img.addEventListener("error", done, {once: true});
        setTimeout(done, 5000);
      });
    }
    if (!(img.naturalWidth > 0)) broken.push(img.getAttribute("src"));
  }
  window.scrollTo(0, 0);
  return [document.images.length, broken];
}"""


def _open(page, url):
  page.goto(url)
  page.wait_for_load_state("load")


def _check_images(page, at_least):
  count, broken = page.evaluate(BROKEN_IMAGES)
  assert broken == [] and count >= at_least, (page.url, count, broken)


def test_index_to_layer_to_unit_every_image_loads_no_errors(site, browser_page, tmp_path):
  page, errors = browser_page
  _open(page, (site / "index.html").as_uri())
  assert page.title() == "featviz gallery"
  _check_images(page, len(LAYERS) * UNITS)  # the strips of first units
  page.click("table.layers a:text-is('block5')")
  page.wait_for_url("**/efficientnet_lite0/block5/index.html")
  _check_images(page, UNITS)
  page.click("#units > a:nth-child(2)")
  page.wait_for_url("**/efficientnet_lite0/block5/0001.html")
  assert page.locator("h1").inner_text() == "block5:1"
  _check_images(page, 1 + 4 + 4)  # the unit, its top photos and patches
  page.screenshot(path=str(tmp_path / "unit.png"), full_page=True)
  assert (tmp_path / "unit.png").stat().st_size > 10_000
  assert errors == []


def test_arrow_keys_move_between_units_and_up(site, browser_page):
  page, errors = browser_page
  _open(page, (site / "efficientnet_lite0/block3/0002.html").as_uri())
  page.keyboard.press("ArrowRight")
  page.wait_for_url("**/block3/0003.html")
  page.keyboard.press("ArrowRight")  # past the layer's last unit: the next layer's first
  page.wait_for_url("**/block5/0000.html")
  page.keyboard.press("ArrowLeft")
  page.wait_for_url("**/block3/0003.html")
  page.keyboard.press("ArrowUp")
  page.wait_for_url("**/block3/index.html")
  assert errors == []


def test_search_box_goes_to_a_unit_or_says_not_found(site, browser_page):
  page, errors = browser_page
  _open(page, (site / "index.html").as_uri())
  box = page.locator("#search input")
  box.fill("block5:99")
  box.press("Enter")
  assert page.locator("#search output").inner_text() == "not found: block5:99"
  assert page.url.endswith("/index.html")
  box.fill("nolayer:1")
  box.press("Enter")
  assert page.locator("#search output").inner_text() == "not found: nolayer:1"
  page.keyboard.press("Escape")
  box.fill("block5:3")
  box.press("Enter")
  page.wait_for_url("**/efficientnet_lite0/block5/0003.html")
  page.keyboard.press("/")  # the search box from anywhere; arrows typed there stay there
  page.keyboard.type("block3")
  page.keyboard.press("ArrowLeft")
  assert page.url.endswith("/block5/0003.html")
  page.keyboard.press("Enter")
  page.wait_for_url("**/efficientnet_lite0/block3/index.html")
  assert errors == []


def test_layer_page_sorts_by_ratio(site, browser_page):
  page, errors = browser_page
  _open(page, (site / "efficientnet_lite0/block3/index.html").as_uri())
  page.select_option("#sort", "ratio")
  ratios = page.eval_on_selector_all(
    "#units > a", "tiles => tiles.map(t => parseFloat(t.getAttribute('data-r')))"
  )
  assert len(ratios) == UNITS and ratios == sorted(ratios, reverse=True)
  assert errors == []
