"""Make rendered location fields look like field-head output (training the pose-from-field net).

:class:`~fgpose.models.field_pose.FieldPoseNet` trains on clean rendered fields
(:func:`fgpose.synthetic.location_field_stream`) but runs on the field head's prediction,
which sees the object through an imperfect detection box, regresses noisy XYZ and has a
ragged silhouette. :func:`augment_field` imitates those three effects, in order:

1. **Box jitter** (the RoI is a detection, not the tight box): the centre moves by
   ``U(-box_shift, box_shift)`` box heights / widths and each side length is multiplied by
   ``exp(U(-box_log_scale, box_log_scale))`` independently (aspect changes too). A box that
   ends up smaller than, or shifted off, the object truncates it at the RoI edge; a larger one
   shows background. The ``S x S`` field of the jittered box is sampled exactly like the
   field head's targets (:func:`fgpose.models.field_targets.sample_roi_fields`: foreground =
   bilinear mask ``>= 0.5``, mask-normalised bilinear XYZ), so with every augmentation off
   the output *is* the head's target.
2. **Boundary**: with probability ``morph_prob`` the foreground is eroded or dilated (equally
   likely) by one ``S x S`` pixel (3 x 3 min / max; the RoI border does not erode: truncation
   stays truncation); then every pixel of the resulting boundary band (dilation minus erosion)
   flips between foreground and background with probability ``boundary_flip`` (ragged edges).
   Pixels that become foreground take the mean XYZ of the original foreground in their 5 x 5
   neighbourhood (a smooth extrapolation, as a regressor produces; one with no original
   foreground within 2 pixels is dropped); pixels that become background get XYZ 0.
3. **XYZ noise**: i.i.d. Gaussian ``N(0, xyz_sigma^2)`` (model units) on every foreground
   channel value.

The foreground probability returned with the field is the final mask's 3 x 3 box-filter mean
(1 inside, fractional across the edge), a stand-in for ``sigmoid`` of the head's logits, which
are soft at the silhouette.

Everything is ``jax.numpy`` with explicit PRNG keys and static shapes; :func:`augment_fields`
is the jitted batch version (only ``size`` is static: the strengths,
:class:`FieldAugmentation`, are a pytree of traced scalars, so changing them does not
recompile).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from fgpose.models.field_targets import sample_roi_fields

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FieldAugmentation:
    """Strengths of the augmentation (module docstring); a pytree of traced scalars.

    Attributes:
      box_shift: largest centre shift, fraction of the box height / width.
      box_log_scale: largest ``|log|`` of the per-side size factor.
      morph_prob: probability of a one-pixel erosion or dilation (half each).
      boundary_flip: probability that a pixel of the boundary band flips.
      xyz_sigma: XYZ noise standard deviation (model units; ShapeNet: unit bbox diagonal).

    The defaults are a starting point, to be matched to the trained field head's measured
    box and XYZ errors. ``FieldAugmentation(0, 0, 0, 0, 0)`` turns everything off.
    """

    box_shift: float = 0.1
    box_log_scale: float = 0.15
    morph_prob: float = 0.5
    boundary_flip: float = 0.2
    xyz_sigma: float = 0.01


def jitter_box(key: Array, box: Array, box_shift: float, box_log_scale: float) -> Array:
    """Randomly moved and resized box ``(4,)`` ``(y0, x0, y1, x1)`` (step 1 of the module doc)."""
    box = jnp.asarray(box, jnp.float32)
    k_shift, k_scale = jax.random.split(key)
    size = box[2:] - box[:2]  # (h, w)
    centre = 0.5 * (box[:2] + box[2:]) + size * jax.random.uniform(k_shift, (2,), minval=-box_shift, maxval=box_shift)
    size = size * jnp.exp(jax.random.uniform(k_scale, (2,), minval=-box_log_scale, maxval=box_log_scale))
    return jnp.concatenate([centre - 0.5 * size, centre + 0.5 * size])


def _window(x: Array, op, init: float, k: int) -> Array:
    """``k x k`` sliding ``op`` over the last two axes (SAME size; padding = ``init``)."""
    dims = (1,) * (x.ndim - 2) + (k, k)
    return jax.lax.reduce_window(x, init, op, dims, (1,) * x.ndim, "SAME")


def _erode(mask: Array) -> Array:
    return _window(mask.astype(jnp.float32), jax.lax.min, jnp.inf, 3) > 0.5


def _dilate(mask: Array) -> Array:
    return _window(mask.astype(jnp.float32), jax.lax.max, -jnp.inf, 3) > 0.5


def _box_mean(x: Array, k: int) -> Array:
    """``k x k`` sum over the last two axes divided by the window's in-image pixel count."""
    ones = jnp.ones(x.shape[-2:], jnp.float32)
    return _window(x, jax.lax.add, 0.0, k) / _window(ones, jax.lax.add, 0.0, k)


def augment_field(
    key: Array, field: Array, mask: Array, box: Array, size: int, params: FieldAugmentation | None = None
) -> dict[str, Array]:
    """One field-head-like ``S x S`` location field of a rendered field (module docstring).

    Args:
      key: PRNG key.
      field: ``(Hf, Wf, 3)`` rendered model-space XYZ (model units), 0 off the mask.
      mask: ``(Hf, Wf)`` bool foreground.
      box: ``(4,)`` object box ``(y0, x0, y1, x1)`` in field pixels (for a field of
        ``location_field_stream(crop_to_box=True)``: ``(0, 0, Hf, Wf)``).
      size: ``S`` (static).
      params: the augmentation strengths (default :class:`FieldAugmentation`).

    Returns:
      ``field`` ``(S, S, 3)`` float32 (0 off ``mask``), ``fg`` ``(S, S)`` float32 foreground
      probability, ``mask`` ``(S, S)`` bool, ``box`` ``(4,)`` the jittered box (field pixels).
    """
    p = FieldAugmentation() if params is None else params
    k_box, k_morph, k_flip, k_noise = jax.random.split(key, 4)
    roi = jitter_box(k_box, box, p.box_shift, p.box_log_scale)
    xyz0, m0 = (a[0] for a in sample_roi_fields(field, mask, roi[None], size))

    u = jax.random.uniform(k_morph)
    m1 = jnp.where(u < 0.5 * p.morph_prob, _erode(m0), jnp.where(u > 1.0 - 0.5 * p.morph_prob, _dilate(m0), m0))
    band = _dilate(m1) & ~_erode(m1)
    m2 = m1 ^ (band & jax.random.bernoulli(k_flip, p.boundary_flip, m1.shape))

    m0f = m0.astype(jnp.float32)
    count = _box_mean(m0f, 5)
    fill = jnp.moveaxis(_box_mean(jnp.moveaxis(xyz0, -1, 0) * m0f, 5), 0, -1) / jnp.maximum(count, 1e-6)[..., None]
    m2 = m2 & (m0 | (count > 0))
    xyz = jnp.where(m0[..., None], xyz0, fill)
    xyz = xyz + p.xyz_sigma * jax.random.normal(k_noise, xyz.shape)
    xyz = jnp.where(m2[..., None], xyz, 0.0)
    return {"field": xyz, "fg": _box_mean(m2.astype(jnp.float32), 3), "mask": m2, "box": roi}


@functools.partial(jax.jit, static_argnames=("size",))
def augment_fields(
    key: Array, field: Array, mask: Array, box: Array, size: int, params: FieldAugmentation | None = None
) -> dict[str, Array]:
    """:func:`augment_field` over a batch: ``field (N, Hf, Wf, 3)``, ``mask (N, Hf, Wf)``,
    ``box (N, 4)`` -> ``field (N, S, S, 3)``, ``fg (N, S, S)``, ``mask (N, S, S)``,
    ``box (N, 4)``; example ``n`` uses ``jax.random.split(key, N)[n]``."""
    keys = jax.random.split(key, field.shape[0])
    return jax.vmap(lambda k, f, m, b: augment_field(k, f, m, b, size, params))(keys, field, mask, box)


__all__ = ["FieldAugmentation", "augment_field", "augment_fields", "jitter_box"]
