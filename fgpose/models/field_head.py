"""Location-field RoI head (Wang et al. 2018, section 4.2), Flax NNX, and its losses.

A Mask R-CNN-style branch on the RoIAlign features of each RoI (Detectron2
``MaskRCNNConvUpsampleHead``) regresses the object's 3D *location field* inside the RoI:

    RoI features (..., R, R, C)                 (RoIAlign, e.g. R = 14 on P2..P5)
      -> num_conv x [3x3 conv (width), optional GroupNorm, ReLU]
      -> 2x2 transposed conv, stride 2 (width), ReLU          -> (..., S, S, width), S = 2R
      -> 1x1 conv to 4 channels
      -> xyz (..., S, S, 3) linear, fg_logit (..., S, S)

``xyz`` is the model-space XYZ (model units; ShapeNet: unit bounding-box diagonal) of the
visible surface seen at the centre of each of the ``S x S`` RoI bins (bin ``(i, j)`` of a box
``(y0, x0, y1, x1)`` is centred at ``(x0 + (j + 0.5) (x1 - x0) / S, y0 + (i + 0.5) (y1 - y0) /
S)``); ``fg_logit`` is the logit of the bin centre lying on the object. Targets come from
:func:`fgpose.models.field_targets.roi_field_targets` (0 off the object); the XYZ regression
is only supervised on the target foreground, so ``xyz`` off the object is meaningless: gate it
with ``sigmoid(fg_logit)`` before using it (:mod:`fgpose.models.field_pose` does).

Parameters are ``float32`` ``nnx.Param``; ``dtype`` sets the computation dtype; outputs and
losses are ``float32``. Initialisation follows Detectron2: convs and the transposed conv He
normal (``fan_out``, ``c2_msra_fill``), zero biases; the predictor ``N(0, 0.001^2)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from fgpose.models.boxes import sigmoid_bce_with_logits, smooth_l1_loss
from fgpose.models.resnet import make_norm

Array = jax.Array

_msra = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # Detectron2 c2_msra_fill

def _layer_kw(dtype: Any, rngs: nnx.Rngs) -> dict[str, Any]:
    """Keyword arguments shared by every layer: float32 params, ``dtype`` computation."""
    return dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)


DEFAULT_XYZ_BETA = 0.05
"""Default smooth-L1 ``beta`` of the XYZ loss, model units (5 % of the unit bbox diagonal)."""


class ConvNormReLU(nnx.Module):
    """``k x k`` conv (symmetric zero padding ``k // 2``), optional GroupNorm, ReLU, NHWC.

    The conv has a bias only without a norm. A stride-2 layer maps size ``n`` to
    ``ceil(n / 2)``.

    Args:
      cin, cout: channels; kernel: ``k``; stride: spatial stride.
      norm: ``None`` or ``'group'`` (:func:`fgpose.models.resnet.make_norm`: 32 groups, fewer
        for narrow layers).
      dtype: computation dtype (params float32).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        *,
        kernel: int = 3,
        stride: int = 1,
        norm: str | None = None,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        p = kernel // 2
        self.conv = nnx.Conv(
            cin, cout, (kernel, kernel), strides=stride, padding=((p, p), (p, p)), use_bias=norm is None,
            kernel_init=_msra, **_layer_kw(dtype, rngs),
        )
        self.norm = None if norm is None else make_norm(norm, cout, dtype=dtype, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        """``(N, H, W, cin)`` -> ``(N, ceil(H / stride), ceil(W / stride), cout)``."""
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return jax.nn.relu(x)


class FieldHead(nnx.Module):
    """Conv stack + 2x upsampling regressing the location field and foreground of RoIs.

    Args:
      in_channels: channels ``C`` of the RoI features (the FPN width).
      width: channels of the conv stack and the transposed conv (256 in Mask R-CNN).
      num_conv: number of 3x3 conv layers (4 in Mask R-CNN).
      norm: ``None`` (Mask R-CNN default) or ``'group'``.
      dtype: computation dtype.
    """

    def __init__(
        self,
        in_channels: int,
        *,
        width: int = 256,
        num_conv: int = 4,
        norm: str | None = None,
        dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if num_conv < 0:
            raise ValueError(f"num_conv must be >= 0, got {num_conv}")
        dims = [in_channels] + [width] * num_conv
        self.convs = nnx.List(
            [ConvNormReLU(a, b, norm=norm, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])]
        )
        kw = _layer_kw(dtype, rngs)
        self.deconv = nnx.ConvTranspose(dims[-1], width, (2, 2), strides=2, padding="VALID", kernel_init=_msra, **kw)
        self.predictor = nnx.Conv(width, 4, (1, 1), padding="VALID", kernel_init=nnx.initializers.normal(0.001), **kw)
        self.dtype = dtype

    def __call__(self, roi_features: Array) -> tuple[Array, Array]:
        """Location field and foreground logits of RoIs.

        Args:
          roi_features: ``(..., R, R, C)`` RoIAlign features (any leading axes, e.g.
            ``(B, num_rois)``).

        Returns:
          ``(xyz, fg_logit)``: float32 ``(..., 2R, 2R, 3)`` model-space XYZ (model units) and
          ``(..., 2R, 2R)`` foreground logits.
        """
        lead = roi_features.shape[:-3]
        x = roi_features.reshape((-1,) + roi_features.shape[-3:]).astype(self.dtype)
        for layer in self.convs:
            x = layer(x)
        x = jax.nn.relu(self.deconv(x))
        out = self.predictor(x).astype(jnp.float32)
        out = out.reshape(lead + out.shape[1:])
        return out[..., :3], out[..., 3]


def field_losses(
    xyz: Array,
    fg_logit: Array,
    xyz_target: Array,
    fg_target: Array,
    valid: Array,
    *,
    beta: float = DEFAULT_XYZ_BETA,
) -> dict[str, Array]:
    """Masked losses of the location-field head over a static set of RoIs.

    Args:
      xyz: ``(..., S, S, 3)`` predicted XYZ (model units).
      fg_logit: ``(..., S, S)`` predicted foreground logits.
      xyz_target: ``(..., S, S, 3)`` target XYZ (only read on the target foreground).
      fg_target: ``(..., S, S)`` bool (or {0, 1}) target foreground.
      valid: ``(...)`` bool, the RoIs that take a loss (foreground RoIs; padding and
        background RoIs are False).
      beta: smooth-L1 ``beta`` of the XYZ loss in model units (``< 1e-5``: L1).

    Returns:
      float32 scalars ``{'xyz': ..., 'fg': ...}``:

      * ``xyz``: per RoI, the mean over its target-foreground pixels of the smooth-L1 summed
        over X, Y, Z; then the mean over the valid RoIs with at least one foreground pixel
        (so every RoI weighs the same whatever its object's area);
      * ``fg``: sigmoid binary cross-entropy averaged over the ``S x S`` pixels of each RoI,
        then over the valid RoIs (Mask R-CNN's mask loss).

      Both are 0 when no RoI is valid.
    """
    valid = jnp.asarray(valid, bool)
    fg = jnp.asarray(fg_target).astype(bool)
    err = xyz.astype(jnp.float32) - jax.lax.stop_gradient(jnp.asarray(xyz_target, jnp.float32))
    per_pixel = jnp.sum(smooth_l1_loss(err, beta), axis=-1)  # (..., S, S)
    n_fg = jnp.sum(fg, axis=(-2, -1))
    per_roi = jnp.sum(jnp.where(fg, per_pixel, 0.0), axis=(-2, -1)) / jnp.maximum(n_fg, 1)
    has_fg = valid & (n_fg > 0)
    loss_xyz = jnp.sum(jnp.where(has_fg, per_roi, 0.0)) / jnp.maximum(jnp.sum(has_fg), 1)
    bce = jnp.mean(sigmoid_bce_with_logits(fg_logit, jax.lax.stop_gradient(fg.astype(jnp.float32))), axis=(-2, -1))
    loss_fg = jnp.sum(jnp.where(valid, bce, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
    return {"xyz": loss_xyz.astype(jnp.float32), "fg": loss_fg.astype(jnp.float32)}


__all__ = ["DEFAULT_XYZ_BETA", "ConvNormReLU", "FieldHead", "field_losses"]
