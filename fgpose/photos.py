"""Finding and reading arbitrary user photos (``python -m fgpose.predict``).

* :func:`find_images`: the photos named on a command line: files as given, directories
  searched recursively for :data:`IMAGE_SUFFIXES` (case-insensitive), each photo keyed by its
  path relative to the directory it was found in (POSIX separators; a file given directly is
  keyed by its name), like the release's image keys (``00001.jpg``,
  ``make/model/year/hash.jpg``).
* :func:`read_photo`: one photo as ``(H, W, 3)`` uint8 RGB *as a viewer shows it*: the EXIF
  orientation tag is applied (a phone photo stored sideways comes out upright, and ``H x W``
  are the upright sizes), and every other mode (greyscale, palette, CMYK, 16-bit, RGBA with
  its alpha dropped) is converted to RGB. A file that cannot be decoded completely (not an
  image, truncated, a decompression bomb) raises :class:`PhotoError` instead.

Pillow only; nothing here knows about models.
"""

from __future__ import annotations

import os
import pathlib
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps

__all__ = ["IMAGE_SUFFIXES", "PhotoError", "find_images", "read_photo"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""File name endings searched for in directories (files given directly are read whatever
their name)."""


class PhotoError(ValueError):
    """A photo cannot be read; the message names the file and the reason."""


def find_images(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[str, pathlib.Path]], list[dict]]:
    """The photos under ``paths`` (files and directories), in a stable sorted order.

    Returns:
      ``(images, problems)``: ``images`` ``[(key, path)]`` with unique keys (module
      docstring), sorted by key within each argument; ``problems`` ``[{'file', 'reason'}]``
      for arguments that do not exist and for photos whose key repeats an earlier one
      (those are not returned).
    """
    images: list[tuple[str, pathlib.Path]] = []
    problems: list[dict] = []
    seen: set[str] = set()
    for arg in paths:
        root = pathlib.Path(arg)
        if root.is_dir():
            found = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*")
                           if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif root.is_file():
            found = [(root.name, root)]
        else:
            problems.append({"file": str(root), "reason": "no such file or directory"})
            continue
        for key, path in found:
            if key in seen:
                problems.append({"file": str(path), "reason": f"another photo already has the key {key!r}"})
                continue
            seen.add(key)
            images.append((key, path))
    return images, problems


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """The photo at ``path`` as ``(H, W, 3)`` uint8 RGB, EXIF orientation applied (module docstring).

    Raises:
      PhotoError: the file cannot be opened or fully decoded (the message says why).
    """
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits
                a = np.asarray(im, np.float64)
                top = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
                return np.repeat((a * 255.0 / top).round().clip(0, 255).astype(np.uint8)[..., None], 3, -1)
            arr = np.asarray(im.convert("RGB"), np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise PhotoError(f"cannot read the photo {path}: {exc}") from None
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise PhotoError(f"cannot read the photo {path}: empty image {arr.shape}")
    return np.ascontiguousarray(arr)
