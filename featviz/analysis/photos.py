"""Photos in: one file or a folder of files as float images in ``[0, 1]`` for a model.

Every photo goes through the same three steps, the usual evaluation crop:

1. decode with PIL, apply its EXIF orientation, convert to ``"RGB"`` (3 channels)
   or ``"L"`` (1 channel, ITU-R 601 luma) as the model's ``spec.channels`` says;
2. resize so that the *shorter* side is ``size`` pixels (bicubic, which PIL
   antialiases when shrinking), keeping the aspect ratio;
3. crop the central ``size x size`` square, and divide by 255.

So a 500 x 375 photo at ``size=224`` becomes 299 x 224, then its middle 224 x 224.
Use ``size=model.spec.image_size`` (224 for EfficientNet-Lite0 and InceptionV1, 28
for mnist_cnn).

Errors are :class:`featviz.model.ImageShapeError` subclasses, so the command line
reports them as bad input (exit code 2).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from featviz.model import ImageShapeError

# File name endings taken as photos by :func:`load_folder` (case-insensitive).
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class UnreadableImageError(ImageShapeError):
  """A file that is missing or that PIL cannot decode as an image."""


class EmptyFolderError(ImageShapeError):
  """A folder with no photo files in it."""


def _check(size: int, channels: int) -> None:
  if int(size) < 1:
    raise ValueError(f"size must be a positive number of pixels, got {size}")
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels}")


def _decode(path: pathlib.Path, channels: int) -> Image.Image:
  try:
    with Image.open(path) as im:
      im = ImageOps.exif_transpose(im)
      return im.convert("RGB" if channels == 3 else "L")
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
    ValueError: ``size`` < 1 or ``channels`` not 1 or 3.
  """
  _check(size, channels)
  image = resize_and_crop(_decode(pathlib.Path(path), channels), int(size))
  array = np.asarray(image, np.float32) / 255.0
  return array.reshape(int(size), int(size), channels)


def image_files(folder: str | os.PathLike) -> list[pathlib.Path]:
  """The photo files directly inside ``folder``, sorted by name (hidden files skipped)."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise UnreadableImageError(f"{str(folder)!r} is not a folder")
  return sorted(p for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in EXTENSIONS)


def load_folder(folder: str | os.PathLike, size: int,
                channels: int = 3) -> tuple[np.ndarray, list[pathlib.Path]]:
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
        f"no photos in {str(folder)!r} (looked for files ending in {', '.join(EXTENSIONS)})")
  images = np.empty((len(paths), int(size), int(size), channels), np.float32)
  for i, path in enumerate(paths):
    images[i] = load_image(path, size, channels)
  return images, paths


def load_images(path: str | os.PathLike, size: int,
                channels: int = 3) -> tuple[np.ndarray, list[pathlib.Path]]:
  """A file or a folder: ``(images (N, size, size, channels), paths)``, N = 1 for a file."""
  path = pathlib.Path(path)
  if path.is_dir():
    return load_folder(path, size, channels)
  return load_image(path, size, channels)[None], [path]
