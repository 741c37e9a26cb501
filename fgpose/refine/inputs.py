"""Where refinement finds each image's photo, reference mask and mesh, and which images it skips.

For every key of a release annotation table (keys are relative paths, e.g. ``00001.jpg`` or
``make/model/year/hash.jpg``):

* photo: ``<images>/<key>`` (``images`` is the directory the keys are relative to, e.g.
  ``Image/StanfordCars/cars_train``, ``Image/FGVC_Aircraft`` or ``Image/CompCars/image``).
  Only its header is read, for its size ``W x H``: the annotation frame is
  ``300 x int(H * 300 / W)`` (:func:`fgpose.camera.annotation_frame_height`).
* mask: ``<masks>/<key with its extension replaced by .png>`` (e.g. ``00001.png``,
  ``make/model/year/hash.png``), any resolution covering the whole photo, nonzero =
  foreground (palette PNGs: nonzero index; colour PNGs: any nonzero colour channel); or,
  when there is no such PNG, ``<key with .npy>``, a 2-D array of foreground probabilities
  in [0, 1] (foreground = ``>= 0.5`` for hard objectives). For a ``soft`` objective
  (:mod:`fgpose.refine.objective`) an 8-bit greyscale PNG with more than two grey levels is
  read as probabilities ``grey / 255`` (:func:`read_reference`). It is resized to the
  annotation frame with nearest neighbour (:func:`fgpose.refine.search.to_annotation_frame`).
* mesh: ``<cad>/<synset>/<model_id>/model.obj`` (ShapeNet layout; the synset is the
  dataset's, or, without a dataset, the first of the cars/airplanes synsets that has the
  model), else ``<cad>/<model_id>/model.obj``.

Images whose photo, mask or mesh is missing or unreadable (or whose mask is empty) are
skipped with one of :data:`SKIP_REASONS` and a detail naming the file.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import NamedTuple

import numpy as np
from PIL import Image

from fgpose import annotations as anno_lib
from fgpose import camera

SKIP_REASONS = ("bad key", "photo missing", "photo unreadable", "mask missing", "mask unreadable", "mask empty",
                "mesh missing", "mesh unreadable")
"""Why an image is not refined, in the order the summary lists them."""


class Skip(NamedTuple):
    """Why one image is not refined: ``reason`` is one of :data:`SKIP_REASONS`, ``detail``
    names the file and the error."""

    reason: str
    detail: str


@dataclasses.dataclass(frozen=True)
class ImageInput:
    """One image to refine, its files found and its photo's size read.

    Attributes:
      key: the annotation key (a relative path, see :func:`relative_key`).
      annotation: the starting (v1) release record.
      photo: the photo file; mask: the reference-mask PNG; mesh_path: the CAD ``model.obj``.
      width, height: the photo's size ``W x H`` in pixels.
      frame_height: ``int(H * 300 / W)``, rows of the width-300 annotation frame.
    """

    key: str
    annotation: anno_lib.Annotation
    photo: pathlib.Path
    mask: pathlib.Path
    width: int
    height: int
    frame_height: int
    mesh_path: pathlib.Path


def relative_key(key: str) -> pathlib.PurePosixPath:
    """The key as a relative POSIX path; ValueError for an absolute path, ``..``, ``.``, an
    empty part, a backslash or a NUL (a key must not point outside its directory)."""
    rel = pathlib.PurePosixPath(key)
    if rel.is_absolute() or "\\" in key or "\0" in key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"not a plain relative path: {key!r}")
    return rel


def png_path(root: pathlib.Path, key: str) -> pathlib.Path:
    """``<root>/<key with its extension replaced by .png>`` (masks, overlays)."""
    return root.joinpath(*relative_key(key).with_suffix(".png").parts)


def mask_path(masks_dir: pathlib.Path, key: str) -> pathlib.Path:
    """The reference mask of ``key``: ``<masks_dir>/<key with its extension replaced by .png>``,
    or the ``.npy`` of the same name when only that exists (the PNG path when neither does)."""
    png = png_path(masks_dir, key)
    npy = png.with_suffix(".npy")
    return npy if not png.is_file() and npy.is_file() else png


def mesh_candidates(cad_dir: pathlib.Path, model_id: str, dataset: str | None) -> list[pathlib.Path]:
    """Where the mesh of ``model_id`` is looked for, in order."""
    synsets = [anno_lib.DATASETS[dataset].synset] if dataset else list(dict.fromkeys(
        d.synset for d in anno_lib.DATASETS.values()))
    return [cad_dir / s / model_id / "model.obj" for s in synsets] + [cad_dir / model_id / "model.obj"]


def read_photo_size(path: pathlib.Path) -> tuple[int, int]:
    """``(W, H)`` from the photo's header (the pixels are not decoded)."""
    with Image.open(path) as im:
        w, h = im.size
    if w <= 0 or h <= 0:
        raise ValueError(f"invalid size {w}x{h}")
    return w, h


def read_mask(path: pathlib.Path) -> np.ndarray:
    """A PNG mask as ``(H, W)`` bool: nonzero = foreground (palette index, grey level or any colour channel)."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("LA", "PA", "La"):
            im = im.getchannel(0)  # the grey level or palette index, not the alpha
        elif im.mode in ("RGBA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        arr = np.asarray(im)
    if arr.ndim == 3:
        arr = arr.any(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"unexpected mask shape {arr.shape}")
    return arr != 0


def read_reference(path: pathlib.Path, soft: bool = False) -> np.ndarray:
    """A reference mask (module docstring) as ``(H, W)`` bool, or float32 probabilities.

    Args:
      path: a ``.png`` mask or a ``.npy`` probability map.
      soft: keep probabilities: an ``.npy`` map as it is, an 8-bit greyscale PNG with more
        than two grey levels as ``grey / 255`` (one with two levels or fewer, palette and
        colour PNGs are binary masks: nonzero = foreground). Without ``soft`` every
        reference is binary (an ``.npy`` map at ``>= 0.5``).

    Raises:
      ValueError: a non-2-D array, or an ``.npy`` map outside [0, 1].
    """
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"expected a 2-D array of probabilities, got {arr.dtype} {arr.shape}")
        prob = arr.astype(np.float32)
        if not (np.all(np.isfinite(prob)) and prob.min(initial=0) >= 0 and prob.max(initial=0) <= 1):
            raise ValueError("probabilities must lie in [0, 1]")
        return prob if soft else prob >= 0.5
    if soft:
        with Image.open(path) as im:
            if im.mode == "L":
                grey = np.asarray(im)
                if len(np.unique(grey)) > 2:
                    return grey.astype(np.float32) / 255.0
    return read_mask(path)


def scan(table: dict[str, anno_lib.Annotation], images_dir: pathlib.Path, masks_dir: pathlib.Path,
         cad_dir: pathlib.Path, dataset: str | None = None) -> tuple[list[ImageInput], dict[str, Skip]]:
    """Checks every image's key, photo header, mask file and mesh path (module docstring).

    Args:
      table: ``{key: starting annotation}``.
      images_dir, masks_dir, cad_dir: the directories photos, masks and meshes are found in.
      dataset: a key of :data:`fgpose.annotations.DATASETS` (picks the ShapeNet synset), or
        None for any known synset.

    Returns:
      ``(inputs, skipped)``: the usable images in the table's order, and ``{key: Skip}`` for
      the others (mask contents and meshes are read later, :mod:`fgpose.refine.batching`).
    """
    found: list[ImageInput] = []
    skipped: dict[str, Skip] = {}
    mesh_paths: dict[str, pathlib.Path | None] = {}
    for key, ann in table.items():
        try:
            rel = relative_key(key)
        except ValueError as err:
            skipped[key] = Skip("bad key", str(err))
            continue
        photo = images_dir.joinpath(*rel.parts)
        if not photo.is_file():
            skipped[key] = Skip("photo missing", str(photo))
            continue
        try:
            w, h = read_photo_size(photo)
            frame_h = camera.annotation_frame_height(w, h)
            if frame_h < 1:
                raise ValueError(f"{w}x{h} is too small for a width-300 frame")
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
            skipped[key] = Skip("photo unreadable", f"{photo}: {type(err).__name__}: {err}")
            continue
        mask = mask_path(masks_dir, key)
        if not mask.is_file():
            skipped[key] = Skip("mask missing", str(mask))
            continue
        if ann.model_id not in mesh_paths:
            cands = mesh_candidates(cad_dir, ann.model_id, dataset)
            mesh_paths[ann.model_id] = next((c for c in cands if c.is_file()), None)
        mesh_path = mesh_paths[ann.model_id]
        if mesh_path is None:
            cands = mesh_candidates(cad_dir, ann.model_id, dataset)
            skipped[key] = Skip("mesh missing", "not found: " + ", ".join(map(str, cands)))
            continue
        found.append(ImageInput(key, ann, photo, mask, w, h, frame_h, mesh_path))
    return found, skipped


def read_alpha(path: pathlib.Path) -> np.ndarray | None:
    """The ``(H, W)`` uint8 alpha channel of a mask PNG, or None when it has none.

    Palette PNGs with transparency count as having one (their alpha after conversion to
    RGBA). Used by :func:`fgpose.refine.reference_checks.alpha_foreground` for masks whose
    object is only in the alpha channel, which :func:`read_mask` does not read.
    """
    with Image.open(path) as im:
        im.load()
        if im.mode == "P" and "transparency" in im.info:
            im = im.convert("RGBA")
        band = next((b for b in im.getbands() if b in ("A", "a")), None)
        return None if band is None else np.asarray(im.getchannel(band))
