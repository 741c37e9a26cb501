"""Mesh clean-up and simplification: normalisation, welding, degenerate faces, decimation.

Every function takes a :class:`~fgpose.mesh.types.Mesh` and returns a new one (meshes are
immutable); none of them rotates a mesh or changes its units, except
:func:`normalize_mesh`, which scales it to ShapeNet's unit bounding-box diagonal.

NumPy + SciPy + trimesh (``fast_simplification``) only.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from fgpose.mesh.types import Mesh

__all__ = ["normalize_mesh", "remove_degenerate_faces", "weld_vertices", "decimate"]

log = logging.getLogger(__name__)


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
        only: cruder at moderate budgets but robust on messy meshes; a comparison on the
        release's car is in ``docs/lab_notes_mesh.md``).
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
