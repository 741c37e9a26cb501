"""Triangulation of polygons (the n-gons of OBJ and PLY files) into triangles.

Convex polygons (the common case, checked robustly in the polygon's best-fit plane, using
the Newell normal) are fanned from their first vertex; non-convex ones (e.g. an L-shaped
hexagon or a "dart" quad) are triangulated by ear clipping in that plane. Either way an
``n``-gon gives ``n - 2`` triangles whose corners are the polygon's vertices and whose union
is the polygon, with the polygon's winding. (trimesh 5.2's OBJ reader, like the original
release's reader which kept only the first three vertices of each face, gets non-convex
polygons wrong: it fans every polygon from its first vertex, producing overlapping
triangles outside the polygon.) Self-intersecting polygons have no well-defined
triangulation; they are triangulated without error but the result is only approximately
the "polygon".

NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["triangulate_polygon", "triangulate_faces"]


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


def triangulate_faces(
    vertices: np.ndarray, face_indices: np.ndarray, face_sizes: np.ndarray
) -> np.ndarray:
    """Triangulates many polygons given as a flat index array and per-polygon sizes.

    Args:
      vertices: ``(V, 3)`` positions the indices refer to (any float dtype).
      face_indices: ``(sum(n),) int64`` vertex indices of every polygon, one after another.
      face_sizes: ``(P,)`` corner count ``n >= 3`` of each polygon.

    Returns:
      ``(sum(n - 2), 3) int64`` vertex indices of the triangles, in polygon order (each
      polygon's ``n - 2`` triangles contiguous), triangulated as :func:`triangulate_polygon`.
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
