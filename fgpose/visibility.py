"""Which faces of a mesh can be seen from outside it (for silhouette work).

A silhouette seen from a camera outside the mesh's convex hull is the union of the faces
*visible* from that camera: every covered pixel's ray meets a frontmost face. And a face
visible from such a camera is also visible from infinitely far away in the same direction
(past the camera the ray never re-enters the convex hull). So the faces that no distant
viewpoint sees -- a car's seats and dashboard, the hidden sides of parts pressed together
-- never change a silhouette, and dropping them before decimation
(:func:`fgpose.mesh.simplify.decimate`) leaves the face budget to the surface that shapes
the outline. Used by :func:`fgpose.mesh.load_mesh` (``drop_hidden=True``).

The visible set is estimated by rendering face ids (:func:`fgpose.raster.render`) from
``views`` directions spread evenly over the sphere (a Fibonacci lattice), each a
near-orthographic camera (distance 20 bounding radii) whose ``resolution x resolution``
image frames the bounding sphere. A face counts as visible when it is the frontmost face
at one pixel centre of one view, so faces seen only as slivers thinner than a pixel from
every direction can be missed. Measurements on the release's car (hidden share, silhouette
pixels lost, IoU after decimation, run times) are in ``docs/lab_notes_mesh.md``.

Positions are in model units (any position and scale: the views frame the bounding
sphere). The face soup is padded to :func:`fgpose.buckets.visibility_face_bucket` faces.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from fgpose import camera, raster
from fgpose.buckets import visibility_face_bucket
from fgpose.mesh.types import Mesh

DEFAULT_VIEWS = 500
DEFAULT_RESOLUTION = 384
_DISTANCE = 20.0  # camera distance in bounding radii (near-orthographic)
_FILL = 0.95  # the bounding sphere spans this fraction of the image


def sphere_directions(n: int) -> np.ndarray:
    """``(n, 3)`` unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    if n < 1:
        raise ValueError(f"need at least one direction, got {n}")
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    phi = math.pi * (1.0 + math.sqrt(5.0)) * k
    r = np.sqrt(np.maximum(1.0 - z * z, 0.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def _view_projections(directions: np.ndarray, radius: float, resolution: int) -> np.ndarray:
    """``(n, 3, 4)`` projections of cameras looking at the origin from ``directions``.

    The camera of azimuth ``a`` and elevation ``e`` sits on the ray through
    ``(+-sin a cos e, +-sin e, cos a cos e)``; mapping the lattice through ``a = atan2(x, z)``,
    ``e = asin(y)`` only mirrors it, so the views stay evenly spread.
    """
    x, y, z = directions.T
    n = len(directions)
    d = _DISTANCE * radius
    # The sphere's outline has angular radius asin(1 / distance): f tan of it = 95% of 150 px.
    f = (camera.ANNOTATION_WIDTH / 2) * _FILL * math.sqrt(_DISTANCE**2 - 1.0)
    params = np.stack([np.arctan2(x, z), np.arcsin(np.clip(y, -1, 1)), np.zeros(n), np.full(n, d), np.full(n, f),
                       np.zeros(n), np.zeros(n)], axis=1)
    pose = camera.Pose.from_array(jnp.asarray(params, jnp.float32))
    square = float(camera.ANNOTATION_WIDTH)  # a 300 x 300 annotation frame, resized to the resolution
    return np.asarray(camera.projection_matrix(pose, jnp.full((n,), square), image_size=(resolution, resolution)))


def visible_faces(mesh: Mesh, *, views: int = DEFAULT_VIEWS, resolution: int = DEFAULT_RESOLUTION,
                  batch: int = 20) -> np.ndarray:
    """Faces that some distant viewpoint sees (module docstring).

    Args:
      mesh: the mesh (model units; any position and scale).
      views: number of view directions, spread evenly over the sphere.
      resolution: side of each square view in pixels; the bounding sphere spans 95% of it.
      batch: views rendered per rasterizer call.

    Returns:
      ``(F,)`` bool, True for faces that are frontmost at a pixel centre of some view.
    """
    if views < 1 or resolution < 1 or batch < 1:
        raise ValueError(f"views, resolution and batch must be positive, got {views}, {resolution}, {batch}")
    num_faces = mesh.num_faces
    if num_faces == 0:
        return np.zeros(0, bool)
    v = np.asarray(mesh.vertices, np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    radius = float(np.linalg.norm(v - centre, axis=1).max())
    if not radius > 0:  # every vertex at one point: nothing covers a pixel
        return np.zeros(num_faces, bool)
    # A triangle soup padded with masked-out faces: one compiled render per face bucket.
    fp = visibility_face_bucket(num_faces)
    corners = np.zeros((fp, 3, 3), np.float32)
    corners[:num_faces] = (v - centre)[mesh.faces]
    soup = np.arange(3 * fp, dtype=np.int32).reshape(fp, 3)
    face_mask = np.arange(fp) < num_faces
    proj = _view_projections(sphere_directions(views), radius, resolution)
    proj = np.concatenate([proj, np.repeat(proj[-1:], -views % batch, axis=0)])
    seen = np.zeros(fp + 1, bool)  # slot 0: background (face id -1)
    for s in range(0, len(proj), batch):
        out = raster.render(corners.reshape(-1, 3), soup, proj[s : s + batch], resolution, resolution,
                            face_mask=face_mask, location=False)
        seen[np.asarray(out.face_id).ravel() + 1] = True
    return seen[1 : num_faces + 1]


def drop_hidden_faces(mesh: Mesh, **kwargs) -> Mesh:
    """The mesh without the faces no distant viewpoint sees (:func:`visible_faces`).

    Faces keep their order; vertices no remaining face uses are removed (the others keep
    their order). ``kwargs`` go to :func:`visible_faces`.
    """
    faces = mesh.faces[visible_faces(mesh, **kwargs)]
    used, index = np.unique(faces, return_inverse=True)
    return Mesh(mesh.vertices[used], index.reshape(faces.shape))
