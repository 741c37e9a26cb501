"""A pure-JAX triangle rasterizer: silhouette, depth, 3D location field and visible face id.

Method (all jit-compiled, static shapes, batched over images):

1. **Homogeneous 2D rasterization** (Olano & Greer 1997). Each triangle's vertices in
   homogeneous pixel coordinates ``(x_h, y_h, w)`` (``w`` = depth, positive in front of the
   camera) form a 3x3 matrix ``M``; for a pixel centre ``p = (x, y, 1)`` the weights
   ``alpha = M^-1 p`` are the perspective-correct barycentrics up to scale. The pixel sees
   the triangle iff every ``alpha_i >= 0`` and ``sum(alpha) > 0``, and the visible point's
   depth is ``1 / sum(alpha)``. This is exact for triangles that cross the camera plane
   (no clipping needed); a near-plane test ``depth > near`` discards what is behind.
   Degenerate triangles (``det M = 0``: zero area or seen edge-on) are ignored.
2. **Binning by screen-space extent**: every triangle is expanded into the ``tile x tile``
   pixel tiles its bounding box overlaps (a triangle with a vertex behind the near plane
   conservatively covers the whole image). This set-up runs one image at a time in a
   ``lax.map`` whose outputs are materialised once (XLA would otherwise recompute it inside
   each consumer): per triangle, one packed int32 (first tile, tiles per row, rows) and its
   corners in homogeneous pixel coordinates (9 floats). The expanded (triangle, tile) list
   has a data-dependent length; a ``lax.while_loop`` walks it in fixed-size blocks. Chunk
   ``j``'s triangle comes from a map built once (scatter-max of triangle ids at their
   prefix-sum starts, then a running max), with a binary search past the map's static
   capacity. Only pixels in a triangle's bounding-box tiles are ever tested. Each chunk
   gathers its triangle's 9 homogeneous coordinates and takes the tile's corner as screen
   origin (for precision) before the pixel tests.
3. **Z-buffer by scatter-min** of an int32 key ``quantised_depth << face_bits | face_id``
   over whole tiles (one windowed scatter per chunk). Depth is quantised over each image's
   visible depth range into ``2**min(31 - face_bits, 22)`` levels, so only faces closer than
   one level can swap (for the 29k-face ShapeNet car: 1/65536 of the range).
4. **Shading per pixel** from the winning face id, exactly in float32: the pixel's ray
   ``X = C + depth * r`` meets the face's plane at ``depth = (n.X0 - n.C) / (n.r)``. The
   location field (model-space XYZ of the visible point) is that ``X``.

Conventions: images are ``H x W``; pixel ``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)``;
the projection matrix ``P`` (``3 x 4``) maps model points to pixels of the rendered image in
the release's convention (see :mod:`fgpose.camera`: visible points have a *negative* third
homogeneous coordinate; depth is minus that coordinate, i.e. the distance along the optical
axis in model units).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

_EMPTY = jnp.iinfo(jnp.int32).max


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RasterOutput:
    """Rendered buffers, each with the batch shape ``(...)`` of the projections.

    Attributes:
      mask: ``(..., H, W)`` bool, the silhouette.
      depth: ``(..., H, W)`` float32 depth along the optical axis (model units); 0 off the mask.
      location: ``(..., H, W, 3)`` float32 model-space XYZ of the visible surface point
        (the 3D location field); 0 off the mask. ``None`` when not requested.
      face_id: ``(..., H, W)`` int32 index of the visible face; -1 off the mask.
    """

    mask: jax.Array
    depth: jax.Array | None
    location: jax.Array | None
    face_id: jax.Array | None


def _face_bits(num_faces: int) -> int:
    bits = max(1, math.ceil(math.log2(num_faces + 1)))
    if bits > 24:
        raise ValueError(
            f"{num_faces} faces leave too few depth bits for the z-buffer key; decimate the "
            "mesh (fgpose.mesh.decimate) to at most 2**24 faces"
        )
    return bits


def _homogeneous(corners, proj):
    """Homogeneous pixel coordinates ``(x_h, y_h, w)`` of the 3 corners (lists of 3 arrays).

    ``corners``: 9 arrays ``(x0, y0, z0, x1, ...)``; ``proj``: the 12 row-major entries of P,
    broadcastable. ``w`` is the depth (positive in front): the release's P gives visible
    points a negative third coordinate, so everything is negated.
    """

    def hom(row, k):
        x, y, z = corners[3 * k : 3 * k + 3]
        return -(proj[4 * row] * x + proj[4 * row + 1] * y + proj[4 * row + 2] * z + proj[4 * row + 3])

    return [hom(0, k) for k in range(3)], [hom(1, k) for k in range(3)], [hom(2, k) for k in range(3)]


def _adjugate(xh, yh, w, ox, oy):
    """Sign-normalised adjugate rows (9 arrays) and ``|det|`` of ``M = [v0 v1 v2]``.

    Coordinates are taken relative to the screen origin ``(ox, oy)``: ``x_h -> x_h - ox w``
    is unimodular (det and alpha unchanged) and an origin near the pixels avoids the
    catastrophic cancellation of ~300 px coordinates for small or thin triangles. Then
    ``alpha = adj @ (x - ox, y - oy, 1)``, inside iff all ``alpha >= 0`` and
    ``sum(alpha) > 0``, depth ``= |det| / sum(alpha)``.
    """
    x = [xh[k] - ox * w[k] for k in range(3)]
    y = [yh[k] - oy * w[k] for k in range(3)]

    def cross(i, j):  # rows of adj(M), M = [v0 v1 v2] with v = (x, y, w)
        return (y[i] * w[j] - w[i] * y[j], w[i] * x[j] - x[i] * w[j], x[i] * y[j] - y[i] * x[j])

    adj = (*cross(1, 2), *cross(2, 0), *cross(0, 1))
    det = x[0] * adj[0] + y[0] * adj[1] + w[0] * adj[2]
    sign = jnp.where(det < 0, -1.0, 1.0)
    return tuple(a * sign for a in adj), jnp.abs(det)


def _triangle(corners, proj, *, height: int, width: int, near: float) -> dict:
    """Screen-space set-up of triangles, elementwise over any common shape.

    Args:
      corners: 9 arrays, model-space ``(x0, y0, z0, x1, y1, z1, x2, y2, z2)``.
      proj: 12 arrays, the row-major entries of the ``3 x 4`` projection (release convention),
        broadcastable against the corners.

    Returns:
      dict with ``x_lo, x_hi, y_lo, y_hi`` (range of pixel indices whose centres the
      projected box covers, clipped to the image), ``ok`` (a corner is in front of the near
      plane and the box is not empty), ``xh``, ``yh``, ``w`` (3 arrays each: the corners'
      homogeneous pixel coordinates; ``w`` is the depth), ``all_front``.
    """
    xh, yh, w = _homogeneous(corners, proj)
    front = [wk > near for wk in w]
    all_front = front[0] & front[1] & front[2]
    any_front = front[0] | front[1] | front[2]
    inv_w = [1.0 / jnp.where(front[k], w[k], 1.0) for k in range(3)]
    sx = [jnp.clip(xh[k] * inv_w[k], -1e9, 1e9) for k in range(3)]
    sy = [jnp.clip(yh[k] * inv_w[k], -1e9, 1e9) for k in range(3)]
    # Pixel j is tested when its centre j + 0.5 lies in the projected box; a triangle with a
    # corner behind the near plane has an unbounded projection: test the whole image.
    x_lo = jnp.where(all_front, jnp.ceil(jnp.minimum(jnp.minimum(sx[0], sx[1]), sx[2]) - 0.5), 0.0)
    x_hi = jnp.where(all_front, jnp.floor(jnp.maximum(jnp.maximum(sx[0], sx[1]), sx[2]) - 0.5), width - 1.0)
    y_lo = jnp.where(all_front, jnp.ceil(jnp.minimum(jnp.minimum(sy[0], sy[1]), sy[2]) - 0.5), 0.0)
    y_hi = jnp.where(all_front, jnp.floor(jnp.maximum(jnp.maximum(sy[0], sy[1]), sy[2]) - 0.5), height - 1.0)
    x_lo, x_hi = jnp.clip(x_lo, 0, width - 1), jnp.clip(x_hi, -1, width - 1)
    y_lo, y_hi = jnp.clip(y_lo, 0, height - 1), jnp.clip(y_hi, -1, height - 1)
    # Degenerate triangles (det M = 0) are not filtered here: their chunks cover nothing
    # (alpha = 0 fails the sum(alpha) > 0 test), which is cheaper than a determinant for all.
    ok = any_front & (x_hi >= x_lo) & (y_hi >= y_lo)
    return dict(x_lo=x_lo, x_hi=x_hi, y_lo=y_lo, y_hi=y_hi, ok=ok, xh=xh, yh=yh, w=w, all_front=all_front)


@functools.partial(
    jax.jit,
    static_argnames=("height", "width", "tile", "block", "near", "silhouette_only", "location"),
)
def _render_batch(
    vertices: jax.Array,
    faces: jax.Array,
    face_mask: jax.Array,
    projection: jax.Array,
    *,
    height: int,
    width: int,
    tile: int,
    block: int,
    near: float,
    silhouette_only: bool,
    location: bool,
) -> RasterOutput:
    """Inputs carry a leading batch axis of size ``B`` (projections) or ``Bm`` (meshes: 1 or B)."""
    batch, mesh_batch, num_faces = projection.shape[0], faces.shape[0], faces.shape[1]
    corners = jax.vmap(lambda v, f: v[f])(jnp.broadcast_to(vertices, (mesh_batch,) + vertices.shape[1:]), faces)
    n_tri = batch * num_faces
    # A triangle's tiles are packed in one int32: first tile x | y << bx | tiles per row
    # << (bx + by) | rows << (2 bx + by). Huge images double the tile until that fits.
    k = tile
    while True:
        tiles_y, tiles_x = -(-height // k), -(-width // k)
        bx, by = max(1, tiles_x.bit_length()), max(1, tiles_y.bit_length())
        if 2 * (bx + by) <= 31:
            break
        k *= 2
    fbits = _face_bits(num_faces)
    # Depth levels: what the int32 key leaves beside the face id, capped at 22 bits so that
    # the quantised depth is exact in float32 (a rounded-up 2**31 would wrap negative).
    qmax = (1 << min(31 - fbits, 22)) - 1
    geom = dict(height=height, width=width, near=near)
    # Set-up of every (image, triangle), one image at a time: `lax.map` materialises its
    # packed tiles and homogeneous corners once (XLA would otherwise recompute the float
    # set-up inside each consumer: the prefix sum, the starts, the chunk map, the loop).
    def setup(args):
        p, c, fmask = args if mesh_batch > 1 else (args, corners[0], face_mask[0])  # (3, 4), (F, 3, 3), (F,)
        t = _triangle([c[:, i // 3, i % 3] for i in range(9)], [p[i // 4, i % 4] for i in range(12)], **geom)
        valid = fmask & t["ok"]
        # Tiles overlapped by the triangle's box (0 rows when it draws nothing).
        tx0 = t["x_lo"].astype(jnp.int32) // k
        ty0 = t["y_lo"].astype(jnp.int32) // k
        ntx = jnp.maximum(t["x_hi"].astype(jnp.int32) // k - tx0 + 1, 1)
        nty = jnp.where(valid, t["y_hi"].astype(jnp.int32) // k - ty0 + 1, 0)
        packed = tx0 | (ty0 << bx) | (ntx << (bx + by)) | (nty << (2 * bx + by))
        # Depth range of the drawable surface, for key quantisation: the corners in front of
        # the near plane, extended down to `near` when a triangle crosses that plane.
        w_vis = jnp.stack([jnp.where(valid & (wk > near), wk, jnp.nan) for wk in t["w"]])
        w_lo = jnp.where(jnp.any(valid & ~t["all_front"]), near, jnp.nan_to_num(jnp.nanmin(w_vis), nan=near))
        w_hi = jnp.nan_to_num(jnp.nanmax(w_vis), nan=near + 1.0)
        return packed, w_lo, w_hi, jnp.stack([*t["xh"], *t["yh"], *t["w"]], -1)

    packed_tiles, w_lo, w_hi, hom = jax.lax.map(setup, (projection, corners, face_mask) if mesh_batch > 1 else projection)
    hom = hom.reshape(n_tri, 9)
    packed_tiles = packed_tiles.reshape(n_tri)
    counts = ((packed_tiles >> (bx + by)) & ((1 << bx) - 1)) * (packed_tiles >> (2 * bx + by))
    # Prefix sums and maxima by lax.associative_scan: 2-3x faster on CPU than jnp.cumsum and
    # lax.cummax, which XLA lowers to a pyramid of 16-wide reduce-windows.
    ends = jax.lax.associative_scan(jnp.add, counts)
    total = ends[-1]
    starts = ends - counts
    q_scale = qmax / jnp.maximum(w_hi - w_lo, 1e-12)

    # Chunk -> triangle map for the first `capacity` chunks, built once: each triangle's id
    # scattered (max) at its first chunk, then a running max fills the chunks in between
    # (an empty triangle shares its start with the next one, whose larger id wins). Chunks
    # beyond the capacity, if any, fall back to a binary search of the prefix sums.
    capacity = n_tri + batch * tiles_y * tiles_x
    ids = jnp.arange(n_tri, dtype=jnp.int32)
    chunk_tri = jax.lax.associative_scan(jnp.maximum, jnp.zeros((capacity,), jnp.int32).at[starts].max(ids, mode="drop"))

    off = jnp.arange(k, dtype=jnp.float32) + 0.5
    num_buffers = batch * tiles_y * tiles_x
    empty = jnp.int8(0) if silhouette_only else _EMPTY
    zbuf = jnp.full((num_buffers, k, k), empty, jnp.int8 if silhouette_only else jnp.int32)

    def body(carry):
        it, buf = carry
        j = it * block + jnp.arange(block, dtype=jnp.int32)
        tri = jax.lax.cond(
            (it + 1) * block <= capacity,
            lambda: jnp.take(chunk_tri, j, mode="clip"),
            lambda: jnp.searchsorted(ends, j, side="right").astype(jnp.int32),
        )
        tri = jnp.minimum(tri, n_tri - 1)
        img = tri // num_faces
        face = tri - img * num_faces
        packed = jnp.take(packed_tiles, tri, mode="clip")
        per_row = (packed >> (bx + by)) & ((1 << bx) - 1)
        local = j - jnp.take(starts, tri, mode="clip")
        ty_local = local // per_row
        tx = (packed & ((1 << bx) - 1)) + local - ty_local * per_row
        ty = ((packed >> bx) & ((1 << by) - 1)) + ty_local
        # The triangle's homogeneous corners, with the tile's corner as screen origin.
        # Transposed once: slicing the columns of (C, 9) one by one costs a pass each.
        h = jnp.take(hom, tri, axis=0, mode="clip").T
        xh, yh, w = list(h[0:3]), list(h[3:6]), list(h[6:9])
        adj, det = _adjugate(xh, yh, w, (tx * k).astype(jnp.float32), (ty * k).astype(jnp.float32))
        lx, ly = off[None, None, :], off[None, :, None]
        alpha = [adj[3 * r][:, None, None] * lx + adj[3 * r + 1][:, None, None] * ly + adj[3 * r + 2][:, None, None] for r in range(3)]
        s = alpha[0] + alpha[1] + alpha[2]
        # depth = det / s > near, written without a division (s > 0 there). Pixels of edge
        # tiles beyond the image land in the buffer's padding, which is cropped below.
        inside = (alpha[0] >= 0) & (alpha[1] >= 0) & (alpha[2] >= 0) & (s > 0) & (det[:, None, None] > near * s)
        dest = jnp.where(j < total, (img * tiles_y + ty) * tiles_x + tx, num_buffers)
        if silhouette_only:
            buf = buf.at[dest].max(inside.astype(jnp.int8), mode="drop")
        else:
            depth = det[:, None, None] / jnp.where(s > 0, s, 1.0)
            q = jnp.clip((depth - w_lo[img][:, None, None]) * q_scale[img][:, None, None], 0, qmax)
            key = (q.astype(jnp.int32) << fbits) | face[:, None, None]
            buf = buf.at[dest].min(jnp.where(inside, key, _EMPTY), mode="drop")
        return it + 1, buf

    _, zbuf = jax.lax.while_loop(lambda c: c[0] * block < total, body, (jnp.int32(0), zbuf))
    img = zbuf.reshape(batch, tiles_y, tiles_x, k, k).transpose(0, 1, 3, 2, 4)
    img = img.reshape(batch, tiles_y * k, tiles_x * k)[:, :height, :width]
    if silhouette_only:
        return RasterOutput(mask=img > 0, depth=None, location=None, face_id=None)

    # Shading from the winning face, exactly: the pixel's ray X = C + depth * r (camera centre
    # C, r = -P[:, :3]^-1 (x, y, 1) in the release convention) meets the face's plane
    # n . X = n . X0 at depth = (n . X0 - n . C) / (n . r). Planes are a per-mesh table.
    hit = img != _EMPTY
    face_id = jnp.where(hit, img & ((1 << fbits) - 1), -1)
    c0, c1, c2 = corners[:, :, 0], corners[:, :, 1], corners[:, :, 2]
    normal = jnp.cross(c1 - c0, c2 - c0)  # (Bm, F, 3), once per mesh
    planes = jnp.concatenate([normal, jnp.sum(normal * c0, -1, keepdims=True)], -1).reshape(-1, 4)
    mesh_of = jnp.arange(batch, dtype=jnp.int32) if mesh_batch > 1 else jnp.zeros((batch,), jnp.int32)
    rows = jnp.maximum(face_id, 0) + (mesh_of * num_faces)[:, None, None]
    plane = jnp.take(planes, rows, axis=0, mode="clip")  # (B, H, W, 4)
    inv = jnp.linalg.inv(projection[:, :, :3])  # (B, 3, 3)
    centre = -jnp.einsum("bij,bj->bi", inv, projection[:, :, 3], precision=jax.lax.Precision.HIGHEST)
    xs = jnp.arange(width, dtype=jnp.float32)[None, None, :] + 0.5
    ys = jnp.arange(height, dtype=jnp.float32)[None, :, None] + 0.5
    ray = [-(inv[:, c, 0, None, None] * xs + inv[:, c, 1, None, None] * ys + inv[:, c, 2, None, None]) for c in range(3)]
    n_dot_r = sum(plane[..., c] * ray[c] for c in range(3))
    n_dot_c = sum(plane[..., c] * centre[:, c, None, None] for c in range(3))
    depth = jnp.where(hit, (plane[..., 3] - n_dot_c) / jnp.where(hit & (n_dot_r != 0), n_dot_r, 1.0), 0.0)
    loc = None
    if location:
        xyz = jnp.stack([centre[:, c, None, None] + depth * ray[c] for c in range(3)], -1)
        loc = jnp.where(hit[..., None], xyz, 0.0)
    return RasterOutput(mask=hit, depth=depth, location=loc, face_id=face_id)


def render(
    vertices: jax.Array,
    faces: jax.Array,
    projection: jax.Array,
    height: int,
    width: int,
    *,
    face_mask: jax.Array | None = None,
    silhouette_only: bool = False,
    location: bool = True,
    near: float = 1e-3,
    tile: int = 8,
    block: int = 16384,
) -> RasterOutput:
    """Renders meshes under projections.

    Args:
      vertices: ``(V, 3)`` or ``(B, V, 3)`` float32 model-space vertices (padded meshes allowed).
      faces: ``(F, 3)`` or ``(B, F, 3)`` int32 vertex indices.
      projection: ``(3, 4)`` or ``(B, 3, 4)`` projection into pixels of the ``height x width``
        image, release convention (:func:`fgpose.camera.projection_matrix`).
      height, width: output size in pixels (static).
      face_mask: optional ``(F,)`` or ``(B, F)`` bool; False faces (padding) are not drawn.
      silhouette_only: render only the mask (faster: no depth test).
      location: also compute the 3D location field.
      near: near-plane depth (model units); surface closer than this is not drawn.
      tile: tile side in pixels for binning (static; 8 measured fastest on CPU for ShapeNet cars).
        Doubled automatically for images too large for a triangle's tiles to pack in an
        int32 (2 x (bits of tile columns + bits of tile rows) <= 31, e.g. beyond 4096 rows).
      block: (triangle, tile) chunks processed per loop iteration (static).

    Returns:
      :class:`RasterOutput` with batch shape ``()`` or ``(B,)`` (whichever the inputs have; a
      single mesh is shared by a batch of projections). Works under ``jax.vmap`` too.
    """
    projection = jnp.asarray(projection, jnp.float32)
    vertices = jnp.asarray(vertices, jnp.float32)
    faces = jnp.asarray(faces, jnp.int32)
    if projection.shape[-2:] != (3, 4):
        raise ValueError(f"projection must be (..., 3, 4), got {projection.shape}")
    if vertices.shape[-1] != 3 or faces.shape[-1] != 3:
        raise ValueError(f"vertices and faces must end in 3, got {vertices.shape} and {faces.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    single = projection.ndim == 2
    if projection.ndim not in (2, 3) or vertices.ndim not in (2, 3) or faces.ndim not in (2, 3):
        raise ValueError("expected unbatched or singly batched inputs; use jax.vmap for more axes")
    if face_mask is None:
        face_mask = jnp.ones(faces.shape[:-1], bool)
    face_mask = jnp.asarray(face_mask, bool)
    batch = max(x.shape[0] if x.ndim == 3 else 1 for x in (projection, vertices, faces))
    if projection.ndim == 3 or vertices.ndim == 3 or faces.ndim == 3:
        single = False

    mesh_batch = max(vertices.shape[0] if vertices.ndim == 3 else 1, faces.shape[0] if faces.ndim == 3 else 1)
    if face_mask.ndim == 2:
        mesh_batch = max(mesh_batch, face_mask.shape[0])

    def lead(x, nd, size):  # give x a leading batch axis of `size`
        x = x[None] if x.ndim == nd else x
        return x if x.shape[0] == size else jnp.broadcast_to(x, (size,) + x.shape[1:])

    out = _render_batch(
        lead(vertices, 2, mesh_batch),
        lead(faces, 2, mesh_batch),
        lead(face_mask, 1, mesh_batch),
        lead(projection, 2, batch),
        height=int(height),
        width=int(width),
        tile=int(tile),
        block=int(block),
        near=float(near),
        silhouette_only=bool(silhouette_only),
        location=bool(location),
    )
    if single:
        out = jax.tree.map(lambda x: x[0], out)
    return out


def silhouette(vertices, faces, projection, height: int, width: int, **kwargs) -> jax.Array:
    """Shortcut: ``render(..., silhouette_only=True).mask`` — ``(..., H, W)`` bool."""
    return render(vertices, faces, projection, height, width, silhouette_only=True, **kwargs).mask
