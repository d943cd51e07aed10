"""Drawing the analysis figures with PIL and NumPy: colour maps, overlays, panels, charts.

Arrays are floats in ``[0, 1]``, ``(H, W)`` or ``(H, W, C)`` with C = 1 or 3;
figures are PIL RGB images, saved with :func:`featviz.images.save_png`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featviz import images as images_lib

# Text sizes in pixels: small enough for 224 px panels to carry a caption per line.
FONT_PX = 13
PAD = 6


def font(size: int = FONT_PX) -> ImageFont.ImageFont:
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has no sized default font
    return ImageFont.load_default()


def line_height(size: int = FONT_PX) -> int:
  return font(size).getbbox("Ag")[3] + 3


def jet(values: np.ndarray) -> np.ndarray:
  """The "jet" colour map: ``[0, 1]`` -> RGB, blue (0) - cyan - yellow - red (1).

  Piecewise linear, the usual closed form: each channel is a tent
  ``clip(1.5 - |4 v - c|, 0, 1)`` centred at ``c`` = 3 (red), 2 (green), 1 (blue).
  Shape ``(...)`` -> ``(..., 3)``.
  """
  v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
  centres = np.array([3.0, 2.0, 1.0], np.float32)
  return np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)


def to_rgb(image: np.ndarray) -> np.ndarray:
  """``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` -> ``(H, W, 3)`` (grey repeated)."""
  image = np.asarray(image, np.float32)
  if image.ndim == 2:
    image = image[..., None]
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def resize_map(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """A ``(h, w)`` float map resized to ``size = (H, W)``, bilinear (PIL mode "F")."""
  heat = np.asarray(heat, np.float32)
  if heat.shape == tuple(size):
    return heat
  return np.asarray(Image.fromarray(heat, "F").resize((size[1], size[0]), Image.BILINEAR))


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """``(1 - alpha) * photo + alpha * jet(heat)``; ``heat (h, w)`` in ``[0, 1]`` is resized.

  ``alpha = 0.5`` is the even blend used in the Grad-CAM paper's figures.
  """
  rgb = to_rgb(image)
  heat = resize_map(heat, rgb.shape[:2])
  return (1.0 - alpha) * rgb + alpha * jet(heat)


def minmax(x: np.ndarray, axis=None) -> np.ndarray:
  """``(x - min) / (max - min)`` over ``axis``; a constant slice becomes 0."""
  x = np.asarray(x, np.float32)
  lo = x.min(axis=axis, keepdims=True)
  span = x.max(axis=axis, keepdims=True) - lo
  return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def _as_pil(image: np.ndarray | Image.Image, scale: int = 1) -> Image.Image:
  pil = (
    image if isinstance(image, Image.Image) else Image.fromarray(images_lib.to_uint8(to_rgb(image)))
  )
  pil = pil.convert("RGB")
  if scale != 1:
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
  return pil


def text_block(lines: Sequence[str], width: int, title: str | None = None) -> Image.Image:
  """Lines of text on white, ``width`` pixels wide or wider if a line needs it."""
  rows = ([title] if title else []) + list(lines)
  lh = line_height()
  width = max([width] + [int(font().getlength(r)) + 2 * PAD for r in rows])
  canvas = Image.new("RGB", (width, PAD + lh * len(rows) + PAD), "white")
  draw = ImageDraw.Draw(canvas)
  for i, text in enumerate(rows):
    draw.text((PAD, PAD + i * lh), text, fill="black", font=font())
  return canvas


def panels(
  items: Sequence[tuple[np.ndarray | Image.Image, Sequence[str]]],
  scale: int = 1,
  title: str | None = None,
) -> Image.Image:
  """Images side by side, each with its own caption lines under it; a title above."""
  tiles = [(_as_pil(image, scale), list(caption)) for image, caption in items]
  lh = line_height()
  fnt = font()
  caption_h = lh * max(len(c) for _, c in tiles)
  # Each column is as wide as its image or its longest caption line, whichever is wider.
  widths = [max([t.width] + [int(fnt.getlength(line)) for line in c]) for t, c in tiles]
  width = PAD + sum(w + PAD for w in widths)
  title_h = lh + PAD if title else 0
  height = title_h + PAD + max(t.height for t, _ in tiles) + caption_h + 2 * PAD
  canvas = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((PAD, PAD), title, fill="black", font=fnt)
  x = PAD
  for (tile, caption), w in zip(tiles, widths):
    y = title_h + PAD
    canvas.paste(tile, (x, y))
    for j, text in enumerate(caption):
      draw.text((x, y + tile.height + 2 + j * lh), text, fill="black", font=fnt)
    x += w + PAD
  return canvas


def bar_chart(
  names: Sequence[str],
  values: Sequence[float],
  width: int = 480,
  title: str | None = None,
  fmt: str = "{:.1%}",
) -> Image.Image:
  """Horizontal bars for values in ``[0, 1]``, one row per name, the value printed."""
  lh = line_height()
  fnt = font()
  name_w = max(int(fnt.getlength(n)) for n in names) + PAD
  value_w = int(fnt.getlength("100.0%")) + PAD
  bar_w = max(40, width - name_w - value_w - 2 * PAD)
  title_h = lh + PAD if title else 0
  canvas = Image.new(
    "RGB", (name_w + bar_w + value_w + 2 * PAD, title_h + PAD + lh * len(names) + PAD), "white"
  )
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((PAD, PAD), title, fill="black", font=fnt)
  for i, (name, value) in enumerate(zip(names, values)):
    y = title_h + PAD + i * lh
    draw.text((PAD, y), name, fill="black", font=fnt)
    x0 = PAD + name_w
    draw.rectangle((x0, y + 2, x0 + bar_w, y + lh - 2), outline=(200, 200, 200))
    filled = int(round(bar_w * float(np.clip(value, 0.0, 1.0))))
    if filled:
      draw.rectangle((x0, y + 2, x0 + filled, y + lh - 2), fill=(70, 110, 180))
    draw.text((x0 + bar_w + PAD, y), fmt.format(float(value)), fill="black", font=fnt)
  return canvas


def stack(parts: Sequence[Image.Image]) -> Image.Image:
  """PIL images one under another, left-aligned, on white."""
  width = max(p.width for p in parts)
  canvas = Image.new("RGB", (width, sum(p.height for p in parts)), "white")
  y = 0
  for part in parts:
    canvas.paste(part.convert("RGB"), (0, y))
    y += part.height
  return canvas
