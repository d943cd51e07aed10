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
import tempfile
from typing import Iterator, Sequence

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
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def to_uint8(image: np.ndarray) -> np.ndarray:
  """``[0, 1]`` float ``(H, W, C)`` -> uint8 ``(H, W)`` or ``(H, W, 3)``, rounded."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(to_uint8(image)).save(buf, format="PNG")
  return buf.getvalue()


def save_png(image: np.ndarray | Image.Image, path: str | os.PathLike) -> pathlib.Path:
  """Writes one image (``[0, 1]`` float array or PIL image) as PNG, atomically."""
  data = image if isinstance(image, Image.Image) else Image.fromarray(to_uint8(image))
  with atomic_write(path) as f:
    data.save(f, format="PNG")
  return pathlib.Path(path)


def _font(size: int) -> ImageFont.ImageFont:
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has no sized default font
    return ImageFont.load_default()


def grid(images: Sequence[np.ndarray] | np.ndarray, labels: Sequence[str] | None = None, *,
         cols: int | None = None, scale: int = 1, pad: int = 4,
         title: str | None = None) -> Image.Image:
  """Tiles images ``(N, H, W, C)`` in ``[0, 1]`` into one labelled RGB picture.

  Args:
    images: N images of one size; greyscale ones are shown grey.
    labels: a caption under each tile.
    cols: tiles per row (default: about square).
    scale: integer upscaling of each tile (nearest), for small images.
    pad: pixels between tiles.
    title: a line of text above the grid.
  """
  images = [np.asarray(x, np.float32) for x in images]
  n = len(images)
  cols = cols or max(1, int(np.ceil(np.sqrt(n))))
  rows = int(np.ceil(n / cols))
  h, w = images[0].shape[:2]
  th, tw = h * scale, w * scale
  font = _font(max(10, min(16, tw // 10)))
  label_h = 0
  if labels:
    label_h = font.getbbox("Ag")[3] + 4
  title_h = font.getbbox("Ag")[3] + 8 if title else 0
  canvas = Image.new("RGB", (cols * (tw + pad) + pad, title_h + rows * (th + label_h + pad) + pad),
                     "white")
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((pad, 2), title, fill="black", font=font)
  for i, image in enumerate(images):
    r, c = divmod(i, cols)
    tile = Image.fromarray(to_uint8(image)).convert("RGB")
    if scale != 1:
      tile = tile.resize((tw, th), Image.NEAREST)
    x0 = pad + c * (tw + pad)
    y0 = title_h + pad + r * (th + label_h + pad)
    canvas.paste(tile, (x0, y0))
    if labels:
      text = str(labels[i])
      while text and draw.textlength(text, font=font) > tw:
        text = text[:-2] + "…" if len(text) > 2 else ""
      draw.text((x0, y0 + th + 1), text, fill="black", font=font)
  return canvas


def safe_name(label: str) -> str:
  """A file-name-safe version of a label such as ``"block10:5@3,4"``."""
  keep = [ch if ch.isalnum() or ch in "-_." else "_" for ch in label]
  return "".join(keep).strip("_")[:80] or "image"
