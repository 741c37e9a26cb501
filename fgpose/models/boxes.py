"""Box utilities (Detectron2 conventions, boxes as ``(y0, x0, y1, x1)``).

All functions are pure ``jax.numpy`` code, jit-able with static shapes and
vmappable. Coordinates are continuous pixel coordinates (pixel ``i`` covers
``[i, i + 1)``, its centre is ``i + 0.5``); widths/heights are ``x1 - x0`` and
``y1 - y0`` (no ``+1``), exactly as in Detectron2's ``Boxes``.

Box deltas are ordered ``(dy, dx, dh, dw)`` (the ``(y, x)`` order of the boxes;
Detectron2 uses ``(dx, dy, dw, dh)`` for ``(x0, y0, x1, y1)`` boxes — the maths
is identical). Typical weights: ``(1, 1, 1, 1)`` for the RPN and
``(10, 10, 5, 5)`` for the box head (``(wy, wx, wh, ww)``).

Helpers for the detector's target assignment: :func:`match_boxes`
(Detectron2 ``Matcher``) and :func:`sample_balanced` (Detectron2
``subsample_labels`` with a fixed output size).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

#: Detectron2's ``_DEFAULT_SCALE_CLAMP``: ``log(1000 / 16)``.
DEFAULT_SCALE_CLAMP: float = math.log(1000.0 / 16)

RPN_BOX_WEIGHTS: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
ROI_BOX_WEIGHTS: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)


def box_area(boxes: Array) -> Array:
    """Area of ``(..., 4)`` boxes ``(y0, x0, y1, x1)`` -> ``(...)`` (may be <= 0 if degenerate)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(a: Array, b: Array) -> Array:
    """Pairwise IoU of ``a (..., N, 4)`` and ``b (..., M, 4)`` -> ``(..., N, M)``.

    Detectron2 ``pairwise_iou``: intersection clamped at 0, IoU is 0 where the
    intersection is empty (so degenerate / padded all-zero boxes give 0, never NaN).
    Leading batch dims must broadcast.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    area_a = box_area(a)[..., :, None]
    area_b = box_area(b)[..., None, :]
    lt = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = jnp.clip(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - inter
    safe = jnp.where(inter > 0, union, 1.0)
    return jnp.where(inter > 0, inter / safe, 0.0)


def _centers_sizes(boxes: Array) -> tuple[Array, Array, Array, Array]:
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    cy = boxes[..., 0] + 0.5 * h
    cx = boxes[..., 1] + 0.5 * w
    return cy, cx, h, w


def encode_boxes(
    boxes: Array, anchors: Array, weights: Sequence[float] = RPN_BOX_WEIGHTS
) -> Array:
    """Regression targets that turn ``anchors`` into ``boxes``.

    Args:
      boxes: ``(..., 4)`` target boxes ``(y0, x0, y1, x1)``.
      anchors: ``(..., 4)`` reference boxes (broadcastable to ``boxes``), must
        have positive size.
      weights: ``(wy, wx, wh, ww)``.

    Returns:
      ``(..., 4)`` deltas ``(dy, dx, dh, dw)`` with ``dy = wy * (cy - acy) / ah``,
      ``dh = wh * log(h / ah)`` (Detectron2 ``Box2BoxTransform.get_deltas``).
    """
    wy, wx, wh, ww = weights
    cy, cx, h, w = _centers_sizes(boxes)
    acy, acx, ah, aw = _centers_sizes(anchors)
    dy = wy * (cy - acy) / ah
    dx = wx * (cx - acx) / aw
    dh = wh * jnp.log(h / ah)
    dw = ww * jnp.log(w / aw)
    return jnp.stack([dy, dx, dh, dw], axis=-1)


def decode_boxes(
    deltas: Array,
    anchors: Array,
    weights: Sequence[float] = RPN_BOX_WEIGHTS,
    clip: float = DEFAULT_SCALE_CLAMP,
) -> Array:
    """Inverse of :func:`encode_boxes` (Detectron2 ``apply_deltas``).

    Args:
      deltas: ``(..., 4)`` ``(dy, dx, dh, dw)``.
      anchors: ``(..., 4)`` reference boxes, broadcastable to ``deltas``.
      weights: ``(wy, wx, wh, ww)``.
      clip: ``dh / wh`` and ``dw / ww`` are clamped to at most this value
        (``log(1000/16)``) before ``exp``.

    Returns:
      ``(..., 4)`` boxes ``(y0, x0, y1, x1)`` in the dtype of ``deltas`` promoted
      with ``anchors``.
    """
    wy, wx, wh, ww = weights
    acy, acx, ah, aw = _centers_sizes(anchors)
    dy = deltas[..., 0] / wy
    dx = deltas[..., 1] / wx
    dh = jnp.minimum(deltas[..., 2] / wh, clip)
    dw = jnp.minimum(deltas[..., 3] / ww, clip)
    cy = dy * ah + acy
    cx = dx * aw + acx
    h = jnp.exp(dh) * ah
    w = jnp.exp(dw) * aw
    return jnp.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h, cx + 0.5 * w], axis=-1)


def clip_boxes(boxes: Array, hw: Array) -> Array:
    """Clip ``(..., 4)`` boxes to ``[0, H] x [0, W]``.

    ``hw`` is ``(..., 2)`` ``(H, W)`` broadcastable against ``boxes[..., :2]``
    (e.g. ``boxes (B, N, 4)`` with ``hw[:, None, :]``), or a plain ``(2,)``.
    """
    hw = jnp.asarray(hw, dtype=boxes.dtype)
    h = hw[..., 0:1]
    w = hw[..., 1:2]
    y0 = jnp.clip(boxes[..., 0:1], 0, h)
    x0 = jnp.clip(boxes[..., 1:2], 0, w)
    y1 = jnp.clip(boxes[..., 2:3], 0, h)
    x1 = jnp.clip(boxes[..., 3:4], 0, w)
    return jnp.concatenate([y0, x0, y1, x1], axis=-1)


def nonempty(boxes: Array, min_size: float = 0.0) -> Array:
    """``(...)`` bool: height and width both ``> min_size`` (Detectron2 ``Boxes.nonempty``)."""
    return ((boxes[..., 2] - boxes[..., 0]) > min_size) & (
        (boxes[..., 3] - boxes[..., 1]) > min_size
    )


def match_boxes(
    iou: Array,
    valid_gt: Array,
    high: float,
    low: float,
    allow_low_quality: bool,
) -> tuple[Array, Array]:
    """Detectron2 ``Matcher``: assign each anchor/RoI to its best GT box.

    Args:
      iou: ``(N, G)`` IoU between N anchors (or RoIs) and G (padded) GT boxes.
      valid_gt: ``(G,)`` bool, False for padded GT slots (never matched).
      high: IoU ``>= high`` -> foreground (label 1).
      low: IoU ``< low`` -> background (label 0); ``low <= IoU < high`` -> ignore
        (-1). Use ``high == low`` (e.g. 0.5, 0.5) for the RoI head.
      allow_low_quality: if True, for every valid GT, each anchor whose IoU equals
        that GT's maximum IoU (ties included) becomes foreground (matched to its
        own argmax GT), provided that maximum is ``> 0`` (Detectron2's RPN rule,
        except that a GT overlapping nothing does not turn IoU-0 anchors positive).

    Returns:
      ``matched_gt_index`` ``(N,)`` int32 (argmax over valid GTs; 0 when there is
      no valid GT — meaningless for labels != 1) and ``labels`` ``(N,)`` int32 in
      ``{1 fg, 0 bg, -1 ignore}``. With no valid GT every anchor is background.
    """
    valid_gt = jnp.asarray(valid_gt, bool)
    q = jnp.where(valid_gt[None, :], iou, -1.0)
    matched = jnp.argmax(q, axis=1).astype(jnp.int32)
    best = jnp.max(q, axis=1)
    labels = jnp.where(best >= high, 1, jnp.where(best < low, 0, -1)).astype(jnp.int32)
    if allow_low_quality:
        gt_best = jnp.max(q, axis=0)  # (G,)
        hit = (q == gt_best[None, :]) & valid_gt[None, :] & (gt_best[None, :] > 0)
        labels = jnp.where(jnp.any(hit, axis=1), 1, labels).astype(jnp.int32)
    return matched, labels


def positive_slots(num_samples: int, positive_fraction: float) -> int:
    """Static number of leading slots :func:`sample_balanced` may fill with foreground:
    ``int(num_samples * positive_fraction)``. Every foreground sample lies in that prefix."""
    return int(num_samples * positive_fraction)


def sample_balanced(
    labels: Array,
    num_samples: int,
    positive_fraction: float,
    key: Array,
) -> tuple[Array, Array]:
    """Fixed-size random fg/bg subsampling (Detectron2 ``subsample_labels``).

    Takes ``num_pos = min(int(num_samples * positive_fraction), #fg)`` random
    foreground and ``num_neg = min(num_samples - num_pos, #bg)`` random
    background entries (uniformly at random without replacement, ties of the
    random keys broken by lower index).

    Args:
      labels: ``(N,)`` int, ``1`` fg, ``0`` bg, ``-1`` ignore.
      num_samples: static output size.
      positive_fraction: target fraction of foreground samples.
      key: PRNG key.

    Returns:
      ``indices`` ``(num_samples,)`` int32 into ``labels`` (foreground first,
      then background, then padding with index 0) and ``sampled_labels``
      ``(num_samples,)`` int32: ``1``/``0`` for the sampled fg/bg entries and
      ``-1`` for padding slots — use ``sampled_labels >= 0`` as the valid/weight
      mask. ``N < num_samples`` is allowed (the extra slots are padding).
    """
    labels = jnp.asarray(labels)
    n = labels.shape[0]
    k_pos_max = positive_slots(num_samples, positive_fraction)
    pos = labels == 1
    neg = labels == 0
    r = jax.random.uniform(key, (n,))
    num_pos = jnp.minimum(k_pos_max, jnp.sum(pos)).astype(jnp.int32)
    num_neg = jnp.minimum(num_samples - num_pos, jnp.sum(neg)).astype(jnp.int32)

    def ranked(mask: Array, k: int) -> Array:
        k_eff = min(k, n)
        if k_eff <= 0:
            return jnp.zeros((1,), jnp.int32)
        _, idx = jax.lax.top_k(jnp.where(mask, r, -1.0), k_eff)
        return idx.astype(jnp.int32)

    pos_idx = ranked(pos, k_pos_max)
    neg_idx = ranked(neg, num_samples)
    j = jnp.arange(num_samples, dtype=jnp.int32)
    is_pos = j < num_pos
    is_neg = (~is_pos) & (j < num_pos + num_neg)
    pi = pos_idx[jnp.clip(j, 0, pos_idx.shape[0] - 1)]
    ni = neg_idx[jnp.clip(j - num_pos, 0, neg_idx.shape[0] - 1)]
    indices = jnp.where(is_pos, pi, jnp.where(is_neg, ni, 0)).astype(jnp.int32)
    sampled = jnp.where(is_pos, 1, jnp.where(is_neg, 0, -1)).astype(jnp.int32)
    return indices, sampled


def smooth_l1_loss(x: Array, beta: float) -> Array:
    """Elementwise fvcore/Detectron2 smooth-L1 of a difference ``x``; ``beta < 1e-5`` -> ``|x|``."""
    ax = jnp.abs(x)
    if beta < 1e-5:
        return ax
    return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def sigmoid_bce_with_logits(logits: Array, targets: Array) -> Array:
    """Elementwise numerically stable binary cross-entropy with logits (targets in [0, 1])."""
    logits = logits.astype(jnp.float32)
    targets = targets.astype(jnp.float32)
    return jnp.maximum(logits, 0.0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits)))
