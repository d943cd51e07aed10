"""Images out: PNG files written atomically, and labelled grids.

Every writer goes through :func:`atomic_write`: the bytes land in a temporary
file beside the target, then ``os.replace`` renames it, so a crash never leaves
a truncated PNG under the final name.
"""

from __future__ import annotations

import contextlib
import io
import os
import pathlib
import re
import tempfile
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _umask() -> int:
  """The process's umask, read without changing it where the kernel reports it.

  ``os.umask`` can only read the mask by setting it, and for that moment every file any other
  thread of the caller's program creates gets mode 0666/0777. Linux (4.7+) reports the mask
  in ``/proc/self/status``; elsewhere the set-and-restore remains.
  """
  try:
    with open("/proc/self/status", encoding="ascii") as status:
      for line in status:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[io.IOBase]:
  """Opens a temporary file beside ``path``; renames it onto ``path`` on success."""
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  try:
    # mkstemp makes the file private (0600); give it the permissions open() would.
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    if e.filename is None:  # a write's ENOSPC names no file: name the one being written
      raise OSError(e.errno, e.strerror, str(path)) from e
    raise
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def to_uint8(image: np.ndarray) -> np.ndarray:
  """``[0, 1]`` float ``(H, W, C)`` -> uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (RGBA,
  which PIL writes as an RGBA PNG), rounded."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format="PNG")
  return buf.getvalue()


def save_png(image: np.ndarray | Image.Image, path: str | os.PathLike) -> pathlib.Path:
  """Writes one image (``[0, 1]`` float array or PIL image) as PNG, atomically: grey, RGB, or
  RGBA for a 4-channel image (``RenderConfig(alpha=True)``)."""
  data = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
  with atomic_write(path) as f:
    data.save(f, format="PNG")
  return pathlib.Path(path)


# The checkerboard behind transparent images: 8 px squares of light and mid grey (the usual
# editor's pattern), in [0, 1].
CHECKER_SQUARE = 8
CHECKER_SHADES = (0.8, 0.6)


def checkerboard(h: int, w: int, square: int = CHECKER_SQUARE) -> np.ndarray:
  """``(H, W, 3)`` float32 grey checkerboard, the background that shows transparency."""
  yy, xx = np.meshgrid(np.arange(h) // square, np.arange(w) // square, indexing="ij")
  light, dark = CHECKER_SHADES
  board = np.where((yy + xx) % 2 == 0, light, dark).astype(np.float32)
  return np.repeat(board[..., None], 3, axis=-1)


def on_checkerboard(image: np.ndarray) -> np.ndarray:
  """An RGBA image ``(H, W, 4)`` composited over :func:`checkerboard` -> ``(H, W, 3)``; other
  images unchanged."""
  image = np.asarray(image, np.float32)
  if image.ndim != 3 or image.shape[-1] != 4:
    return image
  alpha = image[..., 3:]
  return image[..., :3] * alpha + checkerboard(*image.shape[:2]) * (1 - alpha)


def normalized_transparency(transparency: np.ndarray, percentile: float = 99.0) -> np.ndarray:
  """MACO's transparency map ``(H, W)`` scaled to ``[0, 1]``: divided by its ``percentile``
  (99: a few hot pixels do not wash out the rest), clipped. All zeros stay zeros."""
  t = np.abs(np.asarray(transparency, np.float32))
  top = float(np.percentile(t, percentile)) if t.size else 0.0
  return np.clip(t / top, 0, 1) if top > 0 else np.zeros_like(t)


def overlay_transparency(image: np.ndarray, transparency: np.ndarray) -> np.ndarray:
  """The figure of Fel et al. (2023) and Xplique's ``plot_maco``: the image ``(H, W, 3)`` with
  its transparency map ``(H, W)`` (:func:`normalized_transparency`) as alpha, ``(H, W, 4)``
  in [0, 1]: where the objective's gradient was small the image fades out (:func:`grid`
  and the gallery show it on a checkerboard; :func:`save_png` writes it as RGBA)."""
  image = np.asarray(image, np.float32)[..., :3]
  if np.shape(transparency) != image.shape[:2]:
    raise ValueError(
      f"transparency {np.shape(transparency)} does not match the image {image.shape[:2]}"
    )
  alpha = normalized_transparency(transparency)[..., None]
  return np.concatenate([image, alpha], axis=-1)


def _font(size: int) -> ImageFont.ImageFont:
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has no sized default font
    return ImageFont.load_default()


# A narrow grid widens up to this many pixels to keep its title or note on one line; a longer
# title wraps. 480 px holds about 70 characters of the 12 px font a 128 px tile gets.
TEXT_WIDTH = 480
# Captions and titles break after these characters (and within a word only when it alone is
# wider than the line): "0.5*block5:3+0.5*block5:9" breaks after "+" or "*".
_PIECES = re.compile(r"[^ +\-*,/]+[ +\-*,/]*|[ +\-*,/]+")


def wrap(text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
  """Splits ``text`` into lines no wider than ``width`` pixels in ``font``; keeps every character.

  Lines break at newlines, then after a space or one of ``+ - * , /``, and inside a word only
  when the word alone is wider than ``width`` (at least one character per line, so a
  character wider than ``width`` still gets its own line).
  """
  lines = []
  for paragraph in str(text).split("\n"):
    line = ""
    for piece in _PIECES.findall(paragraph):
      if font.getlength((line + piece).rstrip()) <= width:
        line += piece
        continue
      if line.strip():
        lines.append(line.rstrip())
      while len(piece) > 1 and font.getlength(piece.rstrip()) > width:
        k = 1
        while k < len(piece) and font.getlength(piece[: k + 1]) <= width:
          k += 1
        lines.append(piece[:k])
        piece = piece[k:]
      line = piece
    lines.append(line.rstrip())
  return lines


def grid(
  images: Sequence[np.ndarray] | np.ndarray,
  labels: Sequence[str] | None = None,
  *,
  cols: int | None = None,
  scale: int = 1,
  pad: int = 4,
  title: str | None = None,
  note: str | None = None,
  font_size: int | None = None,
) -> Image.Image:
  """Tiles images ``(N, H, W, C)`` in ``[0, 1]`` into one labelled RGB picture; RGBA images
  are shown over a checkerboard (:func:`on_checkerboard`).

  No text is ever cut: each caption wraps to its tile's width (see :func:`wrap`) and every row
  of captions is as tall as its longest one; the title and the note widen a narrow grid up to
  :data:`TEXT_WIDTH` pixels (the tiles then sit centred) and wrap beyond that.

  Args:
    images: N images of one size; greyscale ones are shown grey.
    labels: N captions, one under each tile, in the tiles' order (row by row); ``None`` or
      empty for none. Say in ``note`` what a number in them means.
    cols: tiles per row (default: about square).
    scale: integer upscaling of each tile (nearest), for small images.
    pad: pixels between tiles.
    title: text above the grid; ``"\\n"`` starts a new line.
    note: text below the grid, in grey, e.g. ``"(n): objective at the last step"``.
    font_size: text height in pixels (default: a tenth of the tile width, within 10-16).

  Returns:
    The picture: ``cols`` tiles of ``scale * W`` pixels plus ``pad`` between and around them
    in width (or more, for the title), and the rows of tiles and captions, the title and the
    note in height.

  Raises:
    ValueError: ``labels`` is not one caption per image.
  """
  images = [np.asarray(x, np.float32) for x in images]
  n = len(images)
  if labels and len(labels) != n:
    raise ValueError(f"{len(labels)} labels for {n} images: give one caption per image")
  cols = cols or max(1, int(np.ceil(np.sqrt(n))))
  rows = int(np.ceil(n / cols))
  h, w = images[0].shape[:2]
  th, tw = h * scale, w * scale
  font = _font(font_size or max(10, min(16, tw // 10)))
  line_h = font.getbbox("Ag")[3] + 2
  grid_w = cols * (tw + pad) + pad
  widest = max(
    [font.getlength(line) for text in (title, note) if text for line in str(text).split("\n")],
    default=0,
  )
  width = max(grid_w, min(int(np.ceil(widest)) + 2 * pad, TEXT_WIDTH))
  title_lines = wrap(title, font, width - 2 * pad) if title else []
  note_lines = wrap(note, font, width - 2 * pad) if note else []
  captions = [wrap(str(x), font, tw) for x in labels] if labels else []
  label_h = max(map(len, captions)) * line_h + 2 if captions else 0
  title_h = len(title_lines) * line_h + 6 if title_lines else 0
  note_h = len(note_lines) * line_h + 4 if note_lines else 0
  height = title_h + rows * (th + label_h + pad) + pad + note_h
  canvas = Image.new("RGB", (width, height), "white")
  draw = ImageDraw.Draw(canvas)
  for k, line in enumerate(title_lines):
    draw.text((pad, 2 + k * line_h), line, fill="black", font=font)
  left = (width - grid_w) // 2
  for i, image in enumerate(images):
    r, c = divmod(i, cols)
    tile = Image.fromarray(to_uint8(on_checkerboard(image))).convert("RGB")
    if scale != 1:
      tile = tile.resize((tw, th), Image.NEAREST)
    x0 = left + pad + c * (tw + pad)
    y0 = title_h + pad + r * (th + label_h + pad)
    canvas.paste(tile, (x0, y0))
    for k, line in enumerate(captions[i] if captions else []):
      draw.text((x0, y0 + th + 1 + k * line_h), line, fill="black", font=font)
  for k, line in enumerate(note_lines):
    draw.text((pad, height - note_h + 2 + k * line_h), line, fill="dimgray", font=font)
  return canvas


def safe_name(label: str) -> str:
  """A file-name-safe version of a label such as ``"block10:5@3,4"``."""
  keep = [ch if ch.isalnum() or ch in "-_." else "_" for ch in label]
  return "".join(keep).strip("_")[:80] or "image"
