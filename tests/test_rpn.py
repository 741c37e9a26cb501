"""RPN head, anchor labelling, losses and proposals on hand-made cases."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from flax import nnx

from fgpose.models.anchors import generate_anchors, num_anchors_per_location
from fgpose.models.rpn import RPNHead, anchor_labels, propose, rpn_losses

INPUT = (64, 80)
STRIDES = (8, 16)
SIZES = (16, 32)
RATIOS = (0.5, 1.0, 2.0)


def _np_iou(a, g):
    ih = np.clip(np.minimum(a[:, 2], g[2]) - np.maximum(a[:, 0], g[0]), 0, None)
    iw = np.clip(np.minimum(a[:, 3], g[3]) - np.maximum(a[:, 1], g[1]), 0, None)
    inter = ih * iw
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
    return inter / union


def _setup():
    anchors = generate_anchors(INPUT, STRIDES, SIZES, RATIOS)
    a = num_anchors_per_location(SIZES, RATIOS)
    feats = {f"P{k}": jnp.asarray(np.random.default_rng(k).normal(size=(2, -(-INPUT[0] // s), -(-INPUT[1] // s), 8)),
                                  jnp.float32) for k, s in zip((3, 4), STRIDES)}
    return anchors, a, feats


def test_anchor_labels_low_quality_match():
    anchors, _, _ = _setup()
    allanc = np.concatenate([anchors["P3"], anchors["P4"]]).astype(np.float64)
    gt = np.array([11.0, 17.0, 36.0, 63.0])  # 25 x 46: no anchor reaches IoU 0.7
    iou = _np_iou(allanc, gt)
    best = iou.max()
    assert 0.3 < best < 0.7
    gt_pad = np.stack([gt, np.zeros(4)])
    matched, labels = anchor_labels(jnp.asarray(allanc, jnp.float32), jnp.asarray(gt_pad, jnp.float32),
                                    jnp.asarray([True, False]), jnp.asarray(INPUT))
    labels = np.asarray(labels)
    exp = np.where(iou < 0.3, 0, -1)
    exp[np.isclose(iou, best, rtol=1e-6, atol=0)] = 1
    assert (labels == exp).all()
    assert (np.asarray(matched)[labels == 1] == 0).all()
    # boundary filtering: anchors crossing the image by > 0 px are ignored
    _, lb = anchor_labels(jnp.asarray(allanc, jnp.float32), jnp.asarray(gt_pad, jnp.float32),
                          jnp.asarray([True, False]), jnp.asarray(INPUT), boundary_threshold=0.0)
    outside = (allanc[:, 0] < 0) | (allanc[:, 1] < 0) | (allanc[:, 2] >= INPUT[0]) | (allanc[:, 3] >= INPUT[1])
    assert (np.asarray(lb)[outside] == -1).all() and (np.asarray(lb)[~outside] == exp[~outside]).all()


def test_rpn_losses_finite_with_gradient():
    anchors, a, feats = _setup()
    head = RPNHead(8, a, rngs=nnx.Rngs(0))
    gt = jnp.asarray([[[11.0, 17.0, 36.0, 63.0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
    gv = jnp.asarray([[True, False], [False, False]])  # second image has no GT at all
    hw = jnp.asarray([INPUT, (50, 70)])

    def loss(m):
        obj, dl = m(feats)
        assert obj["P3"].shape == (2, 8 * 10 * a) and dl["P4"].shape == (2, 4 * 5 * a, 4)
        cls, box = rpn_losses(obj, dl, anchors, gt, gv, hw, jax.random.key(0), 32, 0.5)
        return cls + box, (cls, box)

    grads, (cls, box) = nnx.jit(lambda m: nnx.grad(loss, has_aux=True)(m))(head)
    assert np.isfinite(float(cls)) and np.isfinite(float(box))
    # at init logits ~ 0: BCE ~ log 2 on 2*32 sampled slots (the second image samples 32 bg)
    np.testing.assert_allclose(float(cls), np.log(2.0), rtol=0.05)
    assert float(box) > 0
    for g in (grads.conv.kernel, grads.objectness.kernel, grads.deltas.kernel):
        assert float(jnp.abs(g[...]).max()) > 0

    # box loss = mean L1 over positives' deltas normalised by 2*32: check with zero deltas
    zero_dl = {k: jnp.zeros((2, v.shape[0], 4)) for k, v in anchors.items()}
    obj0 = {k: jnp.zeros((2, v.shape[0])) for k, v in anchors.items()}
    _, box0 = jax.jit(rpn_losses, static_argnums=(7, 8))(
        obj0, zero_dl, anchors, gt, gv, hw, jax.random.key(0), 32, 0.5)
    allanc = np.concatenate([anchors["P3"], anchors["P4"]]).astype(np.float64)
    g = np.array([11.0, 17.0, 36.0, 63.0])
    iou = _np_iou(allanc, g)
    pos = np.isclose(iou, iou.max(), rtol=1e-6) | (iou >= 0.7)
    ah, aw = allanc[pos, 2] - allanc[pos, 0], allanc[pos, 3] - allanc[pos, 1]
    d = np.stack([(g[0] + g[2] - allanc[pos, 0] - allanc[pos, 2]) / 2 / ah,
                  (g[1] + g[3] - allanc[pos, 1] - allanc[pos, 3]) / 2 / aw,
                  np.log((g[2] - g[0]) / ah), np.log((g[3] - g[1]) / aw)], -1)
    np.testing.assert_allclose(float(box0), np.abs(d).sum() / 64.0, rtol=1e-5)


def test_propose_shapes_and_gt_recovery():
    anchors, a, _ = _setup()
    allanc = np.concatenate([anchors["P3"], anchors["P4"]]).astype(np.float64)
    n3 = anchors["P3"].shape[0]
    g = np.array([11.0, 17.0, 36.0, 63.0])
    best = int(np.argmax(_np_iou(allanc, g)))
    rng = np.random.default_rng(0)
    obj = {k: rng.normal(size=(2, v.shape[0])).astype(np.float32) for k, v in anchors.items()}
    dl = {k: (0.1 * rng.normal(size=(2, v.shape[0], 4))).astype(np.float32) for k, v in anchors.items()}
    lvl, j = ("P3", best) if best < n3 else ("P4", best - n3)
    obj[lvl][0, j] = 10.0  # favour the GT's best anchor in image 0
    an = allanc[best]
    ah, aw = an[2] - an[0], an[3] - an[1]
    dl[lvl][0, j] = [(g[0] + g[2] - an[0] - an[2]) / 2 / ah, (g[1] + g[3] - an[1] - an[3]) / 2 / aw,
                     np.log((g[2] - g[0]) / ah), np.log((g[3] - g[1]) / aw)]
    hw = jnp.asarray([INPUT, (40, 30)])
    f = jax.jit(propose, static_argnums=(4, 5))
    boxes, scores, valid = f(obj, dl, anchors, hw, 50, 20, 0.7, 0.0)
    assert boxes.shape == (2, 20, 4) and scores.shape == (2, 20) and valid.shape == (2, 20)
    np.testing.assert_allclose(np.asarray(boxes[0, 0]), g, atol=1e-3)
    assert float(scores[0, 0]) == 10.0
    v = np.asarray(valid)
    assert v[0].all()
    s = np.asarray(scores)
    for b in range(2):
        assert (np.diff(s[b][v[b]]) <= 0).all()
        bb = np.asarray(boxes[b])[v[b]]
        assert (bb[:, 0] >= 0).all() and (bb[:, 2] <= [64, 40][b]).all() and (bb[:, 3] <= [80, 30][b]).all()
        assert (bb[:, 2] > bb[:, 0]).all() and (bb[:, 3] > bb[:, 1]).all()
    # very large min_size -> few/no valid proposals, padded with zeros
    boxes2, _, valid2 = f(obj, dl, anchors, hw, 50, 20, 0.7, 35.0)
    v2 = np.asarray(valid2)
    assert v2.sum() < v.sum()
    assert (np.asarray(boxes2)[~v2] == 0).all()
    for b in range(2):  # valid is a prefix
        assert (v2[b] == (np.arange(20) < v2[b].sum())).all()
        bb = np.asarray(boxes2[b])[v2[b]]
        assert ((bb[:, 2] - bb[:, 0]) > 35).all() and ((bb[:, 3] - bb[:, 1]) > 35).all()
