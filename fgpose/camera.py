"""The release's 7-parameter perspective camera.

Convention (the public release of Wang et al. 2018, see ``../shared/README.md``):

* rotation ``R = Rz(theta) @ Rx(elevation) @ Ry(azimuth)``, angles in radians, with
  ``Ry = [[cos a, 0, -sin a], [0, 1, 0], [sin a, 0, cos a]]``,
  ``Rx = [[1, 0, 0], [0, cos e, -sin e], [0, sin e, cos e]]``,
  ``Rz = [[cos t, -sin t, 0], [sin t, cos t, 0], [0, 0, 1]]``;
* extrinsics ``[R | -(0, 0, d)^T]``: a model point ``X`` goes to camera coordinates
  ``Xc = R X - (0, 0, d)``; visible points have **negative** camera z;
* intrinsics ``K = [[f, 0, u + W/2], [0, f, v + h/2], [0, 0, 1]]`` in the *annotation frame*:
  the photo resized to width ``W = 300`` and height ``h = int(H * 300 / W_photo)``;
  ``f, u, v`` are in pixels of that frame and ``(u, v)`` is the principal point's offset from
  the frame's centre;
* a pixel is ``x = P X~`` divided by its third row, ``P = K [R | -(0, 0, d)^T]``; pixel
  coordinates are continuous with pixel ``(row i, col j)`` covering ``[j, j+1) x [i, i+1)``,
  so its centre is at ``(j + 0.5, i + 0.5)``. Images are ``H x W`` (rows x columns).

Boxes throughout fgpose are ``(y0, x0, y1, x1)`` in continuous pixel coordinates.
Every function here is pure ``jax.numpy``, jit-able and batched over leading axes.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

ANNOTATION_WIDTH = 300
"""Width in pixels of the frame in which the release's f, u, v are expressed."""

POSE_FIELDS = ("azimuth", "elevation", "theta", "distance", "f", "u", "v")
"""The 7 pose parameters in their canonical order (Algorithm 1's sweep order)."""

# Geometry needs true float32 products: JAX's default lets GPUs/TPUs use TF32/bf16 passes
# (~1e-3 relative, i.e. tenths of a pixel).
_HIGHEST = jax.lax.Precision.HIGHEST


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Pose:
    """The 7 camera parameters, each an array of the same (batch) shape ``(...)``.

    Attributes:
      azimuth, elevation, theta: rotation angles in radians (see module docstring).
      distance: camera distance in model units (ShapeNet models have unit bbox diagonal).
      f: focal length in pixels of the width-300 annotation frame.
      u, v: principal point offset from the annotation frame's centre, in its pixels.
    """

    azimuth: jax.Array
    elevation: jax.Array
    theta: jax.Array
    distance: jax.Array
    f: jax.Array
    u: jax.Array
    v: jax.Array

    def as_array(self) -> jax.Array:
        """Stacks the parameters into shape ``(..., 7)`` in ``POSE_FIELDS`` order."""
        return jnp.stack([getattr(self, k) for k in POSE_FIELDS], axis=-1)

    @classmethod
    def from_array(cls, params: jax.Array) -> "Pose":
        """Inverse of :meth:`as_array`: ``params`` has shape ``(..., 7)``."""
        params = jnp.asarray(params)
        if params.shape[-1:] != (7,):
            raise ValueError(f"pose array must end in 7 parameters, got shape {params.shape}")
        return cls(*(params[..., i] for i in range(7)))

    @classmethod
    def from_mapping(cls, record, dtype=jnp.float32) -> "Pose":
        """Builds a pose from a mapping (or attribute object) with the 7 field names."""
        get = record.__getitem__ if hasattr(record, "__getitem__") else lambda k: getattr(record, k)
        return cls(*(jnp.asarray(get(k), dtype=dtype) for k in POSE_FIELDS))

    @classmethod
    def stack(cls, poses: Sequence["Pose"]) -> "Pose":
        """Stacks poses of equal shape along a new leading axis."""
        return jax.tree.map(lambda *xs: jnp.stack(xs), *poses)

    @property
    def shape(self) -> tuple[int, ...]:
        return jnp.shape(self.azimuth)

    def rotation(self) -> jax.Array:
        """``R = Rz(theta) Rx(elevation) Ry(azimuth)``, shape ``(..., 3, 3)``."""
        return rotation_matrix(self.azimuth, self.elevation, self.theta)


# ----------------------------------------------------------------------------- rotations


def rotation_matrix(azimuth: jax.Array, elevation: jax.Array, theta: jax.Array) -> jax.Array:
    """``Rz(theta) @ Rx(elevation) @ Ry(azimuth)`` for angles in radians; shape ``(..., 3, 3)``."""
    a, e, t = jnp.broadcast_arrays(*(jnp.asarray(x) for x in (azimuth, elevation, theta)))
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a, e, t = (x.astype(jnp.float32) for x in (a, e, t))
    ca, sa = jnp.cos(a), jnp.sin(a)
    ce, se = jnp.cos(e), jnp.sin(e)
    ct, st = jnp.cos(t), jnp.sin(t)
    # Rx(e) @ Ry(a), written out.
    m = [
        [ca, jnp.zeros_like(a), -sa],
        [-se * sa, ce, -se * ca],
        [ce * sa, se, ce * ca],
    ]
    rows = [
        [ct * m[0][j] - st * m[1][j] for j in range(3)],
        [st * m[0][j] + ct * m[1][j] for j in range(3)],
        m[2],
    ]
    return jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)


def wrap_angle(x: jax.Array) -> jax.Array:
    """Wraps radians into ``[-pi, pi)``."""
    return jnp.mod(jnp.asarray(x) + jnp.pi, 2 * jnp.pi) - jnp.pi


def angles_from_rotation(rotation: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Inverse of :func:`rotation_matrix`.

    Args:
      rotation: ``(..., 3, 3)`` rotation matrices.

    Returns:
      ``(azimuth, elevation, theta)`` in radians with azimuth and theta in ``(-pi, pi]`` and
      elevation in ``[-pi/2, pi/2]``. At gimbal lock (``|elevation| = pi/2``) theta is set to 0.
    """
    r = jnp.asarray(rotation)
    # Third row is that of Rx(e) Ry(a): (cos e sin a, sin e, cos e cos a).
    cos_e = jnp.hypot(r[..., 2, 0], r[..., 2, 2])
    elevation = jnp.arctan2(r[..., 2, 1], cos_e)
    locked = cos_e < 1e-7
    # Away from the lock: R01 = -sin t cos e, R11 = cos t cos e.
    theta = jnp.where(locked, 0.0, jnp.arctan2(-r[..., 0, 1], r[..., 1, 1]))
    azimuth_free = jnp.arctan2(r[..., 2, 0], r[..., 2, 2])
    # Near the lock, azimuth and theta are ill-conditioned one by one but their sum (for
    # sin e < 0) or difference (sin e > 0) is not: R10 - R02 = (1 - sin e) sin(t + a),
    # R00 + R12 = (1 - sin e) cos(t + a), R02 + R10 = (1 + sin e) sin(t - a),
    # R00 - R12 = (1 + sin e) cos(t - a). Taking azimuth from that combination and theta
    # keeps R exact to float rounding there (float32 records with cos e ~ 1e-6 exist).
    t_plus_a = jnp.arctan2(r[..., 1, 0] - r[..., 0, 2], r[..., 0, 0] + r[..., 1, 2])
    t_minus_a = jnp.arctan2(r[..., 0, 2] + r[..., 1, 0], r[..., 0, 0] - r[..., 1, 2])
    azimuth_near = jnp.where(r[..., 2, 1] > 0, theta - t_minus_a, t_plus_a - theta)
    azimuth_near = jnp.arctan2(jnp.sin(azimuth_near), jnp.cos(azimuth_near))
    azimuth = jnp.where(cos_e < 1e-3, azimuth_near, azimuth_free)
    return azimuth, elevation, theta


def quaternion_from_rotation(rotation: jax.Array) -> jax.Array:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices ``(..., 3, 3)``.

    Shepperd's method: the largest of the four diagonal combinations is used as pivot, so
    the result is accurate for every rotation. Returns shape ``(..., 4)``.
    """
    r = jnp.asarray(rotation)
    r00, r01, r02 = r[..., 0, 0], r[..., 0, 1], r[..., 0, 2]
    r10, r11, r12 = r[..., 1, 0], r[..., 1, 1], r[..., 1, 2]
    r20, r21, r22 = r[..., 2, 0], r[..., 2, 1], r[..., 2, 2]
    trace = r00 + r11 + r22
    # Each candidate is 4*q*q_pivot; its norm is 4*|q_pivot|.
    candidates = jnp.stack(
        [
            jnp.stack([1 + trace, r21 - r12, r02 - r20, r10 - r01], -1),
            jnp.stack([r21 - r12, 1 + r00 - r11 - r22, r01 + r10, r02 + r20], -1),
            jnp.stack([r02 - r20, r01 + r10, 1 - r00 + r11 - r22, r12 + r21], -1),
            jnp.stack([r10 - r01, r02 + r20, r12 + r21, 1 - r00 - r11 + r22], -1),
        ],
        axis=-2,
    )
    pivots = jnp.stack([trace, r00, r11, r22], -1)
    best = jnp.argmax(pivots, axis=-1)
    q = jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jnp.where(q[..., :1] < 0, -q, q)


def rotation_from_quaternion(quaternion: jax.Array) -> jax.Array:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``(w, x, y, z)`` (normalised first)."""
    q = jnp.asarray(quaternion)
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


# ----------------------------------------------------------------------------- frames


def annotation_frame_height(image_width, image_height):
    """Height ``int(H * 300 / W)`` of a ``W x H`` photo resized to the annotation width.

    Works on Python ints and on integer NumPy arrays (not traced values: image sizes are
    static metadata).
    """
    w = np.asarray(image_width)
    h = np.asarray(image_height)
    if np.any(w <= 0) or np.any(h <= 0):
        raise ValueError(f"image size must be positive, got width={image_width}, height={image_height}")
    out = (h * ANNOTATION_WIDTH) // w
    return int(out) if out.ndim == 0 else out


def frame_transform(
    src_size: tuple,
    dst_size: tuple,
    crop_box: jax.Array | None = None,
) -> jax.Array:
    """Affine map ``(3, 3)`` (or batched) from pixel coordinates of one frame to another.

    Args:
      src_size: ``(height, width)`` of the source frame in pixels (arrays allowed).
      dst_size: ``(height, width)`` of the destination frame in pixels.
      crop_box: optional ``(..., 4)`` box ``(y0, x0, y1, x1)`` in source pixels. When given,
        the destination frame is that box resized to ``dst_size``; otherwise it is the whole
        source frame resized to ``dst_size``.

    Returns:
      ``A`` with ``[x', y', 1] = A [x, y, 1]``. Continuous coordinates (pixel edges at
      integers) make resizing a pure scale, so centres stay at ``+0.5``.
    """
    src_h, src_w = (jnp.asarray(s, jnp.float32) for s in src_size)
    dst_h, dst_w = (jnp.asarray(s, jnp.float32) for s in dst_size)
    if crop_box is None:
        y0 = x0 = jnp.zeros_like(src_h)
        y1, x1 = src_h, src_w
    else:
        box = jnp.asarray(crop_box, jnp.float32)
        y0, x0, y1, x1 = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
    sx = dst_w / (x1 - x0)
    sy = dst_h / (y1 - y0)
    sx, sy, x0, y0 = jnp.broadcast_arrays(sx, sy, x0, y0)
    zero, one = jnp.zeros_like(sx), jnp.ones_like(sx)
    return jnp.stack(
        [
            jnp.stack([sx, zero, -sx * x0], -1),
            jnp.stack([zero, sy, -sy * y0], -1),
            jnp.stack([zero, zero, one], -1),
        ],
        -2,
    )


def intrinsics(pose: Pose, frame_height) -> jax.Array:
    """``K`` (``(..., 3, 3)``) in the width-300 annotation frame of height ``frame_height``."""
    f, u, v = (jnp.asarray(x) for x in (pose.f, pose.u, pose.v))
    cx = u + ANNOTATION_WIDTH / 2
    cy = v + jnp.asarray(frame_height, f.dtype) / 2
    f, cx, cy = jnp.broadcast_arrays(f, cx, cy)
    zero, one = jnp.zeros_like(f), jnp.ones_like(f)
    return jnp.stack(
        [
            jnp.stack([f, zero, cx], -1),
            jnp.stack([zero, f, cy], -1),
            jnp.stack([zero, zero, one], -1),
        ],
        -2,
    )


def extrinsics(pose: Pose) -> jax.Array:
    """``[R | -(0, 0, d)^T]``, shape ``(..., 3, 4)``."""
    rot = pose.rotation()
    d = jnp.asarray(pose.distance, rot.dtype)
    t = jnp.stack([jnp.zeros_like(d), jnp.zeros_like(d), -d], -1)
    t = jnp.broadcast_to(t, rot.shape[:-2] + (3,))
    return jnp.concatenate([rot, t[..., None]], axis=-1)


def projection_matrix(
    pose: Pose,
    frame_height,
    image_size: tuple | None = None,
    crop_box: jax.Array | None = None,
) -> jax.Array:
    """Projection ``P`` (``(..., 3, 4)``) in pixels of a chosen image frame.

    Args:
      pose: the 7 parameters (annotation convention).
      frame_height: height of the width-300 annotation frame, ``int(H * 300 / W)``.
      image_size: ``(height, width)`` of the output frame. ``None`` keeps the annotation frame
        (``(frame_height, 300)``); the original photo's ``(H, W)`` gives P in original pixels;
        any other size is a resize (e.g. a network input).
      crop_box: optional ``(y0, x0, y1, x1)`` region of the annotation frame that is resized
        to ``image_size`` (an RoI); requires ``image_size``.

    Returns:
      ``P`` such that ``x = P X~`` divided by its third row gives pixels; visible points have
      a negative third row (see module docstring).
    """
    p = jnp.matmul(intrinsics(pose, frame_height), extrinsics(pose), precision=_HIGHEST)
    if image_size is None:
        if crop_box is not None:
            raise ValueError("crop_box needs image_size: the size the crop is resized to")
        return p
    src = (frame_height, ANNOTATION_WIDTH)
    return jnp.matmul(frame_transform(src, image_size, crop_box), p, precision=_HIGHEST)


def project_points(projection: jax.Array, points: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Projects model points.

    Args:
      projection: ``(..., 3, 4)`` projection matrices (release convention).
      points: ``(..., N, 3)`` model-space points.

    Returns:
      ``(pixels, depth)``: ``(..., N, 2)`` continuous pixel coordinates ``(x, y)`` and
      ``(..., N)`` depth along the optical axis, positive for visible points
      (``depth = -(P X~)_3``; equals ``-z`` in camera coordinates when ``K[2] = (0, 0, 1)``).
    """
    p = jnp.asarray(projection)
    x = jnp.asarray(points)
    h = jnp.einsum("...ij,...nj->...ni", p[..., :, :3], x, precision=_HIGHEST) + p[..., None, :, 3]
    depth = -h[..., 2]
    return h[..., :2] / h[..., 2:3], depth


def original_frame_scale(image_width, image_height) -> tuple[float, float]:
    """``(sx, sy)`` from annotation-frame pixels to original-photo pixels.

    ``sx = W / 300`` and ``sy = H / int(H * 300 / W)`` (the truncated frame height makes
    ``sy`` differ slightly from ``sx``).
    """
    h = annotation_frame_height(image_width, image_height)
    return image_width / ANNOTATION_WIDTH, image_height / h


def rotation_angle(rotation: jax.Array) -> jax.Array:
    """Angle in radians of rotation matrices ``(..., 3, 3)``, accurate near 0 and pi."""
    q = quaternion_from_rotation(rotation)
    return 2.0 * jnp.arctan2(jnp.linalg.norm(q[..., 1:], axis=-1), jnp.abs(q[..., 0]))


__all__ = [
    "ANNOTATION_WIDTH",
    "POSE_FIELDS",
    "Pose",
    "angles_from_rotation",
    "annotation_frame_height",
    "extrinsics",
    "frame_transform",
    "intrinsics",
    "original_frame_scale",
    "project_points",
    "projection_matrix",
    "quaternion_from_rotation",
    "rotation_angle",
    "rotation_from_quaternion",
    "rotation_matrix",
    "wrap_angle",
]

