"""Meshes padded to common array sizes for ``jax.jit``: :class:`PackedMeshes`.

A jitted function compiles once per input shape, so meshes of different sizes are padded
to shared vertex/face counts (chosen by the caller, usually a rule of :mod:`fgpose.buckets`)
with masked-out padding: padded vertices are zeros and padded faces are ``(0, 0, 0)``
(degenerate, zero area, so they rasterise to nothing even where the mask is ignored).
This is the one padded-mesh type of fgpose: the batched search of :mod:`fgpose.refine`,
the location-field stream of :mod:`fgpose.synthetic.fields` and the per-record ground truth
of :mod:`fgpose.record_geometry` (one mesh, on the device) all use it.

NumPy; ``jax`` only registers :class:`PackedMeshes` as a pytree.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from fgpose.mesh.types import Mesh

__all__ = ["PackedMeshes", "pack_meshes", "pack_mesh", "unpack", "unpack_mesh"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True, eq=False)
class PackedMeshes:
    """Meshes padded to common sizes, a JAX pytree (all fields are array leaves).

    With a batch of ``B`` meshes (:func:`pack_meshes`) the shapes are as below; a single
    packed mesh (:func:`pack_mesh`) has no leading ``B`` axis.

    Attributes:
      vertices: ``(B, Vmax, 3) float32`` model-space positions; padded vertices are zeros.
      faces: ``(B, Fmax, 3) int32``; padded faces are ``(0, 0, 0)`` (degenerate, zero area,
        so they rasterise to nothing even if the mask is ignored).
      face_mask: ``(B, Fmax) bool``, True for real faces (a prefix of each row).
      vertex_mask: ``(B, Vmax) bool``, True for real vertices (a prefix of each row).

    Arrays are NumPy as returned by the packers; ``jax.device_put(packed)`` gives a
    ``PackedMeshes`` of device arrays (as :func:`fgpose.record_geometry.pad_mesh` returns),
    and ``jax.jit`` functions accept a ``PackedMeshes`` argument directly.
    """

    vertices: np.ndarray | jax.Array
    faces: np.ndarray | jax.Array
    face_mask: np.ndarray | jax.Array
    vertex_mask: np.ndarray | jax.Array

    @property
    def batched(self) -> bool:
        """True for a batch of meshes (``vertices`` of shape ``(B, Vmax, 3)``)."""
        return np.ndim(self.vertices) == 3

    @property
    def num_vertices(self):
        """Real vertex count(s): ``(B,)`` int32 (a scalar for an unbatched pack)."""
        return self.vertex_mask.sum(axis=-1).astype(np.int32)

    @property
    def num_faces(self):
        """Real face count(s): ``(B,)`` int32 (a scalar for an unbatched pack)."""
        return self.face_mask.sum(axis=-1).astype(np.int32)


def pack_meshes(
    meshes: Sequence[Mesh], max_vertices: int | None = None, max_faces: int | None = None
) -> PackedMeshes:
    """Pads meshes to common sizes and stacks them (see :class:`PackedMeshes`).

    Args:
      meshes: ``B >= 1`` meshes.
      max_vertices: ``Vmax``; default the largest vertex count (at least 1).
      max_faces: ``Fmax``; default the largest face count.

    Raises:
      ValueError: a mesh exceeds the given budget (decimate it first, e.g.
        ``decimate(mesh, max_faces)`` or ``load_mesh(..., max_faces=...)``).
    """
    meshes = list(meshes)
    if not meshes:
        raise ValueError("pack_meshes needs at least one mesh")
    nv = [m.num_vertices for m in meshes]
    nf = [m.num_faces for m in meshes]
    vmax = max(max(nv), 1) if max_vertices is None else int(max_vertices)
    fmax = max(nf) if max_faces is None else int(max_faces)
    for i, m in enumerate(meshes):
        if m.num_faces > fmax or m.num_vertices > vmax:
            raise ValueError(
                f"mesh {i} has {m.num_vertices} vertices and {m.num_faces} faces, over the "
                f"packing budget of {vmax} vertices and {fmax} faces; decimate it first, "
                f"e.g. decimate(mesh, max_faces) or load_mesh(path, max_faces=...) "
                f"(decimation also reduces the vertex count), or raise the budget"
            )
    if vmax < 1:
        raise ValueError("max_vertices must be >= 1 (padding faces index vertex 0)")
    b = len(meshes)
    vertices = np.zeros((b, vmax, 3), np.float32)
    faces = np.zeros((b, fmax, 3), np.int32)
    vertex_mask = np.zeros((b, vmax), bool)
    face_mask = np.zeros((b, fmax), bool)
    for i, m in enumerate(meshes):
        vertices[i, : m.num_vertices] = m.vertices
        faces[i, : m.num_faces] = m.faces
        vertex_mask[i, : m.num_vertices] = True
        face_mask[i, : m.num_faces] = True
    return PackedMeshes(vertices=vertices, faces=faces, face_mask=face_mask, vertex_mask=vertex_mask)


def pack_mesh(
    mesh: Mesh, max_vertices: int | None = None, max_faces: int | None = None
) -> PackedMeshes:
    """Packs one mesh without a batch axis: ``vertices (Vmax, 3)``, ``faces (Fmax, 3)``, ..."""
    p = pack_meshes([mesh], max_vertices, max_faces)
    return PackedMeshes(
        vertices=p.vertices[0], faces=p.faces[0], face_mask=p.face_mask[0], vertex_mask=p.vertex_mask[0]
    )


def _unpack_one(vertices, faces, face_mask, vertex_mask) -> Mesh:
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)[np.asarray(face_mask, bool)]
    vmask = np.asarray(vertex_mask, bool)
    remap = np.cumsum(vmask) - 1
    if faces.size and not vmask[faces].all():
        raise ValueError("a masked-in face references a masked-out vertex")
    return Mesh(vertices=vertices[vmask], faces=remap[faces])


def unpack(packed: PackedMeshes) -> list[Mesh]:
    """Inverse of :func:`pack_meshes`: the list of real meshes (padding removed).

    An unbatched pack (from :func:`pack_mesh`) gives a list of one mesh.
    """
    fields = (packed.vertices, packed.faces, packed.face_mask, packed.vertex_mask)
    if np.ndim(packed.vertices) == 2:
        return [_unpack_one(*fields)]
    return [_unpack_one(*(x[i] for x in fields)) for i in range(np.shape(packed.vertices)[0])]


def unpack_mesh(packed: PackedMeshes) -> Mesh:
    """Inverse of :func:`pack_mesh` (also accepts a batch of one)."""
    meshes = unpack(packed)
    if len(meshes) != 1:
        raise ValueError(f"unpack_mesh expects one mesh, the pack holds {len(meshes)}")
    return meshes[0]
