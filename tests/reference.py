"""Float64 NumPy references of the release's camera convention, shared by the tests.

Written out directly from the README of the shared data (independent of ``fgpose.camera``):
``R = Rz(theta) Rx(e) Ry(a)``; in the width-300 annotation frame of height
``h = int(H*300/W)``, ``K = [[f,0,u+150],[0,f,v+h/2],[0,0,1]]`` and ``P = K [R | -(0,0,d)^T]``;
original pixels by ``diag(W/300, H/h, 1)``, input pixels by a further ``* scale``.

Poses are ``(..., 7)`` in the release order ``(azimuth, elevation, theta, distance, f, u, v)``.
Tests import this module as ``tests.reference`` (the repository root is on ``sys.path``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def mat3(rows):
    """Stacks a nested 3x3 list of equal-shape arrays into ``(..., 3, 3)``."""
    return np.stack([np.stack(r, -1) for r in rows], -2)


def rotation(a, e, t):
    """``R = Rz(t) Rx(e) Ry(a)`` in float64, ``(..., 3, 3)`` for broadcastable angles."""
    a, e, t = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (a, e, t)))
    z, o = np.zeros_like(a), np.ones_like(a)
    ry = mat3([[np.cos(a), z, -np.sin(a)], [z, o, z], [np.sin(a), z, np.cos(a)]])
    rx = mat3([[o, z, z], [z, np.cos(e), -np.sin(e)], [z, np.sin(e), np.cos(e)]])
    rz = mat3([[np.cos(t), -np.sin(t), z], [np.sin(t), np.cos(t), z], [z, z, o]])
    return rz @ rx @ ry


def projection_original(pose, frame_h, hw):
    """Batched release ``P`` in original pixels: ``diag(W/300, H/h, 1) K [R | -(0,0,d)]``.

    ``pose`` ``(..., 7)``, ``frame_h`` the annotation-frame height ``h`` ``(...)``, ``hw`` the
    original ``(H, W)`` ``(..., 2)``; returns ``(..., 3, 4)``."""
    pose = np.asarray(pose, np.float64)
    hw = np.asarray(hw, np.float64)
    a, e, t, d, f, u, v = (pose[..., i] for i in range(7))
    h = np.asarray(frame_h, np.float64)
    z, o = np.zeros_like(f), np.ones_like(f)
    k = mat3([[f, z, u + 150.0], [z, f, v + h / 2.0], [z, z, o]])
    rt = np.concatenate([rotation(a, e, t), np.stack([z, z, -d], -1)[..., None]], -1)
    s = mat3([[hw[..., 1] / 300.0, z, z], [z, hw[..., 0] / h, z], [z, z, o]])
    return s @ k @ rt


def camera(pose, image_hw, out_hw=None):
    """Float64 ``(R, K, P)`` of one pose in pixels of ``out_hw`` (default the original
    ``image_hw = (H, W)``): the photo resized to width 300 (height ``int(H*300/W)``),
    ``K = [[f, 0, u+150], [0, f, v+h/2], [0, 0, 1]]``, ``P = K [R | -(0,0,d)]``, then scaled
    by ``diag(out_W/300, out_H/h, 1)`` (the returned ``K`` includes that scale)."""
    a, e, t, d, f, u, v = (float(x) for x in pose)
    big_h, big_w = image_hw
    out_h, out_w = out_hw or image_hw
    h = int(big_h * 300 / big_w)
    r = rotation(a, e, t)
    k = np.array([[f, 0, u + 150.0], [0, f, v + h / 2.0], [0, 0, 1.0]])
    s = np.diag([out_w / 300.0, out_h / h, 1.0])
    p = s @ k @ np.concatenate([r, np.array([[0.0], [0.0], [-d]])], 1)
    return r, s @ k, p


def project(p, x):
    """Pixels ``(N, 2)`` (x, y) and depth ``(N,)`` of points ``x`` ``(N, 3)`` under ``P`` ``(3, 4)``."""
    h = np.asarray(x, np.float64) @ p[:, :3].T + p[:, 3]
    return h[:, :2] / h[:, 2:3], -h[:, 2]


def project_pose(pose, points, hw):
    """Original-photo pixels (x, y) and depth of model points for a pose and photo size ``hw``."""
    return project(camera(pose, hw)[2], points)


def offset(pose, box, frame_h, hw, scale):
    """Principal point in input pixels relative to the box ``(y0, x0, y1, x1)``, float64."""
    pose = np.asarray(pose, np.float64)
    box = np.asarray(box, np.float64)
    hw = np.asarray(hw, np.float64)
    u, v = pose[..., 5], pose[..., 6]
    cx = (u + 150.0) * (hw[..., 1] / 300.0) * scale
    cy = (v + frame_h / 2.0) * (hw[..., 0] / frame_h) * scale
    y0, x0, y1, x1 = (box[..., i] for i in range(4))
    return np.stack([(cx - (x0 + x1) / 2) / (x1 - x0), (cy - (y0 + y1) / 2) / (y1 - y0)], -1)


def quaternion(pose):
    """Rotation quaternion ``(w, x, y, z)`` with ``w >= 0`` from SciPy, ``(..., 4)``."""
    pose = np.asarray(pose, np.float64)
    r = rotation(pose[..., 0], pose[..., 1], pose[..., 2])
    xyzw = Rotation.from_matrix(r.reshape(-1, 3, 3)).as_quat().reshape(r.shape[:-2] + (4,))
    q = np.concatenate([xyzw[..., 3:], xyzw[..., :3]], -1)
    return np.where(q[..., :1] < 0, -q, q)
