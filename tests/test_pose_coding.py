"""Tests of fgpose.models.pose_coding against float64 NumPy / SciPy references.

References (tests/reference.py) write the release convention out directly (README of the shared data):
``R = Rz(theta) Rx(e) Ry(a)``, ``P = [[f,0,u+150],[0,f,v+h/2],[0,0,1]] [R | -(0,0,d)^T]`` in
the width-300 annotation frame of height ``h = int(H*300/W)``, original pixels by
``diag(W/300, H/h, 1)``, input pixels by a further ``* scale``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fgpose import annotations as A
from fgpose.models import pose_coding as pc
from tests.reference import offset as ref_offset
from tests.reference import projection_original as ref_projection_original
from tests.reference import quaternion as ref_quaternion
from tests.reference import rotation as ref_rotation

# ----------------------------------------------------------------------------- data


def random_frames(rng, n):
    """Random original sizes, annotation frame heights, scales and input boxes (float64)."""
    w = rng.integers(120, 2500, n)
    h = np.maximum((w * rng.uniform(0.3, 1.6, n)).astype(np.int64), 50)
    hw = np.stack([h, w], -1).astype(np.float64)
    frame_h = (h * 300) // w
    scale = rng.uniform(0.1, 3.0, n)
    in_h, in_w = h * scale, w * scale
    y0 = rng.uniform(0, 0.8, n) * in_h
    x0 = rng.uniform(0, 0.8, n) * in_w
    bh = np.maximum(rng.uniform(0.05, 1.0, n) * (in_h - y0), 2.0)
    bw = np.maximum(rng.uniform(0.05, 1.0, n) * (in_w - x0), 2.0)
    box = np.stack([y0, x0, y0 + bh, x0 + bw], -1)
    return hw, frame_h.astype(np.float64), scale, box


def release_poses(load_split):
    """Every pose of every annotation file ``load_split(dataset, split, version)`` gives: ``(M, 7)``."""
    poses = []
    for ds in ("StanfordCars", "CompCars", "FGVC_Aircraft"):
        for split in A.SPLITS:
            for version in (1, 2):
                try:
                    annos = load_split(ds, split, version)
                except (A.AnnotationError, ValueError, FileNotFoundError):
                    continue
                poses.append(np.array([[getattr(x, k) for k in A.FLOAT_FIELDS] for x in annos.values()]))
    return np.concatenate(poses)


@pytest.fixture(scope="module")
def real(release_split):
    poses = release_poses(release_split)
    assert len(poses) > 50_000
    hw, frame_h, scale, box = random_frames(np.random.default_rng(0), len(poses))
    return poses, hw, frame_h, scale, box


def _f32(*xs):
    return tuple(jnp.asarray(x, jnp.float32) for x in xs)


# ----------------------------------------------------------------------------- tests


def _check_round_trip(poses, hw, frame_h, scale, box, dtype, rot_atol):
    encode = jax.jit(pc.encode_pose_targets)
    decode = jax.jit(pc.decode_pose)
    args = tuple(jnp.asarray(x, dtype) for x in (box, frame_h, hw, scale))
    t = encode(jnp.asarray(poses, dtype), *args)
    out = decode(t["quaternion"], t["offset"], t["distance"], t["focal"], *args)
    assert out.dtype == dtype
    out = np.asarray(out, np.float64)
    assert out.shape == poses.shape
    # Rotation: compare matrices (angles are not unique at gimbal lock, v2 angles unwrapped).
    r_out = ref_rotation(out[:, 0], out[:, 1], out[:, 2])
    r_ref = ref_rotation(poses[:, 0], poses[:, 1], poses[:, 2])
    np.testing.assert_allclose(r_out, r_ref, atol=rot_atol)
    # Angles themselves, wrapped, away from the lock.
    free = np.cos(poses[:, 1]) > 1e-2
    wrap = lambda x: (x + np.pi) % (2 * np.pi) - np.pi  # noqa: E731
    for i in (0, 1, 2):
        diff = wrap(out[free, i] - poses[free, i])
        assert np.max(np.abs(diff)) < 1e-4, i
    np.testing.assert_allclose(out[:, 3], poses[:, 3], rtol=1e-6)
    np.testing.assert_allclose(out[:, 4], poses[:, 4], rtol=1e-6)
    np.testing.assert_allclose(out[:, 5:], poses[:, 5:], atol=1e-4)


def test_round_trip_release_float32(real):
    """float32 round trip of every release pose, including the FGVC-Aircraft record at the
    gimbal lock (elevation -1.57079533, cos e = 1e-6)."""
    assert np.sum(np.abs(np.cos(real[0][:, 1])) < 1e-4) >= 1  # the lock case is covered
    _check_round_trip(*real, jnp.float32, rot_atol=1e-5)


def test_round_trip_release_float64(real):
    with jax.enable_x64(True):
        _check_round_trip(*real, jnp.float64, rot_atol=1e-8)


def test_decoded_projection_matches_reference(real):
    poses, hw, frame_h, scale, box = real
    args = _f32(box, frame_h, hw, scale)
    t = pc.encode_pose_targets(jnp.asarray(poses, jnp.float32), *args)
    pose = pc.decode_pose(t["quaternion"], t["offset"], t["distance"], t["focal"], *args)
    p = np.asarray(jax.jit(pc.projection_original)(pose, *_f32(frame_h, hw)), np.float64)
    p_ref = ref_projection_original(poses, frame_h, hw)
    norm = np.linalg.norm(p_ref, axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(p / norm, p_ref / norm, atol=2e-6)


def test_targets_match_reference(real):
    poses, hw, frame_h, scale, box = real
    t = jax.jit(pc.encode_pose_targets)(jnp.asarray(poses, jnp.float32), *_f32(box, frame_h, hw, scale))
    off = np.asarray(t["offset"], np.float64)
    off_ref = ref_offset(poses, box, frame_h, hw, scale)
    # Relative to the offset's size (a far principal point and a small box give |offset| >> 1).
    np.testing.assert_allclose(off, off_ref, rtol=1e-5, atol=1e-5)
    q = np.asarray(t["quaternion"], np.float64)
    q_ref = ref_quaternion(poses)
    assert np.all(q[:, 0] >= 0)
    # Where w ~ 0 both signs are canonical.
    sign = np.where(np.sum(q * q_ref, -1) < 0, -1.0, 1.0)
    assert np.all((sign > 0) | (np.abs(q_ref[:, 0]) < 1e-5))
    np.testing.assert_allclose(q, sign[:, None] * q_ref, atol=2e-6)
    np.testing.assert_allclose(np.asarray(t["distance"]), poses[:, 3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(t["focal"]), poses[:, 4], rtol=1e-6)


def _synthetic(n=500, seed=1):
    rng = np.random.default_rng(seed)
    poses = np.stack(
        [
            rng.uniform(-np.pi, np.pi, n),
            rng.uniform(-1.4, 1.4, n),
            rng.uniform(-np.pi, np.pi, n),
            rng.uniform(0.5, 20, n),
            rng.uniform(100, 5000, n),
            rng.uniform(-80, 80, n),
            rng.uniform(-80, 80, n),
        ],
        -1,
    )
    return (poses,) + random_frames(rng, n)


@pytest.mark.parametrize("coding", ["linear", "log"])
def test_coding_scales_round_trip(coding):
    poses, hw, frame_h, scale, box = _synthetic()
    kw = dict(distance_scale=2.5, focal_scale=400.0, coding=coding)
    args = _f32(box, frame_h, hw, scale)
    t = pc.encode_pose_targets(jnp.asarray(poses, jnp.float32), *args, **kw)
    d_ref, f_ref = poses[:, 3] / 2.5, poses[:, 4] / 400.0
    if coding == "log":
        d_ref, f_ref = np.log(d_ref), np.log(f_ref)
    np.testing.assert_allclose(np.asarray(t["distance"]), d_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(t["focal"]), f_ref, rtol=1e-5, atol=1e-6)
    out = np.asarray(pc.decode_pose(t["quaternion"], t["offset"], t["distance"], t["focal"], *args, **kw))
    np.testing.assert_allclose(out[:, 3:5], poses[:, 3:5], rtol=1e-5)
    np.testing.assert_allclose(out[:, 5:], poses[:, 5:], atol=1e-4)


def test_decode_normalises_quaternion_and_ignores_sign():
    poses, hw, frame_h, scale, box = _synthetic(64, seed=2)
    args = _f32(box, frame_h, hw, scale)
    t = pc.encode_pose_targets(jnp.asarray(poses, jnp.float32), *args)
    base = np.asarray(pc.decode_pose(t["quaternion"], t["offset"], t["distance"], t["focal"], *args))
    other = np.asarray(pc.decode_pose(-3.0 * t["quaternion"], t["offset"], t["distance"], t["focal"], *args))
    np.testing.assert_allclose(other, base, atol=1e-5)
    r = ref_rotation(base[:, 0], base[:, 1], base[:, 2])
    np.testing.assert_allclose(r, ref_rotation(poses[:, 0], poses[:, 1], poses[:, 2]), atol=1e-5)
    # A zero quaternion decodes to the identity rotation, not NaN.
    box = jnp.array([0, 0, 10.0, 10.0])
    z = pc.decode_pose(jnp.zeros(4), jnp.zeros(2), 1.0, 300.0, box, 200.0, jnp.array([200.0, 300.0]), 1.0)
    np.testing.assert_allclose(np.asarray(z[:3]), 0.0, atol=1e-7)


def test_offset_is_zero_at_box_centre_and_broadcasts():
    # A principal point exactly at the box centre gives a zero offset; pose and frame
    # arguments broadcast against a batch of boxes.
    hw = jnp.array([400.0, 600.0])
    frame_h = 200.0  # 400 * 300 // 600
    scale = 0.5
    pose = jnp.array([0.1, 0.2, 0.3, 2.0, 500.0, 10.0, -20.0])
    cx = (10.0 + 150.0) * (600 / 300) * 0.5
    cy = (-20.0 + 100.0) * (400 / 200) * 0.5
    boxes = jnp.array([[cy - 5, cx - 7, cy + 5, cx + 7], [cy - 10, cx, cy + 10, cx + 10]])
    t = pc.encode_pose_targets(pose, boxes, frame_h, hw, scale)
    np.testing.assert_allclose(np.asarray(t["offset"]), [[0.0, 0.0], [-0.5, 0.0]], atol=1e-6)
    assert t["quaternion"].shape == (4,) and t["distance"].shape == ()


def test_projection_input_is_scaled_original():
    poses, hw, frame_h, scale, _ = _synthetic(32, seed=3)
    p_in = np.asarray(pc.projection_input(*_f32(poses, frame_h, hw, scale)), np.float64)
    p_ref = ref_projection_original(poses, frame_h, hw)
    p_ref[:, :2] *= scale[:, None, None]
    norm = np.linalg.norm(p_ref, axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(p_in / norm, p_ref / norm, atol=2e-6)
