"""Computes MACO's magnitude spectrum from a folder of photos; writes featviz's package data.

    python scripts/maco_spectrum.py /work/shared/images/imagenet-sample \
        featviz/param/maco_spectrum.npz

MACO (Fel et al., NeurIPS 2023) fixes the Fourier magnitude of the image to the mean magnitude
spectrum of natural images and optimizes only the phase. Each photo is resized (shorter side
to ``SIZE``, bicubic) and centre-cropped to ``SIZE`` x ``SIZE``, its colour mapped back through
Lucid's decorrelation (``featviz.param.correlate_color``: the decode recorrelates it, as
Xplique's ``spectrum_decorrelated`` is stored), the mean of each channel removed (the decode
standardizes the image, so the DC bin carries nothing), and ``|rfft2|`` of every channel
averaged over the photos. Stored as float16 ``(3, SIZE, SIZE // 2 + 1)`` with the folder's
SHA-256 (of each file's name and SHA-256, in name order), file count and image sizes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib

import numpy as np
from PIL import Image

from featviz.kernels.fourier_decode.reference import COLOR_MATRIX

SIZE = 256  # Xplique and Horama ship their spectrum at one size and resize it per render
SUFFIXES = {".jpeg", ".jpg", ".png"}


def photos(folder: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)


def folder_hash(paths: list[pathlib.Path]) -> str:
  h = hashlib.sha256()
  for p in paths:
    h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
  return h.hexdigest()


def square(image: Image.Image, size: int) -> np.ndarray:
  w, h = image.size
  s = size / min(w, h)
  image = image.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
  w, h = image.size
  left, top = (w - size) // 2, (h - size) // 2
  return np.asarray(image.crop((left, top, left + size, top + size)), np.float64) / 255.0


def spectrum(paths: list[pathlib.Path], size: int = SIZE) -> tuple[np.ndarray, list]:
  inverse = np.linalg.inv(COLOR_MATRIX.T.astype(np.float64))
  total = np.zeros((3, size, size // 2 + 1))
  sizes = []
  for p in paths:
    with Image.open(p) as im:
      sizes.append(list(im.size))
      x = square(im.convert("RGB"), size)
    t = x @ inverse
    t = t - t.mean(axis=(0, 1))
    total += np.abs(np.fft.rfft2(np.moveaxis(t, -1, 0)))
  return total / len(paths), sizes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folder", type=pathlib.Path)
  parser.add_argument("out", type=pathlib.Path)
  args = parser.parse_args()
  paths = photos(args.folder)
  if not paths:
    raise SystemExit(f"no photos ({', '.join(sorted(SUFFIXES))}) in {args.folder}")
  magnitude, sizes = spectrum(paths)
  widths, heights = zip(*sizes)
  meta = {
    "folder": args.folder.name,
    "sha256": folder_hash(paths),
    "files": len(paths),
    "bytes": sum(p.stat().st_size for p in paths),
    "image_sizes": {"width": [min(widths), max(widths)], "height": [min(heights), max(heights)]},
    "size": SIZE,
    "method": "resize shorter side to size (bicubic), centre crop, Lucid's decorrelated colour, "
    "per-channel mean removed, mean |rfft2| over photos",
  }
  np.savez_compressed(args.out, magnitude=magnitude.astype(np.float16), meta=json.dumps(meta))
  print(f"wrote {args.out}: {magnitude.shape} from {len(paths)} photos, sha256 {meta['sha256']}")


if __name__ == "__main__":
  main()
