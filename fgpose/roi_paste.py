"""Pasting an ``S x S`` RoI output (a location field, a foreground probability) into an image.

The inverse of RoIAlign-style sampling, like Mask R-CNN's ``paste_masks_in_image``: an RoI
head predicts values on the ``S x S`` bin grid of a box ``(y0, x0, y1, x1)``, bin ``(i, j)``
centred at ``(y0 + (i + 0.5) (y1 - y0) / S, x0 + (j + 0.5) (x1 - x0) / S)`` (continuous pixel
coordinates, pixel centres at ``+0.5``; the convention of
:mod:`fgpose.models.field_targets`). :func:`paste_roi` gives every pixel of an ``H x W`` image
whose centre lies inside the box the bilinear interpolation of the bins at that centre:

* the bin coordinate of pixel row ``r`` is ``t = (r + 0.5 - y0) S / (y1 - y0) - 0.5``
  (columns alike), interpolated between bins ``floor(t)`` and ``floor(t) + 1``;
* inside the box but beyond the outermost bin centres (``t < 0`` or ``t > S - 1``) the edge
  bin's value is used (no blending with zero, so model-space XYZ is not pulled towards the
  origin at the box edge);
* pixels whose centre is outside the box, or outside the image, get ``fill``.

Bilinear interpolation is separable, so the paste is two small matrix products
(``(H, S) x (S, S, C) x (S, W)``) restricted to the box's rows and columns. NumPy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bilinear_weights", "paste_roi"]


def bilinear_weights(lo: float, hi: float, size: int, length: int) -> tuple[np.ndarray, int]:
    """Interpolation weights of the pixels of one image axis on the ``size`` bins of ``[lo, hi)``.

    Args:
      lo, hi: the box's extent on this axis (continuous pixels, ``hi > lo``).
      size: ``S``, the number of bins.
      length: the image's number of pixels on this axis.

    Returns:
      ``(weights, first)``: ``weights`` ``(n, S)`` float64, row ``k`` the weights of pixel
      ``first + k`` (each row sums to 1), for the ``n`` pixels whose centre lies in
      ``[lo, hi)`` and inside the image (``n`` may be 0).
    """
    first = max(0, int(np.ceil(lo - 0.5)))
    stop = min(length, int(np.ceil(hi - 0.5)))
    centres = np.arange(first, max(first, stop), dtype=np.float64) + 0.5
    t = np.clip((centres - lo) * size / (hi - lo) - 0.5, 0.0, size - 1)
    i0 = np.floor(t).astype(np.int64)
    i1 = np.minimum(i0 + 1, size - 1)
    frac = t - i0
    w = np.zeros((len(centres), size), np.float64)
    rows = np.arange(len(centres))
    np.add.at(w, (rows, i0), 1.0 - frac)
    np.add.at(w, (rows, i1), frac)
    return w, first


def paste_roi(values: np.ndarray, box, image_hw: tuple[int, int], fill: float = 0.0) -> np.ndarray:
    """Pastes ``S x S`` RoI values into an ``H x W`` image by bilinear interpolation (module docstring).

    Args:
      values: ``(S, S)`` or ``(S, S, C)`` values on the RoI's bin grid (e.g. a foreground
        probability, a model-space XYZ field).
      box: ``(4,)`` ``(y0, x0, y1, x1)`` in the pixels of the output image (e.g. a box of the
        network input divided by the input scale gives original-photo pixels).
      image_hw: ``(H, W)`` of the output.
      fill: value of every pixel whose centre is outside the box (and of everything when the
        box is empty or not finite).

    Returns:
      ``(H, W)`` or ``(H, W, C)`` float32.
    """
    v = np.asarray(values, np.float64)
    squeeze = v.ndim == 2
    if squeeze:
        v = v[..., None]
    if v.ndim != 3 or v.shape[0] != v.shape[1]:
        raise ValueError(f"values must be (S, S) or (S, S, C), got shape {np.shape(values)}")
    h, w = (int(x) for x in image_hw)
    out = np.full((h, w, v.shape[-1]), fill, np.float32)
    y0, x0, y1, x1 = (float(x) for x in np.asarray(box, np.float64).reshape(4))
    if np.all(np.isfinite([y0, x0, y1, x1])) and y1 > y0 and x1 > x0:
        wy, r0 = bilinear_weights(y0, y1, v.shape[0], h)
        wx, c0 = bilinear_weights(x0, x1, v.shape[1], w)
        if len(wy) and len(wx):
            out[r0:r0 + len(wy), c0:c0 + len(wx)] = np.einsum("ri,ijc,kj->rkc", wy, v, wx, optimize=True)
    return out[..., 0] if squeeze else out
