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
