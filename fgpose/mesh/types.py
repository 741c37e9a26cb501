"""The :class:`Mesh` type: an immutable triangle mesh in model space.

Conventions
-----------
* ``vertices`` ``(V, 3) float32`` are in **model space**, in the file's model units.
  ShapeNetCore.v1 models (the CAD models of the release) are already normalised: the
  axis-aligned bounding box is centred at the origin and has unit diagonal, ``+Y`` is up
  and ``+X`` points to the object's front. Meshes from elsewhere (e.g. the PyVista
  ``airplane.ply``) have their own units and axes;
  :func:`fgpose.mesh.simplify.normalize_mesh` brings them to ShapeNet's unit-diagonal,
  origin-centred convention (it does not rotate them).
* ``faces`` ``(F, 3) int32`` are indices into ``vertices``; they keep the winding of the
  source polygons.

NumPy only.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Mesh"]


@dataclasses.dataclass(frozen=True, eq=False)
class Mesh:
    """An immutable triangle mesh.

    Attributes:
      vertices: ``(V, 3) float32`` vertex positions in model space (model units; ShapeNet
        models have a unit bounding-box diagonal, ``+Y`` up, ``+X`` front).
      faces: ``(F, 3) int32`` vertex indices of each triangle, ``0 <= index < V``.

    Both arrays are copied on construction and made read-only.
    """

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self):
        v = np.array(self.vertices, dtype=np.float32, copy=True)
        f = np.array(self.faces, copy=True)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"Mesh vertices must have shape (V, 3), got {v.shape}")
        if f.size == 0:
            f = f.reshape(0, 3)
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"Mesh faces must have shape (F, 3), got {f.shape}")
        if f.size and not np.issubdtype(f.dtype, np.integer):
            if not np.all(np.equal(np.mod(f, 1), 0)):
                raise ValueError("Mesh faces must be integer vertex indices")
        if f.size and (f.min() < 0 or f.max() >= len(v)):
            raise ValueError(
                f"Mesh face indices must lie in [0, {len(v)}), got range [{f.min()}, {f.max()}]"
            )
        f = f.astype(np.int32)
        v.flags.writeable = False
        f.flags.writeable = False
        object.__setattr__(self, "vertices", v)
        object.__setattr__(self, "faces", f)

    @property
    def num_vertices(self) -> int:
        """``V``, the number of vertices (referenced or not)."""
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        """``F``, the number of triangles."""
        return int(self.faces.shape[0])

    @property
    def bounds(self) -> np.ndarray:
        """``(2, 3) float32``: ``[min_xyz, max_xyz]`` of all vertices (model units)."""
        if self.num_vertices == 0:
            raise ValueError("an empty mesh has no bounds")
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])

    @property
    def extents(self) -> np.ndarray:
        """``(3,) float64``: bounding-box side lengths (model units)."""
        b = self.bounds.astype(np.float64)
        return b[1] - b[0]

    @property
    def diagonal(self) -> float:
        """Length of the bounding-box diagonal (model units; 1 for ShapeNet models)."""
        return float(np.linalg.norm(self.extents))

    @property
    def center(self) -> np.ndarray:
        """``(3,) float64``: centre of the bounding box (model units)."""
        b = self.bounds.astype(np.float64)
        return (b[0] + b[1]) / 2

    @property
    def triangles(self) -> np.ndarray:
        """``(F, 3, 3) float32``: the corner positions of each face."""
        return self.vertices[self.faces]

    @property
    def face_areas(self) -> np.ndarray:
        """``(F,) float64``: area of each face (model units squared)."""
        t = self.vertices.astype(np.float64)[self.faces]
        return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)

    @property
    def area(self) -> float:
        """Total surface area (model units squared)."""
        return float(self.face_areas.sum())

    def __repr__(self) -> str:
        return f"Mesh(num_vertices={self.num_vertices}, num_faces={self.num_faces})"
