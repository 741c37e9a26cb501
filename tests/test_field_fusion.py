"""Quaternion fusion of the appearance and pose-from-field rotations, against a float64 NumPy
reference and SciPy's rotations."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from scipy.spatial.transform import Rotation

from fgpose import metrics
from fgpose.models.quaternion_fusion import fit_fusion_weight, fuse_quaternions, quaternion_angle


def _scipy(q):
    """SciPy rotations of (w, x, y, z) quaternions."""
    q = np.asarray(q, np.float64)
    return Rotation.from_quat(np.concatenate([q[..., 1:], q[..., :1]], -1))


def _ref_fuse(q1, q2, w):
    """Float64: normalise, flip q2 onto q1's hemisphere, (1 - w) q1 + w q2, normalise, w >= 0."""
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    q2 = q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    q2 = np.where(np.sum(q1 * q2, -1, keepdims=True) < 0, -q2, q2)
    q = (1 - np.asarray(w)[..., None]) * q1 + np.asarray(w)[..., None] * q2
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def _random(rng, n, scale=1.0):
    """Random quaternions of random norm and sign."""
    q = rng.normal(size=(n, 4))
    return q * rng.uniform(0.3, 3.0, (n, 1)) * scale


def test_fusion_matches_reference():
    rng = np.random.default_rng(0)
    q1, q2 = _random(rng, 200), _random(rng, 200)
    w = rng.uniform(0, 1, 200)
    assert (np.sum(q1 * q2, -1) < 0).sum() > 50  # the hemisphere flip is exercised
    out = np.asarray(fuse_quaternions(jnp.asarray(q1, jnp.float32), jnp.asarray(q2, jnp.float32), jnp.asarray(w, jnp.float32)))
    np.testing.assert_allclose(out, _ref_fuse(q1, q2, w), atol=2e-6)
    assert np.all(out[:, 0] >= 0)
    # Without the flip the blend of q and a sign-flipped q2 would be a different rotation.
    no_flip = (1 - w[:, None]) * q1 / np.linalg.norm(q1, axis=-1, keepdims=True) + w[:, None] * q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    apart = np.sum(q1 * q2, -1) < 0
    assert np.median((_scipy(no_flip[apart]) * _scipy(out[apart]).inv()).magnitude()) > 0.1


def test_fusion_limits_and_midpoint():
    rng = np.random.default_rng(1)
    q1, q2 = _random(rng, 50), _random(rng, 50)
    f1, f2 = jnp.asarray(q1, jnp.float32), jnp.asarray(q2, jnp.float32)
    for weight, q in ((0.0, q1), (1.0, q2)):
        out = np.asarray(fuse_quaternions(f1, f2, weight))
        same = _scipy(q).as_quat(canonical=True)
        np.testing.assert_allclose(_scipy(out).as_quat(canonical=True), same, atol=2e-6)
    # w = 1/2 is the geodesic midpoint: half the angle to either rotation.
    mid = _scipy(np.asarray(fuse_quaternions(f1, f2, 0.5)))
    phi = (_scipy(q1).inv() * _scipy(q2)).magnitude()
    np.testing.assert_allclose((_scipy(q1).inv() * mid).magnitude(), phi / 2, atol=2e-5)
    np.testing.assert_allclose((_scipy(q2).inv() * mid).magnitude(), phi / 2, atol=2e-5)
    # Both q2 and -q2 give the same result (the same rotation).
    np.testing.assert_allclose(np.asarray(fuse_quaternions(f1, -f2, 0.3)), np.asarray(fuse_quaternions(f1, f2, 0.3)), atol=1e-7)


def test_quaternion_angle_matches_scipy_and_metrics():
    rng = np.random.default_rng(2)
    q1 = _random(rng, 100)
    # Relative rotations from tiny to almost pi, applied with random signs.
    angles = np.concatenate([[0.0, 1e-4, 1e-2], rng.uniform(0, np.pi, 94), [np.pi - 1e-3, np.pi - 1e-4, np.pi]])
    axes = rng.normal(size=(100, 3))
    rel = Rotation.from_rotvec(axes / np.linalg.norm(axes, axis=-1, keepdims=True) * angles[:, None])
    r2 = _scipy(q1) * rel
    xyzw = r2.as_quat() * rng.choice([-1.0, 1.0], (100, 1)) * rng.uniform(0.5, 2, (100, 1))
    q2 = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], -1)
    ref = (_scipy(q1).inv() * _scipy(q2)).magnitude()
    np.testing.assert_allclose(ref, angles, atol=1e-9)
    got = np.asarray(quaternion_angle(jnp.asarray(q1, jnp.float32), jnp.asarray(q2, jnp.float32)))
    np.testing.assert_allclose(got, ref, atol=3e-4)
    np.testing.assert_allclose(got[:3], ref[:3], atol=2e-6)  # accurate near 0
    e_r = np.asarray(metrics.rotation_error(jnp.asarray(_scipy(q1).as_matrix(), jnp.float32), jnp.asarray(r2.as_matrix(), jnp.float32)))
    np.testing.assert_allclose(got, e_r, atol=3e-4)


def test_fit_fusion_weight_minimises_the_median_error():
    rng = np.random.default_rng(3)
    n = 300
    truth = Rotation.random(n, random_state=4)

    def noisy(sigma):
        noise = Rotation.from_rotvec(rng.normal(0, sigma, (n, 3)))
        xyzw = (truth * noise).as_quat() * rng.choice([-1.0, 1.0], (n, 1))
        return np.concatenate([xyzw[:, 3:], xyzw[:, :3]], -1)

    q_true = truth.as_quat()[:, [3, 0, 1, 2]]
    q_app, q_field = noisy(0.15), noisy(0.05)  # the field estimate is the better one
    grid = np.linspace(0, 1, 21)
    weight, median = fit_fusion_weight(*(jnp.asarray(a, jnp.float32) for a in (q_app, q_field, q_true)), grid)
    ref = np.array([np.median((_scipy(_ref_fuse(q_app, q_field, np.full(n, w))).inv() * truth).magnitude()) for w in grid])
    np.testing.assert_allclose(np.asarray(median), ref, atol=2e-5)
    assert float(weight) == np.float32(grid[np.argmin(ref)])
    assert np.sort(ref)[1] - ref.min() > 1e-4  # a clear winner, not a float32 tie
    assert 0.6 <= float(weight) < 1.0  # better than either input alone
    assert ref.min() < min(ref[0], ref[-1]) - 1e-3
