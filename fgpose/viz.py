"""Pictures of rendered buffers: overlays on photos, depth and location-field colourings.

Images are ``H x W x 3`` uint8 RGB arrays; masks ``H x W`` bool. Nothing here computes a
metric or a pose.
"""

from __future__ import annotations

import cv2
import matplotlib
import numpy as np


def overlay_mask(
    photo: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (0, 200, 255),
    alpha: float = 0.4,
    contour_px: int = 2,
) -> np.ndarray:
    """Tints ``mask`` on ``photo`` and draws its outline.

    Args:
      photo: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey).
      mask: ``(h, w)`` bool; resized to the photo with nearest neighbour if sizes differ
        (both frames cover the same field of view, e.g. the width-300 annotation frame).
      color: RGB of the tint and outline.
      alpha: tint opacity in ``[0, 1]``.
      contour_px: outline thickness in pixels (0: none).

    Returns:
      ``(H, W, 3)`` uint8 RGB.
    """
    img = np.asarray(photo)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"photo must be HxWx3 RGB, got shape {img.shape}")
    m = np.asarray(mask, bool)
    if m.shape != img.shape[:2]:
        m = cv2.resize(m.astype(np.uint8), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    out = img.astype(np.float32)
    tint = np.asarray(color, np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * tint
    out = out.round().clip(0, 255).astype(np.uint8)
    if contour_px > 0:
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        out = np.ascontiguousarray(out)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), contour_px)
    return out


def depth_to_rgb(depth: np.ndarray, mask: np.ndarray | None = None, cmap: str = "viridis") -> np.ndarray:
    """Colours depth ``(H, W)`` over its range on ``mask`` (default ``depth > 0``); black elsewhere."""
    d = np.asarray(depth, np.float32)
    m = d > 0 if mask is None else np.asarray(mask, bool)
    out = np.zeros(d.shape + (3,), np.uint8)
    if m.any():
        lo, hi = d[m].min(), d[m].max()
        t = (d - lo) / max(hi - lo, 1e-12)
        rgb = matplotlib.colormaps[cmap](np.clip(t, 0, 1))[..., :3]
        out[m] = (rgb[m] * 255).round().astype(np.uint8)
    return out


def location_field_to_rgb(location: np.ndarray, mask: np.ndarray, bounds: np.ndarray | None = None) -> np.ndarray:
    """Maps model-space XYZ ``(H, W, 3)`` to RGB with ``bounds`` ``(2, 3)`` (min, max) -> 0..255.

    Default bounds are ``[-0.5, 0.5]`` on every axis, which covers any centred unit-diagonal
    (ShapeNet-normalised) model; pixels off ``mask`` are black.
    """
    loc = np.asarray(location, np.float32)
    b = np.array([[-0.5] * 3, [0.5] * 3], np.float32) if bounds is None else np.asarray(bounds, np.float32)
    t = (loc - b[0]) / np.maximum(b[1] - b[0], 1e-12)
    out = (np.clip(t, 0, 1) * 255).round().astype(np.uint8)
    out[~np.asarray(mask, bool)] = 0
    return out


def _outline(img: np.ndarray, mask: np.ndarray, color, thickness: int) -> None:
    contours, _ = cv2.findContours(np.asarray(mask, np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(img, contours, -1, tuple(int(c) for c in color), thickness)


def refinement_overlay(
    photo: np.ndarray,
    before: np.ndarray,
    after: np.ndarray,
    reference: np.ndarray | None = None,
    labels: tuple[str, str] = ("v1", "refined"),
    before_color: tuple[int, int, int] = (255, 60, 60),
    after_color: tuple[int, int, int] = (40, 230, 40),
    reference_color: tuple[int, int, int] = (60, 140, 255),
    reference_alpha: float = 0.3,
) -> np.ndarray:
    """Before/after picture of an annotation refinement (Figure 5 of the refinement paper).

    The photo with the reference segmentation tinted (``reference_color``), the silhouette
    before refinement outlined in ``before_color`` (red) and the one after in
    ``after_color`` (green), and ``labels`` written in the top-left corner in the colour of
    their outline (e.g. ``("v1 IoU 0.874", "refined IoU 0.962")``).

    Args:
      photo: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey).
      before, after, reference: ``(h, w)`` bool masks covering the photo's field of view;
        resized to the photo with nearest neighbour if their size differs.
      labels: the two text lines (before, after).

    Returns:
      ``(H, W, 3)`` uint8 RGB, the photo's size.
    """
    img = np.asarray(photo)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"photo must be HxWx3 RGB, got shape {img.shape}")
    h, w = img.shape[:2]

    def fit(m):
        m = np.asarray(m, bool)
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return m

    if reference is not None:
        out = overlay_mask(img, fit(reference), color=reference_color, alpha=reference_alpha, contour_px=0)
    else:
        out = img.astype(np.uint8).copy()
    out = np.ascontiguousarray(out)
    thickness = max(1, round(w / 300))
    _outline(out, fit(before), before_color, thickness)
    _outline(out, fit(after), after_color, thickness)
    scale = max(0.35, w / 1200)
    text_thickness = max(1, round(scale * 2))
    y = 0
    for text, color in zip(labels, (before_color, after_color)):
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, text_thickness)
        pad = max(2, th // 3)
        cv2.rectangle(out, (0, y), (tw + 2 * pad, y + th + base + 2 * pad), (0, 0, 0), -1)
        cv2.putText(out, text, (pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in color),
                    text_thickness, cv2.LINE_AA)
        y += th + base + 2 * pad
    return out
