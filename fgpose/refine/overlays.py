"""Before/after pictures of refined images (:func:`fgpose.viz.refinement_overlay`).

``draw_overlays(..., out_dir, width)`` writes ``out_dir/<key with .png>`` per refined image:
the photo resized to ``width`` (height ``int(H * width / W)``) with the reference mask
tinted blue, the starting (v1) silhouette outlined in red, the refined one in green, and
both IoUs. The silhouettes of a batch are rendered in one rasterizer call at the overlay's
size (its height padded to a multiple of :data:`fgpose.buckets.HEIGHT_MULTIPLE`).
"""

from __future__ import annotations

import pathlib
from typing import Mapping

import numpy as np
from PIL import Image

from fgpose import buckets, camera, raster, viz
from fgpose.atomic_io import atomic_write
from fgpose.refine.batching import SearchBatch
from fgpose.refine.inputs import ImageInput, png_path


def draw_overlays(batch: SearchBatch, records: list[dict], inputs: Mapping[str, ImageInput], out_dir: pathlib.Path,
                  width: int) -> list[str]:
    """Writes one before/after PNG per record, atomically; returns the problems (photos that
    cannot be decoded, PNGs that cannot be written), one line each.

    Args:
      batch: the batch that was searched (its meshes and references are drawn).
      records: the result records of ``batch.images`` or of some of them, in their order
        (:func:`fgpose.refine.report.result_records`: ``v1`` and ``refined`` poses,
        ``initial_iou``, ``iou``).
      inputs: ``{key: ImageInput}`` holding at least the batch's images (photo files and sizes).
      out_dir: where the PNGs go; width: their width in pixels.
    """
    keys = {r["key"] for r in records}
    rows = [i for i, im in enumerate(batch.images) if im.key in keys]
    if [r["key"] for r in records] != [batch.images[i].key for i in rows]:
        raise ValueError("draw_overlays: the records are not those of the batch's images, in their order")
    searched_images = [batch.images[i] for i in rows]
    n = len(rows)
    photos = [inputs[im.key] for im in searched_images]
    sizes = [(max(1, (im.height * width) // im.width), width) for im in photos]
    pad_h = buckets.frame_height_bucket(max(h for h, _ in sizes))
    proj = []
    for which in ("v1", "refined"):
        for im, rec, size in zip(photos, records, sizes):
            pose = camera.Pose.from_array(np.array([rec[which][k] for k in camera.POSE_FIELDS], np.float32))
            proj.append(np.asarray(camera.projection_matrix(pose, im.frame_height, image_size=size)))
    packed = batch.mesh
    verts = np.concatenate([np.asarray(packed.vertices)[rows]] * 2)
    faces = np.concatenate([np.asarray(packed.faces)[rows]] * 2)
    fmask = np.concatenate([np.asarray(packed.face_mask)[rows]] * 2)
    sil = np.asarray(raster.silhouette(verts, faces, np.stack(proj), pad_h, width, face_mask=fmask))
    problems = []
    for i, (im, searched, rec, (h, w)) in enumerate(zip(photos, searched_images, records, sizes)):
        try:
            with Image.open(im.photo) as photo_file:
                photo = np.asarray(photo_file.convert("RGB").resize((w, h), Image.BILINEAR))
        except Exception as err:  # noqa: BLE001 - a photo whose header was fine but whose pixels are not
            problems.append(f"{im.key}: overlay not drawn, photo cannot be decoded ({type(err).__name__}: {err})")
            continue
        img = viz.refinement_overlay(photo, sil[i, :h], sil[n + i, :h], reference=searched.reference,
                                     labels=(f"v1 IoU {rec['initial_iou']:.3f}", f"refined IoU {rec['iou']:.3f}"))
        dest = png_path(out_dir, im.key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(dest, lambda fh: Image.fromarray(img).save(fh, format="PNG"))
        except OSError as err:
            problems.append(f"{im.key}: overlay not written to {dest} ({err.strerror or err})")
    return problems
