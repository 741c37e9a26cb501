"""Ground-truth geometry of one dataset record, shared by every TFDS builder.

Given a mesh, a raw release pose ``(azimuth, elevation, theta, distance, f, u, v)`` and the
original photo size ``(H, W)``, :func:`record_geometry` returns the camera matrices in
original-photo pixels and the rendered ground truth at the *field resolution*: the
geometry features of ``tfds_builders.base.pose3d_features``, plus the field-frame projection.

* ``rotation`` ``(3, 3)`` float32: ``R = Rz(theta) Rx(elevation) Ry(azimuth)``;
* ``intrinsics`` ``(3, 3)`` float32: ``K`` in original-photo pixels (the annotation-frame K
  of :func:`fgpose.camera.intrinsics` mapped by the width-300 -> ``(H, W)`` resize);
* ``projection`` ``(3, 4)`` float32: ``P = projection_matrix(pose, frame_height, (H, W))``,
  original-photo pixels, release convention (visible points have a negative third row);
* ``box`` ``(4,)`` float32: tight box ``(y0, x0, y1, x1)`` of the rendered mask in
  continuous pixel coordinates (a mask pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``),
  scaled from the field frame to original pixels (``x * W / w``, ``y * H / h``) and clipped
  to the image; all zeros when the mask is empty;
* ``mask`` ``(h, w, 1)`` uint8 in ``{0, 1}``: the projected model's silhouette;
* ``location_field`` ``(h, w, 3)`` float16: model-space XYZ of the visible surface, 0 off the
  mask;
* ``field_projection`` ``(3, 4)`` float32: ``P`` in pixels of the ``h x w`` field frame
  (``projection_matrix(pose, frame_height, image_size=(h, w))``; not a dataset feature).

Field resolution (:func:`field_size`): the original size, or the photo scaled by
``s = field_max_side / max(H, W)`` when its longer side exceeds ``field_max_side``, with
``h = round(H * s)``, ``w = round(W * s)`` (Python ``round``, at least 1).

Rendering uses the jitted :func:`fgpose.raster.render`. Its compiled program depends on the
image size and the mesh's array sizes, which vary from record to record, so both are
*bucketed* to keep the number of compilations small: the field is rendered into a larger
canvas (:func:`fgpose.buckets.canvas_hw`) and cropped (pixel coordinates do not depend on
the canvas size, so the crop equals a render at ``h x w`` exactly), and meshes are padded
(:func:`pad_mesh`) to :func:`fgpose.buckets.count_bucket` vertex/face counts with
masked-out faces. With a ``field_max_side`` every field fits one square canvas of side
``canvas_side(field_max_side)`` (:func:`fgpose.buckets.canvas_side`), so there is one
compilation per mesh-size bucket; without a cap each side is bucketed separately (the
measured trade-off is in ``docs/lab_notes_mesh.md``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from fgpose import camera, raster
from fgpose.buckets import canvas_hw, count_bucket
from fgpose.mesh import Mesh, PackedMeshes, pack_mesh

__all__ = [
    "field_size",
    "mask_box",
    "pad_mesh",
    "record_geometry",
]


def field_size(image_hw: Sequence[int], field_max_side: int | None = None) -> tuple[int, int]:
    """``(h, w)`` of the field frame of an ``H x W`` photo (see the module docstring).

    Args:
      image_hw: original ``(H, W)`` in pixels.
      field_max_side: cap on the longer side; ``None`` (or a cap >= ``max(H, W)``) keeps the
        original size.
    """
    height, width = (int(x) for x in image_hw)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {image_hw}")
    if field_max_side is None or max(height, width) <= int(field_max_side):
        return height, width
    if int(field_max_side) < 1:
        raise ValueError(f"field_max_side must be >= 1, got {field_max_side}")
    s = int(field_max_side) / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def pad_mesh(
    vertices: np.ndarray,
    faces: np.ndarray,
    num_vertices: int | None = None,
    num_faces: int | None = None,
) -> PackedMeshes:
    """Pads ``(V, 3)`` vertices and ``(F, 3)`` faces for :func:`record_geometry`.

    Do this once per mesh and pass the result to :func:`record_geometry` (``mesh=``), so
    that the padded arrays live on the device and many meshes share compiled programs.

    Args:
      vertices, faces: the mesh (model units; ``faces`` int indices into ``vertices``).
      num_vertices, num_faces: padded sizes (>= the real ones); default
        :func:`fgpose.buckets.count_bucket` of the real sizes. Give a set of meshes known in
        advance the same sizes to compile the rasterizer once for all of them.

    Returns:
      An unbatched :class:`fgpose.mesh.PackedMeshes` of device arrays: ``vertices (Vb, 3)
      float32``, ``faces (Fb, 3) int32``, ``face_mask (Fb,)`` and ``vertex_mask (Vb,)`` bool
      (its ``num_vertices`` / ``num_faces`` are the real counts).
    """
    mesh = Mesh(vertices, faces)  # checks shapes and indices
    if mesh.num_faces == 0:
        raise ValueError("the mesh has no faces")
    vb = count_bucket(mesh.num_vertices) if num_vertices is None else int(num_vertices)
    fb = count_bucket(mesh.num_faces) if num_faces is None else int(num_faces)
    packed = pack_mesh(mesh, vb, fb)  # raises when the sizes are below the mesh's
    return jax.device_put(packed)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight box ``(y0, x0, y1, x1)`` float32 of a ``(h, w)`` (or ``(h, w, 1)``) mask.

    Continuous pixel coordinates: ``y0`` is the first row with a mask pixel and ``y1`` one
    past the last one (likewise ``x``). All zeros for an empty mask.
    """
    m = np.asarray(mask).reshape(np.shape(mask)[:2]) != 0
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return np.zeros((4,), np.float32)
    return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.float32)


def _pose_array(pose) -> np.ndarray:
    if isinstance(pose, camera.Pose):
        pose = pose.as_array()
    pose = np.asarray(pose, np.float64)
    if pose.shape != (7,):
        raise ValueError(f"pose must have shape (7,) (azimuth, elevation, theta, distance, f, u, v), got {pose.shape}")
    if not np.all(np.isfinite(pose)) or pose[3] <= 0 or pose[4] <= 0:
        raise ValueError(f"invalid pose {pose.tolist()}: need finite values, distance > 0 and f > 0")
    return pose


def record_geometry(
    vertices: np.ndarray | None,
    faces: np.ndarray | None,
    pose,
    image_hw: Sequence[int],
    field_max_side: int | None = None,
    *,
    mesh: PackedMeshes | None = None,
) -> dict[str, np.ndarray]:
    """Camera matrices, box, mask and location field of one record (module docstring).

    Args:
      vertices: ``(V, 3)`` model-space vertices (model units; ShapeNet: unit bbox diagonal),
        or ``None`` when ``mesh`` is given.
      faces: ``(F, 3)`` int vertex indices, or ``None`` when ``mesh`` is given.
      pose: ``(7,)`` raw release pose ``(azimuth, elevation, theta [rad], distance [model
        units], f, u, v [pixels of the width-300 annotation frame])`` or a scalar
        :class:`fgpose.camera.Pose`.
      image_hw: original photo ``(H, W)`` in pixels.
      field_max_side: cap on the field's longer side (:func:`field_size`).
      mesh: the mesh already padded by :func:`pad_mesh` (faster when a mesh is reused).

    Returns:
      dict of NumPy arrays: ``rotation (3, 3) f32``, ``intrinsics (3, 3) f32``,
      ``projection (3, 4) f32`` (original pixels), ``box (4,) f32`` (original pixels),
      ``mask (h, w, 1) uint8``, ``location_field (h, w, 3) f16``, ``field_projection (3, 4)
      f32`` (field pixels).
    """
    if mesh is None:
        if vertices is None or faces is None:
            raise ValueError("give vertices and faces, or a padded mesh")
        mesh = pad_mesh(vertices, faces)
    params = _pose_array(pose)
    big_h, big_w = (int(x) for x in image_hw)
    h, w = field_size((big_h, big_w), field_max_side)
    frame_height = camera.annotation_frame_height(big_w, big_h)
    p = camera.Pose.from_array(np.asarray(params, np.float32))
    rotation = np.asarray(p.rotation(), np.float32)
    k_anno = camera.intrinsics(p, frame_height)
    to_original = camera.frame_transform((frame_height, camera.ANNOTATION_WIDTH), (big_h, big_w))
    intrinsics = np.asarray(to_original @ k_anno, np.float32)
    projection = np.asarray(camera.projection_matrix(p, frame_height, image_size=(big_h, big_w)), np.float32)
    field_projection = camera.projection_matrix(p, frame_height, image_size=(h, w))

    ch, cw = canvas_hw((h, w), field_max_side)
    out = raster.render(
        mesh.vertices, mesh.faces, field_projection, ch, cw, face_mask=mesh.face_mask, location=True
    )
    mask_c, loc_c = jax.device_get((out.mask, out.location))
    mask = np.ascontiguousarray(mask_c[:h, :w])
    location = np.where(mask[..., None], loc_c[:h, :w], 0.0).astype(np.float16)

    box = mask_box(mask)
    if np.any(box):
        box = box * np.array([big_h / h, big_w / w, big_h / h, big_w / w], np.float64)
        box = np.clip(box, 0.0, [big_h, big_w, big_h, big_w]).astype(np.float32)
    return dict(
        rotation=rotation,
        intrinsics=intrinsics,
        projection=projection,
        box=box.astype(np.float32),
        mask=mask.astype(np.uint8)[..., None],
        location_field=location,
        field_projection=np.asarray(field_projection, np.float32),
    )
