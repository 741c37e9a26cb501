"""RoIAlign vs a float64 NumPy port of Detectron2's ROIAlign CPU kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from fgpose.models.roi_align import assign_levels, multilevel_roi_align, roi_align


def _bilinear(f, y, x):
    """Port of detectron2/layers/csrc/ROIAlign/ROIAlign_cpu.cpp bilinear_interpolate."""
    h, w = f.shape[:2]
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(f.shape[2])
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * f[y_low, x_low] + hy * lx * f[y_low, x_high]
            + ly * hx * f[y_high, x_low] + ly * lx * f[y_high, x_high])


def _ref_roi_align(f, boxes, s, scale, sampling_ratio, aligned):
    f = np.asarray(f, np.float64)
    out = np.zeros((len(boxes), s, s, f.shape[2]))
    off = 0.5 if aligned else 0.0
    for r, (y0, x0, y1, x1) in enumerate(np.asarray(boxes, np.float64)):
        sh, sw = y0 * scale - off, x0 * scale - off
        rh, rw = (y1 - y0) * scale, (x1 - x0) * scale
        if not aligned:
            rh, rw = max(rh, 1.0), max(rw, 1.0)
        bh, bw = rh / s, rw / s
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / s)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / s)
        count = max(gh * gw, 1)
        for ph in range(s):
            for pw in range(s):
                acc = np.zeros(f.shape[2])
                for iy in range(gh):
                    y = sh + ph * bh + (iy + 0.5) * bh / gh
                    for ix in range(gw):
                        x = sw + pw * bw + (ix + 0.5) * bw / gw
                        acc += _bilinear(f, y, x)
                out[r, ph, pw] = acc / count
    return out


def _boxes(rng, n, img_h, img_w):
    """Random boxes in input pixels incl. partly outside, tiny and degenerate ones."""
    y0 = rng.uniform(-20, img_h, n)
    x0 = rng.uniform(-20, img_w, n)
    h = rng.uniform(0.5, img_h * 0.8, n)
    w = rng.uniform(0.5, img_w * 0.8, n)
    b = np.stack([y0, x0, y0 + h, x0 + w], -1)
    extra = np.array([
        [-30.0, -30.0, 10.0, 12.0],          # partly outside top-left
        [img_h - 4, img_w - 4, img_h + 30, img_w + 25],  # partly outside bottom-right
        [10.0, 11.0, 10.3, 11.2],            # tiny
        [5.0, 5.0, 5.0, 9.0],                # zero height
        [0.0, 0.0, img_h, img_w],            # whole image
        [img_h + 20, 3.0, img_h + 40, 20.0],  # fully outside
    ])
    return np.concatenate([b, extra]).astype(np.float32)


@pytest.mark.parametrize("sampling_ratio,aligned", [(2, True), (0, True), (1, False), (0, False)])
def test_roi_align_matches_reference(sampling_ratio, aligned):
    rng = np.random.default_rng(sampling_ratio * 10 + aligned)
    stride = 4
    fh, fw, c = 9, 11, 3
    feats = rng.normal(size=(fh, fw, c)).astype(np.float32)
    boxes = _boxes(rng, 10, fh * stride, fw * stride)
    s = 4
    out = jax.jit(roi_align, static_argnums=(2, 3, 4, 5))(
        jnp.asarray(feats), jnp.asarray(boxes), s, 1.0 / stride, sampling_ratio, aligned
    )
    ref = _ref_roi_align(feats, boxes, s, 1.0 / stride, sampling_ratio, aligned)
    assert out.shape == (len(boxes), s, s, c)
    np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5, rtol=1e-5)
    assert np.abs(ref).max() > 0.1  # non-trivial


def test_roi_align_detects_misalignment():
    """The reference differs between aligned and not (the test can fail)."""
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(8, 8, 2)).astype(np.float32)
    boxes = _boxes(rng, 4, 32, 32)
    out = roi_align(jnp.asarray(feats), jnp.asarray(boxes), 3, 0.25, 2, aligned=False)
    ref = _ref_roi_align(feats, boxes, 3, 0.25, 2, True)
    assert np.abs(np.asarray(out) - ref).max() > 1e-2


def test_roi_align_gradient_and_bf16():
    rng = np.random.default_rng(1)
    feats = jnp.asarray(rng.normal(size=(6, 7, 2)), jnp.float32)
    boxes = jnp.asarray(_boxes(rng, 3, 24, 28))
    g = jax.grad(lambda f: jnp.sum(roi_align(f, boxes, 2, 0.25, 2) ** 2))(feats)
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).max()) > 0
    out16 = roi_align(feats.astype(jnp.bfloat16), boxes, 2, 0.25, 2)
    assert out16.dtype == jnp.bfloat16


def test_multilevel_roi_align():
    rng = np.random.default_rng(2)
    img_h, img_w, c = 64, 48, 3
    feats = {f"P{k}": rng.normal(size=(2, -(-img_h // 2**k), -(-img_w // 2**k), c)).astype(np.float32)
             for k in range(2, 6)}
    # sizes chosen to hit every level with canonical 224 rule scaled to these tiny images
    boxes = np.stack([_boxes(rng, 6, img_h, img_w)[:8] for _ in range(2)])
    boxes[0, 0] = [0, 0, 60, 48]       # large box
    boxes[1, 1] = [3, 4, 5, 6]         # tiny box
    out = jax.jit(lambda f, b: multilevel_roi_align(f, b, 3, 2, True, canonical_box_size=20.0))(
        {k: jnp.asarray(v) for k, v in feats.items()}, jnp.asarray(boxes)
    )
    assert out.shape == (2, 8, 3, 3, c)
    for b in range(2):
        for r in range(8):
            y0, x0, y1, x1 = boxes[b, r].astype(np.float64)
            area = max((y1 - y0) * (x1 - x0), 0.0)
            k = int(np.clip(np.floor(4 + np.log2(np.sqrt(area) / 20.0 + 1e-8)), 2, 5))
            ref = _ref_roi_align(feats[f"P{k}"][b], boxes[b, r : r + 1], 3, 2.0**-k, 2, True)[0]
            np.testing.assert_allclose(np.asarray(out[b, r]), ref, atol=2e-5, rtol=1e-5)
    lv = assign_levels(jnp.asarray(boxes), canonical_box_size=20.0)
    assert set(np.asarray(lv).ravel().tolist()) >= {2, 3, 4, 5}
    # canonical rule at default 224: a 224x224 box -> level 4, 112 -> 3, 448 -> 5, 10 -> 2
    sq = jnp.asarray([[0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 448, 448], [0, 0, 10, 10]], jnp.float32)
    assert np.asarray(assign_levels(sq)).tolist() == [4, 3, 5, 2]
