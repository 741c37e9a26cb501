"""Anchor generation (Detectron2 ``DefaultAnchorGenerator``, offset 0), NumPy, static.

Anchors of level ``l`` (stride ``s``) are laid out in ``(y, x, a)`` order, i.e.
flattened from ``(H_l, W_l, A)``, with ``A = len(sizes[l]) * len(aspect_ratios)``
ordered ``for size in sizes[l]: for ratio in aspect_ratios`` — the same order as
the RPN head's ``(B, H_l, W_l, A)`` outputs reshaped to ``(B, H_l*W_l*A)``.
A cell anchor of size ``S`` and ratio ``r = h / w`` has ``w = sqrt(S^2 / r)``,
``h = r * w``, centred on ``(y * s + offset * s, x * s + offset * s)``.
Boxes are ``(y0, x0, y1, x1)`` in input-frame pixels.

The feature map of stride ``s = 2^k`` for an input of size ``(H, W)`` has size
``(ceil(H / s), ceil(W / s))`` — what :class:`~fgpose.models.resnet.ResNet`
(padded convs) and the FPN's stride-2 max pool produce.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def level_name(stride: int) -> str:
    """``'P{log2(stride)}'``, e.g. 4 -> ``'P2'``."""
    k = int(round(math.log2(stride)))
    if 2**k != stride:
        raise ValueError(f"stride must be a power of two, got {stride}")
    return f"P{k}"


def feature_size(input_size: Sequence[int], stride: int) -> tuple[int, int]:
    """``(ceil(H / stride), ceil(W / stride))``."""
    h, w = input_size
    return (-(-int(h) // stride), -(-int(w) // stride))


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
    """``(len(sizes) * len(aspect_ratios), 4)`` float64 anchors centred at 0."""
    out = []
    for size in sizes:
        area = float(size) ** 2
        for r in aspect_ratios:
            w = math.sqrt(area / r)
            h = r * w
            out.append([-h / 2.0, -w / 2.0, h / 2.0, w / 2.0])
    return np.asarray(out, np.float64)


def num_anchors_per_location(sizes_per_level: Sequence, aspect_ratios: Sequence[float]) -> int:
    """Number of anchors per location ``A`` (must be the same for every level)."""
    counts = {len(np.atleast_1d(s)) * len(aspect_ratios) for s in sizes_per_level}
    if len(counts) != 1:
        raise ValueError("every level must have the same number of anchors")
    return counts.pop()


def generate_anchors(
    input_size: Sequence[int],
    strides: Sequence[int],
    sizes: Sequence,
    aspect_ratios: Sequence[float],
    offset: float = 0.0,
) -> dict[str, np.ndarray]:
    """Anchors for every level.

    Args:
      input_size: ``(H_in, W_in)`` of the (padded) input frame.
      strides: e.g. ``(4, 8, 16, 32, 64)`` for P2..P6.
      sizes: one entry per level, a scalar size or a sequence of sizes (pixels),
        e.g. ``(32, 64, 128, 256, 512)``.
      aspect_ratios: ``h / w`` ratios, e.g. ``(0.5, 1.0, 2.0)``.
      offset: anchor centre offset in units of the stride (Detectron2 default 0).

    Returns:
      ``{'P2': (H_2*W_2*A, 4), ...}`` float32 NumPy arrays ``(y0, x0, y1, x1)``.
    """
    if len(strides) != len(sizes):
        raise ValueError("need one size (or tuple of sizes) per stride")
    out: dict[str, np.ndarray] = {}
    for stride, size in zip(strides, sizes):
        cells = cell_anchors(np.atleast_1d(size).tolist(), aspect_ratios)
        fh, fw = feature_size(input_size, stride)
        ys = np.arange(fh, dtype=np.float64) * stride + offset * stride
        xs = np.arange(fw, dtype=np.float64) * stride + offset * stride
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        shifts = np.stack([yy, xx, yy, xx], axis=-1).reshape(-1, 1, 4)
        out[level_name(stride)] = (shifts + cells[None]).reshape(-1, 4).astype(np.float32)
    return out


def concat_anchors(anchors: Mapping[str, np.ndarray], levels: Sequence[str]) -> np.ndarray:
    """Concatenate per-level anchors in ``levels`` order -> ``(sum_l N_l, 4)``."""
    return np.concatenate([np.asarray(anchors[l]) for l in levels], axis=0)
