"""Tests of fgpose.metrics against independent float64 references (SciPy / NumPy)."""

from __future__ import annotations

import pickle

import jax
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.transform import Rotation

from fgpose import camera, metrics
from fgpose.annotations import EXAMPLE_CAR_MODEL_ID as STANFORD_MODEL

# Jitted once per module; every test batches its cases into one call.
rotation_error = jax.jit(metrics.rotation_error)
add_error = jax.jit(metrics.add_error)
pose_metrics = jax.jit(metrics.pose_metrics)
accuracy = jax.jit(metrics.accuracy)
accuracy_curve = jax.jit(metrics.accuracy_curve)


@jax.jit
def add_error_from_params(params_pred, params_gt, frame_height, vertices, vertex_mask):
    """JAX path: 7 parameters -> camera.projection_matrix -> metrics.add_error."""
    p_pred = camera.projection_matrix(camera.Pose.from_array(params_pred), frame_height)
    p_gt = camera.projection_matrix(camera.Pose.from_array(params_gt), frame_height)
    return metrics.add_error(p_pred, p_gt, vertices, vertex_mask)


# ----------------------------------------------------------------------------- references
# Written from ../shared/README.md, in float64, without fgpose.


def np_rotation(a, e, t):
    """R = Rz(t) Rx(e) Ry(a) with the README's matrices."""
    ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return rz @ rx @ ry


def np_projection(params, h):
    """P = K [R | -(0,0,d)^T], K = [[f,0,u+150],[0,f,v+h/2],[0,0,1]]."""
    a, e, t, d, f, u, v = (float(x) for x in params)
    k = np.array([[f, 0, u + 150.0], [0, f, v + h / 2.0], [0, 0, 1.0]])
    rt = np.concatenate([np_rotation(a, e, t), np.array([[0.0], [0.0], [-d]])], axis=1)
    return k @ rt


def np_project(p, x):
    xh = np.concatenate([x, np.ones((len(x), 1))], axis=1) @ p.T
    return xh[:, :2] / xh[:, 2:3]


def np_add(params_pred, params_gt, h, vertices):
    """(e_ADD in pixels, e_ADD / diagonal of the gt projected box) for one sample."""
    x_pred = np_project(np_projection(params_pred, h), vertices)
    x_gt = np_project(np_projection(params_gt, h), vertices)
    e = np.mean(np.linalg.norm(x_pred - x_gt, axis=1))
    diag = np.linalg.norm(x_gt.max(axis=0) - x_gt.min(axis=0))
    return e, e / diag


def np_rot_err_arccos(rp, rg):
    tr = np.trace(rp.T @ rg)
    return np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0))


def np_rot_err_logm(rp, rg):
    return np.linalg.norm(np.real(scipy.linalg.logm(rp.T @ rg)), "fro") / np.sqrt(2.0)


def random_unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- rotation error


def test_rotation_error_matches_scipy():
    rng = np.random.default_rng(0)
    n = 256
    r_pred = Rotation.random(5 * n, random_state=1)
    generic = Rotation.random(n, random_state=2)
    # Relative rotations of given angle about random axes.
    near_id = Rotation.from_rotvec(random_unit(rng, n) * rng.uniform(0.5e-4, 2e-4, (n, 1)))
    near_pi = Rotation.from_rotvec(random_unit(rng, n) * (np.pi - rng.uniform(0.5e-3, 2e-3, (n, 1))))
    exact = Rotation.from_rotvec(random_unit(rng, n) * np.where(rng.random((n, 1)) < 0.5, 0.0, np.pi))
    small = Rotation.from_rotvec(random_unit(rng, n) * rng.uniform(1e-7, 1e-2, (n, 1)))
    r_gt = Rotation.concatenate(
        [generic, r_pred[n : 2 * n] * near_id, r_pred[2 * n : 3 * n] * near_pi,
         r_pred[3 * n : 4 * n] * exact, r_pred[4 * n :] * small]
    )
    ref = (r_pred.inv() * r_gt).magnitude()  # float64
    got = np.asarray(
        rotation_error(r_pred.as_matrix().astype(np.float32), r_gt.as_matrix().astype(np.float32))
    )
    assert got.shape == (5 * n,) and got.dtype == np.float32
    err = np.abs(got.astype(np.float64) - ref)
    # Generic rotations: 1e-5 rad. Edge cases (near 0, near/at pi, tiny angles): 1e-6 rad
    # absolute, i.e. <= 1 % of the 1e-4 rad angles, far below what arccos((tr-1)/2) gives in
    # float32 there (~1e-4 rad near 0, ~3e-4 near pi).
    assert err[:n].max() < 1e-5, err[:n].max()
    assert err[n:].max() < 1e-6, err[n:].max()
    assert np.all((got >= 0) & (got <= np.float32(np.pi)))


def test_rotation_error_matches_float64_formulas():
    rp = Rotation.random(64, random_state=3).as_matrix()
    rg = Rotation.random(64, random_state=4).as_matrix()
    got = np.asarray(rotation_error(rp.astype(np.float32), rg.astype(np.float32)))
    ref = np.array([np_rot_err_arccos(a, b) for a, b in zip(rp, rg)])
    generic = (ref > 0.05) & (ref < np.pi - 0.05)  # arccos is well conditioned there
    assert generic.sum() > 50
    np.testing.assert_allclose(got[generic], ref[generic], rtol=0, atol=1e-5)
    ref_log = np.array([np_rot_err_logm(a, b) for a, b in zip(rp[:8], rg[:8])])
    np.testing.assert_allclose(got[:8], ref_log, rtol=0, atol=1e-5)


def test_rotation_error_broadcasts_over_batch():
    rp = Rotation.random(6, random_state=5).as_matrix().reshape(2, 3, 3, 3)
    rg = Rotation.random(3, random_state=6).as_matrix()
    got = np.asarray(rotation_error(rp.astype(np.float32), rg.astype(np.float32)))
    assert got.shape == (2, 3)
    ref = np.array([[np_rot_err_arccos(rp[i, j], rg[j]) for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize(
    "shape_pred, shape_gt",
    [((3, 4), (3, 3)), ((3,), (3, 3)), ((2, 3, 3), (5, 3, 3)), ((4, 4), (4, 4))],
)
def test_rotation_error_rejects_bad_shapes(shape_pred, shape_gt):
    with pytest.raises(ValueError):
        metrics.rotation_error(np.zeros(shape_pred), np.zeros(shape_gt))


# ----------------------------------------------------------------------------- ADD


def random_params(rng, n):
    """Plausible release-style poses, shape (n, 7) in POSE_FIELDS order."""
    return np.stack(
        [
            rng.uniform(0, 2 * np.pi, n),  # azimuth
            rng.uniform(-0.3, 0.6, n),  # elevation
            rng.uniform(-0.2, 0.2, n),  # theta
            rng.uniform(1.5, 3.5, n),  # distance
            rng.uniform(200, 600, n),  # f
            rng.uniform(-30, 30, n),  # u
            rng.uniform(-30, 30, n),  # v
        ],
        axis=1,
    )


def padded_meshes(rng, sizes, n_max):
    """Random point clouds of different sizes, padded with garbage (huge values, NaN)."""
    verts = np.full((len(sizes), n_max, 3), 1e6)
    verts[1::3] = np.nan
    mask = np.zeros((len(sizes), n_max), bool)
    clouds = []
    for i, n in enumerate(sizes):
        c = rng.uniform(-0.5, 0.5, (n, 3)) * np.array([1.0, 0.4, 0.5])
        verts[i, :n] = c
        mask[i, :n] = True
        clouds.append(c)
    return verts, mask, clouds


def test_add_error_matches_numpy_with_padded_meshes():
    rng = np.random.default_rng(7)
    b, n_max = 12, 200
    sizes = rng.integers(20, n_max + 1, b)
    sizes[0] = n_max
    verts, mask, clouds = padded_meshes(rng, sizes, n_max)
    gt = random_params(rng, b)
    scale = np.array([0.1, 0.05, 0.05, 0.1, 20.0, 5.0, 5.0])
    pred = gt + rng.normal(size=gt.shape) * scale
    pred[-1] = gt[-1]  # identical poses -> 0
    h = rng.integers(150, 300, b).astype(np.float32)  # frame heights

    e_px, e_norm = add_error_from_params(
        pred.astype(np.float32), gt.astype(np.float32), h, verts.astype(np.float32), mask
    )
    e_px, e_norm = np.asarray(e_px), np.asarray(e_norm)
    assert e_px.shape == e_norm.shape == (b,)
    ref = np.array([np_add(pred[i], gt[i], h[i], clouds[i]) for i in range(b)])
    np.testing.assert_allclose(e_px, ref[:, 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(e_norm, ref[:, 1], rtol=1e-4, atol=1e-5)
    assert e_px[-1] < 1e-4 and e_norm[-1] < 1e-6  # identical poses (float32 rounding only)

    # The normalisation is the diagonal of the *ground-truth* box: swapping roles keeps
    # e_ADD but divides by the predicted box's diagonal.
    e_px_sw, e_norm_sw = add_error_from_params(
        gt.astype(np.float32), pred.astype(np.float32), h, verts.astype(np.float32), mask
    )
    diag_gt = np.array(
        [np.ptp(np_project(np_projection(gt[i], h[i]), clouds[i]), axis=0) for i in range(b)]
    )
    diag_pred = np.array(
        [np.ptp(np_project(np_projection(pred[i], h[i]), clouds[i]), axis=0) for i in range(b)]
    )
    diag_gt, diag_pred = np.linalg.norm(diag_gt, axis=1), np.linalg.norm(diag_pred, axis=1)
    np.testing.assert_allclose(np.asarray(e_px_sw), ref[:, 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(e_px / diag_gt, e_norm, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(e_norm_sw), ref[:, 0] / diag_pred, rtol=1e-4, atol=1e-5)


def test_add_error_shared_mesh_and_no_mask():
    """One mesh broadcast against a batch of matrices; mask=None means every vertex."""
    rng = np.random.default_rng(8)
    b = 5
    cloud = rng.uniform(-0.5, 0.5, (64, 3))
    gt, pred = random_params(rng, b), random_params(rng, b)
    h = 225.0
    p_gt = np.stack([np_projection(x, h) for x in gt]).astype(np.float32)
    p_pred = np.stack([np_projection(x, h) for x in pred]).astype(np.float32)
    e_px, e_norm = add_error(p_pred, p_gt, cloud.astype(np.float32))
    ref = np.array([np_add(pred[i], gt[i], h, cloud) for i in range(b)])
    np.testing.assert_allclose(np.asarray(e_px), ref[:, 0], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(e_norm), ref[:, 1], rtol=1e-4)
    e_px_m, e_norm_m = add_error(p_pred, p_gt, cloud.astype(np.float32), np.ones(64, bool))
    np.testing.assert_allclose(np.asarray(e_px_m), np.asarray(e_px), rtol=1e-6)


def test_add_error_empty_mask_is_nan_and_counts_as_failure():
    p = np.stack([np_projection([0.3, 0.1, 0.0, 2.0, 300, 0, 0], 200)] * 2).astype(np.float32)
    verts = np.zeros((2, 4, 3), np.float32)
    mask = np.array([[True] * 4, [False] * 4])
    verts[0] = [[0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1], [0.1, 0.1, 0.1]]
    e_px, e_norm = add_error(p, p, verts, mask)
    e_px, e_norm = np.asarray(e_px), np.asarray(e_norm)
    assert abs(e_px[0]) < 1e-4 and np.isnan(e_px[1]) and np.isnan(e_norm[1])
    assert float(accuracy(e_norm, 0.1)) == 0.5


@pytest.mark.parametrize(
    "p_shape, v_shape, m_shape",
    [
        ((3, 3), (10, 3), None),  # not a 3x4 matrix
        ((3, 4), (10, 2), None),  # 2D vertices
        ((3, 4), (10, 3), (9,)),  # mask length != N
        ((4, 3, 4), (5, 10, 3), None),  # batch mismatch
        ((2, 3, 4), (2, 10, 3), (3, 10)),  # mask batch mismatch
    ],
)
def test_add_error_rejects_bad_shapes(p_shape, v_shape, m_shape):
    mask = None if m_shape is None else np.ones(m_shape, bool)
    with pytest.raises(ValueError):
        metrics.add_error(np.zeros(p_shape), np.zeros(p_shape), np.zeros(v_shape), mask)


def test_add_error_rejects_non_boolean_mask():
    with pytest.raises(ValueError, match="boolean"):
        metrics.add_error(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((10, 3)), np.ones(10))


# ----------------------------------------------------------------------------- accuracies


def test_pose_metrics_and_accuracy_match_numpy():
    rng = np.random.default_rng(9)
    m = 1001
    rot = rng.uniform(0, np.pi, (2, m))
    add = rng.exponential(0.1, (2, m))
    valid = rng.random((2, m)) > 0.1

    got = {k: np.asarray(v) for k, v in pose_metrics(rot.astype(np.float32), add.astype(np.float32)).items()}
    np.testing.assert_allclose(got["rot_median_deg"], np.degrees(np.median(rot, -1)), rtol=1e-5)
    np.testing.assert_allclose(got["rot_mean_deg"], np.degrees(np.mean(rot, -1)), rtol=1e-5)
    np.testing.assert_allclose(got["rot_acc_pi_6"], 100 * np.mean(rot < np.pi / 6, -1), rtol=1e-5)
    np.testing.assert_allclose(got["add_median"], np.median(add, -1), rtol=1e-5)
    np.testing.assert_allclose(got["add_mean"], np.mean(add, -1), rtol=1e-5)
    np.testing.assert_allclose(got["add_acc_0.1"], 100 * np.mean(add < 0.1, -1), rtol=1e-5)
    np.testing.assert_array_equal(got["count"], [m, m])

    # Invalid samples (missed detections) are failures: error = +inf.
    got = {
        k: np.asarray(v)
        for k, v in pose_metrics(rot.astype(np.float32), add.astype(np.float32), valid).items()
    }
    rot_f, add_f = np.where(valid, rot, np.inf), np.where(valid, add, np.inf)
    np.testing.assert_allclose(got["rot_median_deg"], np.degrees(np.median(rot_f, -1)), rtol=1e-5)
    np.testing.assert_allclose(got["add_median"], np.median(add_f, -1), rtol=1e-5)
    np.testing.assert_allclose(got["rot_acc_pi_6"], 100 * np.mean(rot_f < np.pi / 6, -1), rtol=1e-5)
    np.testing.assert_allclose(got["add_acc_0.1"], 100 * np.mean(add_f < 0.1, -1), rtol=1e-5)
    assert np.all(np.isinf(got["rot_mean_deg"])) and np.all(np.isinf(got["add_mean"]))

    # Even count: median averages the middle two, like numpy. Rotation-only summary.
    got = pose_metrics(rot[0, :1000].astype(np.float32))
    assert set(got) == {"rot_median_deg", "rot_mean_deg", "rot_acc_pi_6", "count"}
    np.testing.assert_allclose(np.asarray(got["rot_median_deg"]), np.degrees(np.median(rot[0, :1000])), rtol=1e-5)

    # accuracy: fraction (not %), strict inequality, NaN = failure, valid mask honoured.
    e = np.array([0.0, 0.1, 0.2, np.nan, 0.05], np.float32)
    assert float(accuracy(e, np.float32(0.1))) == pytest.approx(2 / 5)
    assert float(accuracy(e, 0.3, np.array([True, True, True, True, False]))) == pytest.approx(3 / 5)
    np.testing.assert_allclose(np.asarray(accuracy(add, 0.1, valid)), np.mean(add_f < 0.1, -1), rtol=1e-6)


def test_pose_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        metrics.pose_metrics(np.zeros(10), np.zeros(9))
    with pytest.raises(ValueError):
        metrics.pose_metrics(np.zeros(10), np.zeros(10), np.ones(9, bool))


def test_accuracy_curve_matches_per_threshold_mean():
    rng = np.random.default_rng(10)
    m = 500
    errors = rng.exponential(0.2, (3, m)).astype(np.float32)
    errors[0, :50] = np.round(errors[0, :50], 2)  # ties with the thresholds below
    errors[1, 0] = np.nan
    valid = rng.random((3, m)) > 0.2
    thresholds = np.linspace(0, 1, 101).astype(np.float32)

    curve = np.asarray(accuracy_curve(errors, thresholds))
    assert curve.shape == (3, 101)
    e = np.where(np.isnan(errors), np.inf, errors)
    ref = np.mean(e[:, None, :] < thresholds[None, :, None], axis=-1)
    np.testing.assert_allclose(curve, ref, rtol=0, atol=1e-7)
    assert np.all(np.diff(curve, axis=-1) >= 0)
    assert curve[0, 0] == 0.0

    curve_v = np.asarray(accuracy_curve(errors, thresholds, valid))
    ref_v = np.mean(np.where(valid, e, np.inf)[:, None, :] < thresholds[None, :, None], axis=-1)
    np.testing.assert_allclose(curve_v, ref_v, rtol=0, atol=1e-7)

    # Unsorted thresholds and a 1-D error vector.
    perm = rng.permutation(101)
    np.testing.assert_allclose(np.asarray(accuracy_curve(errors[2], thresholds[perm])), ref[2, perm], atol=1e-7)
    with pytest.raises(ValueError):
        metrics.accuracy_curve(errors, thresholds.reshape(1, -1))


# ----------------------------------------------------------------------------- real data


def test_stanford_cars_v1_vs_v2_on_real_mesh(release_dir, example_car_trimesh):
    anno = release_dir / "Anno3D" / "StanfordCars"
    with open(anno / "train_anno.pkl", "rb") as f:
        v1 = pickle.load(f, encoding="latin1")
    with open(anno / "train_anno_v2.pkl", "rb") as f:
        v2 = pickle.load(f, encoding="latin1")
    keys = sorted(k for k, a in v1.items() if a["model_id"] == STANFORD_MODEL)
    assert len(keys) == 43 and "00001.jpg" in keys
    assert all(v2[k]["model_id"] == STANFORD_MODEL for k in keys)
    verts, _ = example_car_trimesh  # conftest: trimesh.load(CAD/02958343/<model>/model.obj, process=False)

    fields = camera.POSE_FIELDS
    p1 = np.array([[float(v1[k][n]) for n in fields] for k in keys])
    p2 = np.array([[float(v2[k][n]) for n in fields] for k in keys])
    # The frame height h only shifts both projections by the same h/2 in y, so e_ADD and the
    # box diagonal do not depend on it; one plausible value serves for all 43 images.
    h = 200.0

    # Reference, float64: v1 as "prediction", v2 (refined) as ground truth.
    ref_rot = np.array(
        [np_rot_err_arccos(np_rotation(*a[:3]), np_rotation(*b[:3])) for a, b in zip(p1, p2)]
    )
    ref_add = np.array([np_add(a, b, h, verts)[1] for a, b in zip(p1, p2)])

    rot = np.asarray(
        rotation_error(camera.rotation_matrix(*p1[:, :3].T.astype(np.float32)),
                       camera.rotation_matrix(*p2[:, :3].T.astype(np.float32)))
    )
    _, add = add_error_from_params(
        p1.astype(np.float32), p2.astype(np.float32), np.float32(h), verts.astype(np.float32)[None], None
    )
    add = np.asarray(add)
    np.testing.assert_allclose(rot, ref_rot, rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(add, ref_add, rtol=1e-4, atol=1e-7)

    summary = {k: float(v) for k, v in pose_metrics(rot, add).items()}
    np.testing.assert_allclose(summary["rot_median_deg"], np.degrees(np.median(ref_rot)), rtol=1e-4)
    np.testing.assert_allclose(summary["add_median"], np.median(ref_add), rtol=1e-4)
    print(
        f"\nStanfordCars train, model {STANFORD_MODEL}, {len(keys)} images, v1 vs v2: "
        f"median e_R = {np.degrees(np.median(ref_rot)):.4f} deg, median ~e_ADD = {np.median(ref_add):.5f}; "
        f"fgpose summary {summary}"
    )
