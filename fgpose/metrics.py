"""Pose-estimation metrics of Wang et al. 2018 (Section 5, Table 2 and Figure 8).

* ``e_R = ||log(R_pred^T R_gt)||_F / sqrt(2)``: the geodesic distance between two rotations,
  i.e. the angle (radians, in ``[0, pi]``) of the relative rotation;
* ``e_ADD``: mean over a model's vertices of the pixel distance between the vertex projected
  with the predicted and with the ground-truth 3x4 projection matrix;
  ``~e_ADD = e_ADD / diag``, with ``diag`` the diagonal of the tight 2D box of the model
  projected with the ground-truth matrix (scale-free, so images of any size compare);
* accuracies: the fraction of samples whose error is *strictly* below a threshold
  (``Acc_pi/6`` for ``e_R``, ``Acc_0.1`` for ``~e_ADD``), and accuracy-versus-threshold curves.

Missing predictions (e.g. missed detections) are failures: pass a ``valid`` mask, or set their
error to ``+inf``. ``NaN`` errors are treated as failures too.

Every function is pure ``jax.numpy``, jit-able and batched over leading axes; shape checks are
on static shapes and raise ``ValueError``. Projection is :func:`fgpose.camera.project_points`
(the release convention, see :mod:`fgpose.camera`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fgpose import camera

ROTATION_THRESHOLD = math.pi / 6
"""Threshold (radians) of the rotation accuracy ``Acc_pi/6``."""

ADD_THRESHOLD = 0.1
"""Threshold of the normalised-ADD accuracy ``Acc_0.1``."""


# ----------------------------------------------------------------------------- helpers


def _as_float(x) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _broadcast_shapes(what: str, *shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise ValueError(f"{what}: batch shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def _failures_to_inf(errors: jax.Array, valid) -> jax.Array:
    """``errors`` with invalid and NaN entries replaced by ``+inf``."""
    errors = _as_float(errors)
    if errors.ndim < 1:
        raise ValueError(f"errors must have at least one (sample) axis, got shape {errors.shape}")
    bad = jnp.isnan(errors)
    if valid is not None:
        valid = jnp.asarray(valid)
        if valid.shape != errors.shape:
            raise ValueError(f"valid mask shape {valid.shape} differs from errors shape {errors.shape}")
        if valid.dtype != jnp.bool_:
            raise ValueError(f"valid mask must be boolean, got dtype {valid.dtype}")
        bad = bad | ~valid
    return jnp.where(bad, jnp.inf, errors)


# ----------------------------------------------------------------------------- rotation


def rotation_error(r_pred: jax.Array, r_gt: jax.Array) -> jax.Array:
    """Geodesic rotation error ``e_R = ||log(R_pred^T R_gt)||_F / sqrt(2)``.

    Computed as the angle of the relative rotation through its quaternion
    (:func:`fgpose.camera.rotation_angle`), which stays accurate near 0 and near pi, where
    ``arccos((tr - 1) / 2)`` loses precision.

    Args:
      r_pred: ``(..., 3, 3)`` predicted rotation matrices.
      r_gt: ``(..., 3, 3)`` ground-truth rotation matrices; batch shapes must broadcast.

    Returns:
      ``(...)`` errors in radians, in ``[0, pi]``, same float dtype as the inputs.

    Raises:
      ValueError: if an input is not ``(..., 3, 3)`` or the batch shapes do not broadcast.
    """
    r_pred, r_gt = _as_float(r_pred), _as_float(r_gt)
    for name, r in (("r_pred", r_pred), ("r_gt", r_gt)):
        if r.ndim < 2 or r.shape[-2:] != (3, 3):
            raise ValueError(f"{name} must have shape (..., 3, 3), got {r.shape}")
    _broadcast_shapes("rotation_error", r_pred.shape[:-2], r_gt.shape[:-2])
    relative = jnp.swapaxes(r_pred, -1, -2) @ r_gt
    return camera.rotation_angle(relative)


# ----------------------------------------------------------------------------- ADD


def add_error(
    p_pred: jax.Array,
    p_gt: jax.Array,
    vertices: jax.Array,
    vertex_mask: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Average 2D distance of the model's projected vertices, raw and normalised.

    Args:
      p_pred: ``(..., 3, 4)`` predicted projection matrices (release convention: pixels are
        ``P X~`` divided by its third row, see :func:`fgpose.camera.project_points`).
      p_gt: ``(..., 3, 4)`` ground-truth projection matrices in the same image frame.
      vertices: ``(..., N, 3)`` model-space vertices. Batches of different meshes are padded
        to a common ``N`` and masked; the padding's values are ignored (even NaN).
      vertex_mask: optional boolean ``(..., N)``; ``True`` marks real vertices. ``None``: all
        vertices count.

      The batch shapes of ``p_pred``, ``p_gt``, ``vertices`` and ``vertex_mask`` must
      broadcast to a common ``(...)``.

    Returns:
      ``(e_add, e_add_normalised)``, each ``(...)``: ``e_add`` in pixels of the matrices'
      frame, and ``e_add`` divided by the diagonal (pixels) of the tight bounding box of the
      vertices projected with ``p_gt`` (unitless). A sample with no valid vertex gives NaN
      (which :func:`accuracy` and :func:`pose_metrics` count as a failure).

    Raises:
      ValueError: on wrong trailing shapes, a non-boolean mask, or batch shapes that do not
        broadcast.
    """
    p_pred, p_gt, vertices = _as_float(p_pred), _as_float(p_gt), _as_float(vertices)
    for name, p in (("p_pred", p_pred), ("p_gt", p_gt)):
        if p.ndim < 2 or p.shape[-2:] != (3, 4):
            raise ValueError(f"{name} must have shape (..., 3, 4), got {p.shape}")
    if vertices.ndim < 2 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (..., N, 3), got {vertices.shape}")
    n = vertices.shape[-2]
    if vertex_mask is None:
        vertex_mask = jnp.ones(vertices.shape[:-1], jnp.bool_)
    else:
        vertex_mask = jnp.asarray(vertex_mask)
        if vertex_mask.dtype != jnp.bool_:
            raise ValueError(f"vertex_mask must be boolean, got dtype {vertex_mask.dtype}")
        if vertex_mask.ndim < 1 or vertex_mask.shape[-1] != n:
            raise ValueError(
                f"vertex_mask must have shape (..., N) with N = {n} (from vertices {vertices.shape}), "
                f"got {vertex_mask.shape}"
            )
    batch = _broadcast_shapes(
        "add_error", p_pred.shape[:-2], p_gt.shape[:-2], vertices.shape[:-2], vertex_mask.shape[:-1]
    )
    vertices = jnp.broadcast_to(vertices, batch + (n, 3))
    vertex_mask = jnp.broadcast_to(vertex_mask, batch + (n,))
    p_pred = jnp.broadcast_to(p_pred, batch + (3, 4))
    p_gt = jnp.broadcast_to(p_gt, batch + (3, 4))

    x_pred, _ = camera.project_points(p_pred, vertices)
    x_gt, _ = camera.project_points(p_gt, vertices)
    # Padding may project to NaN/inf: select before reducing so nothing leaks into the sums.
    dist = jnp.where(vertex_mask, jnp.linalg.norm(x_pred - x_gt, axis=-1), 0.0)
    count = jnp.sum(vertex_mask, axis=-1).astype(dist.dtype)
    e_add = jnp.where(count > 0, jnp.sum(dist, axis=-1) / jnp.maximum(count, 1.0), jnp.nan)

    m = vertex_mask[..., None]
    lo = jnp.min(jnp.where(m, x_gt, jnp.inf), axis=-2)
    hi = jnp.max(jnp.where(m, x_gt, -jnp.inf), axis=-2)
    extent = jnp.where(count[..., None] > 0, hi - lo, jnp.nan)
    diagonal = jnp.linalg.norm(extent, axis=-1)
    return e_add, e_add / diagonal


# ----------------------------------------------------------------------------- accuracies


def accuracy(errors: jax.Array, threshold, valid: jax.Array | None = None) -> jax.Array:
    """Fraction of samples with ``error < threshold`` (strict), over the last axis.

    Args:
      errors: ``(..., M)`` errors of ``M`` samples (any unit). NaN counts as a failure.
      threshold: scalar, or an array broadcastable to ``(...)``, in the errors' unit.
      valid: optional boolean ``(..., M)``; ``False`` entries count as failures.

    Returns:
      ``(...)`` fractions in ``[0, 1]`` (not percent).
    """
    errors = _failures_to_inf(errors, valid)
    threshold = jnp.asarray(threshold, errors.dtype)
    _broadcast_shapes("accuracy", threshold.shape, errors.shape[:-1])
    return jnp.mean(errors < threshold[..., None], axis=-1)


def accuracy_curve(errors: jax.Array, thresholds: jax.Array, valid: jax.Array | None = None) -> jax.Array:
    """Accuracy versus threshold (the paper's Figure 8), vectorised over thresholds.

    Sorts the errors once and counts those strictly below each threshold by binary search,
    so the cost is ``O((M + T) log M)`` per curve.

    Args:
      errors: ``(..., M)`` errors of ``M`` samples. NaN counts as a failure.
      thresholds: ``(T,)`` thresholds in the errors' unit (any order).
      valid: optional boolean ``(..., M)``; ``False`` entries count as failures.

    Returns:
      ``(..., T)`` fractions in ``[0, 1]``: ``out[..., t] = mean(errors[...] < thresholds[t])``.
      Non-decreasing in the threshold.
    """
    errors = _failures_to_inf(errors, valid)
    thresholds = jnp.asarray(thresholds, errors.dtype)
    if thresholds.ndim != 1:
        raise ValueError(f"thresholds must have shape (T,), got {thresholds.shape}")
    batch, m = errors.shape[:-1], errors.shape[-1]
    flat = jnp.sort(errors.reshape((-1, m)), axis=-1)
    counts = jax.vmap(lambda e: jnp.searchsorted(e, thresholds, side="left"))(flat)
    return (counts / m).astype(errors.dtype).reshape(batch + thresholds.shape)


def pose_metrics(
    rot_err_rad: jax.Array,
    add_norm: jax.Array | None = None,
    valid: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """The columns of the paper's Table 2, reduced over the last (sample) axis.

    Args:
      rot_err_rad: ``(..., M)`` rotation errors ``e_R`` in radians.
      add_norm: optional ``(..., M)`` normalised errors ``~e_ADD`` (unitless); when ``None``
        only the rotation columns are returned.
      valid: optional boolean ``(..., M)``; ``False`` (e.g. a missed detection) makes both
        errors ``+inf``. NaN errors are ``+inf`` too. Such failures make the means infinite
        and count against the medians and accuracies.

    Returns:
      A dict of ``(...)`` arrays:
        ``"rot_median_deg"``, ``"rot_mean_deg"``: median and mean ``e_R`` in degrees;
        ``"rot_acc_pi_6"``: percentage (0-100) with ``e_R < pi/6``;
        ``"add_median"``, ``"add_mean"``: median and mean ``~e_ADD``;
        ``"add_acc_0.1"``: percentage with ``~e_ADD < 0.1``;
        ``"count"``: the number of samples ``M`` (int32).
    """
    rot = _failures_to_inf(rot_err_rad, valid)
    out = {
        "rot_median_deg": jnp.degrees(jnp.median(rot, axis=-1)),
        "rot_mean_deg": jnp.degrees(jnp.mean(rot, axis=-1)),
        "rot_acc_pi_6": 100.0 * accuracy(rot, ROTATION_THRESHOLD),
    }
    if add_norm is not None:
        add = _failures_to_inf(add_norm, valid)
        if add.shape != rot.shape:
            raise ValueError(f"add_norm shape {add.shape} differs from rot_err_rad shape {rot.shape}")
        out.update(
            {
                "add_median": jnp.median(add, axis=-1),
                "add_mean": jnp.mean(add, axis=-1),
                "add_acc_0.1": 100.0 * accuracy(add, ADD_THRESHOLD),
            }
        )
    out["count"] = jnp.full(rot.shape[:-1], rot.shape[-1], jnp.int32)
    return out


__all__ = [
    "ADD_THRESHOLD",
    "ROTATION_THRESHOLD",
    "accuracy",
    "accuracy_curve",
    "add_error",
    "pose_metrics",
    "rotation_error",
]
