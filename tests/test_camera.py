"""Tests of fgpose.camera against independent references.

References are the README's formulas written out in float64 NumPy, and
``scipy.spatial.transform.Rotation``; camera.py is never compared with itself. Tests that
read the release take its root from ``$FGPOSE_RELEASE_DIR`` (``release_dir`` fixture).
Float64 checks run under the ``jax.enable_x64(True)`` context manager only.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fgpose import annotations as A
from fgpose import camera

PI = np.pi

# ----------------------------------------------------------------------------- references


def _mat(rows):
    """Stacks a nested 3x3 list of equal-shape arrays into ``(..., 3, 3)``."""
    return np.stack([np.stack(r, -1) for r in rows], -2)


def ref_ry(a):
    c, s, z, o = np.cos(a), np.sin(a), np.zeros_like(a), np.ones_like(a)
    return _mat([[c, z, -s], [z, o, z], [s, z, c]])


def ref_rx(e):
    c, s, z, o = np.cos(e), np.sin(e), np.zeros_like(e), np.ones_like(e)
    return _mat([[o, z, z], [z, c, -s], [z, s, c]])


def ref_rz(t):
    c, s, z, o = np.cos(t), np.sin(t), np.zeros_like(t), np.ones_like(t)
    return _mat([[c, -s, z], [s, c, z], [z, z, o]])


def ref_rotation(a, e, t):
    """README: ``R = Rz(theta) Rx(e) Ry(a)`` in float64."""
    a, e, t = (np.asarray(x, np.float64) for x in (a, e, t))
    return ref_rz(t) @ ref_rx(e) @ ref_ry(a)


def ref_projection(a, e, t, d, f, u, v, h):
    """README: ``P = [[f,0,u+150],[0,f,v+h/2],[0,0,1]] [R | -(0,0,d)^T]`` in float64."""
    a, e, t, d, f, u, v, h = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (a, e, t, d, f, u, v, h)))
    z, o = np.zeros_like(f), np.ones_like(f)
    k = _mat([[f, z, u + 150.0], [z, f, v + h / 2.0], [z, z, o]])
    rt = np.concatenate([ref_rotation(a, e, t), np.stack([z, z, -d], -1)[..., None]], -1)
    return k @ rt


def ref_project(p, x):
    """``x = P X~`` divided by its third row; returns ``(pixels (..., N, 2), third row (..., N))``."""
    xh = np.concatenate([x, np.ones(x.shape[:-1] + (1,))], -1)
    y = np.einsum("...ij,...nj->...ni", p, xh)
    return y[..., :2] / y[..., 2:], y[..., 2]


def wrap(x):
    return np.mod(np.asarray(x, np.float64) + PI, 2 * PI) - PI


def pose_of(params, dtype=None):
    """A Pose of float arrays ``params[..., 7]`` (POSE_FIELDS order)."""
    params = np.asarray(params)
    if dtype is not None:
        params = params.astype(dtype)
    return camera.Pose(*(params[..., i] for i in range(7)))


def random_params(rng, n):
    """Release-like poses: angles (rad), distance (model units), f, u, v (pixels), ``(n, 7)``."""
    return np.stack(
        [
            rng.uniform(-1.5, 7.5, n),
            rng.uniform(-1.4, 1.4, n),
            rng.uniform(-1.0, 1.0, n),
            rng.uniform(1.0, 6.0, n),
            rng.uniform(100.0, 3000.0, n),
            rng.uniform(-150.0, 150.0, n),
            rng.uniform(-100.0, 100.0, n),
        ],
        -1,
    )


def quat_wxyz_from_scipy(r: Rotation):
    x, y, z, w = np.moveaxis(r.as_quat(), -1, 0)
    return np.stack([w, x, y, z], -1)


def assert_quat_close(q, q_ref, atol):
    """Equal up to the sign ambiguity of ``q`` and ``-q``."""
    q, q_ref = np.asarray(q, np.float64), np.asarray(q_ref, np.float64)
    err = np.minimum(np.abs(q - q_ref).max(-1), np.abs(q + q_ref).max(-1))
    assert err.max() < atol, err.max()


# ----------------------------------------------------------------------------- rotations


@pytest.fixture(scope="module")
def random_angles():
    rng = np.random.default_rng(0)
    n = 2000
    a = rng.uniform(-3 * PI, 3 * PI, n)
    e = rng.uniform(-PI, PI, n)
    t = rng.uniform(-3 * PI, 3 * PI, n)
    special = np.array([0.0, PI / 2, -PI / 2, PI, -PI, 2 * PI])
    a, e, t = (np.concatenate([x, np.repeat(special, 6), np.tile(special, 6)]) for x in (a, e, t))
    return a, e, t


def test_readme_matrices_are_scipy_rotations_with_minus_azimuth(random_angles):
    a, e, t = random_angles
    # The release's Ry(a) is the standard right-handed rotation about +Y by -a ...
    np.testing.assert_allclose(ref_ry(a), Rotation.from_euler("y", -a[:, None]).as_matrix(), atol=1e-14)
    np.testing.assert_allclose(ref_rx(e), Rotation.from_euler("x", e[:, None]).as_matrix(), atol=1e-14)
    np.testing.assert_allclose(ref_rz(t), Rotation.from_euler("z", t[:, None]).as_matrix(), atol=1e-14)
    # ... so R = Rz(t) Rx(e) Ry_std(-a): scipy's intrinsic 'ZXY' with angles (t, e, -a).
    scipy_r = Rotation.from_euler("ZXY", np.stack([t, e, -a], -1)).as_matrix()
    np.testing.assert_allclose(ref_rotation(a, e, t), scipy_r, atol=1e-14)
    # Sanity: the extrinsic order is a different rotation.
    extrinsic = Rotation.from_euler("zxy", np.stack([t, e, -a], -1)).as_matrix()
    assert np.abs(extrinsic - scipy_r).max() > 0.5


def test_rotation_matrix_matches_readme_and_scipy(random_angles):
    a, e, t = random_angles
    ref = ref_rotation(a, e, t)
    scipy_r = Rotation.from_euler("ZXY", np.stack([t, e, -a], -1)).as_matrix()
    r32 = camera.rotation_matrix(a.astype(np.float32), e.astype(np.float32), t.astype(np.float32))
    assert r32.dtype == jnp.float32 and r32.shape == (len(a), 3, 3)
    np.testing.assert_allclose(np.asarray(r32), ref, atol=5e-6)
    with jax.enable_x64(True):
        r64 = np.asarray(camera.rotation_matrix(a, e, t))
    assert r64.dtype == np.float64
    np.testing.assert_allclose(r64, ref, atol=1e-13)
    np.testing.assert_allclose(r64, scipy_r, atol=1e-13)
    # Broadcasting over leading axes, and int input.
    assert camera.rotation_matrix(np.zeros((2, 1)), np.zeros((1, 3)), 0.0).shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(np.asarray(camera.rotation_matrix(0, 0, 0)), np.eye(3))


def test_quaternions_match_scipy():
    rots = Rotation.concatenate(
        [
            Rotation.random(3000, random_state=1),
            Rotation.identity(),
            # Half turns (w = 0) and near half turns about assorted axes.
            Rotation.from_rotvec(PI * np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]])),
            Rotation.from_rotvec(np.array([[PI - 1e-7, 0, 0], [0, 0, -(PI - 1e-4)]])),
        ]
    )
    mats = rots.as_matrix()
    q_ref = quat_wxyz_from_scipy(rots)
    angle_ref = rots.magnitude()
    with jax.enable_x64(True):
        q = np.asarray(camera.quaternion_from_rotation(mats))
        back = np.asarray(camera.rotation_from_quaternion(q))
        back_of_ref = np.asarray(camera.rotation_from_quaternion(q_ref * 3.0))  # normalises
        angle = np.asarray(camera.rotation_angle(mats))
    assert q.shape == (len(rots), 4) and q.dtype == np.float64
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-14)
    assert_quat_close(q, q_ref, 1e-12)
    np.testing.assert_allclose(back, mats, atol=1e-12)
    np.testing.assert_allclose(back_of_ref, mats, atol=1e-12)
    np.testing.assert_allclose(angle, angle_ref, atol=1e-7)  # sqrt-limited only at exactly pi
    # float32
    q32 = np.asarray(camera.quaternion_from_rotation(mats.astype(np.float32)))
    assert q32.dtype == np.float32
    assert_quat_close(q32, q_ref, 2e-6)
    np.testing.assert_allclose(
        np.asarray(camera.rotation_from_quaternion(q32)), mats, atol=2e-6
    )


def test_angles_from_rotation_ranges_and_gimbal_lock():
    rng = np.random.default_rng(2)
    mats = Rotation.random(1000, random_state=3).as_matrix()
    with jax.enable_x64(True):
        a, e, t = (np.asarray(x) for x in camera.angles_from_rotation(mats))
        # Exactly at the lock: theta is 0 and azimuth absorbs the rest.
        a_l, t_l = rng.uniform(-PI, PI, 50), rng.uniform(-PI, PI, 50)
        for sign in (1.0, -1.0):
            locked = ref_rotation(a_l, np.full(50, sign * PI / 2), t_l)
            al2, el2, tl2 = (np.asarray(x) for x in camera.angles_from_rotation(locked))
            np.testing.assert_allclose(el2, sign * PI / 2, atol=1e-7)
            np.testing.assert_array_equal(tl2, 0.0)
            np.testing.assert_allclose(ref_rotation(al2, el2, tl2), locked, atol=1e-7)
        # Near the lock (scipy-built matrices, 1e-2 .. 1e-6 rad from it) R is still recovered.
        offsets = np.repeat(10.0 ** -np.arange(2, 7), 20) * np.tile([1, -1], 50)
        e_n = np.sign(offsets) * (PI / 2 - np.abs(offsets))
        near = Rotation.from_euler("ZXY", np.stack([t_l[:1].repeat(100), e_n, -a_l[:1].repeat(100)], -1)).as_matrix()
        an, en, tn = (np.asarray(x) for x in camera.angles_from_rotation(near))
        np.testing.assert_allclose(ref_rotation(an, en, tn), near, atol=1e-9)
    assert (np.abs(e) <= PI / 2).all() and (a > -PI - 1e-12).all() and (a <= PI).all()
    assert (t > -PI - 1e-12).all() and (t <= PI).all()
    np.testing.assert_allclose(ref_rotation(a, e, t), mats, atol=1e-12)
    # float32 rotations within 1e-6 rad of the lock (one release record has cos e = 1e-6),
    # rebuilt from quaternions (so not exactly of the form Rz Rx Ry): R is recovered to
    # float32 rounding, not with an error of ~eps / cos(e).
    e32 = np.where(np.arange(100) % 2 == 0, -1.57079533, 1.5707950)
    r32 = camera.rotation_matrix(*(jnp.asarray(x, jnp.float32) for x in (a_l.repeat(2), e32, t_l.repeat(2))))
    r32 = jax.jit(lambda r: camera.rotation_from_quaternion(camera.quaternion_from_rotation(r)))(r32)
    back = jax.jit(lambda r: camera.rotation_matrix(*camera.angles_from_rotation(r)))(r32)
    np.testing.assert_allclose(np.asarray(back), np.asarray(r32), atol=2e-6)


# ----------------------------------------------------------------------------- whole release


@pytest.fixture(scope="module")
def release_params(release_split):
    """All annotations of every v1 and v2 file: ``(params (M, 7) float64, labels (M,))``."""
    chunks, labels, images = [], [], set()
    for name, info in A.DATASETS.items():
        for split in A.SPLITS:
            for version in info.versions:
                annos = release_split(name, split, version)
                pose = A.poses_from_annotations(list(annos.values()))
                chunks.append(np.stack([getattr(pose, k) for k in camera.POSE_FIELDS], -1))
                labels += [f"{name}/{split}/v{version}/{k}" for k in annos]
                images.update((name, split, k) for k in annos)
    params = np.concatenate(chunks)
    assert params.dtype == np.float64
    assert len(images) == 31881 and len(params) == 58066
    return params, np.array(labels)


def _release_beyond(params, labels):
    beyond = np.abs(params[:, 1]) > PI / 2
    # Only three refined FGVC_Aircraft annotations leave [-pi/2, pi/2].
    assert sorted(labels[beyond]) == [
        "FGVC_Aircraft/test/v2/0438668.jpg",
        "FGVC_Aircraft/train/v2/0041419.jpg",
        "FGVC_Aircraft/train/v2/0219233.jpg",
    ]
    return beyond


def test_release_round_trips_float64(release_params):
    params, labels = release_params
    beyond = _release_beyond(params, labels)
    a, e, t = params[:, 0], params[:, 1], params[:, 2]
    ref = ref_rotation(a, e, t)
    with jax.enable_x64(True):
        r = np.asarray(jax.jit(camera.rotation_matrix)(a, e, t))
        a2, e2, t2 = (np.asarray(x) for x in jax.jit(camera.angles_from_rotation)(r))
        r_back = np.asarray(jax.jit(camera.rotation_matrix)(a2, e2, t2))
        q = np.asarray(jax.jit(camera.quaternion_from_rotation)(r))
        r_q = np.asarray(jax.jit(camera.rotation_from_quaternion)(q))
    assert r.dtype == a2.dtype == q.dtype == np.float64
    np.testing.assert_allclose(r, ref, atol=1e-13)

    # angles -> R -> angles, compared as wrapped differences ...
    ok = ~beyond
    for x, x2 in ((a, a2), (e, e2), (t, t2)):
        err = np.abs(wrap(x2 - x))[ok]
        assert err.max() < 1e-6, (labels[ok][err.argmax()], err.max())
    # ... except where |elevation| > pi/2: the inverse returns the equivalent angles
    # (a + pi, pi - e, t + pi); compare those, and the rotations, instead.
    for x, x2 in ((a + PI, a2), (PI - e, e2), (t + PI, t2)):
        assert np.abs(wrap(x2 - x))[beyond].max() < 1e-6
    np.testing.assert_allclose(r_back, ref, atol=1e-12)

    # R -> quaternion -> R, and quaternion vs scipy.
    np.testing.assert_allclose(r_q, ref, atol=1e-12)
    assert (q[:, 0] >= 0).all()
    assert_quat_close(q, quat_wxyz_from_scipy(Rotation.from_matrix(ref)), 1e-12)


def test_release_round_trips_float32(release_params):
    params, labels = release_params
    beyond = _release_beyond(params, labels)
    p32 = params.astype(np.float32)
    a, e, t = params[:, 0], params[:, 1], params[:, 2]
    ref = ref_rotation(a, e, t)
    r = jax.jit(camera.rotation_matrix)(p32[:, 0], p32[:, 1], p32[:, 2])
    a2, e2, t2 = jax.jit(camera.angles_from_rotation)(r)
    r_back = jax.jit(camera.rotation_matrix)(a2, e2, t2)
    r_q = jax.jit(camera.rotation_from_quaternion)(jax.jit(camera.quaternion_from_rotation)(r))
    assert r.dtype == a2.dtype == r_q.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(r), ref, atol=1e-5)
    ok = ~beyond
    for x, x2 in ((a, a2), (e, e2), (t, t2)):
        err = np.abs(wrap(np.asarray(x2, np.float64) - x))[ok]
        assert err.max() < 1e-5, (labels[ok][err.argmax()], err.max())
    np.testing.assert_allclose(np.asarray(r_back), ref, atol=1e-5)
    np.testing.assert_allclose(np.asarray(r_q), ref, atol=1e-5)


# ----------------------------------------------------------------------------- projection


def test_project_points_matches_readme_formula():
    rng = np.random.default_rng(4)
    n, m = 512, 64
    params = random_params(rng, n)
    h = rng.integers(150, 301, n)
    points = rng.uniform(-0.5, 0.5, (n, m, 3))
    p_ref = ref_projection(*params.T, h)
    px_ref, w_ref = ref_project(p_ref, points)
    assert (w_ref < 0).all()  # every point is in front of the camera
    with jax.enable_x64(True):
        p64 = np.asarray(camera.projection_matrix(pose_of(params), h))
        px64, depth64 = (np.asarray(x) for x in camera.project_points(p64, points))
    assert p64.shape == (n, 3, 4) and px64.shape == (n, m, 2) and depth64.shape == (n, m)
    np.testing.assert_allclose(p64, p_ref, rtol=1e-13, atol=1e-10)
    np.testing.assert_allclose(px64, px_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(depth64, -w_ref, rtol=1e-12)
    # Depth is -z in camera coordinates: d - (R X)_z.
    cam_z = np.einsum("nj,nmj->nm", ref_rotation(*params[:, :3].T)[:, 2], points) - params[:, 3:4]
    np.testing.assert_allclose(depth64, -cam_z, rtol=1e-12)
    # float32
    p32 = camera.projection_matrix(pose_of(params, np.float32), h)
    px32, depth32 = camera.project_points(p32, points.astype(np.float32))
    assert px32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(px32), px_ref, rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(np.asarray(depth32), -w_ref, rtol=1e-5)


def test_projection_in_original_pixels():
    rng = np.random.default_rng(5)
    n, m = 256, 32
    params = random_params(rng, n)
    points = rng.uniform(-0.5, 0.5, (n, m, 3))
    # (W, H) of the release's three photos and a few odd sizes.
    for width, height in [(600, 400), (908, 626), (900, 687), (500, 375), (1023, 77), (97, 640)]:
        h = int(height * 300 / width)
        assert camera.annotation_frame_height(width, height) == h
        sx, sy = width / 300, height / h
        np.testing.assert_allclose(camera.original_frame_scale(width, height), (sx, sy), rtol=1e-15)
        px_frame, _ = ref_project(ref_projection(*params.T, h), points)
        expected = px_frame * np.array([sx, sy])
        with jax.enable_x64(True):
            p = camera.projection_matrix(pose_of(params), h, image_size=(height, width))
            px, depth = (np.asarray(x) for x in camera.project_points(p, points))
        # frame_transform works in float32, hence the float32-sized tolerance.
        np.testing.assert_allclose(px, expected, rtol=1e-6, atol=1e-4)
        p32 = camera.projection_matrix(pose_of(params, np.float32), h, image_size=(height, width))
        px32, _ = camera.project_points(p32, points.astype(np.float32))
        np.testing.assert_allclose(np.asarray(px32), expected, rtol=1e-4, atol=5e-3)
        # Depth does not depend on the pixel frame.
        np.testing.assert_allclose(depth, -ref_project(ref_projection(*params.T, h), points)[1], rtol=1e-12)
    # Integer array sizes work too.
    heights = camera.annotation_frame_height(np.array([600, 908]), np.array([400, 626]))
    np.testing.assert_array_equal(heights, [200, 206])
    with pytest.raises(ValueError):
        camera.annotation_frame_height(0, 10)


def test_projection_for_crops():
    rng = np.random.default_rng(6)
    n, m = 256, 32
    params = random_params(rng, n)
    h = rng.integers(150, 301, n)
    points = rng.uniform(-0.5, 0.5, (n, m, 3))
    y0 = rng.uniform(-20, 100, n)
    x0 = rng.uniform(-20, 150, n)
    y1 = y0 + rng.uniform(10, 150, n)
    x1 = x0 + rng.uniform(10, 200, n)
    boxes = np.stack([y0, x0, y1, x1], -1)
    out_h, out_w = 64, 96
    px, _ = ref_project(ref_projection(*params.T, h), points)
    expected = np.stack(
        [
            (px[..., 0] - x0[:, None]) * out_w / (x1 - x0)[:, None],
            (px[..., 1] - y0[:, None]) * out_h / (y1 - y0)[:, None],
        ],
        -1,
    )
    p = camera.projection_matrix(pose_of(params, np.float32), h, image_size=(out_h, out_w), crop_box=boxes)
    assert p.shape == (n, 3, 4)
    got, _ = camera.project_points(p, points.astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-4, atol=5e-3)
    with jax.enable_x64(True):
        p = camera.projection_matrix(pose_of(params), h, image_size=(out_h, out_w), crop_box=boxes)
        got64, _ = camera.project_points(p, points)
    np.testing.assert_allclose(np.asarray(got64), expected, rtol=1e-6, atol=1e-4)
    # One box for a whole batch of poses.
    p_one = camera.projection_matrix(pose_of(params[:4], np.float32), 200, image_size=(out_h, out_w), crop_box=boxes[0])
    assert p_one.shape == (4, 3, 4)
    with pytest.raises(ValueError, match="crop_box needs image_size"):
        camera.projection_matrix(pose_of(params[:4]), 200, crop_box=boxes[0])


# ----------------------------------------------------------------------------- the real photo


def test_real_photo_projection(release_dir, release_split, example_car_trimesh):
    """StanfordCars cars_train/00001.jpg with its real mesh and the v2 annotation."""
    pil = pytest.importorskip("PIL.Image")
    photo = A.image_path(release_dir, "StanfordCars", "train", "00001.jpg")
    with pil.open(photo) as im:
        width, height = im.size
    assert (width, height) == (600, 400)
    h = camera.annotation_frame_height(width, height)
    assert h == 200

    anno = release_split("StanfordCars", "train", 2)["00001.jpg"]
    assert anno.model_id == A.EXAMPLE_CAR_MODEL_ID  # the one mesh the release ships
    verts, _ = example_car_trimesh  # conftest: trimesh.load(cad_path(...), process=False), float64

    p = camera.projection_matrix(anno.pose(), h)
    px, depth = (np.asarray(x, np.float64) for x in camera.project_points(p, verts.astype(np.float32)))
    assert (depth > 0).all()  # the whole car is in front of the camera
    box = (px[:, 0].min(), px[:, 1].min(), px[:, 0].max(), px[:, 1].max())
    np.testing.assert_allclose(box, (23, 60, 284, 187), atol=1.5)
    # The car's front (+X) is to the right of its back in the photo.
    front = px[verts[:, 0] > 0.8 * verts[:, 0].max(), 0].mean()
    back = px[verts[:, 0] < 0.8 * verts[:, 0].min(), 0].mean()
    assert front > back + 100

    # Against the README formula in float64 NumPy.
    params = np.array([getattr(anno, k) for k in camera.POSE_FIELDS])
    px_ref, w_ref = ref_project(ref_projection(*params, h), verts)
    np.testing.assert_allclose(px, px_ref, atol=2e-3)
    np.testing.assert_allclose(depth, -w_ref, atol=1e-5)
    with jax.enable_x64(True):
        p64 = camera.projection_matrix(anno.pose(jnp.float64), h)
        px64, _ = camera.project_points(p64, verts)
        # The same projection in the photo's own pixels: x2 for this 600x400 photo.
        p_orig = camera.projection_matrix(anno.pose(jnp.float64), h, image_size=(height, width))
        px_orig, _ = camera.project_points(p_orig, verts)
    np.testing.assert_allclose(np.asarray(px64), px_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(np.asarray(px_orig), px_ref * 2.0, rtol=1e-12, atol=1e-9)
