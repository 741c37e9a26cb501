"""Greedy non-maximum suppression with a static output size (jit-able, vmappable).

Semantics match ``tf.image.non_max_suppression`` (and torchvision / Detectron2
``nms``): candidates are the boxes with ``score > score_threshold``; repeatedly
the highest-scoring remaining candidate is selected (ties broken by the lower
index) and every remaining candidate whose IoU with it is ``> iou_threshold``
is suppressed. Boxes with non-positive area have IoU 0 with everything (as in
TensorFlow). NaN scores are never selected.

Implementation: a ``lax.while_loop`` with one iteration per *selected* box
(at most ``max_output``), each iteration an ``O(N)`` IoU row + argmax; it stops
early when no candidate is left. Under ``vmap`` the loop runs until every batch
member is done.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fgpose.models.boxes import box_iou

Array = jax.Array


def _ordered_corners(boxes: Array) -> Array:
    """``(N, 4)`` boxes given by either diagonal -> ``(min y, min x, max y, max x)``.

    ``tf.image.non_max_suppression`` accepts a box by any pair of opposite corners; after
    this, :func:`fgpose.models.boxes.box_iou` gives TensorFlow's IoU (0 when either box has
    zero area, since then the intersection is empty).
    """
    return jnp.stack(
        [
            jnp.minimum(boxes[:, 0], boxes[:, 2]),
            jnp.minimum(boxes[:, 1], boxes[:, 3]),
            jnp.maximum(boxes[:, 0], boxes[:, 2]),
            jnp.maximum(boxes[:, 1], boxes[:, 3]),
        ],
        -1,
    )


def nms(
    boxes: Array,
    scores: Array,
    max_output: int,
    iou_threshold: float,
    score_threshold: float = -float("inf"),
) -> tuple[Array, Array]:
    """Greedy NMS with a fixed number of outputs.

    Args:
      boxes: ``(N, 4)`` float boxes ``(y0, x0, y1, x1)`` (any consistent units).
      scores: ``(N,)`` float scores.
      max_output: static maximum number of selected boxes.
      iou_threshold: suppress when IoU ``> iou_threshold`` (may be traced).
      score_threshold: only boxes with ``score > score_threshold`` are
        candidates (may be traced).

    Returns:
      ``indices`` ``(max_output,)`` int32 of the selected boxes in selection
      order (decreasing score), padded with ``0`` (a safe gather index), and
      ``valid`` ``(max_output,)`` bool marking the real selections (a prefix).
    """
    boxes = jnp.asarray(boxes)
    scores = jnp.asarray(scores)
    n = boxes.shape[0]
    if n == 0:
        return jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool)
    compute_dtype = jnp.promote_types(boxes.dtype, jnp.float32)
    boxes = _ordered_corners(boxes.astype(compute_dtype))
    scores = scores.astype(compute_dtype)
    alive0 = scores > score_threshold  # False for NaN
    neg_inf = jnp.array(-jnp.inf, compute_dtype)

    def cond(state):
        count, alive, _ = state
        return (count < max_output) & jnp.any(alive)

    def body(state):
        count, alive, out = state
        masked = jnp.where(alive, scores, neg_inf)
        # argmax returns the first maximal index -> lower index wins ties. If all
        # alive scores are -inf (only possible with score_threshold=-inf... which
        # excludes them), fall back to the first alive index.
        i = jnp.argmax(masked)
        i = jnp.where(alive[i], i, jnp.argmax(alive))
        iou = box_iou(boxes[i][None], boxes)[0]
        alive = alive & ~(iou > iou_threshold)
        alive = alive.at[i].set(False)
        out = out.at[count].set(i.astype(jnp.int32))
        return count + 1, alive, out

    init = (jnp.int32(0), alive0, jnp.zeros((max_output,), jnp.int32))
    count, _, out = jax.lax.while_loop(cond, body, init)
    valid = jnp.arange(max_output) < count
    return jnp.where(valid, out, 0), valid


def batched_nms(
    boxes: Array,
    scores: Array,
    max_output: int,
    iou_threshold: float,
    score_threshold: float = -float("inf"),
) -> tuple[Array, Array]:
    """:func:`nms` vmapped over a leading batch axis: ``(B, N, 4), (B, N) -> (B, K), (B, K)``."""
    return jax.vmap(
        lambda b, s: nms(b, s, max_output, iou_threshold, score_threshold)
    )(boxes, scores)
