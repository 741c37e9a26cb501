"""Coding of the release's 7-parameter pose as regression targets relative to an RoI box.

The pose branch of the baseline detector (Wang et al. 2018, Figure 5) regresses, for each
RoI, four groups of numbers:

* ``quaternion`` ``(..., 4)``: the unit quaternion ``(w, x, y, z)`` of ``R = Rz(theta)
  Rx(elevation) Ry(azimuth)`` (:func:`fgpose.camera.quaternion_from_rotation`), sign
  canonicalised to ``w >= 0`` for targets (``q`` and ``-q`` are the same rotation; the
  detector's loss can also take the minimum over both signs);
* ``offset`` ``(..., 2)``: the principal point in *input-frame* pixels relative to the RoI,
  ``((cx_in - box_cx) / box_w, (cy_in - box_cy) / box_h)`` in that ``(dx, dy)`` order;
* ``distance`` ``(...)``: the camera distance ``d`` (model units);
* ``focal`` ``(...)``: the focal length ``f`` in pixels of the width-300 annotation frame.

``distance`` and ``focal`` are raw by default (the section-D interface and the paper, which
regresses them directly with a smooth-L1 loss). Their release distributions are heavy-tailed
(d: median ~1.1, 99th percentile 6.5 on StanfordCars and 57 on FGVC-Aircraft; f: median
~350-450, 99th percentile 2300-23000), so the detector passes normalisers: with
``coding="linear"`` the target is ``value / scale``; with ``coding="log"`` it is
``log(value / scale)``. :func:`decode_pose` inverts exactly the same coding.

Frames (see :mod:`fgpose.camera`): the annotation frame is the photo resized to width 300
and height ``frame_height = int(H * 300 / W)``; the original photo is ``(H, W)``; the
network's input frame is the photo resized by ``scale`` (input pixels per original pixel).
The principal point in annotation pixels is ``K[:2, 2]`` of :func:`fgpose.camera.intrinsics`
and it is mapped to the input frame with :func:`fgpose.camera.frame_transform` from
``(frame_height, 300)`` to ``(H * scale, W * scale)`` (the same map as
:func:`fgpose.camera.original_frame_scale` followed by ``* scale``).

Every function is pure ``jax.numpy``, jit-able and batched over leading axes ``(...)``
(inputs broadcast against each other).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fgpose import camera

BOX_EPS = 1e-3
"""Smallest box width/height (pixels) used when dividing by a box size (degenerate boxes)."""

_CODINGS = ("linear", "log")


def _as_float(x) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def input_frame_transform(frame_height, original_hw, scale) -> jax.Array:
    """Affine map ``(..., 3, 3)`` from annotation-frame pixels to input-frame pixels.

    Args:
      frame_height: ``(...)`` height of the width-300 annotation frame, ``int(H * 300 / W)``.
      original_hw: ``(..., 2)`` original photo ``(H, W)`` in pixels.
      scale: ``(...)`` input pixels per original pixel.

    Returns:
      ``A`` with ``[x_in, y_in, 1] = A [x_ann, y_ann, 1]`` (a pure scale: both frames start
      at the photo's top-left corner).
    """
    frame_height = _as_float(frame_height)
    original_hw = _as_float(original_hw).astype(frame_height.dtype)
    scale = jnp.asarray(scale, frame_height.dtype)
    dst = (original_hw[..., 0] * scale, original_hw[..., 1] * scale)
    return camera.frame_transform((frame_height, camera.ANNOTATION_WIDTH), dst)


def _annotation_centre(frame_height, dtype) -> tuple[jax.Array, jax.Array]:
    """Centre ``(cx, cy)`` of the annotation frame, i.e. the principal point when u = v = 0."""
    frame_height = jnp.asarray(frame_height, dtype)
    zero = jnp.zeros_like(frame_height)
    k0 = camera.intrinsics(camera.Pose(zero, zero, zero, zero + 1, zero + 1, zero, zero), frame_height)
    return k0[..., 0, 2], k0[..., 1, 2]


def _box_centre_size(box: jax.Array):
    y0, x0, y1, x1 = (box[..., i] for i in range(4))
    w = jnp.maximum(x1 - x0, BOX_EPS)
    h = jnp.maximum(y1 - y0, BOX_EPS)
    return 0.5 * (x0 + x1), 0.5 * (y0 + y1), w, h


def _encode_scalar(value, scale, coding):
    if coding not in _CODINGS:
        raise ValueError(f"coding must be one of {_CODINGS}, got {coding!r}")
    value = value / scale
    return jnp.log(value) if coding == "log" else value


def _decode_scalar(code, scale, coding):
    if coding not in _CODINGS:
        raise ValueError(f"coding must be one of {_CODINGS}, got {coding!r}")
    return (jnp.exp(code) if coding == "log" else code) * scale


def encode_pose_targets(
    pose: jax.Array,
    box: jax.Array,
    frame_height,
    original_hw,
    scale,
    *,
    distance_scale: float = 1.0,
    focal_scale: float = 1.0,
    coding: str = "linear",
) -> dict[str, jax.Array]:
    """Regression targets of a release pose relative to an RoI box.

    Args:
      pose: ``(..., 7)`` raw release pose (azimuth, elevation, theta [rad], distance, f, u, v).
      box: ``(..., 4)`` RoI ``(y0, x0, y1, x1)`` in input-frame pixels.
      frame_height: ``(...)`` annotation frame height ``int(H * 300 / W)``.
      original_hw: ``(..., 2)`` original photo ``(H, W)``.
      scale: ``(...)`` input pixels per original pixel.
      distance_scale, focal_scale: normalisers (see the module docstring).
      coding: ``"linear"`` (``value / scale``) or ``"log"`` (``log(value / scale)``).

    Returns:
      dict with ``quaternion`` ``(..., 4)`` (``w >= 0``), ``offset`` ``(..., 2)`` ``(dx, dy)``
      in box widths/heights, ``distance`` ``(...)`` and ``focal`` ``(...)`` (coded).
    """
    pose = _as_float(pose)
    box = jnp.asarray(box, pose.dtype)
    p = camera.Pose.from_array(pose)
    quaternion = camera.quaternion_from_rotation(p.rotation())
    # Principal point in annotation pixels, then in input pixels.
    k = camera.intrinsics(p, jnp.asarray(frame_height, pose.dtype))
    a = input_frame_transform(frame_height, original_hw, scale).astype(pose.dtype)
    cx = a[..., 0, 0] * k[..., 0, 2] + a[..., 0, 2]
    cy = a[..., 1, 1] * k[..., 1, 2] + a[..., 1, 2]
    bcx, bcy, bw, bh = _box_centre_size(box)
    offset = jnp.stack([(cx - bcx) / bw, (cy - bcy) / bh], axis=-1)
    return {
        "quaternion": quaternion,
        "offset": offset,
        "distance": _encode_scalar(p.distance, distance_scale, coding),
        "focal": _encode_scalar(p.f, focal_scale, coding),
    }


def normalize_quaternion(quaternion: jax.Array, eps: float = 1e-12) -> jax.Array:
    """Unit quaternions ``(..., 4)``; a (near-)zero input gives the identity ``(1, 0, 0, 0)``."""
    q = _as_float(quaternion)
    norm = jnp.linalg.norm(q, axis=-1, keepdims=True)
    identity = jnp.zeros_like(q).at[..., 0].set(1.0)
    return jnp.where(norm > eps, q / jnp.maximum(norm, eps), identity)


def decode_pose(
    quaternion: jax.Array,
    offset: jax.Array,
    distance: jax.Array,
    focal: jax.Array,
    box: jax.Array,
    frame_height,
    original_hw,
    scale,
    *,
    distance_scale: float = 1.0,
    focal_scale: float = 1.0,
    coding: str = "linear",
) -> jax.Array:
    """Exact inverse of :func:`encode_pose_targets`: release pose ``(..., 7)``.

    Args:
      quaternion: ``(..., 4)`` ``(w, x, y, z)``, any norm and sign (normalised here).
      offset: ``(..., 2)`` principal-point offset ``(dx, dy)`` in box widths/heights.
      distance, focal: ``(...)`` coded distance and focal length (same coding arguments as
        the encoder).
      box, frame_height, original_hw, scale: as in :func:`encode_pose_targets`.

    Returns:
      ``(..., 7)`` pose (azimuth, elevation, theta in radians from
      :func:`fgpose.camera.angles_from_rotation`: azimuth, theta in ``(-pi, pi]``; distance;
      f, u, v in annotation-frame pixels).
    """
    q = normalize_quaternion(quaternion)
    dtype = q.dtype
    offset = jnp.asarray(offset, dtype)
    box = jnp.asarray(box, dtype)
    azimuth, elevation, theta = camera.angles_from_rotation(camera.rotation_from_quaternion(q))
    bcx, bcy, bw, bh = _box_centre_size(box)
    cx_in = bcx + offset[..., 0] * bw
    cy_in = bcy + offset[..., 1] * bh
    a = input_frame_transform(frame_height, original_hw, scale).astype(dtype)
    cx_ann = (cx_in - a[..., 0, 2]) / a[..., 0, 0]
    cy_ann = (cy_in - a[..., 1, 2]) / a[..., 1, 1]
    centre_x, centre_y = _annotation_centre(frame_height, dtype)
    d = _decode_scalar(jnp.asarray(distance, dtype), distance_scale, coding)
    f = _decode_scalar(jnp.asarray(focal, dtype), focal_scale, coding)
    fields = jnp.broadcast_arrays(azimuth, elevation, theta, d, f, cx_ann - centre_x, cy_ann - centre_y)
    return jnp.stack(fields, axis=-1)


def projection_original(pose: jax.Array, frame_height, original_hw) -> jax.Array:
    """``P`` ``(..., 3, 4)`` in original-photo pixels of a release pose ``(..., 7)``.

    :func:`fgpose.camera.projection_matrix` with ``image_size = (H, W)``.
    """
    pose = _as_float(pose)
    original_hw = jnp.asarray(original_hw, pose.dtype)
    return camera.projection_matrix(
        camera.Pose.from_array(pose),
        jnp.asarray(frame_height, pose.dtype),
        image_size=(original_hw[..., 0], original_hw[..., 1]),
    )


def projection_input(pose: jax.Array, frame_height, original_hw, scale) -> jax.Array:
    """``P`` ``(..., 3, 4)`` in input-frame pixels (the photo resized by ``scale``)."""
    pose = _as_float(pose)
    original_hw = jnp.asarray(original_hw, pose.dtype)
    scale = jnp.asarray(scale, pose.dtype)
    return camera.projection_matrix(
        camera.Pose.from_array(pose),
        jnp.asarray(frame_height, pose.dtype),
        image_size=(original_hw[..., 0] * scale, original_hw[..., 1] * scale),
    )


__all__ = [
    "BOX_EPS",
    "decode_pose",
    "encode_pose_targets",
    "input_frame_transform",
    "normalize_quaternion",
    "projection_input",
    "projection_original",
]
