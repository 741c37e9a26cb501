"""Batches of refinement: images with their meshes and reference masks, padded to static shapes.

Each :class:`SearchBatch` is one jitted search call (:func:`refine_batch`): the meshes padded
by :func:`fgpose.mesh.pack_meshes`, the reference masks padded to a common height. To bound
recompilation, batch shapes are rounded up: the batch is filled to the batch size
(repeating its last image, whose extra results are dropped), frame heights to a multiple of
:data:`fgpose.buckets.HEIGHT_MULTIPLE` rows (:func:`fgpose.buckets.frame_height_bucket`), face
and vertex counts to 8 steps per octave (:func:`fgpose.buckets.refine_count_bucket`).

:func:`search_batches` turns scanned inputs (:func:`fgpose.refine.inputs.scan`) into such
batches, in order of (model id, frame height) so that a model's images share batches,
reading each mask and mesh and skipping the images whose mask or mesh is unusable.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Callable, Iterable, Iterator

import numpy as np

from fgpose import annotations as anno_lib
from fgpose import buckets
from fgpose import camera
from fgpose import mesh as mesh_lib
from fgpose.refine import reference_checks, search
from fgpose.refine.inputs import ImageInput, Skip, read_alpha, read_reference
from fgpose.refine.mesh_store import MeshStore
from fgpose.refine.reference_checks import ReferenceChecks

@dataclasses.dataclass(frozen=True)
class SearchImage:
    """One image ready for the search.

    Attributes:
      key: the annotation key.
      annotation: the starting release record (its pose is the search's start).
      frame_height: rows of the width-300 annotation frame.
      reference: ``(frame_height, 300)`` reference in the annotation frame: a bool mask, or
        float32 foreground probabilities (soft references).
      mesh: the search mesh.
      coarse_mesh: the coarse pass's mesh when decimated separately, else None.
    """

    key: str
    annotation: anno_lib.Annotation
    frame_height: int
    reference: np.ndarray
    mesh: mesh_lib.Mesh
    coarse_mesh: mesh_lib.Mesh | None = None


@dataclasses.dataclass(frozen=True)
class SearchBatch:
    """The arrays of one search call, padded to static shapes (module docstring).

    With ``B`` the batch size (``len(images) <= B``; rows ``len(images)..B-1`` repeat the
    last image), ``Hp = buckets.frame_height_bucket(max frame height)``, ``V``/``F`` the
    :func:`fgpose.buckets.refine_count_bucket` of the largest vertex/face count:

    Attributes:
      images: the real images, in row order.
      mesh: packed search meshes, ``vertices (B, V, 3) float32``, ``faces (B, F, 3) int32``,
        ``face_mask (B, F) bool``.
      poses: ``(B, 7) float64`` starting poses in ``camera.POSE_FIELDS`` order (radians,
        model units, pixels of the width-300 frame).
      references: ``(B, Hp, 300) bool`` (``float32`` when any image has a soft reference),
        each image's reference in rows ``:frame_height``, False (0) below.
      frame_heights: ``(B,) int32``.
      coarse_mesh: packed coarse-pass meshes (own ``V``, ``F``), or None when the images
        have no separate coarse mesh.
    """

    images: tuple[SearchImage, ...]
    mesh: mesh_lib.PackedMeshes
    poses: np.ndarray
    references: np.ndarray
    frame_heights: np.ndarray
    coarse_mesh: mesh_lib.PackedMeshes | None


def _pack_bucketed(meshes: list[mesh_lib.Mesh]) -> mesh_lib.PackedMeshes:
    return mesh_lib.pack_meshes(meshes, max_vertices=buckets.refine_count_bucket(max(m.num_vertices for m in meshes)),
                                max_faces=buckets.refine_count_bucket(max(m.num_faces for m in meshes)))


def pack_batch(images: list[SearchImage], batch_size: int) -> SearchBatch:
    """Pads ``1 <= len(images) <= batch_size`` images into one :class:`SearchBatch` of ``batch_size`` rows.

    Either all images have a ``coarse_mesh`` or none has.
    """
    if not 1 <= len(images) <= batch_size:
        raise ValueError(f"pack_batch needs 1 to {batch_size} images, got {len(images)}")
    padded = list(images) + [images[-1]] * (batch_size - len(images))
    coarse = None if padded[0].coarse_mesh is None else _pack_bucketed([im.coarse_mesh for im in padded])
    heights = np.array([im.frame_height for im in padded], np.int32)
    dtype = bool if all(im.reference.dtype == bool for im in padded) else np.float32
    refs = np.zeros((batch_size, buckets.frame_height_bucket(int(heights.max())), camera.ANNOTATION_WIDTH), dtype)
    for i, im in enumerate(padded):
        refs[i, : im.frame_height] = im.reference
    poses = np.array([[getattr(im.annotation, k) for k in camera.POSE_FIELDS] for im in padded], np.float64)
    return SearchBatch(tuple(images), _pack_bucketed([im.mesh for im in padded]), poses, refs, heights, coarse)


def refine_batch(batch: SearchBatch, config: search.SearchConfig) -> search.RefineResult:
    """Runs the search on a batch; the result has ``B`` rows, of which the first ``len(batch.images)`` count."""
    coarse = batch.coarse_mesh
    return search.refine(batch.mesh.vertices, batch.mesh.faces, batch.poses, batch.references, batch.frame_heights,
                         face_mask=batch.mesh.face_mask,
                         coarse_mesh=None if coarse is None else (coarse.vertices, coarse.faces, coarse.face_mask),
                         config=config)


def load_search_image(image: ImageInput, meshes: MeshStore, checks: ReferenceChecks | None = None,
                      soft: bool = False) -> SearchImage | Skip:
    """Reads the image's mesh(es) and reference mask; a :class:`Skip` (``mesh unreadable``,
    ``mask unreadable`` or ``mask empty``) if they cannot be used.

    With ``soft``, probability references stay probabilities
    (:func:`fgpose.refine.inputs.read_reference`). A binary PNG mask whose colours are constant
    and whose alpha channel is not is read from its alpha channel
    (:func:`fgpose.refine.reference_checks.alpha_foreground`). With ``checks``, a mask of
    another aspect ratio than the photo's or with an implausible foreground fraction is
    skipped too (:mod:`fgpose.refine.reference_checks`: ``mask size mismatch``,
    ``mask implausible``); without, neither is checked.
    """
    try:
        mesh = meshes.get(image.mesh_path)
        coarse_mesh = meshes.get_coarse(image.mesh_path)
    except ValueError as err:
        return Skip("mesh unreadable", str(err))
    try:
        mask = read_reference(image.mask, soft)
        if mask.dtype == bool and image.mask.suffix != ".npy":
            mask = reference_checks.alpha_foreground(mask, lambda: read_alpha(image.mask))
        if checks is not None and (skip := reference_checks.check_aspect(mask.shape, image.width, image.height)):
            return Skip(skip.reason, f"{image.mask}: {skip.detail}")
        ref = search.to_annotation_frame(mask, image.width, image.height)
    except Exception as err:  # noqa: BLE001 - broken PNGs raise many kinds of errors
        return Skip("mask unreadable", f"{image.mask}: {type(err).__name__}: {err}")
    if not (ref >= 0.5).any():
        return Skip("mask empty", f"{image.mask}: no foreground in the annotation frame")
    if checks is not None and (skip := reference_checks.check_foreground(ref, checks)):
        return Skip(skip.reason, f"{image.mask}: {skip.detail}")
    return SearchImage(image.key, image.annotation, image.frame_height, ref, mesh, coarse_mesh)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    """Consecutive lists of ``size`` items (the last one shorter if need be)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def search_batches(images: list[ImageInput], batch_size: int, meshes: MeshStore, skipped: dict[str, Skip],
                   on_skip: Callable[[ImageInput], None] = lambda image: None,
                   checks: ReferenceChecks | None = None, soft: bool = False) -> Iterator[SearchBatch]:
    """Batches of up to ``batch_size`` usable images, in order of (model id, frame height, key).
    ``soft``: keep probability references as such (:func:`load_search_image`).

    Meshes and masks are read lazily, batch by batch; an unusable image is recorded in
    ``skipped`` (and ``on_skip`` called with it) when its turn comes. ``checks``: the
    reference checks of :func:`load_search_image` (None: not checked).
    """
    def usable() -> Iterator[SearchImage]:
        for image in sorted(images, key=lambda im: (im.annotation.model_id, im.frame_height, im.key)):
            loaded = load_search_image(image, meshes, checks, soft)
            if isinstance(loaded, Skip):
                skipped[image.key] = loaded
                on_skip(image)
            else:
                yield loaded

    for chunk in _chunks(usable(), batch_size):
        yield pack_batch(chunk, batch_size)
