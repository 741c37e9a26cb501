"""The JAX rasterizer against independent references: a float64 NumPy ray caster
(Moller-Trumbore, written from the release's camera formulas) and pyrender (OpenGL)."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgpose import camera, raster
from fgpose.annotations import EXAMPLE_CAR_MODEL_ID as CAR_ID
from tests.reference import rotation as _rot64


# ----------------------------------------------------------------------------- reference


def _rays(vertices, faces, pose, pixels, height, near=1e-3):
    """Float64 Moller-Trumbore in model space for pixel centres ``pixels`` ``(P, 2)`` (row,
    col) of the ``height x 300`` annotation frame. Returns ``(t, bmin, front)``, each
    ``(P, F)``: ray depth, smallest barycentric, and whether the triangle's plane is hit in
    front of the near plane."""
    r = _rot64(pose["azimuth"], pose["elevation"], pose["theta"])
    cx, cy, f = pose["u"] + 150.0, pose["v"] + height / 2.0, pose["f"]
    centre = r.T @ np.array([0.0, 0.0, pose["distance"]])
    ys, xs = pixels[:, 0] + 0.5, pixels[:, 1] + 0.5
    # x = cx + f Xc/Zc with Zc = -1 on the ray -> Xc = -(x - cx)/f; |dir . optical axis| = 1,
    # so the ray parameter t is the depth.
    dirs = np.stack([-(xs - cx) / f, -(ys - cy) / f, -np.ones_like(xs)], -1) @ r  # rows: R^T dir_c
    v = np.asarray(vertices, np.float64)[np.asarray(faces)]
    v0, e1, e2 = v[:, 0], v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    dd = dirs[:, None, :]
    pvec = np.cross(dd, e2[None])
    det = np.einsum("pfk,fk->pf", pvec, e1)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tvec = centre - v0
    qvec = np.cross(tvec, e1)  # (F, 3)
    bu = np.einsum("pfk,fk->pf", pvec, tvec) * inv
    bv = np.einsum("pk,fk->pf", dirs, qvec) * inv
    t = np.einsum("fk,fk->f", e2, qvec)[None] * inv
    return t, np.minimum(np.minimum(bu, bv), 1 - bu - bv), ok & (t > near)


def raycast(vertices, faces, pose, height, width, near=1e-3):
    """Per pixel centre of the whole image: nearest hit depth, its face id, the 2nd-nearest
    depth, and the smallest |barycentric| over all triangles in front (how close the centre
    is to any triangle edge)."""
    assert width == 300
    pixels = np.argwhere(np.ones((height, width), bool))
    t, bmin, front = _rays(vertices, faces, pose, pixels, height, near)
    depth = np.where(front & (bmin >= 0), t, np.inf)
    order = np.argsort(depth, axis=1)
    first, second = order[:, 0], order[:, 1] if depth.shape[1] > 1 else order[:, 0]
    rows = np.arange(depth.shape[0])
    d1, d2 = depth[rows, first], depth[rows, second]
    edge = np.min(np.where(front, np.abs(bmin), np.inf), axis=1)
    shape = (height, width)
    return (
        d1.reshape(shape),
        np.where(np.isfinite(d1), first, -1).reshape(shape),
        d2.reshape(shape),
        edge.reshape(shape),
    )


def _pose(a=0.3, e=0.2, t=0.05, d=2.0, f=300.0, u=0.0, v=0.0):
    return dict(azimuth=a, elevation=e, theta=t, distance=d, f=f, u=u, v=v)


def _proj(pose, height):
    return camera.projection_matrix(camera.Pose.from_mapping(pose), height)


def _random_scene(seed, n=40):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-0.5, 0.5, (n, 1, 3))
    verts = (centres + rng.normal(0, 0.15, (n, 3, 3))).reshape(-1, 3)
    faces = np.arange(3 * n).reshape(n, 3)
    return verts.astype(np.float32), faces.astype(np.int32)


def _compare_with_raycast(verts, faces, pose, height, width, out):
    d1, fid, d2, edge = raycast(verts, faces, pose, height, width)
    mask = np.asarray(out.mask)
    ref_mask = np.isfinite(d1)
    # Coverage can differ only for pixel centres on an edge (float32 vs float64).
    on_edge = edge < 1e-4
    assert np.all((mask == ref_mask) | on_edge), np.argwhere((mask != ref_mask) & ~on_edge)[:5]
    # Where the nearest surface is unambiguous, depth and face agree.
    with np.errstate(invalid="ignore"):  # inf - inf where nothing is hit
        gap = np.where(np.isfinite(d1), d2 - d1, 0.0)
    clear = mask & ref_mask & ~on_edge & (gap > 1e-4 * d1)
    assert clear.sum() > 50
    np.testing.assert_allclose(np.asarray(out.depth)[clear], d1[clear], rtol=2e-5)
    np.testing.assert_array_equal(np.asarray(out.face_id)[clear], fid[clear])
    assert np.all(np.asarray(out.face_id)[~mask] == -1)
    assert np.all(np.asarray(out.depth)[~mask] == 0)
    return clear.sum()


# ----------------------------------------------------------------------------- small scenes


def test_random_triangles_match_raycast():
    verts, faces = _random_scene(0)
    pose = _pose()
    h, w = 61, 300  # not a multiple of the tile size
    out = raster.render(verts, faces, _proj(pose, h), h, w)
    n = _compare_with_raycast(verts, faces, pose, h, w, out)
    assert n > 1000


@pytest.mark.slow
def test_portrait_image_with_more_tile_rows_than_columns():
    # 520 x 300 has 65 tile rows but 38 tile columns: the packed first tile needs more bits
    # for its row than for its column (a former bug dropped coverage here).
    verts, faces = _random_scene(3)
    pose = _pose(d=1.5, f=350.0, v=90.0)
    h, w = 520, 300
    out = raster.render(verts, faces, _proj(pose, h), h, w)
    n = _compare_with_raycast(verts, faces, pose, h, w, out)
    assert n > 5000


@pytest.mark.slow
def test_tall_image_doubles_the_tile_to_pack_its_tiles():
    # 4400 x 300 has 550 x 38 tiles of 8 px: the packed tiles of a triangle as tall as the
    # image (first tile, tiles per row, rows: 2 x (10 + 6) bits) overflow an int32, so the
    # tile is doubled. Checked against the ray caster at the top of the image and on the
    # rows of the small triangles, far down.
    verts, faces = _random_scene(4)
    pole = np.array([[-0.66, -20.0, 0.0], [-0.64, 20.0, 0.0], [-0.6, 0.0, 0.0]], np.float32)
    verts, faces = np.concatenate([verts, pole]), np.concatenate([faces, [[len(verts), len(verts) + 1, len(verts) + 2]]])
    pose = _pose(a=0.0, e=0.0, t=0.0, d=1.5, f=350.0, v=1900.0)
    h, w = 4400, 300
    mask = np.asarray(raster.silhouette(verts, faces, _proj(pose, h), h, w))
    rows = np.flatnonzero(mask[:, :270].any(1))  # the small triangles (the pole is right of them)
    assert rows.min() > 3500 and rows.size > 200
    pixels = np.argwhere(np.ones((h, w), bool))
    pixels = pixels[(pixels[:, 0] < 40) | ((pixels[:, 0] >= rows.min() - 5) & (pixels[:, 0] <= rows.max() + 5))]
    _, bmin, front = _rays(verts, faces, pose, pixels, h)
    ref = np.any(front & (bmin >= 0), axis=1)
    on_edge = np.min(np.where(front, np.abs(bmin), np.inf), axis=1) < 1e-4
    got = mask[pixels[:, 0], pixels[:, 1]]
    assert np.all((got == ref) | on_edge)
    assert ref[pixels[:, 0] < 40].sum() >= 40 and ref.sum() > 5000


def test_triangles_crossing_the_camera_plane():
    """A ground plane passing under and behind the camera, and triangles with a vertex behind
    it: drawn exactly where the ray caster sees them, without clipping."""
    pose = _pose(a=0.0, e=0.15, t=0.0, d=1.0, f=150.0)
    ground = np.array([[-5, -0.3, -5], [5, -0.3, -5], [5, -0.3, 5], [-5, -0.3, 5]], np.float32)
    # Camera centre in model space is R^T (0, 0, d): behind it lies z > d (for a = e = 0).
    cross = np.array([[0.2, 0.0, 0.0], [-0.2, 0.1, 0.0], [0.0, 0.05, 3.0]], np.float32)
    verts = np.concatenate([ground, cross]).astype(np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]], np.int32)
    r = _rot64(0.0, 0.15, 0.0)
    depth_c = -(verts.astype(np.float64) @ r.T - [0, 0, 1.0])[:, 2]
    assert depth_c.min() < 0 < depth_c.max()  # the scene really straddles the camera plane
    h, w = 120, 300
    out = raster.render(verts, faces, _proj(pose, h), h, w)
    _compare_with_raycast(verts, faces, pose, h, w, out)
    assert np.isfinite(np.asarray(out.location)).all()


def test_closed_box_nearest_face_wins():
    """Few faces leave many depth bits in the z-buffer key: the farthest surface must still
    quantise below the face-id bits (regression: it used to wrap negative and win)."""
    import trimesh

    box = trimesh.creation.box(extents=(0.6, 0.3, 0.4))
    verts, faces = np.asarray(box.vertices, np.float32), np.asarray(box.faces, np.int32)
    for pose in (_pose(a=0.0, e=0.0, t=0.0), _pose(a=0.7, e=0.3, t=0.1, u=12.0)):
        out = raster.render(verts, faces, _proj(pose, 100), 100, 300)
        _compare_with_raycast(verts, faces, pose, 100, 300, out)


def test_degenerate_triangles_are_ignored():
    pose = _pose(a=0.0, e=0.0, t=0.0, d=2.0)
    verts = np.array(
        [
            [0, 0, 0], [0.3, 0, 0], [0.3, 0, 0],  # repeated vertex: zero area
            [0, 0, 0], [0.1, 0.1, 0], [0.2, 0.2, 0],  # collinear
            [0, -0.2, 0.5], [0, 0.2, 0.5], [0, 0.0, -0.5],  # plane x = 0 contains the camera: edge-on
        ],
        np.float32,
    )
    faces = np.arange(9, dtype=np.int32).reshape(3, 3)
    out = raster.render(verts, faces, _proj(pose, 64), 64, 300)
    assert not np.asarray(out.mask).any()
    assert np.isfinite(np.asarray(out.depth)).all() and np.isfinite(np.asarray(out.location)).all()


@pytest.mark.slow
def test_padded_faces_and_vmap_over_poses_and_meshes():
    va, fa = _random_scene(1, 30)
    vb, fb = _random_scene(2, 20)
    vmax, fmax = 90, 30
    verts = np.zeros((2, vmax, 3), np.float32)
    faces = np.zeros((2, fmax, 3), np.int32)
    fmask = np.zeros((2, fmax), bool)
    verts[0, : len(va)], faces[0, : len(fa)], fmask[0, : len(fa)] = va, fa, True
    verts[1, : len(vb)], faces[1, : len(fb)], fmask[1, : len(fb)] = vb, fb, True
    # A visible but masked-out triangle must not be drawn.
    verts[1, 60:63] = [[-0.4, -0.4, 0.5], [0.4, -0.4, 0.5], [0.0, 0.4, 0.5]]
    faces[1, 25] = [60, 61, 62]
    poses = [_pose(a=0.1), _pose(a=1.3, e=0.4, u=10.0, v=-5.0)]
    h, w = 40, 300
    proj = jnp.stack([_proj(p, h) for p in poses])
    batched = raster.render(verts, faces, proj, h, w, face_mask=fmask)
    mapped = jax.vmap(lambda v, f, m, p: raster.render(v, f, p, h, w, face_mask=m))(verts, faces, fmask, proj)
    for field in ("mask", "depth", "location", "face_id"):
        np.testing.assert_array_equal(getattr(batched, field), getattr(mapped, field))
    for i, (v, f) in enumerate([(va, fa), (vb, fb)]):
        single = raster.render(v, f, proj[i], h, w)
        np.testing.assert_array_equal(batched.mask[i], single.mask)
        np.testing.assert_allclose(batched.depth[i], single.depth, rtol=1e-6)
        _compare_with_raycast(v, f, poses[i], h, w, single)
    # One shared mesh, many poses (no batch axis on the mesh).
    shared = raster.render(va, fa, proj, h, w)
    np.testing.assert_array_equal(shared.mask[0], batched.mask[0])


def test_bad_inputs_raise():
    verts, faces = _random_scene(0, 3)
    p = _proj(_pose(), 20)
    with pytest.raises(ValueError, match="projection"):
        raster.render(verts, faces, p[:, :3], 20, 300)
    with pytest.raises(ValueError, match="positive"):
        raster.render(verts, faces, p, 0, 300)
    with pytest.raises(ValueError, match="end in 3"):
        raster.render(verts[:, :2], faces, p, 20, 300)


# ----------------------------------------------------------------------------- real car vs pyrender


def _smooth(depth, rel=0.003):
    """Pixels without a depth step: the second difference along rows, columns and both
    diagonals is below `rel` of the depth (a sloped plane has none, a step has a large one)."""
    h, w = depth.shape
    pad = np.pad(depth, 1, mode="edge")

    def at(dy, dx):
        return pad[1 + dy : h + 1 + dy, 1 + dx : w + 1 + dx]

    second = [np.abs(at(dy, dx) + at(-dy, -dx) - 2 * depth) for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1))]
    return np.max(second, axis=0) < rel * depth


@pytest.fixture(scope="module")
def car(release_dir, example_car_trimesh):
    vertices, faces = example_car_trimesh  # conftest: trimesh.load(..., process=False)
    annos = []
    for split in ("train", "test"):
        with open(release_dir / f"Anno3D/StanfordCars/{split}_anno_v2.pkl", "rb") as fh:
            data = pickle.load(fh, encoding="latin1")
        annos += [a for _, a in sorted(data.items()) if a["model_id"] == CAR_ID]
    assert len(annos) == 85
    return np.asarray(vertices, np.float32), np.asarray(faces, np.int32), annos


@pytest.fixture(scope="module")
def car_render(car):
    verts, faces, annos = car
    proj = camera.projection_matrix(camera.Pose.stack([camera.Pose.from_mapping(a) for a in annos]), 200)
    return proj, raster.render(verts, faces, proj, 200, 300)


def _raycast_pixels(verts, faces, pose, pixels, height):
    """Float64 nearest-hit depth at chosen pixel centres ``(N, 2)`` (row, col)."""
    t, bmin, front = _rays(verts, faces, pose, np.asarray(pixels), height)
    return np.min(np.where(front & (bmin >= 0), t, np.inf), axis=1)


@pytest.mark.slow
def test_real_car_matches_pyrender(car, car_render):
    from fgpose.pyrender_backend import PyrenderRenderer

    verts, faces, annos = car
    _, out = car_render
    masks, depths = np.asarray(out.mask), np.asarray(out.depth)
    ious, n_bad, n_common = [], 0, 0
    with PyrenderRenderer(200, 300) as gl:
        gl.set_mesh(verts, faces)
        for i, a in enumerate(annos):
            k = np.array([[a["f"], 0, a["u"] + 150], [0, a["f"], a["v"] + 100], [0, 0, 1]])
            ref = gl.render_depth(_rot64(a["azimuth"], a["elevation"], a["theta"]), a["distance"], k)
            ref_mask = ref > 0
            ious.append((masks[i] & ref_mask).sum() / (masks[i] | ref_mask).sum())
            both = masks[i] & ref_mask
            rel = np.abs(depths[i] - ref) / np.where(ref_mask, ref, 1.0)
            bad = both & (rel >= 1e-3)
            n_bad += bad.sum()
            n_common += both.sum()
            if bad.any():
                # Disagreements happen only at depth steps (OpenGL snaps vertices to 1/256 px
                # and can see the other surface there), and there fgpose is the exact one.
                assert not np.any(bad & _smooth(ref) & _smooth(depths[i])), i
                pix = np.argwhere(bad)[:20]
                truth = _raycast_pixels(verts, faces, a, pix, 200)
                np.testing.assert_allclose(depths[i][pix[:, 0], pix[:, 1]], truth, rtol=1e-4)
    ious = np.array(ious)
    assert ious.min() >= 0.99, ious.min()
    assert n_bad / n_common < 1e-3, n_bad / n_common


@pytest.mark.slow
def test_real_car_location_field_reprojects(car, car_render):
    verts, faces, annos = car
    proj, out = car_render
    p64 = np.asarray(proj, np.float64)
    loc = np.asarray(out.location, np.float64)
    mask = np.asarray(out.mask)
    worst = 0.0
    for i in range(len(annos)):
        ys, xs = np.nonzero(mask[i])
        pts = loc[i, ys, xs]
        h = pts @ p64[i, :, :3].T + p64[i, :, 3]
        px = h[:, :2] / h[:, 2:3]
        err = np.hypot(px[:, 0] - (xs + 0.5), px[:, 1] - (ys + 0.5))
        worst = max(worst, err.max())
        # Every location lies on the mesh's bounding box (unit-diagonal ShapeNet car).
        assert np.all(pts >= verts.min(0) - 1e-4) and np.all(pts <= verts.max(0) + 1e-4)
    assert worst < 0.5, worst


@pytest.mark.slow
def test_real_car_box_on_photo(car, car_render):
    """cars_train/00001.jpg's v2 pose: rendered silhouette box ~ (23, 60)-(284, 187) at 300x200."""
    verts, faces, _ = car
    pose = dict(azimuth=2.1869037199900627, elevation=0.04712388980385082, theta=0.031415926535897934,
                distance=1.0299999999999783, f=346.4101615137755, u=-23.0, v=11.0)
    m = np.asarray(raster.silhouette(verts, faces, _proj(pose, 200), 200, 300))
    ys, xs = np.nonzero(m)
    assert abs(xs.min() - 23) <= 1 and abs(xs.max() + 1 - 284) <= 1
    assert abs(ys.min() - 60) <= 1 and abs(ys.max() + 1 - 187) <= 1
