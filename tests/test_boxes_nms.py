"""Boxes, anchors, matching, sampling and NMS vs independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from fgpose.models.anchors import generate_anchors
from fgpose.models.boxes import (
    DEFAULT_SCALE_CLAMP, box_iou, clip_boxes, decode_boxes, encode_boxes, match_boxes,
    sample_balanced,
)
from fgpose.models.nms import batched_nms, nms


def _rand_boxes(rng, n, size=100.0, min_wh=1.0, max_wh=40.0):
    yx = rng.uniform(0, size, (n, 2))
    hw = rng.uniform(min_wh, max_wh, (n, 2))
    return np.concatenate([yx, yx + hw], -1)


def _np_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            ih = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            iw = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = ih * iw
            union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
            out[i, j] = inter / union if inter > 0 else 0.0
    return out


def test_box_iou_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = _rand_boxes(rng, 7), _rand_boxes(rng, 5)
    b[0] = 0.0  # padded box
    got = np.asarray(box_iou(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)))
    np.testing.assert_allclose(got, _np_iou(a, b), atol=1e-6)
    batched = box_iou(jnp.asarray(np.stack([a, a])), jnp.asarray(np.stack([b, b])))
    assert batched.shape == (2, 7, 5)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_encode_decode_vs_float64(weights):
    rng = np.random.default_rng(1)
    anchors = _rand_boxes(rng, 50, min_wh=4.0)
    boxes = _rand_boxes(rng, 50, min_wh=2.0)
    wy, wx, wh, ww = weights
    # independent float64 reference (Detectron2 Box2BoxTransform, x/y swapped)
    ah, aw = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    acy, acx = anchors[:, 0] + 0.5 * ah, anchors[:, 1] + 0.5 * aw
    gh, gw = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gcy, gcx = boxes[:, 0] + 0.5 * gh, boxes[:, 1] + 0.5 * gw
    ref = np.stack([wy * (gcy - acy) / ah, wx * (gcx - acx) / aw,
                    wh * np.log(gh / ah), ww * np.log(gw / aw)], -1)
    d = encode_boxes(jnp.asarray(boxes, jnp.float32), jnp.asarray(anchors, jnp.float32), weights)
    np.testing.assert_allclose(np.asarray(d), ref, rtol=1e-4, atol=1e-4)
    back = decode_boxes(jnp.asarray(ref, jnp.float32), jnp.asarray(anchors, jnp.float32), weights)
    np.testing.assert_allclose(np.asarray(back), boxes, rtol=1e-5, atol=1e-3)
    # scale clamp: huge dh/dw are clamped at log(1000/16)
    big = np.array([[0.0, 0.0, 100.0 * wh, 100.0 * ww]])
    out = np.asarray(decode_boxes(jnp.asarray(big), jnp.asarray(anchors[:1]), weights))[0]
    np.testing.assert_allclose(out[2] - out[0], ah[0] * math.exp(DEFAULT_SCALE_CLAMP), rtol=1e-5)
    np.testing.assert_allclose(out[3] - out[1], aw[0] * 1000.0 / 16.0, rtol=1e-5)


def test_clip_boxes():
    b = jnp.asarray([[[-5.0, 3.0, 50.0, 70.0]], [[1.0, -2.0, 9.0, 9.0]]])
    hw = jnp.asarray([[40, 60], [8, 8]])
    out = clip_boxes(b, hw[:, None, :])
    np.testing.assert_allclose(np.asarray(out), [[[0, 3, 40, 60]], [[1, 0, 8, 8]]])


def test_generate_anchors_detectron2_layout():
    a = generate_anchors((33, 64), (4, 8), (32, 64), (0.5, 1.0, 2.0))
    assert a["P2"].shape == (9 * 16 * 3, 4) and a["P3"].shape == (5 * 8 * 3, 4)
    # location (y=1, x=2) of P3, anchor a=0 (ratio 0.5: h = 0.5 w, area 64^2)
    w = math.sqrt(64 * 64 / 0.5)
    h = 0.5 * w
    idx = (1 * 8 + 2) * 3 + 0
    np.testing.assert_allclose(a["P3"][idx], [8 - h / 2, 16 - w / 2, 8 + h / 2, 16 + w / 2], rtol=1e-6)
    hh = a["P2"][:, 2] - a["P2"][:, 0]
    ww = a["P2"][:, 3] - a["P2"][:, 1]
    np.testing.assert_allclose(hh * ww, 32.0**2, rtol=1e-5)


def test_match_boxes_rules():
    iou = jnp.asarray([
        [0.80, 0.10, 0.9],
        [0.50, 0.20, 0.0],
        [0.20, 0.25, 0.0],
        [0.10, 0.25, 0.0],
        [0.00, 0.00, 0.0],
    ])
    valid = jnp.asarray([True, True, False])  # third GT is padding: ignored even with IoU 0.9
    m, lab = match_boxes(iou, valid, 0.7, 0.3, allow_low_quality=False)
    assert np.asarray(lab).tolist() == [1, -1, 0, 0, 0]
    assert int(m[0]) == 0
    m, lab = match_boxes(iou, valid, 0.7, 0.3, allow_low_quality=True)
    # GT1's best IoU 0.25 is shared by anchors 2 and 3 (ties): both positive
    assert np.asarray(lab).tolist() == [1, -1, 1, 1, 0]
    assert np.asarray(m)[[0, 2, 3]].tolist() == [0, 1, 1]
    _, lab = match_boxes(iou, jnp.zeros(3, bool), 0.7, 0.3, True)
    assert np.asarray(lab).tolist() == [0] * 5
    _, lab = match_boxes(iou, valid, 0.5, 0.5, False)
    assert np.asarray(lab).tolist() == [1, 1, 0, 0, 0]


def test_sample_balanced():
    labels = np.array([1] * 5 + [0] * 30 + [-1] * 10)
    rng = np.random.default_rng(0)
    rng.shuffle(labels)
    f = jax.jit(sample_balanced, static_argnums=(1, 2))
    idx, sl = f(jnp.asarray(labels), 16, 0.25, jax.random.key(0))
    idx, sl = np.asarray(idx), np.asarray(sl)
    assert (sl == 1).sum() == 4 and (sl == 0).sum() == 12
    assert (labels[idx] == sl).all() and len(set(idx.tolist())) == 16
    # too few positives -> negatives fill up
    idx, sl = f(jnp.asarray(labels), 20, 0.5, jax.random.key(1))
    assert (np.asarray(sl) == 1).sum() == 5 and (np.asarray(sl) == 0).sum() == 15
    # too few of both -> padding with -1
    idx, sl = f(jnp.asarray(labels), 64, 0.5, jax.random.key(2))
    sl = np.asarray(sl)
    assert (sl == 1).sum() == 5 and (sl == 0).sum() == 30 and (sl == -1).sum() == 29
    assert (labels[np.asarray(idx)][sl >= 0] == sl[sl >= 0]).all()
    # randomness: different keys give different subsets of the negatives
    a = set(np.asarray(f(jnp.asarray(labels), 16, 0.25, jax.random.key(3))[0]).tolist())
    b = set(np.asarray(f(jnp.asarray(labels), 16, 0.25, jax.random.key(4))[0]).tolist())
    assert a != b


def _tf_nms(boxes, scores, k, thr, score_thr=float("-inf")):
    tf = pytest.importorskip("tensorflow")
    sel = tf.image.non_max_suppression(
        tf.constant(boxes, tf.float32), tf.constant(scores, tf.float32), k, thr, score_thr
    )
    return sel.numpy().tolist()


@pytest.mark.parametrize("seed,n,k,thr", [(0, 200, 50, 0.5), (1, 300, 400, 0.3), (2, 50, 10, 0.7)])
def test_nms_matches_tensorflow(seed, n, k, thr):
    rng = np.random.default_rng(seed)
    boxes = _rand_boxes(rng, n).astype(np.float32)
    scores = rng.uniform(size=n).astype(np.float32)
    scores[::7] = 0.5  # exact ties -> lower index first
    scores[3] = 0.5
    f = jax.jit(nms, static_argnums=(2,))
    idx, valid = f(jnp.asarray(boxes), jnp.asarray(scores), k, thr)
    ref = _tf_nms(boxes, scores, k, thr)
    got = np.asarray(idx)[np.asarray(valid)].tolist()
    assert got == ref
    assert np.asarray(valid).tolist() == [True] * len(ref) + [False] * (k - len(ref))
    assert (np.asarray(idx)[~np.asarray(valid)] == 0).all()


def test_nms_score_threshold_and_vmap():
    rng = np.random.default_rng(3)
    boxes = _rand_boxes(rng, 2 * 80).reshape(2, 80, 4).astype(np.float32)
    scores = rng.uniform(size=(2, 80)).astype(np.float32)
    scores[1, :5] = np.nan
    idx, valid = jax.jit(batched_nms, static_argnums=(2,))(
        jnp.asarray(boxes), jnp.asarray(scores), 30, 0.4, 0.6
    )
    for b in range(2):
        s = np.where(np.isnan(scores[b]), -1.0, scores[b])  # TF: NaN never selected here
        ref = _tf_nms(boxes[b], s, 30, 0.4, 0.6)
        assert np.asarray(idx[b])[np.asarray(valid[b])].tolist() == ref
