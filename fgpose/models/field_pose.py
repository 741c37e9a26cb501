"""Pose from a location field (Wang et al. 2018, section 4.2): a small conv + FC network.

:class:`FieldPoseNet` regresses the rotation quaternion of an object from its ``S x S``
location field inside an RoI alone (no appearance):

    field (..., S, S, 3) model-space XYZ, fg (..., S, S) foreground probability
      -> input (..., S, S, 4) = [field * fg, fg]   (XYZ gated by the foreground)
      -> len(channels) x [3x3 conv stride 2, optional GroupNorm, ReLU]   S -> ceil(S / 2^k)
      -> flatten -> num_fc x [FC (fc_dim), ReLU] -> FC (4)
      -> raw quaternion (..., 4) (w, x, y, z) of R = Rz(theta) Rx(elevation) Ry(azimuth)

It is trained on synthetic fields rendered from the dataset's CAD pool
(:func:`fgpose.synthetic.location_field_stream`, made to look like field-head output by
:mod:`fgpose.models.field_augment`) with the detector's quaternion loss
(:func:`quaternion_loss`: smooth-L1 summed over the 4 components against the ``w >= 0``
target, the minimum over the predicted ``q`` and ``-q`` when sign invariant, as
:meth:`fgpose.models.detector.PoseDetector.loss_from_outputs`). At test time it runs on the
field head's output behind a stop-gradient (:func:`field_pose_from_predicted_field`), and its
quaternion is fused with the appearance head's (:mod:`fgpose.models.quaternion_fusion`).

Gating: the field head's XYZ is unsupervised (meaningless) off the object, and the synthetic
fields are 0 there, so the network multiplies the field by the foreground probability itself:
both sources then show the same input off the object.

Parameters are ``float32`` ``nnx.Param``; ``dtype`` sets the computation dtype; outputs and
losses are ``float32``.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fgpose.models.boxes import smooth_l1_loss
from fgpose.models.field_head import ConvNormReLU
from fgpose.models.pose_coding import normalize_quaternion
from fgpose.models.quaternion_fusion import canonical, quaternion_angle

Array = jax.Array

_fc_init = nnx.initializers.variance_scaling(1.0, "fan_in", "uniform")  # c2_xavier_fill


class FieldPoseNet(nnx.Module):
    """Quaternion regression from an ``S x S`` location field (module docstring).

    Args:
      size: ``S``, the side of the input fields (static; 28 for the default field head).
      channels: widths of the stride-2 conv layers.
      fc_dim: width of the hidden FC layers.
      num_fc: number of hidden FC + ReLU layers (>= 0).
      norm: ``None`` or ``'group'`` after each conv.
      dtype: computation dtype.
    """

    def __init__(
        self,
        size: int = 28,
        *,
        channels: Sequence[int] = (32, 64, 128),
        fc_dim: int = 256,
        num_fc: int = 1,
        norm: str | None = None,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_fc < 0:
            raise ValueError(f"num_fc must be >= 0, got {num_fc}")
        self.size = int(size)
        dims = [4] + [int(c) for c in channels]
        self.convs = nnx.List(
            [ConvNormReLU(a, b, stride=2, norm=norm, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])]
        )
        side = self.size
        for _ in channels:
            side = -(-side // 2)
        fc_dims = [side * side * dims[-1]] + [fc_dim] * num_fc
        kw = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.fcs = nnx.List([nnx.Linear(a, b, kernel_init=_fc_init, **kw) for a, b in zip(fc_dims[:-1], fc_dims[1:])])
        self.quaternion_pred = nnx.Linear(fc_dims[-1], 4, kernel_init=nnx.initializers.normal(0.001), **kw)
        self.dtype = dtype

    def __call__(self, field: Array, fg: Array) -> Array:
        """Raw quaternion of location fields.

        Args:
          field: ``(..., S, S, 3)`` model-space XYZ (model units).
          fg: ``(..., S, S)`` foreground probability in ``[0, 1]`` (a binary mask, or
            ``sigmoid`` of the field head's logits).

        Returns:
          ``(..., 4)`` float32 raw ``(w, x, y, z)`` (any norm and sign; see
          :func:`predict_quaternion`).
        """
        s = self.size
        if field.shape[-3:] != (s, s, 3) or fg.shape[-2:] != (s, s):
            raise ValueError(f"FieldPoseNet({s}) needs (..., {s}, {s}, 3) and (..., {s}, {s}), got {field.shape}, {fg.shape}")
        lead = field.shape[:-3]
        p = fg.astype(jnp.float32)[..., None]
        x = jnp.concatenate([field.astype(jnp.float32) * p, p], axis=-1)
        x = x.reshape((-1, s, s, 4)).astype(self.dtype)
        for layer in self.convs:
            x = layer(x)
        x = x.reshape(x.shape[0], -1)
        for fc in self.fcs:
            x = jax.nn.relu(fc(x))
        return self.quaternion_pred(x).astype(jnp.float32).reshape(lead + (4,))


def quaternion_loss(pred: Array, target: Array, beta: float = 1.0, sign_invariant: bool = True) -> Array:
    """The detector's quaternion loss, per sample.

    Args:
      pred: ``(..., 4)`` raw predicted quaternions.
      target: ``(..., 4)`` unit target quaternions with ``w >= 0``.
      beta: smooth-L1 ``beta`` (``< 1e-5``: L1).
      sign_invariant: take the minimum over ``pred`` and ``-pred`` (``q`` and ``-q`` are the
        same rotation; near ``w = 0`` the canonical target's sign flips).

    Returns:
      ``(...)`` float32 smooth-L1 summed over the 4 components.
    """
    pred = pred.astype(jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    loss = jnp.sum(smooth_l1_loss(pred - target, beta), axis=-1)
    if sign_invariant:
        loss = jnp.minimum(loss, jnp.sum(smooth_l1_loss(pred + target, beta), axis=-1))
    return loss


def predict_quaternion(net: FieldPoseNet, field: Array, fg: Array) -> Array:
    """Unit quaternions ``(..., 4)`` with ``w >= 0`` of ``net(field, fg)``."""
    return canonical(normalize_quaternion(net(field, fg)))


def field_pose_loss(
    net: FieldPoseNet,
    field: Array,
    fg: Array,
    q_target: Array,
    *,
    valid: Array | None = None,
    beta: float = 1.0,
    sign_invariant: bool = True,
) -> tuple[Array, dict[str, Array]]:
    """Training loss of :class:`FieldPoseNet` on a batch of fields.

    Args:
      net: the network.
      field, fg: ``(N, S, S, 3)`` and ``(N, S, S)`` inputs (see :meth:`FieldPoseNet.__call__`).
      q_target: ``(N, 4)`` unit target quaternions with ``w >= 0``
        (``camera.quaternion_from_rotation``).
      valid: optional ``(N,)`` bool (padding examples False).
      beta, sign_invariant: as :func:`quaternion_loss`.

    Returns:
      ``(loss, metrics)``: float32 mean loss over the valid samples and
      ``{'rotation_error_deg': mean rotation error (degrees) of the valid samples}``.
    """
    pred = net(field, fg)
    per = quaternion_loss(pred, jax.lax.stop_gradient(q_target), beta, sign_invariant)
    valid = jnp.ones(per.shape, bool) if valid is None else jnp.asarray(valid, bool)
    n = jnp.maximum(jnp.sum(valid), 1)
    loss = jnp.sum(jnp.where(valid, per, 0.0)) / n
    err = jnp.sum(jnp.where(valid, quaternion_angle(pred, q_target), 0.0)) / n
    return loss, {"rotation_error_deg": jax.lax.stop_gradient(jnp.degrees(err)).astype(jnp.float32)}


def field_pose_from_predicted_field(field_pred: Array, fg_logit: Array, net: FieldPoseNet) -> Array:
    """The pose-from-field quaternion of field-head outputs, behind a stop-gradient.

    The field head's outputs are cut from the graph (``jax.lax.stop_gradient``) before the
    network sees them, so a loss on the result trains only ``net``: no gradient reaches the
    field head, the RoI features or the backbone.

    Args:
      field_pred: ``(..., S, S, 3)`` field-head XYZ (:class:`fgpose.models.field_head.FieldHead`).
      fg_logit: ``(..., S, S)`` its foreground logits (turned into probabilities by
        ``sigmoid``).
      net: the pose-from-field network.

    Returns:
      ``(..., 4)`` float32 raw quaternions (normalise with
      :func:`fgpose.models.pose_coding.normalize_quaternion` or fuse with
      :func:`fgpose.models.quaternion_fusion.fuse_quaternions`).
    """
    field = jax.lax.stop_gradient(field_pred)
    fg = jax.nn.sigmoid(jax.lax.stop_gradient(fg_logit).astype(jnp.float32))
    return net(field, fg)


__all__ = [
    "FieldPoseNet",
    "field_pose_from_predicted_field",
    "field_pose_loss",
    "predict_quaternion",
    "quaternion_loss",
]
