"""RoIAlign (Detectron2 ``ROIAlign`` / ``ROIAlignV2`` semantics), gather-based, jit-able.

For a box ``(y0, x0, y1, x1)`` in input pixels and ``spatial_scale = 1 / stride``
(``aligned=True``): ``start = y0 * scale - 0.5``, ``roi_h = (y1 - y0) * scale``
(with ``aligned=False``: no ``-0.5`` shift and ``roi_h >= 1``), ``bin = roi_h / S``;
bin ``p`` averages a ``g x g`` grid of bilinear samples at
``start + p * bin + (i + 0.5) * bin / g``. ``g = sampling_ratio`` or, when
``sampling_ratio <= 0``, ``ceil(roi_h / S)`` per RoI (adaptive; computed with a
static upper bound ``max_sampling_grid`` and masking — exact as long as
``ceil(roi / S) <= max_sampling_grid``, which the default bound guarantees for
boxes inside the feature map). A sample at ``y < -1`` or ``y > H`` (or the same
for x) contributes 0; otherwise ``y`` is clamped to ``>= 0`` and the upper
neighbour to ``H - 1`` exactly as in the reference ``bilinear_interpolate``.

Implementation: for every output bin the ``(g x g) x 4`` neighbouring feature
vectors are gathered from a flattened ``(sum_l H_l * W_l, C)`` feature table and
combined with the bilinear weights; multi-level pooling flattens all pyramid
levels into one table and offsets each RoI into its level (one gather, no
per-level recomputation).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


def _axis_weights(
    start: Array, length: Array, size: Array, out: int, grid: Array, gmax: int
) -> tuple[Array, Array]:
    """Sample indices/weights along one axis.

    Args:
      start, length: ``(R,)`` RoI start and length in feature pixels.
      size: ``(R,)`` int feature-map size along this axis (``H`` or ``W``).
      out: output size ``S``; grid: ``(R,)`` int samples per bin; gmax: static bound.

    Returns:
      ``idx (R, S, gmax, 2)`` int32 (low, high neighbour) and ``w (R, S, gmax, 2)``
      float32 weights, already divided by ``grid`` and zeroed for invalid samples.
    """
    dt = jnp.float32
    size_f = size.astype(dt)[:, None, None]
    gridf = grid.astype(dt)[:, None, None]
    bin_len = (length / out)[:, None, None]
    p = jnp.arange(out, dtype=dt)[None, :, None]
    i = jnp.arange(gmax, dtype=dt)[None, None, :]
    coord = start[:, None, None] + p * bin_len + (i + 0.5) * bin_len / jnp.maximum(gridf, 1.0)
    valid = (coord >= -1.0) & (coord <= size_f) & (i < gridf)
    c = jnp.maximum(coord, 0.0)
    low = jnp.floor(c)
    at_end = low >= size_f - 1.0
    low = jnp.where(at_end, size_f - 1.0, low)
    high = jnp.where(at_end, low, low + 1.0)
    c = jnp.where(at_end, low, c)
    lw = c - low  # weight of the high neighbour
    hw = 1.0 - lw
    scale = jnp.where(valid, 1.0 / jnp.maximum(gridf, 1.0), 0.0)
    w = jnp.stack([hw * scale, lw * scale], axis=-1)
    idx = jnp.stack([low, high], axis=-1).astype(jnp.int32)
    # keep gather indices in range even for invalid samples (their weight is 0)
    idx = jnp.clip(idx, 0, jnp.maximum(size[:, None, None, None] - 1, 0))
    return idx, w


def _roi_align_flat(
    table: Array,
    boxes: Array,
    heights: Array,
    widths: Array,
    offsets: Array,
    scales: Array,
    output_size: int,
    sampling_ratio: int,
    aligned: bool,
    max_sampling_grid: int,
) -> Array:
    """RoIAlign from a flattened feature table ``(N, C)``; per-RoI level geometry ``(R,)``."""
    dt = jnp.float32
    boxes = boxes.astype(dt)
    scales = scales.astype(dt)
    shift = 0.5 if aligned else 0.0
    y0 = boxes[:, 0] * scales - shift
    x0 = boxes[:, 1] * scales - shift
    rh = (boxes[:, 2] - boxes[:, 0]) * scales
    rw = (boxes[:, 3] - boxes[:, 1]) * scales
    if not aligned:
        rh = jnp.maximum(rh, 1.0)
        rw = jnp.maximum(rw, 1.0)
    if sampling_ratio > 0:
        gy = jnp.full(rh.shape, sampling_ratio, jnp.int32)
        gx = gy
        gmax = sampling_ratio
    else:
        gmax = int(max_sampling_grid)
        gy = jnp.clip(jnp.ceil(rh / output_size), 0, gmax).astype(jnp.int32)
        gx = jnp.clip(jnp.ceil(rw / output_size), 0, gmax).astype(jnp.int32)
    iy, wy = _axis_weights(y0, rh, heights, output_size, gy, gmax)  # (R, S, G, 2)
    ix, wx = _axis_weights(x0, rw, widths, output_size, gx, gmax)
    r = boxes.shape[0]
    s = output_size
    # (R, Sy, Sx, Gy, 2, Gx, 2)
    flat = (
        offsets[:, None, None, None, None, None, None]
        + iy[:, :, None, :, :, None, None] * widths[:, None, None, None, None, None, None]
        + ix[:, None, :, None, None, :, :]
    )
    w = wy[:, :, None, :, :, None, None] * wx[:, None, :, None, None, :, :]
    k = (gmax * 2) ** 2
    flat = flat.reshape(r, s, s, k)
    w = w.reshape(r, s, s, k)
    vals = jnp.take(table, flat, axis=0, mode="clip")  # (R, S, S, K, C)
    # multiply + reduce (rather than a dot) so XLA can fuse the gather into the reduction
    out = jnp.sum(w[..., None] * vals.astype(jnp.float32), axis=-2)
    return out.astype(table.dtype)


def roi_align(
    features: Array,
    boxes: Array,
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool = True,
    max_sampling_grid: int | None = None,
) -> Array:
    """Single-level RoIAlign.

    Args:
      features: ``(H, W, C)`` feature map (float32 or bfloat16).
      boxes: ``(R, 4)`` ``(y0, x0, y1, x1)`` in input pixels.
      output_size: ``S`` (static).
      spatial_scale: ``1 / stride`` (feature pixels per input pixel).
      sampling_ratio: samples per bin per axis; ``<= 0`` = adaptive
        ``ceil(roi / S)`` (bounded by ``max_sampling_grid``, default
        ``ceil(max(H, W) / S) + 1``).
      aligned: Detectron2 ``ROIAlignV2`` (``True``) or legacy ``ROIAlign``.

    Returns:
      ``(R, S, S, C)`` in the dtype of ``features``.
    """
    h, w, _ = features.shape
    r = boxes.shape[0]
    if max_sampling_grid is None:
        max_sampling_grid = int(math.ceil(max(h, w) / output_size)) + 1
    table = features.reshape(h * w, -1)
    return _roi_align_flat(
        table,
        jnp.asarray(boxes),
        jnp.full((r,), h, jnp.int32),
        jnp.full((r,), w, jnp.int32),
        jnp.zeros((r,), jnp.int32),
        jnp.full((r,), spatial_scale, jnp.float32),
        output_size,
        sampling_ratio,
        aligned,
        max_sampling_grid,
    )


def assign_levels(
    boxes: Array,
    min_level: int = 2,
    max_level: int = 5,
    canonical_box_size: float = 224.0,
    canonical_level: int = 4,
) -> Array:
    """Detectron2 ``assign_boxes_to_levels``: ``clip(floor(k0 + log2(sqrt(area) / 224 + 1e-8)), min, max)``.

    ``boxes (..., 4)`` in input pixels -> ``(...)`` int32 pyramid level (e.g. 2..5).
    """
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    size = jnp.sqrt(jnp.maximum(area, 0.0))
    lvl = jnp.floor(canonical_level + jnp.log2(size / canonical_box_size + 1e-8))
    return jnp.clip(lvl, min_level, max_level).astype(jnp.int32)


def multilevel_roi_align(
    features: Mapping[str, Array],
    boxes: Array,
    output_size: int = 7,
    sampling_ratio: int = 2,
    aligned: bool = True,
    levels: Sequence[str] = ("P2", "P3", "P4", "P5"),
    canonical_box_size: float = 224.0,
    canonical_level: int = 4,
    max_sampling_grid: int | None = None,
) -> Array:
    """FPN RoIAlign: each RoI is pooled from the level given by :func:`assign_levels`.

    Args:
      features: ``{'P2': (B, H_2, W_2, C), ...}``; level ``'Pk'`` has stride ``2^k``.
      boxes: ``(B, R, 4)`` ``(y0, x0, y1, x1)`` in input pixels.
      output_size, sampling_ratio, aligned, max_sampling_grid: as :func:`roi_align`.
      levels: consecutive pyramid levels to pool from.

    Returns:
      ``(B, R, S, S, C)`` in the dtype of the features.
    """
    ks = [int(l[1:]) for l in levels]
    if ks != list(range(ks[0], ks[0] + len(ks))):
        raise ValueError(f"levels must be consecutive, got {levels}")
    feats = [features[l] for l in levels]
    hs = [f.shape[1] for f in feats]
    ws = [f.shape[2] for f in feats]
    sizes = [h * w for h, w in zip(hs, ws)]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    if max_sampling_grid is None:
        max_sampling_grid = int(math.ceil(max(hs + ws) / output_size)) + 1
    lvl_h = jnp.asarray(hs, jnp.int32)
    lvl_w = jnp.asarray(ws, jnp.int32)
    lvl_off = jnp.asarray(starts, jnp.int32)
    lvl_scale = jnp.asarray([2.0**-k for k in ks], jnp.float32)

    def one(fs, bx):
        table = jnp.concatenate([f.reshape(-1, f.shape[-1]) for f in fs], axis=0)
        li = assign_levels(bx, ks[0], ks[-1], canonical_box_size, canonical_level) - ks[0]
        return _roi_align_flat(
            table, bx, lvl_h[li], lvl_w[li], lvl_off[li], lvl_scale[li],
            output_size, sampling_ratio, aligned, max_sampling_grid,
        )

    return jax.vmap(one)(feats, boxes)
