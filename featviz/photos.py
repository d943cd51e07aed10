"""Photos in: one file or a folder of files as float images in ``[0, 1]`` for a model.

Every photo goes through the same three steps, the usual evaluation crop:

1. decode with PIL, apply its EXIF orientation, convert to ``"RGB"`` (3 channels)
   or ``"L"`` (1 channel, ITU-R 601 luma) as the model's ``spec.channels`` says;
   16-bit greyscale (PIL modes ``I;16*`` and ``I``, as PNG decodes) is read at its real
   depth instead, as floats over 65535 (PIL's own conversion to ``"L"`` clips it, so a
   0-65535 gradient read as mean 0.998, red-team report section 1), grey to RGB by copying;
2. resize so that the *shorter* side is ``size`` pixels (bicubic, which PIL
   antialiases when shrinking), keeping the aspect ratio;
3. crop the central ``size x size`` square, and divide by 255 (65535 for 16-bit).

So a 500 x 375 photo at ``size=224`` becomes 299 x 224, then its middle 224 x 224.
Use ``size=model.spec.image_size`` (224 for EfficientNet-Lite0 and InceptionV1, 28
for mnist_cnn).

Errors are :class:`featviz.model.ImageShapeError` subclasses, so the command line
reports them as bad input (exit code 2); that includes a decompression bomb
(:class:`ImageTooLargeError`, past PIL's ``Image.MAX_IMAGE_PIXELS`` guard).
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featviz.model import ImageShapeError

# File name endings taken as photos by :func:`load_folder` (case-insensitive).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class UnreadableImageError(ImageShapeError):
  """A file that is missing or that PIL cannot decode as an image."""


class EmptyFolderError(ImageShapeError):
  """A folder with no photo files in it."""


class ImageTooLargeError(UnreadableImageError):
  """A photo with more pixels than PIL decodes safely (a decompression bomb)."""


# PIL's modes for 16-bit greyscale: I;16 (native), I;16B / I;16L (byte orders), and I, which
# older Pillow gives 16-bit PNGs (PNG spec: greyscale at bit depth 16, samples 0-65535).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_WIDE_MAX = 65535.0


def _check(size: int, channels: int) -> None:
  if int(size) < 1:
    raise ValueError(f"size must be a positive number of pixels, got {size}")
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels}")


def _decode(path: pathlib.Path, channels: int) -> tuple[Image.Image, float]:
  """``(image, full scale)``: ``"RGB"``/``"L"`` over 255, or 16-bit grey as ``"F"`` over 65535."""
  try:
    with Image.open(path) as im:
      im = ImageOps.exif_transpose(im)
      if im.mode in _WIDE_MODES:
        return im.convert("F"), _WIDE_MAX
      return im.convert("RGB" if channels == 3 else "L"), 255.0
  except Image.DecompressionBombError as e:
    raise ImageTooLargeError(
      f"{str(path)!r} is too large to decode safely ({e}); photos are shrunk to the "
      "model's input size (224 px or less), so downscale it first (PIL's limit is "
      "PIL.Image.MAX_IMAGE_PIXELS)"
    ) from None
  except FileNotFoundError as e:
    raise UnreadableImageError(f"no such image file: {str(path)!r}") from e
  except IsADirectoryError as e:
    raise UnreadableImageError(f"{str(path)!r} is a folder, not an image file") from e
  except (UnidentifiedImageError, OSError, ValueError) as e:
    raise UnreadableImageError(f"cannot read {str(path)!r} as an image: {e}") from e


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
  """Shorter side to ``size`` (bicubic), then the central ``size x size`` square."""
  w, h = image.size
  scale = size / min(w, h)
  # max(size, ...): rounding must never leave the longer side short of the crop.
  new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
  image = image.resize((new_w, new_h), Image.BICUBIC)
  left, top = (new_w - size) // 2, (new_h - size) // 2
  return image.crop((left, top, left + size, top + size))


def load_image(path: str | os.PathLike, size: int, channels: int = 3) -> np.ndarray:
  """One photo as ``(size, size, channels)`` float32 in ``[0, 1]``.

  Args:
    path: an image file PIL can read (JPEG, PNG, ...).
    size: output side in pixels; the shorter side is resized to it, then centre-cropped.
    channels: 3 for RGB, 1 for greyscale (use ``model.spec.channels``).

  Raises:
    UnreadableImageError: the file is missing or not an image.
    ImageTooLargeError: a decompression bomb (more pixels than PIL decodes safely).
    ValueError: ``size`` < 1 or ``channels`` not 1 or 3.
  """
  _check(size, channels)
  decoded, scale = _decode(pathlib.Path(path), channels)
  image = resize_and_crop(decoded, int(size))
  array = np.asarray(image, np.float32) / scale
  if array.ndim == 2 and channels == 3:  # 16-bit grey for an RGB model: R = G = B
    array = np.repeat(array[..., None], 3, axis=-1)
  # Bicubic can overshoot by a few per cent in float mode ("F"); 8-bit modes clip themselves.
  return np.clip(array, 0.0, 1.0).reshape(int(size), int(size), channels)


def image_files(folder: str | os.PathLike) -> list[pathlib.Path]:
  """The photo files directly inside ``folder``, sorted by name (hidden files skipped)."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise UnreadableImageError(f"{str(folder)!r} is not a folder")
  return sorted(
    p
    for p in folder.iterdir()
    if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in EXTENSIONS
  )


def load_folder(
  folder: str | os.PathLike, size: int, channels: int = 3
) -> tuple[np.ndarray, list[pathlib.Path]]:
  """Every photo in ``folder`` (not its subfolders) as one batch.

  Args:
    folder: a folder holding files ending in one of :data:`EXTENSIONS`.
    size: side of every output image, as in :func:`load_image`.
    channels: 3 for RGB, 1 for greyscale.

  Returns:
    ``(images, paths)``: ``images`` is ``(N, size, size, channels)`` float32 in ``[0, 1]``,
    ``paths[i]`` the file of ``images[i]``, in name order.

  Raises:
    EmptyFolderError: no photo files in ``folder``.
    UnreadableImageError: ``folder`` is not a folder, or one of its photos cannot be read
      (the message names it).
  """
  _check(size, channels)
  paths = image_files(folder)
  if not paths:
    raise EmptyFolderError(
      f"no photos in {str(folder)!r} (looked for files ending in {', '.join(EXTENSIONS)})"
    )
  return load_files(paths, size, channels), paths


def load_files(paths: Sequence[str | os.PathLike], size: int, channels: int = 3) -> np.ndarray:
  """``paths`` as one ``(N, size, size, channels)`` batch, each as :func:`load_image` gives it.

  The files are decoded on a thread per core: PIL lets go of Python's lock while it decodes and
  resizes (measured: the 264 photos of ``imagenet-sample`` at 128 px in 0.97 s against 1.79 s
  one after another, 2-core CPU; the same arrays). When several files fail, the error is the
  first one's in ``paths`` order, as a loop would raise it.
  """
  _check(size, channels)
  images = np.empty((len(paths), int(size), int(size), channels), np.float32)
  if not len(paths):
    return images
  workers = min(len(paths), os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for i, image in enumerate(pool.map(lambda p: load_image(p, size, channels), paths)):
      images[i] = image
  return images


def load_images(
  path: str | os.PathLike, size: int, channels: int = 3
) -> tuple[np.ndarray, list[pathlib.Path]]:
  """A file or a folder: ``(images (N, size, size, channels), paths)``, N = 1 for a file."""
  path = pathlib.Path(path)
  if path.is_dir():
    return load_folder(path, size, channels)
  return load_image(path, size, channels)[None], [path]
