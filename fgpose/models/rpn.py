"""Region proposal network (Detectron2 ``StandardRPNHead`` / ``RPN``), Flax NNX + pure functions.

Per-level tensors are dicts keyed by level name (``'P2'..'P6'``) with the
Detectron2 ``(y, x, a)`` flattening that matches
:func:`fgpose.models.anchors.generate_anchors`:

- objectness logits ``(B, H_l * W_l * A)``,
- deltas ``(B, H_l * W_l * A, 4)`` as ``(dy, dx, dh, dw)`` w.r.t. the anchors
  with weights ``(1, 1, 1, 1)``,
- anchors ``(H_l * W_l * A, 4)`` ``(y0, x0, y1, x1)`` input pixels.

Levels are processed in increasing level order (``sorted by int(name[1:])``)
unless ``levels`` is given.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fgpose.models.boxes import (
    DEFAULT_SCALE_CLAMP, RPN_BOX_WEIGHTS, box_iou, clip_boxes, decode_boxes, encode_boxes,
    match_boxes, nonempty, sample_balanced, sigmoid_bce_with_logits, smooth_l1_loss,
)
from fgpose.models.nms import nms

Array = jax.Array


def _levels(d: Mapping[str, Any], levels: Sequence[str] | None) -> list[str]:
    return list(levels) if levels is not None else sorted(d, key=lambda k: int(k[1:]))


class RPNHead(nnx.Module):
    """Shared 3x3 conv + ReLU, then 1x1 objectness (A) and 1x1 deltas (4A) per level.

    Init as Detectron2: normal(std=0.01) weights, zero biases.

    Args:
      channels: input (FPN) channels, also the hidden conv width.
      num_anchors: ``A`` anchors per location.
      dtype: computation dtype (outputs are cast to float32); params float32.
    """

    def __init__(self, channels: int, num_anchors: int, *, dtype: Any = jnp.float32,
                 precision: Any = None, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.01)
        kw = dict(dtype=dtype, param_dtype=jnp.float32, precision=precision,
                  kernel_init=init, bias_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.conv = nnx.Conv(channels, channels, (3, 3), padding=((1, 1), (1, 1)), **kw)
        self.objectness = nnx.Conv(channels, num_anchors, (1, 1), padding="VALID", **kw)
        self.deltas = nnx.Conv(channels, 4 * num_anchors, (1, 1), padding="VALID", **kw)
        self.num_anchors = num_anchors

    def __call__(self, feats: Mapping[str, Array]) -> tuple[dict[str, Array], dict[str, Array]]:
        """``{'P2': (B, H, W, C), ...}`` -> (``{'P2': (B, H*W*A)}``, ``{'P2': (B, H*W*A, 4)}``), float32."""
        obj, dl = {}, {}
        for name, x in feats.items():
            t = jax.nn.relu(self.conv(x))
            b, h, w, _ = t.shape
            obj[name] = self.objectness(t).astype(jnp.float32).reshape(b, h * w * self.num_anchors)
            dl[name] = self.deltas(t).astype(jnp.float32).reshape(b, h * w * self.num_anchors, 4)
        return obj, dl


def propose(
    objectness: Mapping[str, Array],
    deltas: Mapping[str, Array],
    anchors: Mapping[str, Array],
    image_hw: Array,
    pre_nms_topk: int,
    post_nms_topk: int,
    nms_threshold: float,
    min_size: float = 0.0,
    levels: Sequence[str] | None = None,
) -> tuple[Array, Array, Array]:
    """Detectron2 ``find_top_rpn_proposals`` with static shapes.

    Per level: top ``min(pre_nms_topk, N_l)`` anchors by logit; decode (weights
    1, scale clamp ``log(1000/16)``); merge levels; clip to the image
    (``image_hw``); drop boxes with height or width ``<= min_size`` or
    non-finite values; NMS (IoU ``> nms_threshold``) *per level* (levels do
    not suppress each other, as Detectron2 ``batched_nms``); keep the best
    ``post_nms_topk`` by logit. Outputs are ``stop_gradient``-ed.

    Args:
      objectness: ``{level: (B, N_l)}`` logits.
      deltas: ``{level: (B, N_l, 4)}``.
      anchors: ``{level: (N_l, 4)}``.
      image_hw: ``(B, 2)`` unpadded image size (H, W) in input pixels.

    Returns:
      ``boxes (B, post_nms_topk, 4)`` float32 input pixels (zeros where invalid),
      ``scores (B, post_nms_topk)`` objectness *logits* in decreasing order
      (``float32 min`` where invalid), ``valid (B, post_nms_topk)`` bool (a prefix).
    """
    names = _levels(anchors, levels)
    cand_boxes, cand_scores, cand_lvl = [], [], []
    for li, name in enumerate(names):
        logit = jax.lax.stop_gradient(objectness[name]).astype(jnp.float32)
        dl = jax.lax.stop_gradient(deltas[name]).astype(jnp.float32)
        anc = jnp.asarray(anchors[name], jnp.float32)
        k = min(pre_nms_topk, logit.shape[1])
        s, idx = jax.lax.top_k(logit, k)  # (B, k)
        d = jnp.take_along_axis(dl, idx[..., None], axis=1)
        bx = decode_boxes(d, anc[idx], RPN_BOX_WEIGHTS, DEFAULT_SCALE_CLAMP)
        cand_boxes.append(bx)
        cand_scores.append(s)
        cand_lvl.append(jnp.full((k,), li, jnp.float32))
    boxes = jnp.concatenate(cand_boxes, axis=1)
    scores = jnp.concatenate(cand_scores, axis=1)
    lvl = jnp.concatenate(cand_lvl)
    hw = jnp.asarray(image_hw, jnp.float32)
    boxes = clip_boxes(boxes, hw[:, None, :])
    ok = nonempty(boxes, min_size) & jnp.all(jnp.isfinite(boxes), -1) & jnp.isfinite(scores)
    scores = jnp.where(ok, scores, -jnp.inf)
    boxes = jnp.where(ok[..., None], boxes, 0.0)

    def one(b, s, hw_b):
        off = (lvl * (jnp.max(hw_b) + 1.0))[:, None]  # separate levels spatially
        keep, valid = nms(b + off, s, post_nms_topk, nms_threshold)
        ob = jnp.where(valid[:, None], b[keep], 0.0)
        os_ = jnp.where(valid, s[keep], jnp.finfo(jnp.float32).min)
        return ob, os_, valid

    return jax.vmap(one)(boxes, scores, hw)


def anchor_labels(
    anchors: Array,
    gt_boxes: Array,
    gt_valid: Array,
    image_hw: Array,
    high: float = 0.7,
    low: float = 0.3,
    boundary_threshold: float = -1.0,
) -> tuple[Array, Array]:
    """RPN anchor matching for one image (Detectron2 ``label_and_sample_anchors`` before sampling).

    Args:
      anchors: ``(N, 4)``; gt_boxes: ``(G, 4)``; gt_valid: ``(G,)``; image_hw: ``(2,)``.
      boundary_threshold: if ``>= 0``, anchors extending more than this many
        pixels outside the image are ignored (-1); default ``-1`` keeps them
        (Detectron2 default).

    Returns:
      ``matched (N,)`` int32 GT index, ``labels (N,)`` int32 in {1, 0, -1}
      (IoU >= 0.7 fg, < 0.3 bg, else ignore, plus each GT's best anchors as fg).
    """
    gt_valid = jnp.asarray(gt_valid, bool) & nonempty(gt_boxes, 0.0)
    iou = box_iou(anchors, gt_boxes)
    matched, labels = match_boxes(iou, gt_valid, high, low, allow_low_quality=True)
    if boundary_threshold >= 0:
        hw = jnp.asarray(image_hw, jnp.float32)
        t = boundary_threshold
        inside = ((anchors[:, 0] >= -t) & (anchors[:, 1] >= -t)
                  & (anchors[:, 2] < hw[0] + t) & (anchors[:, 3] < hw[1] + t))
        labels = jnp.where(inside, labels, -1)
    return matched, labels


def rpn_losses(
    objectness: Mapping[str, Array],
    deltas: Mapping[str, Array],
    anchors: Mapping[str, Array],
    gt_boxes: Array,
    gt_valid: Array,
    image_hw: Array,
    key: Array,
    batch_size_per_image: int = 256,
    positive_fraction: float = 0.5,
    iou_thresholds: tuple[float, float] = (0.3, 0.7),
    smooth_l1_beta: float = 0.0,
    boundary_threshold: float = -1.0,
    levels: Sequence[str] | None = None,
) -> tuple[Array, Array]:
    """Detectron2 RPN losses with fixed-size sampling.

    Per image: match anchors (:func:`anchor_labels`), sample
    ``batch_size_per_image`` anchors with at most ``positive_fraction``
    foreground (:func:`~fgpose.models.boxes.sample_balanced`, key split per
    image), binary cross-entropy on the sampled anchors, smooth-L1 (``beta=0``
    -> L1, Detectron2's RPN default) on the foreground deltas vs
    ``encode_boxes(gt, anchor)``. Both sums are divided by
    ``batch_size_per_image * B`` (Detectron2's normaliser — the number of
    sample slots, not the number actually sampled).

    Args:
      objectness, deltas, anchors: per-level dicts (see module docstring).
      gt_boxes: ``(B, G, 4)`` input pixels; gt_valid: ``(B, G)`` bool.
      image_hw: ``(B, 2)`` (only used when ``boundary_threshold >= 0``).
      key: PRNG key.

    Returns:
      ``(cls_loss, box_loss)`` float32 scalars.
    """
    names = _levels(anchors, levels)
    obj = jnp.concatenate([objectness[n].astype(jnp.float32) for n in names], axis=1)
    dl = jnp.concatenate([deltas[n].astype(jnp.float32) for n in names], axis=1)
    anc = jnp.concatenate([jnp.asarray(anchors[n], jnp.float32) for n in names], axis=0)
    low, high = iou_thresholds
    b = obj.shape[0]
    keys = jax.random.split(key, b)

    def one(o, d, gt, gv, hw, k):
        matched, labels = anchor_labels(anc, gt, gv, hw, high, low, boundary_threshold)
        idx, sl = sample_balanced(labels, batch_size_per_image, positive_fraction, k)
        cls = jnp.sum(jnp.where(sl >= 0, sigmoid_bce_with_logits(o[idx], sl == 1), 0.0))
        pos = sl == 1
        tgt = encode_boxes(gt[matched[idx]], anc[idx], RPN_BOX_WEIGHTS)
        tgt = jnp.where(pos[:, None], tgt, 0.0)  # no NaN from padded GTs
        box = jnp.sum(jnp.where(pos[:, None], smooth_l1_loss(d[idx] - tgt, smooth_l1_beta), 0.0))
        return cls, box

    cls, box = jax.vmap(one)(obj, dl, jnp.asarray(gt_boxes, jnp.float32), gt_valid,
                             jnp.asarray(image_hw), keys)
    norm = float(batch_size_per_image * b)
    return jnp.sum(cls) / norm, jnp.sum(box) / norm
