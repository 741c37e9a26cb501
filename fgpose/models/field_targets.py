"""Location-field targets of RoIs, and the horizontal flip of a location field.

Frames. A dataset's ``location_field`` ``(Hf, Wf, 3)`` and ``mask`` ``(Hf, Wf)`` are at the
*field resolution*: the original photo ``(H, W)`` resized to ``(Hf, Wf)`` (pixel ``(r, c)``
centred at ``(c + 0.5, r + 0.5)``; its projection is ``camera.projection_matrix(pose,
frame_height, image_size=(Hf, Wf))``). The network's input frame is the photo resized by
``scale``, so a point at input pixel ``(x, y)`` lies at field pixel ``(x sx, y sy)`` with
:func:`input_to_field_scale` ``(sy, sx) = (Hf / (H scale), Wf / (W scale))`` (both frames start
at the photo's top-left corner; continuous coordinates make resizes pure scales). A field
already resized to the input frame (:func:`fgpose.data.preprocess.preprocess_example` with
``with_fields``) has ``(sy, sx) = (1, 1)``.

Targets (:func:`roi_field_targets`). Bin ``(i, j)`` of the ``S x S`` grid of an RoI
``(y0, x0, y1, x1)`` (input pixels) is centred at ``y = y0 + (i + 0.5) (y1 - y0) / S``,
``x = x0 + (j + 0.5) (x1 - x0) / S``, i.e. the pixel centres of the RoI resized to ``S x S``
(``camera.projection_matrix(..., image_size=(S, S), crop_box=box)``). At each bin centre the
mask and the field are sampled bilinearly (RoIAlign, ``aligned=True``, one sample per bin:
:func:`fgpose.models.roi_align.roi_align`, whose samples beyond one pixel outside the field
read 0 and whose samples within it read the clamped edge), like Mask R-CNN's mask targets:

* foreground: interpolated mask ``m >= 0.5``;
* XYZ: **mask-normalised bilinear** interpolation ``bilinear(field) / m`` on the foreground
  (the field is 0 off the mask, so this is the bilinear average of the *foreground*
  neighbours only: no pull towards 0 at the silhouette), 0 elsewhere.

Why not plain bilinear or nearest: plain bilinear mixes XYZ with the zeros off the object
(boundary points pulled towards the model origin); nearest neighbour never mixes but is
blocky at ``S`` above the field's resolution and off by up to half a field pixel everywhere.
Mask-normalised bilinear is smooth, exact on planar patches and, because perspective maps a
convex combination of points into the convex hull of their projections, every target point
projects inside the square of its (<= 4) foreground neighbours, i.e. within about one field
pixel of its bin centre (tested). Its one compromise: across a *self-occlusion* edge (two
foreground neighbours on different surfaces) the target is a point between the surfaces,
not on the model; such bins are a thin 1-pixel line.

Flip (:func:`flip_field`): the horizontal image flip of
:mod:`fgpose.data.preprocess` (photo ``x -> W - x``, pose by
:func:`~fgpose.data.preprocess.flip_pose`) maps the surface point ``X`` seen at a pixel to the
mirrored point ``S X`` at the mirrored pixel, ``S`` negating the model coordinate normal to the
object's symmetry plane: ``Z`` for ShapeNet cars and airplanes (``+X`` front, ``+Y`` up,
symmetric about ``z = 0``; flipped pose ``(pi - a, e, -t, d, f, -u, v)``), ``X`` for objects
symmetric about ``x = 0`` (flipped pose ``(-a, e, -t, d, f, -u, v)``). So the field and mask
are mirrored left-right and that one XYZ channel is negated; the flipped field then reprojects
exactly through the flipped pose (tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fgpose.models.roi_align import roi_align

Array = jax.Array

FOREGROUND_THRESHOLD = 0.5
"""A bin is foreground when its bilinearly interpolated mask is at least this."""

LATERAL_AXIS = {"x": 0, "z": 2}
"""Model-space axis normal to the object's symmetry plane, by name (ShapeNet: ``"z"``).

The same names as :data:`fgpose.data.preprocess.SYMMETRY_AXES`."""


def input_to_field_scale(field_hw, original_hw, scale) -> Array:
    """``(..., 2)`` ``(sy, sx)``: field pixels per input pixel.

    Args:
      field_hw: ``(..., 2)`` field ``(Hf, Wf)``.
      original_hw: ``(..., 2)`` original photo ``(H, W)``.
      scale: ``(...)`` input pixels per original pixel.
    """
    field_hw = jnp.asarray(field_hw, jnp.float32)
    original_hw = jnp.asarray(original_hw, jnp.float32)
    return field_hw / (original_hw * jnp.asarray(scale, jnp.float32)[..., None])


def sample_roi_fields(field: Array, mask: Array, boxes: Array, size: int) -> tuple[Array, Array]:
    """``S x S`` location-field targets of boxes given in *field* pixels (module docstring).

    Args:
      field: ``(Hf, Wf, 3)`` model-space XYZ (any float dtype, e.g. the dataset's float16),
        0 off the mask.
      mask: ``(Hf, Wf)`` (or ``(Hf, Wf, 1)``) bool or {0, 1} foreground.
      boxes: ``(R, 4)`` ``(y0, x0, y1, x1)`` in field pixels.
      size: ``S`` (static).

    Returns:
      ``(xyz, fg)``: ``(R, S, S, 3)`` float32 XYZ (0 off the foreground) and ``(R, S, S)``
      bool foreground.
    """
    m = jnp.asarray(mask).reshape(jnp.shape(field)[:2]).astype(jnp.float32)
    table = jnp.concatenate([m[..., None], jnp.asarray(field, jnp.float32) * m[..., None]], axis=-1)
    pooled = roi_align(table, jnp.asarray(boxes, jnp.float32), size, 1.0, 1, aligned=True)
    weight = pooled[..., 0]
    fg = weight >= FOREGROUND_THRESHOLD
    xyz = jnp.where(fg[..., None], pooled[..., 1:] / jnp.maximum(weight, FOREGROUND_THRESHOLD)[..., None], 0.0)
    return xyz, fg


def roi_field_targets(
    field: Array, mask: Array, boxes: Array, field_scale: Array, size: int
) -> tuple[Array, Array]:
    """Location-field targets of RoIs given in network-input pixels.

    Args:
      field: ``(Hf, Wf, 3)`` location field at the field resolution.
      mask: ``(Hf, Wf)`` foreground at the field resolution.
      boxes: ``(R, 4)`` RoIs ``(y0, x0, y1, x1)`` in input pixels.
      field_scale: ``(2,)`` ``(sy, sx)`` field pixels per input pixel
        (:func:`input_to_field_scale`).
      size: ``S`` (static), e.g. 28 for a head on 14 x 14 RoI features.

    Returns:
      ``(xyz (R, S, S, 3) float32, fg (R, S, S) bool)``; use ``jax.vmap`` over examples.
    """
    sy, sx = (jnp.asarray(field_scale, jnp.float32)[i] for i in range(2))
    boxes = jnp.asarray(boxes, jnp.float32) * jnp.stack([sy, sx, sy, sx])
    return sample_roi_fields(field, mask, boxes, size)


def flip_field(field: Array, mask: Array, symmetry_axis: str = "z") -> tuple[Array, Array]:
    """Horizontal flip of location fields, consistent with the photo + pose flip.

    Args:
      field: ``(..., H, W, 3)`` model-space XYZ.
      mask: ``(..., H, W)`` foreground.
      symmetry_axis: ``"z"`` (ShapeNet cars/airplanes) or ``"x"``: the model axis normal
        to the object's symmetry plane, whose coordinate is negated.

    Returns:
      ``(field', mask')``: columns reversed (pixel ``j`` <- ``W - 1 - j``) and
      ``field'[..., k] = -field[..., k]`` for the lateral axis ``k``; same shapes and dtypes.
    """
    if symmetry_axis not in LATERAL_AXIS:
        raise ValueError(f"symmetry_axis must be one of {sorted(LATERAL_AXIS)}, got {symmetry_axis!r}")
    field = jnp.asarray(field)
    sign = jnp.ones((3,), field.dtype).at[LATERAL_AXIS[symmetry_axis]].set(-1)
    return field[..., ::-1, :] * sign, jnp.asarray(mask)[..., ::-1]


__all__ = [
    "FOREGROUND_THRESHOLD",
    "LATERAL_AXIS",
    "flip_field",
    "input_to_field_scale",
    "roi_field_targets",
    "sample_roi_fields",
]
