"""Atomic file writes and up-front checks of output directories.

:func:`atomic_write` writes a file completely or not at all: the bytes go to a temporary
file in the destination's directory, which is flushed, synced and then renamed over the
destination (``os.replace``, atomic on POSIX). A reader never sees a partial file, and a
failure (full disk, interrupt) leaves the previous file, if any, untouched and no temporary
file behind. :func:`check_writable_dir` finds an unwritable or too-full output directory
before any work starts; :func:`save_png` and :func:`save_npy` write images and arrays
through it. Any module may use it (it imports only NumPy and Pillow).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import tempfile
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image

__all__ = ["atomic_write", "check_writable_dir", "file_sha256", "save_npy", "save_png"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Writes ``path`` atomically: ``write(fh)`` fills a temporary file that replaces it.

    Args:
      path: the destination file; its directory must exist.
      write: called once with a binary file object open for writing (e.g.
        ``lambda fh: np.save(fh, array)``).

    Raises:
      Whatever ``write`` or the file system raises (``OSError`` for a full disk); the
      destination is then unchanged and the temporary file removed.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def check_writable_dir(directory: str | os.PathLike, needed_bytes: int = 0) -> pathlib.Path:
    """Creates ``directory`` if needed and checks that files can be written there.

    Args:
      directory: the output directory.
      needed_bytes: bytes about to be written there; the file system must have at least
        that much free space.

    Returns:
      The directory as a :class:`pathlib.Path`.

    Raises:
      OSError: it cannot be created, is not a directory, a file cannot be created in it
        (permissions, read-only file system), or it has less free space than
        ``needed_bytes``; the message names the directory and the numbers.
    """
    directory = pathlib.Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise OSError(f"cannot write to the output directory {directory}: {exc.strerror or exc}") from None
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise OSError(
            f"not enough free space in {directory}: the outputs need about {needed_bytes / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB are free"
        )
    return directory


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes ``image`` (``(H, W)`` or ``(H, W, 3|4)`` uint8) as a PNG, atomically, creating the
    parent directory if needed."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: Image.fromarray(np.ascontiguousarray(image)).save(fh, format="PNG"))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes ``array`` as ``.npy``, atomically, creating the parent directory if needed."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: np.save(fh, array))


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks): the content key of the mesh
    cache and of a finished refinement's outputs."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
