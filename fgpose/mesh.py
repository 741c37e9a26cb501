"""Triangle meshes: loading, triangulation, normalisation, decimation, caching and packing.

Conventions
-----------
* A :class:`Mesh` holds ``vertices`` ``(V, 3) float32`` in **model space** and ``faces``
  ``(F, 3) int32`` (indices into ``vertices``). Units are the file's model units.
  ShapeNetCore.v1 models (the CAD models of the release) are already normalised: the
  axis-aligned bounding box is centred at the origin and has unit diagonal, ``+Y`` is up
  and ``+X`` points to the object's front. Meshes from elsewhere (e.g. the PyVista
  ``airplane.ply``) have their own units and axes; :func:`normalize_mesh` brings them to
  ShapeNet's unit-diagonal, origin-centred convention (it does not rotate them).
* Faces keep the winding of the source polygons.

Reading (:func:`load_mesh`)
---------------------------
* **OBJ** files are read by a small geometry-only reader in this module (``v`` and ``f``
  lines; ``vt``/``vn``/``o``/``g``/``usemtl``/``s``/... are ignored). It accepts the
  ``f v``, ``f v/vt``, ``f v//vn`` and ``f v/vt/vn`` syntaxes, negative (relative)
  indices, line continuations and files with several objects/groups (OBJ vertex indices
  are global, so the objects are simply concatenated). ``vertices`` are exactly the
  file's ``v`` lines, in file order (cast to float32), and face indices are the file's
  indices minus one: nothing is merged, reordered or dropped, so ``vertices`` can contain
  unreferenced or duplicated positions. Faces come out in file order, each polygon's
  triangles contiguous.
* **Polygons** with more than three vertices are triangulated correctly: convex polygons
  (the common case, checked robustly in the polygon's best-fit plane, using the Newell
  normal) are fanned from their first vertex; non-convex ones (e.g. an L-shaped hexagon or
  a "dart" quad) are triangulated by ear clipping in that plane. Either way an ``n``-gon
  gives ``n - 2`` triangles whose corners are the polygon's vertices and whose union is the
  polygon. (trimesh 5.2's OBJ reader, like the original release's reader which kept only
  the first three vertices of each face, gets non-convex polygons wrong: it fans every
  polygon from its first vertex, producing overlapping triangles outside the polygon;
  it also splits vertices by texture coordinate and reorders faces by material.)
  Self-intersecting polygons have no well-defined triangulation; they are triangulated
  without error but the result is only approximately the "polygon".
* **PLY** files are read with ``trimesh.load(path, force="mesh", process=False)`` and then
  rebuilt from the raw ``vertex``/``face`` elements trimesh keeps, so that vertices are the
  file's (in order) and polygons are triangulated as above, in file order (trimesh itself
  fans them). Limitation of trimesh 5.2: *binary* PLY files whose faces have different
  vertex counts cannot be read at all (``ValueError``); ASCII ones are fine.
* **Other formats** (STL, OFF, GLB, ...) are read with
  ``trimesh.load(path, force="mesh", process=False)``: vertex positions are exactly those
  of the file (no merging); scenes are concatenated with their transforms applied.
  Polygons in those formats are triangulated by trimesh (a fan), which is only correct
  for convex polygons.

Processing order in :func:`load_mesh`: read -> (optionally) drop degenerate faces ->
(optionally) normalise using the full-resolution bounding box -> (optionally) decimate.
The result is cached on disk (see :func:`load_mesh`).

Batching (:func:`pack_meshes`): meshes of different sizes are padded to common sizes so a
batch can go through one ``jax.jit``; see :class:`PackedMeshes`.

This module is NumPy + trimesh only; it imports ``jax`` solely to register
:class:`PackedMeshes` as a pytree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

__all__ = [
    "Mesh",
    "PackedMeshes",
    "load_mesh",
    "normalize_mesh",
    "decimate",
    "remove_degenerate_faces",
    "weld_vertices",
    "triangulate_polygon",
    "pack_meshes",
    "pack_mesh",
    "unpack",
    "unpack_mesh",
    "default_cache_dir",
    "CACHE_DIR_ENV",
]

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "FGPOSE_CACHE_DIR"
"""Environment variable naming the default mesh cache directory."""

_CACHE_VERSION = 1  # bump when the preprocessing changes, to invalidate old cache entries


# ----------------------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------------------


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
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
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


# ----------------------------------------------------------------------------------------
# Polygon triangulation
# ----------------------------------------------------------------------------------------


def _newell_normal(points: np.ndarray) -> np.ndarray:
    """Newell's (area-weighted) normal of polygon(s) ``(..., n, 3)`` -> ``(..., 3)``.

    Its length is twice the polygon's (projected) area; a counter-clockwise polygon seen
    from the normal's tip.
    """
    p = points - points.mean(axis=-2, keepdims=True)
    return np.cross(p, np.roll(p, -1, axis=-2)).sum(axis=-2)


def _plane_basis(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two orthonormal in-plane axes ``(e1, e2)`` with ``e1 x e2 = normal / |normal|``."""
    n = normal / np.linalg.norm(normal)
    helper = np.eye(3)[int(np.argmin(np.abs(n)))]
    e1 = np.cross(helper, n)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return e1, e2


def _convex_mask(points: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Whether each polygon in ``(P, n, 3)`` is convex (so fanning it is correct).

    Convex means: a well-defined plane (non-zero Newell normal), no reflex vertex (turns
    measured in that plane, with a relative tolerance for collinear vertices) and a total
    turning of exactly one revolution (rules out self-intersecting "stars").
    """
    normal = _newell_normal(points)
    nlen = np.linalg.norm(normal, axis=-1)
    ok = nlen > 0
    nhat = normal / np.where(ok, nlen, 1.0)[:, None]
    e_next = np.roll(points, -1, axis=1) - points  # edge i -> i+1
    e_prev = points - np.roll(points, 1, axis=1)  # edge i-1 -> i
    sin_term = np.einsum("pnk,pk->pn", np.cross(e_prev, e_next), nhat)
    cos_term = np.einsum("pnk,pnk->pn", e_prev, e_next)
    scale = np.linalg.norm(e_prev, axis=-1) * np.linalg.norm(e_next, axis=-1)
    no_reflex = np.all(sin_term >= -tol * scale, axis=1)
    turning = np.arctan2(sin_term, cos_term).sum(axis=1)
    one_turn = np.abs(turning - 2 * np.pi) < 1e-6
    return ok & no_reflex & one_turn


def _ear_clip(points2d: np.ndarray) -> list[tuple[int, int, int]]:
    """Ear-clipping triangulation of one counter-clockwise simple polygon ``(n, 2)``.

    Returns ``n - 2`` triangles of local vertex indices, counter-clockwise. Degenerate or
    self-intersecting input never fails: when no proper ear exists, the most convex
    vertex is clipped.
    """
    n = len(points2d)
    p = points2d.astype(np.float64)
    span = float(np.ptp(p, axis=0).max()) if n else 0.0
    tol = 1e-12 * span * span
    idx = list(range(n))
    tris: list[tuple[int, int, int]] = []

    def cross(a, b, c):
        return (p[b, 0] - p[a, 0]) * (p[c, 1] - p[a, 1]) - (p[b, 1] - p[a, 1]) * (p[c, 0] - p[a, 0])

    while len(idx) > 3:
        m = len(idx)
        clipped = False
        best_k, best_c = 0, -math.inf
        for k in range(m):
            a, b, c = idx[k - 1], idx[k], idx[(k + 1) % m]
            cr = cross(a, b, c)
            if cr > best_c:
                best_k, best_c = k, cr
            if cr <= tol:
                continue  # reflex or degenerate corner: not an ear
            ear = True
            for j in idx:
                if j in (a, b, c):
                    continue
                q = p[j]
                if (
                    np.array_equal(q, p[a]) or np.array_equal(q, p[b]) or np.array_equal(q, p[c])
                ):
                    continue  # a repeated position (e.g. a keyhole bridge) does not block
                if cross(a, b, j) >= -tol and cross(b, c, j) >= -tol and cross(c, a, j) >= -tol:
                    ear = False
                    break
            if ear:
                tris.append((a, b, c))
                del idx[k]
                clipped = True
                break
        if not clipped:  # degenerate / self-intersecting polygon: clip the most convex corner
            k = best_k
            tris.append((idx[k - 1], idx[k], idx[(k + 1) % m]))
            del idx[k]
    if len(idx) == 3:
        tris.append((idx[0], idx[1], idx[2]))
    return tris


def triangulate_polygon(points: np.ndarray) -> np.ndarray:
    """Triangulates one (possibly non-convex, roughly planar) 3D polygon.

    Args:
      points: ``(n, 3)`` polygon corners in order, ``n >= 3``.

    Returns:
      ``(n - 2, 3) int64`` corner indices (into ``points``) of triangles with the polygon's
      winding whose union is the polygon: a fan from corner 0 if the polygon is convex,
      ear clipping in the polygon's best-fit (Newell) plane otherwise.
    """
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    if points.ndim != 2 or points.shape[1] != 3 or n < 3:
        raise ValueError(f"a polygon needs shape (n >= 3, 3), got {points.shape}")
    if _convex_mask(points[None])[0]:
        return np.stack([np.zeros(n - 2, int), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    normal = _newell_normal(points)
    if not np.linalg.norm(normal) > 0:  # zero-area polygon: any triangulation is exact
        return np.stack([np.zeros(n - 2, int), np.arange(1, n - 1), np.arange(2, n)], axis=1)
    e1, e2 = _plane_basis(normal)
    centred = points - points.mean(axis=0)
    tris = _ear_clip(np.stack([centred @ e1, centred @ e2], axis=1))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)


def _triangulate_faces(
    vertices: np.ndarray, face_indices: np.ndarray, face_sizes: np.ndarray
) -> np.ndarray:
    """Triangulates polygons given as a flat index array and per-polygon sizes.

    Returns ``(sum(n - 2), 3) int64`` triangles in polygon order.
    """
    sizes = np.asarray(face_sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out_counts = sizes - 2
    out_starts = np.concatenate([[0], np.cumsum(out_counts)[:-1]]).astype(np.int64)
    out = np.empty((int(out_counts.sum()), 3), dtype=np.int64)
    for n in np.unique(sizes):
        sel = np.nonzero(sizes == n)[0]
        local = starts[sel, None] + np.arange(n)  # (P, n) positions in face_indices
        poly = face_indices[local]  # (P, n) vertex indices
        if n == 3:
            out[out_starts[sel]] = poly
            continue
        convex = _convex_mask(vertices[poly])
        k = np.arange(n - 2)
        cv = sel[convex]
        pc = poly[convex]
        rows = out_starts[cv, None] + k  # (Pc, n-2)
        out[rows, 0] = pc[:, :1]
        out[rows, 1] = pc[:, 1 : n - 1]
        out[rows, 2] = pc[:, 2:n]
        for i, pv in zip(sel[~convex], poly[~convex]):
            tri = triangulate_polygon(vertices[pv])
            out[out_starts[i] : out_starts[i] + n - 2] = pv[tri]
    return out


# ----------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------


def _read_obj(path: Path) -> Mesh:
    """Geometry-only Wavefront OBJ reader (see the module docstring)."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    if "\\\n" in text or "\\\r\n" in text:  # line continuations
        text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    coords: list[list[str]] = []
    face_indices: list[int] = []
    face_sizes: list[int] = []
    num_v = 0
    skipped = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line or line[0] not in "vf":
            s = line.lstrip()
            if not s or s[0] not in "vf":
                continue
            line = s
        parts = line.split()
        tag = parts[0]
        if tag == "v":
            if len(parts) < 4:
                raise ValueError(f"{path}:{lineno}: a 'v' line needs 3 coordinates: {line!r}")
            coords.append(parts[1:4])  # ignores w / vertex colours
            num_v += 1
        elif tag == "f":
            refs = parts[1:]
            if len(refs) < 3:
                skipped += 1
                continue
            for ref in refs:
                head = ref.split("/", 1)[0]
                try:
                    i = int(head)
                except ValueError:
                    raise ValueError(f"{path}:{lineno}: bad face vertex {ref!r}") from None
                if i > 0:
                    i -= 1
                elif i < 0:
                    i += num_v
                    if i < 0:
                        raise ValueError(
                            f"{path}:{lineno}: relative index {head} refers before the first vertex"
                        )
                else:
                    raise ValueError(f"{path}:{lineno}: OBJ indices start at 1, got 0")
                face_indices.append(i)
            face_sizes.append(len(refs))
    if skipped:
        log.warning("%s: skipped %d face(s) with fewer than 3 vertices", path, skipped)
    try:
        vertices = np.array(coords, dtype=np.float64).reshape(-1, 3)
    except ValueError as e:
        raise ValueError(f"{path}: bad vertex coordinates: {e}") from None
    if not face_sizes:
        raise ValueError(f"{path}: the OBJ file has no faces ({len(vertices)} vertices)")
    fi = np.asarray(face_indices, dtype=np.int64)
    if fi.max() >= len(vertices):
        raise ValueError(
            f"{path}: face index {fi.max() + 1} is out of range (the file has {len(vertices)} vertices)"
        )
    faces = _triangulate_faces(vertices, fi, np.asarray(face_sizes))
    return Mesh(vertices=vertices.astype(np.float32), faces=faces)


def _mesh_from_ply_raw(loaded) -> Mesh | None:
    """Rebuilds a PLY mesh from trimesh's raw element data, triangulating polygons correctly.

    trimesh fans PLY polygons (wrong for non-convex ones) and may re-index vertices by
    texture coordinate; the raw ``vertex``/``face`` elements it keeps in
    ``metadata["_ply_raw"]`` give the file's vertices and polygons. Returns None if the raw
    data is missing or has an unexpected layout.
    """
    try:
        raw = loaded.metadata["_ply_raw"]
        vdata = raw["vertex"]["data"]
        vertices = np.column_stack([np.asarray(vdata[k], dtype=np.float64) for k in "xyz"])
        fdata = raw["face"]["data"]
        polys = None
        if isinstance(fdata, dict):
            for name in ("vertex_indices", "vertex_index"):
                if name in fdata:
                    polys = fdata[name]
                    break
        elif isinstance(fdata, np.ndarray) and fdata.dtype.names:
            names = [n for n in fdata.dtype.names if n in ("vertex_indices", "vertex_index")]
            name = names[0] if names else fdata.dtype.names[0]
            polys = fdata[name]["f1"] if fdata[name].dtype.names else fdata[name]
        if polys is None:
            return None
        polys = np.asarray(polys)
        if polys.dtype == object:
            sizes = np.array([len(p) for p in polys], dtype=np.int64)
            flat = np.concatenate([np.asarray(p, dtype=np.int64).ravel() for p in polys])
        else:
            polys = polys.reshape(len(polys), -1).astype(np.int64)
            sizes = np.full(len(polys), polys.shape[1], dtype=np.int64)
            flat = polys.ravel()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return None
    keep = sizes >= 3
    if not keep.all():  # drop points / edges stored as "faces"
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = np.concatenate([flat[a : a + n] for a, n in zip(starts[keep], sizes[keep])] or [[]])
        sizes = sizes[keep]
    if len(sizes) == 0 or flat.min() < 0 or flat.max() >= len(vertices):
        return None
    faces = _triangulate_faces(vertices, flat.astype(np.int64), sizes)
    return Mesh(vertices=vertices.astype(np.float32), faces=faces)


def _read_with_trimesh(path: Path) -> Mesh:
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as e:  # trimesh raises many different types for unreadable files
        raise ValueError(f"could not read a mesh from {path}: {type(e).__name__}: {e}") from e
    faces = getattr(loaded, "faces", None)
    if faces is None or len(faces) == 0:
        raise ValueError(f"{path} contains no triangles (trimesh read {type(loaded).__name__})")
    if path.suffix.lower() == ".ply":
        mesh = _mesh_from_ply_raw(loaded)
        if mesh is not None:
            return mesh
    return Mesh(vertices=np.asarray(loaded.vertices), faces=np.asarray(faces))


def _read_mesh_file(path: Path) -> Mesh:
    """Reads a mesh file without any post-processing (no caching)."""
    if path.suffix.lower() == ".obj":
        mesh = _read_obj(path)
    else:
        mesh = _read_with_trimesh(path)
    if mesh.num_faces == 0:
        raise ValueError(f"{path} contains no faces")
    if not np.all(np.isfinite(mesh.vertices)):
        raise ValueError(f"{path} contains non-finite vertex coordinates")
    return mesh


# ----------------------------------------------------------------------------------------
# Processing
# ----------------------------------------------------------------------------------------


def normalize_mesh(mesh: Mesh) -> Mesh:
    """Centres the bounding box at the origin and scales it to unit diagonal (uniformly).

    This is ShapeNetCore's normalisation; use it for meshes that are not ShapeNet models
    (ShapeNet models already satisfy it). Axes are not changed. Computed in float64.
    """
    v = mesh.vertices.astype(np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    diag = float(np.linalg.norm(hi - lo))
    if not diag > 0:
        raise ValueError("cannot normalise a mesh whose bounding box has zero diagonal")
    return Mesh(vertices=(v - (lo + hi) / 2) / diag, faces=mesh.faces)


def remove_degenerate_faces(mesh: Mesh, min_area: float = 0.0) -> Mesh:
    """Drops faces with a repeated vertex index or area ``<= min_area`` (model units^2).

    Vertices are kept (possibly unreferenced) so indices stay those of the input.
    """
    f = mesh.faces
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    keep &= mesh.face_areas > min_area
    if keep.all():
        return mesh
    return Mesh(vertices=mesh.vertices, faces=f[keep])


def weld_vertices(mesh: Mesh, remove_unreferenced: bool = True) -> Mesh:
    """Merges vertices with bit-identical positions (geometry is unchanged).

    Also drops faces that become degenerate by index (repeated vertex) and, by default,
    unreferenced vertices. Vertex order is by first occurrence.
    """
    v = mesh.vertices
    f = mesh.faces
    if remove_unreferenced:
        used = np.zeros(len(v), bool)
        used[f.ravel()] = True
    else:
        used = np.ones(len(v), bool)
    used_idx = np.nonzero(used)[0]
    _, first, inv = np.unique(v[used_idx], axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    # renumber unique positions by first occurrence to keep a stable order
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    remap = np.full(len(v), -1, dtype=np.int64)
    remap[used_idx] = rank[inv]
    new_v = v[used_idx[first[order]]]
    new_f = remap[f]
    new_f = new_f[
        (new_f[:, 0] != new_f[:, 1]) & (new_f[:, 1] != new_f[:, 2]) & (new_f[:, 0] != new_f[:, 2])
    ]
    return Mesh(vertices=new_v, faces=new_f)


def _split_manifold_patches(vertices: np.ndarray, faces: np.ndarray):
    """Splits vertices so that every edge is shared by at most two consistently oriented faces.

    Faces are grouped into patches connected through edges that have exactly two incident
    faces with opposite directions; each (patch, vertex) pair gets its own vertex. Quadric
    decimation gets stuck on non-manifold edges, which ShapeNet meshes are full of.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nf = len(faces)
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
    undirected = np.sort(directed, axis=1)
    face_of = np.repeat(np.arange(nf), 3)
    _, inv, counts = np.unique(undirected, axis=0, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    two = counts[inv] == 2
    order = np.argsort(inv[two], kind="stable")
    pair_faces = face_of[two][order].reshape(-1, 2)
    pair_dirs = directed[two][order].reshape(-1, 2, 2)
    consistent = np.all(pair_dirs[:, 0] == pair_dirs[:, 1, ::-1], axis=1)
    a, b = pair_faces[consistent, 0], pair_faces[consistent, 1]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(nf, nf))
    _, label = connected_components(graph, directed=False)
    key = np.stack([np.repeat(label, 3), faces.ravel()], axis=1)
    uniq, new_idx = np.unique(key, axis=0, return_inverse=True)
    return vertices[uniq[:, 1]], new_idx.reshape(-1, 3)


def _cluster_decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int):
    """Vertex-clustering decimation on a uniform grid, the cell size found by bisection.

    Each occupied cell's vertices merge into their mean; collapsed and duplicate faces are
    removed. Returns the finest grid's result with at most ``max_faces`` faces.
    """
    v = vertices.astype(np.float64)
    lo = v.min(axis=0)
    span = float(np.ptp(v, axis=0).max()) or 1.0

    def run(cell):
        q = np.floor((v - lo) / cell).astype(np.int64)
        _, inv = np.unique(q, axis=0, return_inverse=True)
        inv = inv.ravel()
        cnt = np.bincount(inv)
        pos = np.stack([np.bincount(inv, v[:, k]) / cnt for k in range(3)], axis=1)
        f = inv[faces]
        f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
        if len(f):  # drop duplicates, keeping both windings of back-to-back faces
            r = np.argmin(f, axis=1)
            f = np.take_along_axis(f, (r[:, None] + np.arange(3)) % 3, axis=1)
            f = np.unique(f, axis=0)
        return pos, f

    fine, coarse = span * 1e-6, span * 2.0
    best = run(coarse)
    for _ in range(30):
        mid = math.sqrt(fine * coarse)
        res = run(mid)
        if len(res[1]) <= max_faces:
            coarse, best = mid, res
        else:
            fine = mid
        if coarse / fine < 1.01:
            break
    return best


def decimate(
    mesh: Mesh, max_faces: int, *, method: str = "quadric", aggression: int | None = None
) -> Mesh:
    """Reduces a mesh to at most ``max_faces`` triangles (no-op if already within budget).

    Uses quadric-error decimation, ``trimesh.Trimesh.simplify_quadric_decimation(
    face_count=...)`` (backed by ``fast_simplification``), after welding bit-identical
    vertices and splitting the mesh along non-manifold / inconsistently oriented edges
    (on which the simplifier otherwise gets stuck far above the target). If the simplifier
    still cannot reach the budget (e.g. a tight budget on a mesh of many small parts), it
    falls back to grid vertex clustering of the input, which always reaches it.

    Args:
      mesh: the input mesh.
      max_faces: face budget, ``>= 1``.
      method: ``"quadric"`` (default, as above) or ``"cluster"`` (grid vertex clustering
        only: cruder at moderate budgets but robust on messy meshes; on the ShapeNet car
        its Chamfer distance to the original is comparable to quadric's).
      aggression: ``fast_simplification``'s ``agg`` (0 = slow and good ... 10 = fast and
        bad); ``None`` uses its default (7).

    Returns:
      A new mesh (bit-identical positions welded, unreferenced vertices removed) with
      ``num_faces <= max_faces``; model units unchanged.
    """
    max_faces = int(max_faces)
    if max_faces < 1:
        raise ValueError(f"max_faces must be >= 1, got {max_faces}")
    if method not in ("quadric", "cluster"):
        raise ValueError(f"method must be 'quadric' or 'cluster', got {method!r}")
    if mesh.num_faces <= max_faces:
        return mesh
    import trimesh

    welded = weld_vertices(remove_degenerate_faces(mesh))
    if welded.num_faces <= max_faces:
        return welded
    if method == "cluster":
        pos, faces = _cluster_decimate(welded.vertices, welded.faces, max_faces)
        return weld_vertices(Mesh(vertices=pos, faces=faces))
    v, f = _split_manifold_patches(welded.vertices.astype(np.float64), welded.faces)
    simplified = trimesh.Trimesh(vertices=v, faces=f, process=False).simplify_quadric_decimation(
        face_count=max_faces, aggression=aggression
    )
    if len(simplified.faces) <= max_faces and len(simplified.faces) > 0:
        out = Mesh(vertices=np.asarray(simplified.vertices), faces=np.asarray(simplified.faces))
    else:
        log.info(
            "quadric decimation stopped at %d > %d faces; using vertex clustering",
            len(simplified.faces),
            max_faces,
        )
        pos, faces = _cluster_decimate(welded.vertices, welded.faces, max_faces)
        out = Mesh(vertices=pos, faces=faces)
    out = weld_vertices(out)
    assert out.num_faces <= max_faces
    return out


# ----------------------------------------------------------------------------------------
# Loading with a disk cache
# ----------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$FGPOSE_CACHE_DIR`` if set (non-empty), else ``~/.cache/fgpose/meshes``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fgpose" / "meshes"


def _cache_file(path: Path, stat: os.stat_result, options: dict, cache_dir: Path) -> Path:
    key = json.dumps(
        {
            "path": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "options": options,
            "version": _CACHE_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return cache_dir / f"{path.stem}-{digest}.npz"


def _load_cached(file: Path) -> Mesh | None:
    try:
        with np.load(file, allow_pickle=False) as data:
            return Mesh(vertices=data["vertices"], faces=data["faces"])
    except FileNotFoundError:
        return None
    except Exception as e:  # corrupt / truncated entry: recompute and overwrite
        log.warning("ignoring unreadable mesh cache entry %s: %s", file, e)
        return None


def _store_cached(file: Path, mesh: Mesh) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, vertices=mesh.vertices, faces=mesh.faces)
            os.replace(tmp, file)  # atomic: concurrent readers never see a partial file
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        warnings.warn(f"could not write mesh cache entry {file}: {e}", stacklevel=3)


def load_mesh(
    path: str | os.PathLike,
    normalize: bool = False,
    max_faces: int | None = None,
    cache_dir: str | os.PathLike | None | bool = None,
    *,
    drop_degenerate: bool = False,
    drop_hidden: bool = False,
) -> Mesh:
    """Loads a triangle mesh (OBJ, PLY or any format trimesh reads) and preprocesses it.

    Args:
      path: mesh file. ``.obj`` files use this module's reader (correct triangulation of
        quads and non-convex n-gons, ``v/vt/vn`` syntax, negative indices, several
        objects); other formats go through ``trimesh.load(force="mesh", process=False)``
        (PLY polygons re-triangulated correctly from the raw data; see the module doc).
        Vertex positions are those of the file (as float32); vertices are not merged.
      normalize: centre the bounding box and scale it to unit diagonal
        (:func:`normalize_mesh`), for meshes that are not ShapeNet-normalised.
      max_faces: if given, :func:`decimate` to at most this many faces (after
        normalisation; the normalisation uses the full-resolution bounding box).
      cache_dir: directory for the ``.npz`` cache of the preprocessed mesh, keyed by the
        absolute path, size and mtime of the file and the options; ``None`` (default) uses
        :func:`default_cache_dir` (``$FGPOSE_CACHE_DIR`` or ``~/.cache/fgpose/meshes``),
        ``False`` disables caching. A cache that cannot be written only warns.
      drop_degenerate: drop faces with a repeated index or zero area
        (:func:`remove_degenerate_faces`) before anything else.
      drop_hidden: drop the faces that no distant viewpoint sees
        (:func:`fgpose.visibility.drop_hidden_faces`: silhouettes seen from outside the
        mesh are unchanged) before decimation, so that the face budget goes to the visible
        surface. For silhouette work (annotation refinement), not for rendering interiors.

    Returns:
      A :class:`Mesh` (``vertices (V, 3) float32`` in model units, ``faces (F, 3) int32``).

    Raises:
      FileNotFoundError: ``path`` does not exist.
      ValueError: the file cannot be parsed or contains no triangles.
    """
    path = Path(path).expanduser().absolute()
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"mesh file not found: {path}") from None
    if path.is_dir():
        raise ValueError(f"expected a mesh file, got a directory: {path}")
    if max_faces is not None:
        max_faces = int(max_faces)
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
    options = {
        "normalize": bool(normalize),
        "max_faces": max_faces,
        "drop_degenerate": bool(drop_degenerate),
    }
    if drop_hidden:  # only when set, so that earlier cache entries keep their keys
        options["drop_hidden"] = True
    cache_file = None
    if cache_dir is not False and cache_dir is not True:
        directory = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
        cache_file = _cache_file(path, stat, options, directory)
    elif cache_dir is True:
        cache_file = _cache_file(path, stat, options, default_cache_dir())
    if cache_file is not None:
        cached = _load_cached(cache_file)
        if cached is not None:
            return cached

    if drop_hidden and max_faces is not None:
        # The visible faces, cached on their own: meshes decimated to other budgets share them.
        mesh = load_mesh(path, normalize, None, cache_dir, drop_degenerate=drop_degenerate, drop_hidden=True)
        mesh = decimate(mesh, max_faces)
        if cache_file is not None:
            _store_cached(cache_file, mesh)
        return mesh

    mesh = _read_mesh_file(path)
    if drop_degenerate:
        mesh = remove_degenerate_faces(mesh)
        if mesh.num_faces == 0:
            raise ValueError(f"{path}: every face is degenerate")
    if normalize:
        mesh = normalize_mesh(mesh)
    if drop_hidden:
        from fgpose import visibility  # noqa: PLC0415 - imports the rasterizer (JAX)

        mesh = visibility.drop_hidden_faces(mesh)
        if mesh.num_faces == 0:
            raise ValueError(f"{path}: no face is visible from outside the mesh")
    if max_faces is not None:
        mesh = decimate(mesh, max_faces)

    if cache_file is not None:
        _store_cached(cache_file, mesh)
    return mesh


# ----------------------------------------------------------------------------------------
# Packing for batching under jit
# ----------------------------------------------------------------------------------------


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

    Arrays are NumPy as returned by the packers; ``jax.device_put(packed)`` moves them to
    the device, and ``jax.jit`` functions accept a ``PackedMeshes`` argument directly.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_mask: np.ndarray
    vertex_mask: np.ndarray

    @property
    def batched(self) -> bool:
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
