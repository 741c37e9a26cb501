"""fgpose.visibility: faces seen from outside, checked on meshes whose answer is known by
construction and on the real car (silhouettes unchanged, better decimation)."""

from __future__ import annotations

import numpy as np
import pytest

from fgpose import camera, mesh as fm, raster, visibility
from fgpose.refine.search import mask_iou

SMALL = dict(views=96, resolution=96)  # enough for boxes, quick to compile


def box(lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """A closed axis-aligned box: 8 corners, 12 triangles (2 per side)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    corners = np.array([[hi[i] if (k >> i) & 1 else lo[i] for i in range(3)] for k in range(8)])
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))]
    return corners, np.array(faces)


def union(*parts) -> fm.Mesh:
    verts, faces, off = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + off)
        off += len(v)
    return fm.Mesh(np.concatenate(verts), np.concatenate(faces))


def test_sphere_directions_are_unit_and_even():
    d = visibility.sphere_directions(500)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-12)
    # Even spread: every octant holds about 1/8 of the points, the mean is near the centre.
    octant = (d[:, 0] > 0) * 4 + (d[:, 1] > 0) * 2 + (d[:, 2] > 0)
    counts = np.bincount(octant, minlength=8)
    assert counts.min() >= 55 and counts.max() <= 70, counts
    assert np.linalg.norm(d.mean(0)) < 0.01
    with pytest.raises(ValueError, match="at least one"):
        visibility.sphere_directions(0)


def test_inner_box_and_touching_sides_are_hidden():
    # An outer box with a smaller box inside it, and a second box pressed against the outer
    # one's +x side: the inner box and the two touching sides are never seen.
    outer = box((0, 0, 0), (1, 1, 1))
    inner = box((0.3, 0.3, 0.3), (0.7, 0.7, 0.7))
    beside = box((1, 0, 0), (2, 1, 1))
    mesh = union(outer, inner, beside)
    seen = visibility.visible_faces(mesh, **SMALL)
    expected = np.ones(36, bool)
    expected[12:24] = False  # the inner box
    expected[10:12] = False  # outer's +x side (x = 1): box() lists -z, +z, -y, +y, -x, +x
    expected[24 + 8 : 24 + 10] = False  # beside's -x side (x = 1)
    np.testing.assert_array_equal(seen, expected)

    kept = visibility.drop_hidden_faces(mesh, **SMALL)
    assert kept.num_faces == 20
    # Unused vertices go: the inner box's 8; the touching corners stay (other sides use them).
    assert len(kept.vertices) == 16
    np.testing.assert_array_equal(kept.vertices[kept.faces], mesh.vertices[mesh.faces[expected]])


def test_offset_and_scaled_meshes_are_framed():
    # Far from the origin and huge (like the aircraft PLY): the views centre on the mesh.
    v, f = box((0, 0, 0), (1, 1, 1))
    far = fm.Mesh(v * 800.0 + np.array([900.0, 700.0, 100.0]), f)
    assert visibility.visible_faces(far, **SMALL).all()


def test_bad_arguments_and_empty_mesh():
    v, f = box((0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        visibility.visible_faces(fm.Mesh(v, f), views=0)
    with pytest.raises(ValueError, match="positive"):
        visibility.visible_faces(fm.Mesh(v, f), resolution=0)
    assert visibility.visible_faces(fm.Mesh(v, np.zeros((0, 3), int))).shape == (0,)
    point = fm.Mesh(np.zeros((3, 3)), [[0, 1, 2]])
    assert not visibility.visible_faces(point, **SMALL).any()


def _random_views(rng, k, radius, frame_height):
    a = rng.uniform(-np.pi, np.pi, k)
    e = rng.uniform(-0.3, 0.8, k)
    th = rng.uniform(-0.2, 0.2, k)
    d = rng.uniform(3.0, 8.0, k) * radius
    f = 300 * d / (2.2 * radius) * rng.uniform(0.8, 1.2, k)
    params = np.stack([a, e, th, d, f, rng.uniform(-10, 10, k), rng.uniform(-10, 10, k)], 1)
    return camera.projection_matrix(camera.Pose.from_array(params.astype(np.float32)), np.full(k, frame_height, np.float32))


@pytest.mark.slow
def test_real_car_silhouettes_unchanged_and_decimation_better(example_car_path, example_car_mesh, tmp_path):
    path, full = example_car_path, example_car_mesh  # conftest: load_mesh(path, cache_dir=False)
    kept = visibility.drop_hidden_faces(full)
    # A third of the car (seats, dashboard, engine, inner sides) is never seen from outside.
    assert 0.55 < kept.num_faces / full.num_faces < 0.8, kept.num_faces

    # Silhouettes from views that were not sampled, in the annotation frame (200 x 300) and
    # 3x larger: a face seen only as a sliver thinner than a pixel from every sampled view
    # may be missed, so a pixel in a million may be lost; none is ever gained.
    rng = np.random.default_rng(0)
    proj = _random_views(rng, 24, radius=0.46, frame_height=200)
    for scale in (1, 3):
        p = proj * np.array([[scale], [scale], [1.0]], np.float32)
        a = np.asarray(raster.silhouette(full.vertices, full.faces, p, 200 * scale, 300 * scale))
        b = np.asarray(raster.silhouette(kept.vertices, kept.faces, p, 200 * scale, 300 * scale))
        assert a.sum() > 24 * 5000 * scale**2
        assert not (b & ~a).any()
        assert int((a & ~b).sum()) <= 1e-6 * a.sum(), int((a & ~b).sum())

    # The point of it: decimated to the same budget, the visible surface keeps the outline better.
    ref = raster.silhouette(full.vertices, full.faces, proj, 200, 300)
    plain = fm.decimate(full, 5000)
    culled = fm.decimate(kept, 5000)
    iou_plain = float(np.mean(mask_iou(raster.silhouette(plain.vertices, plain.faces, proj, 200, 300), ref)))
    iou_culled = float(np.mean(mask_iou(raster.silhouette(culled.vertices, culled.faces, proj, 200, 300), ref)))
    assert iou_culled > iou_plain + 0.002, (iou_plain, iou_culled)

    # load_mesh(drop_hidden=True, max_faces=K): the same mesh, decimated, cached apart from
    # the plain one.
    for drop in (False, True, True):
        loaded = fm.load_mesh(path, max_faces=5000, drop_hidden=drop, cache_dir=tmp_path)
        expected = culled if drop else plain
        np.testing.assert_array_equal(loaded.faces, expected.faces)
        np.testing.assert_array_equal(loaded.vertices, expected.vertices)
    assert len(list(tmp_path.glob("*.npz"))) == 3  # plain 5000; visible faces; visible 5000
