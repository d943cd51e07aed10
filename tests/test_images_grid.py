"""featviz.images.grid: its text (title, captions, note) is measured and never cut."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from featviz import images

FONT_SIZE = 12
RED = (1.0, 0.0, 0.0)  # tiles are pure red, so grey text pixels are told apart from them


def _font():
  try:
    return ImageFont.load_default(size=FONT_SIZE)
  except TypeError:
    return ImageFont.load_default()


def _ink_mask(picture: Image.Image) -> np.ndarray:
  """Text pixels: grey (R = G = B) and not white."""
  a = np.asarray(picture.convert("RGB")).astype(int)
  return (a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2]) & (a[..., 0] < 250)


def _ink(picture: Image.Image, rows=slice(None)) -> float:
  a = np.asarray(picture.convert("L")).astype(float)[rows]
  return float(np.sum((255.0 - a) * _ink_mask(picture)[rows]))


def _reference_ink(text: str, fill: str = "black") -> float:
  """The ink of ``text`` drawn on one line of an unbounded canvas."""
  canvas = Image.new("RGB", (40 + 20 * len(text), 60), "white")
  ImageDraw.Draw(canvas).text((20, 20), text, fill=fill, font=_font())
  return _ink(canvas)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
  ys, xs = np.nonzero(mask)
  return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _tile_rows(picture: Image.Image) -> np.ndarray:
  a = np.asarray(picture.convert("RGB")).astype(int)
  red = (a[..., 0] == 255) & (a[..., 1] == 0) & (a[..., 2] == 0)
  return np.nonzero(red.any(axis=1))[0]


def _one_tile(size=128):
  return np.broadcast_to(np.asarray(RED, np.float32), (1, size, size, 3))


TITLE = "efficientnet_lite0, 256 steps, 128 px, seed 0, tv 0.01, blur 0.5"


@pytest.mark.parametrize("title", [TITLE, TITLE * 3])  # one line on a widened canvas; wrapped
def test_one_image_grid_holds_its_whole_title(title):
  picture = images.grid(_one_tile(), title=title, font_size=FONT_SIZE)
  top = _tile_rows(picture)[0]  # the title is everything above the tile
  x0, y0, x1, y1 = _bbox(_ink_mask(picture)[:top])
  assert 0 < x0 and x1 < picture.width - 1, "the title's ink touches the left or right edge"
  assert 0 < y0 and y1 < top - 1, "the title's ink touches the top edge or the tile"
  # Every glyph is there: nothing cut or elided (wrapping only moves words).
  assert _ink(picture, slice(0, top)) == pytest.approx(_reference_ink(title), rel=0.03)
  assert picture.width <= max(images.TEXT_WIDTH, 128 + 8)


@pytest.mark.parametrize(
  "caption",
  [
    "0.5*block5:3+0.5*block5:9 (12.3)",
    "deepdream:block8 (1.23e+03)",
    "a_caption_with_no_place_to_break_at_all_that_is_far_wider_than_the_tile (3)",
  ],
)
def test_long_captions_wrap_instead_of_being_cut(caption):
  picture = images.grid(_one_tile(96), [caption], font_size=FONT_SIZE)
  bottom = _tile_rows(picture)[-1] + 1  # the caption is everything under the tile
  x0, _, x1, y1 = _bbox(_ink_mask(picture)[bottom:])
  assert 0 < x0 and x1 < picture.width - 1 and y1 + bottom < picture.height - 1
  assert _ink(picture, slice(bottom, None)) == pytest.approx(_reference_ink(caption), rel=0.03)


def test_the_note_sits_under_the_tiles_in_full():
  note = "(n): the objective at the last step"
  picture = images.grid(_one_tile(), ["logit:1 (2.5)"], note=note, font_size=FONT_SIZE)
  expected = _reference_ink(note, "dimgray") + _reference_ink("logit:1 (2.5)")
  assert _ink(picture) == pytest.approx(expected, rel=0.03)
  assert _bbox(_ink_mask(picture))[3] < picture.height - 1


def test_short_captions_keep_the_plain_layout():
  tiles = np.broadcast_to(np.asarray(RED, np.float32), (9, 128, 128, 3))
  picture = images.grid(tiles, [f"block10:{i} (2.5)" for i in range(9)])
  assert picture.width == 3 * (128 + 4) + 4
  assert len(_tile_rows(picture)) == 3 * 128  # the tiles are whole: no text drawn over them


def test_rows_of_captions_are_as_tall_as_the_longest():
  tiles = np.broadcast_to(np.asarray(RED, np.float32), (2, 64, 64, 3))
  short = images.grid(tiles, ["a", "b"], font_size=FONT_SIZE)
  long = images.grid(tiles, ["a", "a+b+c+d+e+f+g+h+i+j+k+l"], font_size=FONT_SIZE)
  assert long.height > short.height and long.width == short.width


def test_labels_must_be_one_per_image():
  with pytest.raises(ValueError, match="2 labels for 3 images"):
    images.grid(np.zeros((3, 8, 8, 3)), ["a", "b"])


@pytest.mark.parametrize(
  "text", ["0.5*block5:3+0.5*block5:9", "a b c d e f g", "x" * 50, "", "two\nlines"]
)
def test_wrap_keeps_every_character_within_the_width(text):
  font = _font()
  lines = images.wrap(text, font, 40)
  assert "".join(lines).replace(" ", "") == text.replace(" ", "").replace("\n", "")
  assert all(font.getlength(line) <= 40 or len(line) == 1 for line in lines)
