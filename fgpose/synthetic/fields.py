"""Batches of rendered 3D location fields for pose-from-field pre-training.

:func:`location_field_stream` draws, per batch, random meshes of a pool, release-like photo
sizes (:func:`~fgpose.synthetic.poses.sample_image_hw`) and poses for them
(:func:`~fgpose.synthetic.poses.sample_poses`, with the mesh's own silhouette box for the
in-image rejection), and renders all location fields of the batch in **one** call of the
jitted :func:`fgpose.raster.render` on the padded, packed pool
(:func:`fgpose.mesh.pack_meshes`; static shapes, compiled once per stream).

Frames. For an example with photo ``(H, W)``, annotation-frame height
``h300 = int(H * 300 / W)`` and pose ``p``:

* ``box`` is the tight box ``(y0, x0, y1, x1)`` of the object's silhouette in original-photo
  pixels (the box of the projected convex-hull vertices, which is exactly the silhouette's
  continuous extent), clipped to the photo ``[0, H] x [0, W]``.
* ``crop_to_box=True``: the field is that box resized (aspect *not* kept) to
  ``field_hw = (h, w)``, i.e. ``projection = camera.projection_matrix(p, h300,
  image_size=(h, w), crop_box=box300)`` where ``box300 = box * (h300 / H, 300 / W, h300 / H,
  300 / W)`` is the box in the width-300 annotation frame. Field pixel ``(i, j)`` (centre
  ``(j + 0.5, i + 0.5)``) is original-photo point ``x = x0 + (j + 0.5) (x1 - x0) / w``,
  ``y = y0 + (i + 0.5) (y1 - y0) / h``.
* ``crop_to_box=False``: the whole photo resized to ``field_hw``:
  ``projection = camera.projection_matrix(p, h300, image_size=(h, w))``.

Either way, projecting ``field[b, i, j]`` with ``projection[b]`` gives back the pixel centre
(tested within a small fraction of a pixel).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax.numpy as jnp
import numpy as np

from fgpose import camera, raster
from fgpose.mesh import Mesh, pack_meshes
from fgpose.synthetic import poses as P

__all__ = ["location_field_stream", "render_fields"]


def _pool(classes_or_meshes, category: str | None) -> tuple[list[Mesh], list[str], np.ndarray]:
    """Meshes, their categories and their pool indices (into ``classes_or_meshes``)."""
    meshes, cats, index = [], [], []
    for i, item in enumerate(classes_or_meshes):
        if isinstance(item, Mesh):
            mesh, cat = item, category or "car"
        else:  # SyntheticClass-like: .mesh and .category
            mesh, cat = item.mesh, item.category
            if category is not None and cat != category:
                continue
        if cat not in ("car", "airplane"):
            raise ValueError(f"unknown category {cat!r} of pool item {i}")
        meshes.append(mesh)
        cats.append(cat)
        index.append(i)
    if not meshes:
        raise ValueError(f"no meshes in the pool (category={category!r})")
    return meshes, cats, np.asarray(index, np.int64)


def render_fields(vertices, faces, face_mask, projection, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Batched location fields with :func:`fgpose.raster.render` (one jitted call).

    Args:
      vertices ``(B, V, 3)``, faces ``(B, F, 3)``, face_mask ``(B, F)``: padded meshes;
      projection ``(B, 3, 4)`` into pixels of the ``height x width`` field.

    Returns:
      ``(field (B, H, W, 3) float32, mask (B, H, W) bool)``.
    """
    proj = jnp.asarray(projection, jnp.float32)
    out = raster.render(vertices, faces, proj, height, width, face_mask=face_mask, location=True)
    field, mask = np.asarray(out.location, np.float32), np.asarray(out.mask, bool)
    return np.ascontiguousarray(field), np.ascontiguousarray(mask)


def location_field_stream(
    classes_or_meshes: Sequence,
    *,
    batch_size: int,
    field_hw: tuple[int, int] = (64, 64),
    seed: int,
    category: str | None = None,
    crop_to_box: bool = True,
    image_max_side: int | None = None,
    num_batches: int | None = None,
    start: int = 0,
    min_visible: float = 0.6,
    min_size: float = 0.15,
) -> Iterator[dict]:
    """Yields batches of location fields of random pool meshes at release-like poses.

    Args:
      classes_or_meshes: pool: :class:`~fgpose.synthetic.shapes.SyntheticClass` objects (or
        anything with ``.mesh`` and ``.category``) and/or :class:`fgpose.mesh.Mesh` objects
        (category ``category`` or ``'car'``). Meshes should be small (a few thousand faces:
        every mesh is padded to the largest).
      batch_size: ``B``.
      field_hw: ``(h, w)`` of the fields (static).
      seed: batch ``k`` is a pure function of ``(pool, seed, k)`` and the arguments.
      category: keep only pool classes of this category (and the category of bare meshes).
      crop_to_box: field of the object's box (default) or of the whole photo (see module doc).
      image_max_side: cap of the sampled photo sizes (:func:`sample_image_hw`); it changes
        the photo frame (``box``, ``image_hw``) but not the field of a crop.
      num_batches: stop after this many batches (default: infinite).
      start: index of the first batch (a resumed run starts at its step: batch ``k`` is the
        same whatever ``start``).
      min_visible, min_size: pose rejection (:func:`sample_poses`).

    Yields:
      dict of NumPy arrays:
        ``field`` ``(B, h, w, 3)`` float32: model-space XYZ of the visible surface, 0 outside;
        ``mask`` ``(B, h, w)`` bool;
        ``pose`` ``(B, 7)`` float64 release pose (f, u, v in width-300 pixels);
        ``mesh_index`` ``(B,)`` int64 index into ``classes_or_meshes``;
        ``box`` ``(B, 4)`` float32 silhouette box ``(y0, x0, y1, x1)`` in original-photo
        pixels, clipped to the photo;
        ``image_hw`` ``(B, 2)`` int64 original photo ``(H, W)``;
        ``frame_height`` ``(B,)`` int64 ``int(H * 300 / W)``;
        ``projection`` ``(B, 3, 4)`` float32 P into field pixels (see module doc).
    """
    meshes, cats, pool_index = _pool(classes_or_meshes, category)
    packed = pack_meshes(meshes)
    hulls = [P.extent_points(m) for m in meshes]
    npts = max(len(h) for h in hulls)
    hull = np.stack([np.concatenate([h, np.repeat(h[:1], npts - len(h), 0)]) for h in hulls])  # (M, Pmax, 3)
    cats = np.asarray(cats)
    fh_out, fw_out = int(field_hw[0]), int(field_hw[1])
    k = int(start)
    while num_batches is None or k < start + num_batches:
        rng = np.random.default_rng([int(seed), k])
        idx = rng.integers(0, len(meshes), batch_size)
        hw = np.zeros((batch_size, 2), np.int64)
        pose = np.zeros((batch_size, 7), np.float64)
        for cat in ("car", "airplane"):
            sel = np.nonzero(cats[idx] == cat)[0]
            if sel.size:
                hw[sel] = P.sample_image_hw(rng, sel.size, cat, max_side=image_max_side)
                pose[sel] = P.sample_poses(
                    rng, sel.size, cat, hw[sel], points=hull[idx[sel]], min_visible=min_visible, min_size=min_size
                )
        boxes, _ = P.projected_boxes(pose, hw, hull[idx])
        h, w = hw[:, 0].astype(np.float64), hw[:, 1].astype(np.float64)
        boxes = np.stack(
            [np.clip(boxes[:, 0], 0, h), np.clip(boxes[:, 1], 0, w), np.clip(boxes[:, 2], 0, h), np.clip(boxes[:, 3], 0, w)], -1
        )
        frame_h = camera.annotation_frame_height(hw[:, 1], hw[:, 0]).astype(np.int64)
        pose_j = camera.Pose.from_array(jnp.asarray(pose, jnp.float32))
        fh_j = jnp.asarray(frame_h, jnp.float32)
        if crop_to_box:
            sy, sx = frame_h / h, camera.ANNOTATION_WIDTH / w
            box300 = boxes * np.stack([sy, sx, sy, sx], -1)
            proj = camera.projection_matrix(pose_j, fh_j, image_size=(fh_out, fw_out), crop_box=jnp.asarray(box300, jnp.float32))
        else:
            proj = camera.projection_matrix(pose_j, fh_j, image_size=(fh_out, fw_out))
        field, mask = render_fields(packed.vertices[idx], packed.faces[idx], packed.face_mask[idx], proj, fh_out, fw_out)
        yield {
            "field": field,
            "mask": mask,
            "pose": pose,
            "mesh_index": pool_index[idx],
            "box": boxes.astype(np.float32),
            "image_hw": hw,
            "frame_height": frame_h,
            "projection": np.asarray(proj, np.float32),
        }
        k += 1
