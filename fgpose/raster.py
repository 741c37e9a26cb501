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
   conservatively covers the whole image). The expanded (triangle, tile) list has a
   data-dependent length; a ``lax.while_loop`` walks it in fixed-size blocks, mapping chunk
   ``j`` to its triangle by binary search of the per-triangle prefix sum, so only pixels in a
   triangle's bounding-box tiles are ever tested.
3. **Z-buffer by scatter-min** of an int32 key ``quantised_depth << face_bits | face_id``
   over whole tiles (one windowed scatter per chunk). Depth is quantised over each image's
   visible depth range into ``2**min(31 - face_bits, 22)`` levels, so only faces closer than
   one level can swap (for the 29k-face ShapeNet car: 1/65536 of the range).
4. **Shading per pixel** from the winning face id: exact float32 barycentrics, depth and
   model-space XYZ (the location field), perspective-correct.

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


def _clip_coords(vertices: jax.Array, projection: jax.Array) -> jax.Array:
    """``(B, V, 3)`` model points -> ``(B, V, 3)`` ``(x_h, y_h, w)`` with w = depth > 0 visible."""
    h = jnp.einsum("bij,bvj->bvi", projection[:, :, :3], vertices) + projection[:, None, :, 3]
    return -h  # release convention: the third coordinate is negative in front of the camera


def _triangle_setup(clip_tri: jax.Array):
    """Adjugate rows and determinant of ``M = [v0 v1 v2]`` (columns) for ``(..., 3, 3)`` tris.

    ``clip_tri[..., k, :]`` is vertex k's ``(x_h, y_h, w)``. Returns ``(adj, det)`` with
    ``adj (..., 3, 3)`` such that ``alpha = adj @ (x, y, 1) / det``.
    """
    v0, v1, v2 = clip_tri[..., 0, :], clip_tri[..., 1, :], clip_tri[..., 2, :]
    # Rows of adj(M) for M with columns v0, v1, v2 are the cross products of the columns.
    adj = jnp.stack([jnp.cross(v1, v2), jnp.cross(v2, v0), jnp.cross(v0, v1)], axis=-2)
    det = jnp.sum(v0 * adj[..., 0, :], axis=-1)
    return adj, det


def _face_bits(num_faces: int) -> int:
    bits = max(1, math.ceil(math.log2(num_faces + 1)))
    if bits > 24:
        raise ValueError(
            f"{num_faces} faces leave too few depth bits for the z-buffer key; decimate the "
            "mesh (fgpose.mesh.decimate) to at most 2**24 faces"
        )
    return bits


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
    batch, num_faces = faces.shape[0], faces.shape[1]
    k = tile
    tiles_y, tiles_x = -(-height // k), -(-width // k)
    fbits = _face_bits(num_faces)
    # Depth levels: what the int32 key leaves beside the face id, capped at 22 bits so that
    # the quantised depth is exact in float32 (a rounded-up 2**31 would wrap negative).
    qmax = (1 << min(31 - fbits, 22)) - 1

    clip = _clip_coords(vertices, projection)  # (B, V, 3)
    tri = jax.vmap(lambda c, f: c[f])(clip, faces)  # (B, F, 3 verts, 3)
    w = tri[..., 2]  # (B, F, 3)
    in_front = w > near
    all_front = jnp.all(in_front, axis=-1)
    any_front = jnp.any(in_front, axis=-1)
    valid = face_mask & any_front

    # Bounding box of pixel centres j + 0.5 in [min, max]; whole image if a vertex is behind.
    safe_w = jnp.where(in_front, w, 1.0)
    sx = tri[..., 0] / safe_w
    sy = tri[..., 1] / safe_w
    big = jnp.float32(1e9)
    x_lo = jnp.where(all_front, jnp.ceil(jnp.clip(jnp.min(sx, -1), -big, big) - 0.5), 0.0)
    x_hi = jnp.where(all_front, jnp.floor(jnp.clip(jnp.max(sx, -1), -big, big) - 0.5), width - 1.0)
    y_lo = jnp.where(all_front, jnp.ceil(jnp.clip(jnp.min(sy, -1), -big, big) - 0.5), 0.0)
    y_hi = jnp.where(all_front, jnp.floor(jnp.clip(jnp.max(sy, -1), -big, big) - 0.5), height - 1.0)
    x_lo = jnp.clip(x_lo, 0, width - 1)
    x_hi = jnp.clip(x_hi, -1, width - 1)
    y_lo = jnp.clip(y_lo, 0, height - 1)
    y_hi = jnp.clip(y_hi, -1, height - 1)
    # Move each triangle's screen origin to its box centre before forming the adjugate:
    # x_h -> x_h - ox * w is unimodular (det and alpha unchanged) and avoids the catastrophic
    # cancellation of ~300 px coordinates for small or thin triangles.
    origin = jnp.stack([0.5 * (x_lo + x_hi) + 0.5, 0.5 * (y_lo + y_hi) + 0.5], -1)  # (B, F, 2)
    shift = jnp.concatenate([origin, jnp.zeros_like(origin[..., :1])], -1)
    adj, det = _triangle_setup(tri - shift[..., None, :] * w[..., None])
    valid = valid & (det != 0) & (x_hi >= x_lo) & (y_hi >= y_lo)
    tx0 = (x_lo.astype(jnp.int32)) // k
    ty0 = (y_lo.astype(jnp.int32)) // k
    ntx = jnp.where(valid, x_hi.astype(jnp.int32) // k - tx0 + 1, 0)
    nty = jnp.where(valid, y_hi.astype(jnp.int32) // k - ty0 + 1, 0)
    counts = (ntx * nty).reshape(-1)  # (B*F,)
    ends = jnp.cumsum(counts)
    total = ends[-1]
    starts = ends - counts

    # Per-image depth range of the drawable surface, for key quantisation: the vertices in
    # front of the near plane, extended down to `near` when a triangle crosses that plane.
    w_vis = jnp.where(in_front & valid[..., None], w, jnp.nan)
    crosses = jnp.any(valid & ~all_front, axis=1)
    w_lo = jnp.where(crosses, near, jnp.nan_to_num(jnp.nanmin(w_vis, axis=(1, 2)), nan=near))
    w_hi = jnp.nan_to_num(jnp.nanmax(w_vis, axis=(1, 2)), nan=near + 1.0)
    q_scale = qmax / jnp.maximum(w_hi - w_lo, 1e-12)

    # Per-triangle data gathered by chunks: adjugate (signed so that det > 0) and bookkeeping.
    sign = jnp.sign(det)[..., None, None]
    adj = adj * sign
    abs_det = jnp.abs(det)
    # One gather per chunk: 9 adjugate entries, the origin, |det|.
    tri_data = jnp.concatenate(
        [adj.reshape(batch, num_faces, 9), origin, abs_det[..., None]], -1
    ).reshape(batch * num_faces, 12)
    # One row per triangle, so that a chunk needs a single gather (XLA:CPU gathers cost per
    # index): the 12 shading values, then the first tile, tiles per row and the prefix sum
    # (integers below 2**24, exact in float32), then the image's depth quantisation.
    img_of_tri = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), num_faces)
    rows = jnp.concatenate(
        [
            tri_data,
            jnp.stack([tx0.reshape(-1), ty0.reshape(-1), jnp.maximum(ntx.reshape(-1), 1), starts], -1).astype(jnp.float32),
            jnp.stack([w_lo[img_of_tri], q_scale[img_of_tri]], -1),
        ],
        -1,
    )  # (B*F, 18)
    off = jnp.arange(k, dtype=jnp.float32) + 0.5
    num_buffers = batch * tiles_y * tiles_x

    empty = jnp.int8(0) if silhouette_only else _EMPTY
    zbuf = jnp.full((num_buffers, k, k), empty, jnp.int8 if silhouette_only else jnp.int32)

    def body(carry):
        it, buf = carry
        j = it * block + jnp.arange(block, dtype=jnp.int32)
        live = j < total
        t = jnp.searchsorted(ends, j, side="right").astype(jnp.int32)
        t = jnp.minimum(t, batch * num_faces - 1)
        a = jnp.take(rows, t, axis=0, mode="clip")  # (C, 18)
        local = j - a[:, 15].astype(jnp.int32)
        per_row = a[:, 14].astype(jnp.int32)
        ty_local = local // per_row
        tx = a[:, 12].astype(jnp.int32) + local - ty_local * per_row
        ty = a[:, 13].astype(jnp.int32) + ty_local
        px = (tx * k).astype(jnp.float32)[:, None, None] + off[None, None, :]
        py = (ty * k).astype(jnp.float32)[:, None, None] + off[None, :, None]
        inside_image = (px < width) & (py < height)
        px = px - a[:, 9, None, None]
        py = py - a[:, 10, None, None]
        alpha = [
            a[:, 3 * r, None, None] * px + a[:, 3 * r + 1, None, None] * py + a[:, 3 * r + 2, None, None]
            for r in range(3)
        ]
        s = alpha[0] + alpha[1] + alpha[2]
        inside = (alpha[0] >= 0) & (alpha[1] >= 0) & (alpha[2] >= 0) & (s > 0)
        inside &= inside_image
        b = t // num_faces
        # depth = det / s with the signed adjugate: det > 0 after the sign flip.
        d = a[:, 11, None, None] / jnp.where(s > 0, s, 1.0)
        inside &= d > near
        dest = jnp.where(live, (b * tiles_y + ty) * tiles_x + tx, num_buffers)
        if silhouette_only:
            buf = buf.at[dest].max(inside.astype(jnp.int8), mode="drop")
        else:
            q = jnp.clip((d - a[:, 16, None, None]) * a[:, 17, None, None], 0, qmax)
            face = (t - b * num_faces)[:, None, None]
            key = (q.astype(jnp.int32) << fbits) | face
            buf = buf.at[dest].min(jnp.where(inside, key, _EMPTY), mode="drop")
        return it + 1, buf

    def cond(carry):
        return carry[0] * block < total

    _, zbuf = jax.lax.while_loop(cond, body, (jnp.int32(0), zbuf))
    img = zbuf.reshape(batch, tiles_y, tiles_x, k, k).transpose(0, 1, 3, 2, 4)
    img = img.reshape(batch, tiles_y * k, tiles_x * k)[:, :height, :width]
    if silhouette_only:
        return RasterOutput(mask=img > 0, depth=None, location=None, face_id=None)

    hit = img != _EMPTY
    face_id = jnp.where(hit, img & ((1 << fbits) - 1), -1)
    safe_face = jnp.maximum(face_id, 0)
    # Exact shading from the winning face.
    flat_face = safe_face + (jnp.arange(batch, dtype=jnp.int32) * num_faces)[:, None, None]
    pix = jnp.take(tri_data, flat_face, axis=0, mode="clip")  # (B, H, W, 12)
    xs = jnp.arange(width, dtype=jnp.float32) + 0.5
    ys = jnp.arange(height, dtype=jnp.float32) + 0.5
    px = xs[None, None, :] - pix[..., 9]
    py = ys[None, :, None] - pix[..., 10]
    alpha = jnp.stack([pix[..., 3 * r] * px + pix[..., 3 * r + 1] * py + pix[..., 3 * r + 2] for r in range(3)], -1)
    s = jnp.sum(alpha, -1)
    s_safe = jnp.where(hit, s, 1.0)
    depth = jnp.where(hit, pix[..., 11] / s_safe, 0.0)
    loc = None
    if location:
        # The visible point is on the pixel's ray at that depth: P[:, :3] X + P[:, 3] =
        # -depth * (x, y, 1) (release convention), so X = P[:, :3]^-1 (-depth (x, y, 1) - P[:, 3]).
        # Per-image constants applied elementwise: no per-pixel gather of the face corners.
        inv = jnp.linalg.inv(projection[:, :, :3].astype(jnp.float32))  # (B, 3, 3)
        ray = (xs[None, None, :] * depth, ys[None, :, None] * depth, depth)
        rhs = [-ray[r] - projection[:, r, 3, None, None] for r in range(3)]
        xyz = jnp.stack(
            [sum(inv[:, c, r, None, None] * rhs[r] for r in range(3)) for c in range(3)], -1
        )
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

    def lift(x, nd):
        return jnp.broadcast_to(x, (batch,) + x.shape[-nd:]) if x.ndim == nd else x

    out = _render_batch(
        lift(vertices, 2),
        lift(faces, 2),
        lift(face_mask, 1),
        lift(projection, 2),
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
