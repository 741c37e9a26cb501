"""Fusion of two rotation estimates given as quaternions (appearance head + pose-from-field).

Quaternions are ``(w, x, y, z)`` of ``R = Rz(theta) Rx(elevation) Ry(azimuth)``
(:func:`fgpose.camera.quaternion_from_rotation`); ``q`` and ``-q`` are the same rotation.

:func:`fuse_quaternions` is the normalised weighted mean on one hemisphere:
``q = normalize((1 - w) q_app + w s q_field)`` with ``s = sign(q_app . q_field)`` (``+1`` at 0),
both inputs normalised first, returned with ``q_w >= 0``. For two rotations ``phi`` apart the
result lies on the geodesic between them (at ``w phi`` from ``q_app`` when ``w in {0, 1/2, 1}``,
close to it otherwise: the normalised linear blend of quaternions is the usual first-order
approximation of slerp). ``w = 0`` returns ``q_app`` and ``w = 1`` returns ``q_field`` (each
normalised, up to the sign).

:func:`fit_fusion_weight` picks ``w`` from a grid by the median rotation error on a held-out
set; :func:`quaternion_angle` is that error (the angle of the relative rotation, radians, as
:func:`fgpose.metrics.rotation_error` of the matrices).

Everything is pure ``jax.numpy``, jit-able and batched over leading axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fgpose.models.pose_coding import normalize_quaternion

Array = jax.Array


def align_hemisphere(q: Array, reference: Array) -> Array:
    """``q`` or ``-q``, whichever has a non-negative dot product with ``reference`` ``(..., 4)``."""
    dot = jnp.sum(q * reference, axis=-1, keepdims=True)
    return jnp.where(dot < 0, -q, q)


def canonical(q: Array) -> Array:
    """``q`` with the sign that makes ``w >= 0`` (the detector's target convention)."""
    return jnp.where(q[..., :1] < 0, -q, q)


def quaternion_angle(q1: Array, q2: Array) -> Array:
    """Angle (radians, ``[0, pi]``) of the rotation between quaternions ``(..., 4)``.

    Inputs of any norm and sign (normalised here). ``4 atan2(|q1 - q2'|, |q1 + q2'|)`` with
    ``q2'`` on ``q1``'s hemisphere: accurate near 0 and near pi.
    """
    a = normalize_quaternion(q1)
    b = align_hemisphere(normalize_quaternion(q2), a)
    return 4.0 * jnp.arctan2(jnp.linalg.norm(a - b, axis=-1), jnp.linalg.norm(a + b, axis=-1))


def fuse_quaternions(q_app: Array, q_field: Array, weight) -> Array:
    """Weighted mean of two rotations on one hemisphere (module docstring).

    Args:
      q_app: ``(..., 4)`` quaternions of the appearance pose head (any norm and sign).
      q_field: ``(..., 4)`` quaternions of the pose-from-field network.
      weight: scalar or ``(...)`` in ``[0, 1]``: the share of ``q_field``.

    Returns:
      ``(..., 4)`` float unit quaternions with ``w >= 0``.
    """
    a = normalize_quaternion(q_app)
    b = align_hemisphere(normalize_quaternion(q_field), a)
    w = jnp.asarray(weight, a.dtype)[..., None]
    # |(1 - w) a + w b| >= sqrt((1 - w)^2 + w^2) >= 1/sqrt(2) since a . b >= 0: never 0.
    return canonical(normalize_quaternion((1.0 - w) * a + w * b))


def fit_fusion_weight(q_app: Array, q_field: Array, q_true: Array, grid) -> tuple[Array, Array]:
    """The fusion weight of ``grid`` with the smallest median rotation error.

    Args:
      q_app, q_field: ``(N, 4)`` predicted quaternions of a held-out set.
      q_true: ``(N, 4)`` ground-truth quaternions.
      grid: ``(G,)`` candidate weights in ``[0, 1]``.

    Returns:
      ``(weight, median_error)``: the chosen weight (scalar; the first grid entry among ties)
      and ``(G,)`` median rotation errors in radians for every grid entry.
    """
    grid = jnp.asarray(grid, jnp.result_type(q_app, jnp.float32))
    fused = fuse_quaternions(q_app[None], q_field[None], grid[:, None])  # (G, N, 4)
    median = jnp.median(quaternion_angle(fused, q_true[None]), axis=-1)
    return grid[jnp.argmin(median)], median


__all__ = ["align_hemisphere", "canonical", "fit_fusion_weight", "fuse_quaternions", "quaternion_angle"]
