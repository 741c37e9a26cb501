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


# ----------------------------------------------------------------------------- pose histograms

POSE_HISTOGRAM_PANELS = (
    # (field, pose column, kind, label): kind "turn" = polar over [0, 2 pi), "signed" = polar
    # over (-pi, pi], "log" = log-spaced bins, "linear" = np.histogram_bin_edges bins.
    ("azimuth", 0, "turn", "azimuth a"),
    ("elevation", 1, "signed", "elevation e"),
    ("theta", 2, "signed", "in-plane rotation θ"),
    ("distance", 3, "log", "distance d"),
    ("f", 4, "log", "focal length f (px, width 300)"),
    ("u", 5, "linear", "principal point u (px)"),
    ("v", 6, "linear", "principal point v (px)"),
)
"""Panels of :func:`pose_histograms`; each panel's Axes has ``get_label() == field``."""


def wrap_turn(x: np.ndarray) -> np.ndarray:
    """Radians wrapped into ``[0, 2 pi)``; values already inside are returned unchanged (bit-exact)."""
    x = np.asarray(x, np.float64)
    y = x - 2 * np.pi * np.floor(x / (2 * np.pi))
    return np.where(y >= 2 * np.pi, y - 2 * np.pi, y)


def wrap_signed(x: np.ndarray) -> np.ndarray:
    """Radians wrapped into ``(-pi, pi]``; values already inside are returned unchanged (bit-exact)."""
    x = np.asarray(x, np.float64)
    return x - 2 * np.pi * np.ceil((x - np.pi) / (2 * np.pi))


def pose_histogram_edges(values: np.ndarray, kind: str, bins: int) -> np.ndarray:
    """Bin edges ``(bins + 1,)`` float64 of one :func:`pose_histograms` panel.

    ``turn``: ``linspace(0, 2 pi, bins + 1)``; ``signed``: ``linspace(-pi, pi, bins + 1)``
    (values must be wrapped first); ``log``: ``geomspace(min, max, bins + 1)`` (positive
    values); ``linear``: ``np.histogram_bin_edges(values, bins)``.
    """
    v = np.asarray(values, np.float64)
    if kind == "turn":
        return np.linspace(0.0, 2 * np.pi, bins + 1)
    if kind == "signed":
        return np.linspace(-np.pi, np.pi, bins + 1)
    if kind == "log":
        lo, hi = float(v.min()), float(v.max())
        if lo <= 0:
            raise ValueError(f"log-spaced bins need positive values, got min {lo}")
        if hi <= lo:
            lo, hi = lo / 1.1, hi * 1.1
        return np.geomspace(lo, hi, bins + 1)
    if kind == "linear":
        return np.histogram_bin_edges(v, bins)
    raise ValueError(f"unknown histogram kind {kind!r}")


def pose_histograms(
    poses: np.ndarray,
    title: str = "",
    *,
    angle_bins: int = 36,
    bins: int = 40,
    color: str = "tab:blue",
):
    """Figure 7 of Wang et al. 2018 for one dataset: distributions of the 7 pose parameters.

    Top row: polar histograms of azimuth (wrapped into ``[0, 2 pi)``), elevation and in-plane
    rotation θ (wrapped into ``(-pi, pi]``), ``angle_bins`` equal sectors over the full circle.
    Bottom row (and the top row's last panel): histograms of distance ``d`` and focal length
    ``f`` (log-spaced bins, log x axis: both have heavy tails up to ~100x the median) and of
    the principal-point offsets ``u, v`` (``np.histogram_bin_edges(x, bins)``).

    Each panel's bars are one ``BarContainer`` (``ax.containers[0]``) whose patch heights are
    exactly ``np.histogram(x, pose_histogram_edges(x, kind, n))[0]`` (patch ``x``/``width`` are
    the left edge and bin width; angles in radians on the polar axes); panels are found with
    ``ax.get_label()`` = the field name (see :data:`POSE_HISTOGRAM_PANELS`).

    Args:
      poses: ``(N, 7)`` release poses ``(azimuth, elevation, theta, distance, f, u, v)``
        (radians; distance in model units; f, u, v in width-300 annotation-frame pixels).
      title: figure title (e.g. ``"StanfordCars3D (v1, train+test)"``).
      angle_bins: sectors of the polar histograms.
      bins: bins of the other histograms.

    Returns:
      A ``matplotlib.figure.Figure`` (not attached to pyplot; save it with ``savefig``).
    """
    from matplotlib.figure import Figure

    p = np.asarray(poses, np.float64)
    if p.ndim != 2 or p.shape[1] != 7 or len(p) == 0:
        raise ValueError(f"poses must be a non-empty (N, 7) array, got shape {p.shape}")
    fig = Figure(figsize=(16, 8), layout="constrained")
    grid = fig.add_gridspec(2, 4)
    slots = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2)]
    for (field, col, kind, label), (r, c) in zip(POSE_HISTOGRAM_PANELS, slots):
        polar = kind in ("turn", "signed")
        ax = fig.add_subplot(grid[r, c], projection="polar" if polar else None, label=field)
        x = p[:, col]
        if kind == "turn":
            x = wrap_turn(x)
        elif kind == "signed":
            x = wrap_signed(x)
        edges = pose_histogram_edges(x, kind, angle_bins if polar else bins)
        counts, _ = np.histogram(x, edges)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=color, edgecolor="white",
               linewidth=0.3)
        ax.set_title(label)
        if polar:
            ax.set_theta_zero_location("E")
            ax.set_theta_direction(1)
            ax.set_yticklabels([])
        else:
            if kind == "log":
                ax.set_xscale("log")
            ax.set_ylabel("images")
    note = fig.add_subplot(grid[1, 3], label="info")
    note.axis("off")
    note.text(0.0, 0.5, f"{len(p)} images\npolar axes labelled in degrees\nf, u, v: pixels of the width-300 frame",
              va="center", fontsize=11)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------- evaluation plots


def plot_accuracy_curves(panels, path=None, title: str = ""):
    """Accuracy-versus-threshold curves (Figure 8 of Wang et al. 2018), one axis per panel.

    Args:
      panels: sequence of ``(thresholds (T,), {label: accuracy_pct (T,)}, xlabel, ylabel)``,
        e.g. rotation error in degrees and normalised ADD; accuracies in percent.
      path: optional PNG path to save to.
      title: figure title.

    Returns:
      The matplotlib ``Figure`` (closed after saving when ``path`` is given).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.0), squeeze=False)
    for ax, (thresholds, curves, xlabel, ylabel) in zip(axes[0], panels):
        for label, acc in curves.items():
            ax.plot(np.asarray(thresholds), np.asarray(acc), label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{ylabel} (%)")
        ax.set_ylim(0, 100)
        ax.set_xlim(float(np.min(thresholds)), float(np.max(thresholds)))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig


def pose_overlay(
    image: np.ndarray,
    pred_box=None,
    gt_box=None,
    pred_points=None,
    gt_points=None,
    edges=(),
    text: str = "",
    pred_color: tuple[int, int, int] = (40, 230, 40),
    gt_color: tuple[int, int, int] = (255, 60, 60),
    min_size: int = 192,
) -> np.ndarray:
    """Predicted vs ground-truth pose on an image (Figure 9 style).

    Boxes ``(y0, x0, y1, x1)`` and 2D points ``(N, 2)`` as ``(x, y)`` are continuous pixel
    coordinates of ``image`` (e.g. the projected 3D box corners); ``edges`` are index pairs
    into the points drawn as a wireframe. Prediction in ``pred_color`` (green), ground truth
    in ``gt_color`` (red). Small images are upscaled to at least ``min_size`` pixels high.

    Returns:
      ``(H', W', 3)`` uint8 RGB.
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    s = max(1.0, min_size / max(img.shape[0], 1))
    out = np.ascontiguousarray(
        cv2.resize(img.astype(np.uint8), (round(img.shape[1] * s), round(img.shape[0] * s)),
                   interpolation=cv2.INTER_LINEAR) if s > 1 else img.astype(np.uint8).copy())
    thick = max(1, round(out.shape[1] / 300))

    def finite(p):
        return np.all(np.isfinite(p)) and np.all(np.abs(p) < 1e5)

    for box, pts, color in ((gt_box, gt_points, gt_color), (pred_box, pred_points, pred_color)):
        if box is not None and finite(np.asarray(box)):
            y0, x0, y1, x1 = (np.asarray(box, np.float64) * s).round().astype(int)
            cv2.rectangle(out, (x0, y0), (x1, y1), tuple(int(c) for c in color), thick)
        if pts is not None:
            p = np.asarray(pts, np.float64) * s
            for a, b in edges:
                if finite(p[a]) and finite(p[b]):
                    cv2.line(out, tuple(p[a].round().astype(int)), tuple(p[b].round().astype(int)),
                             tuple(int(c) for c in color), thick, cv2.LINE_AA)
    if text:
        scale = max(0.35, out.shape[1] / 900)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        cv2.rectangle(out, (0, 0), (tw + 4, th + base + 4), (0, 0, 0), -1)
        cv2.putText(out, text, (2, th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def save_image_grid(images, path=None, columns: int = 4, pad: int = 4) -> np.ndarray:
    """Tiles RGB uint8 images (any sizes) into a grid, top-left aligned; optionally saves a PNG."""
    images = [np.asarray(im, np.uint8) for im in images]
    if not images:
        raise ValueError("no images to tile")
    cols = max(1, min(columns, len(images)))
    rows = -(-len(images) // cols)
    cell_h = max(im.shape[0] for im in images)
    cell_w = max(im.shape[1] for im in images)
    grid = np.full((rows * cell_h + (rows + 1) * pad, cols * cell_w + (cols + 1) * pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
        grid[y:y + im.shape[0], x:x + im.shape[1]] = im[..., :3]
    if path is not None:
        cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return grid
