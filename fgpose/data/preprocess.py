"""Per-example preprocessing: resize to the network input, pad, scale boxes, flip.

Geometry (continuous pixel coordinates, pixel centres at ``+0.5``, boxes ``(y0, x0, y1, x1)``):

* The photo (``H x W``) is resized with one isotropic factor
  ``scale = min(H_in / H, W_in / W)`` to ``(round(H * scale), round(W * scale))`` (clipped to
  the input size; ``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` when enlarging) and
  padded with zeros at the bottom/right to ``(H_in, W_in)``. Boxes are ``box * scale``. The
  content's true per-axis factors ``round(W * scale) / W`` differ from ``scale`` by less than
  half an input pixel over the whole image (rounding of the content size).
* ``pose`` is passed raw (release convention, width-300 annotation frame); the projection in
  input pixels is ``diag(scale, scale, 1) @ projection_matrix(pose, frame_height,
  image_size=original_hw)``.

Horizontal flip (``x -> W - x`` on the original photo, before resizing) mirrors the scene.
For an object symmetric about its model-space plane ``X_k = 0`` (ShapeNet cars and planes:
``+Y`` up, ``+X`` front, symmetric about ``z = 0``, so ``k = z``), the flipped photo is the
projection of the *same* object under another pose. Derivation: with ``M = diag(-1, 1, 1)``
(camera x mirror) and ``S`` the model mirror, the flipped pixel is
``x' = 300 - x = f (M Xc)_x / (M Xc)_z + (150 - u)`` (annotation frame; ``y`` unchanged), so
``u' = -u`` and the camera points are ``M Xc = M R X - (0, 0, d) = (M R S)(S X) - (0, 0, d)``.
Conjugation gives ``M Rz(t) M = Rz(-t)``, ``M Rx(e) M = Rx(e)``, ``M Ry(a) M = Ry(-a)`` and
``M S_z = diag(-1, 1, -1) = Ry(pi)``, ``M S_x = I``; hence

* symmetry plane ``z = 0``: ``M R S_z = Rz(-t) Rx(e) Ry(pi - a)``:
  ``(a, e, t, d, f, u, v) -> (pi - a, e, -t, d, f, -u, v)``;
* symmetry plane ``x = 0``: ``M R S_x = Rz(-t) Rx(e) Ry(-a)``:
  ``(a, e, t, d, f, u, v) -> (-a, e, -t, d, f, -u, v)``.

The surface point seen at a flipped pixel is ``S X``, so the location field's ``k``
component is negated (and the field and mask are flipped like the photo).
"""

from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from fgpose import camera
from fgpose.data.sources import decode_image

SYMMETRY_AXES = {"x": 0, "z": 2}
"""Model-space axis normal to the object's symmetry plane (ShapeNet cars/planes: ``"z"``)."""


def flip_pose(pose: np.ndarray, symmetry_axis: str = "z") -> np.ndarray:
    """The pose of the mirrored object after a horizontal image flip (see module docstring).

    Args:
      pose: ``(..., 7)`` release poses ``(azimuth, elevation, theta, distance, f, u, v)``.
      symmetry_axis: ``"z"`` (ShapeNet: symmetric about ``z = 0``) -> ``a' = pi - a`` wrapped
        into ``[0, 2 pi)``; ``"x"`` -> ``a' = -a``. Always ``e' = e``, ``t' = -t``,
        ``u' = -u``; ``d, f, v`` unchanged.

    Returns:
      ``(..., 7)`` of the input's float dtype.
    """
    p = np.array(pose, copy=True)
    if p.shape[-1:] != (7,):
        raise ValueError(f"pose must end in 7 parameters, got shape {p.shape}")
    if symmetry_axis == "z":
        a = np.mod(np.pi - p[..., 0].astype(np.float64), 2 * np.pi)
        p[..., 0] = np.where(a >= 2 * np.pi, 0.0, a)
    elif symmetry_axis == "x":
        p[..., 0] = -p[..., 0]
    else:
        raise ValueError(f"symmetry_axis must be one of {sorted(SYMMETRY_AXES)}, got {symmetry_axis!r}")
    p[..., 2] = -p[..., 2]
    p[..., 5] = -p[..., 5]
    return p


def flip_boxes(boxes: np.ndarray, width: float) -> np.ndarray:
    """``(..., 4)`` boxes ``(y0, x0, y1, x1)`` under ``x -> width - x``."""
    b = np.array(boxes, copy=True)
    b[..., 1], b[..., 3] = width - boxes[..., 3], width - boxes[..., 1]
    return b


def input_scale(image_hw: tuple[int, int], input_size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """``(scale, (h, w))``: the isotropic factor fitting ``image_hw`` into ``input_size`` and the
    resized content size ``(min(H_in, round(H * scale)), min(W_in, round(W * scale)))`` (>= 1)."""
    h, w = (int(x) for x in image_hw)
    hin, win = (int(x) for x in input_size)
    if min(h, w, hin, win) <= 0:
        raise ValueError(f"sizes must be positive: image {image_hw}, input {input_size}")
    scale = min(hin / h, win / w)
    return scale, (min(hin, max(1, round(h * scale))), min(win, max(1, round(w * scale))))


def resize_nearest(array: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``(h, w, ...)`` to ``hw``, exact in pixel-centre terms.

    Output pixel ``(i, j)`` takes source pixel ``(floor((i + 0.5) h / H'), floor((j + 0.5) w /
    W'))`` (clipped), i.e. the source pixel containing its centre. (``cv2.INTER_NEAREST`` is
    off by half a pixel and ``INTER_NEAREST_EXACT`` rounds ties in fixed point.)
    """
    a = np.asarray(array)
    h, w = a.shape[:2]
    rows = np.minimum(((np.arange(hw[0]) + 0.5) * h / hw[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(hw[1]) + 0.5) * w / hw[1]).astype(np.int64), w - 1)
    return a[rows[:, None], cols[None, :]]


def resize_and_pad(
    image: np.ndarray,
    content_hw: tuple[int, int],
    input_size: tuple[int, int],
    interpolation: int | str | None = None,
) -> np.ndarray:
    """Resizes ``image`` ``(H, W[, C])`` to ``content_hw`` and zero-pads it to ``input_size``.

    Default interpolation: ``cv2.INTER_AREA`` when shrinking, ``cv2.INTER_LINEAR`` otherwise;
    ``"nearest"`` uses :func:`resize_nearest` (masks, location fields).
    Returns ``(H_in, W_in[, C])`` of the input dtype (float16 is resized in float32).
    """
    img = np.asarray(image)
    h, w = content_hw
    if interpolation is None:
        interpolation = cv2.INTER_AREA if (h < img.shape[0] or w < img.shape[1]) else cv2.INTER_LINEAR
    work = img.astype(np.float32) if img.dtype == np.float16 else img
    if interpolation == "nearest":
        work = resize_nearest(work, (h, w))
    elif work.shape[:2] != (h, w):
        work = cv2.resize(np.ascontiguousarray(work), (w, h), interpolation=interpolation)
        if img.ndim == 3 and work.ndim == 2:
            work = work[..., None]
    out = np.zeros(tuple(input_size) + img.shape[2:], img.dtype)
    out[:h, :w] = work
    return out


def _get(example: Mapping[str, Any], key: str):
    try:
        return example[key]
    except KeyError:
        raise KeyError(f"example has no feature {key!r} (has {sorted(example)})") from None


def preprocess_example(
    example: Mapping[str, Any],
    *,
    input_size: tuple[int, int],
    max_boxes: int,
    flip: bool = False,
    with_fields: bool = False,
    symmetry_axis: str = "z",
) -> dict[str, np.ndarray]:
    """One dataset example (:mod:`fgpose.data.sources`) -> one batch row (no batch axis).

    Args:
      example: dict with ``image`` (``(H, W, 3)`` uint8 or encoded bytes), ``label`` (int),
        ``pose`` ``(7,)``, ``box`` ``(4,)`` original pixels; with ``with_fields`` also
        ``mask`` ``(h, w, 1)`` and ``location_field`` ``(h, w, 3)`` at the field resolution.
      input_size: ``(H_in, W_in)``.
      max_boxes: ``G`` (one GT per example; the rest is padding).
      flip: mirror the example horizontally (see module docstring).
      with_fields: also return ``mask`` ``(H_in, W_in)`` bool and ``location_field``
        ``(H_in, W_in, 3)`` float32 in the input frame (nearest-neighbour resize, zero pad).
      symmetry_axis: the object's model-space mirror axis for ``flip``.

    Returns:
      Dict of NumPy arrays: ``image`` ``(H_in, W_in, 3)`` uint8, ``image_hw`` ``(2,)`` int32,
      ``original_hw`` ``(2,)`` int32, ``scale`` float32, ``boxes`` ``(G, 4)`` float32,
      ``box_valid`` ``(G,)`` bool, ``labels`` ``(G,)`` int32, ``pose`` ``(G, 7)`` float32,
      ``frame_height`` float32 (+ fields).
    """
    if max_boxes < 1:
        raise ValueError(f"max_boxes must be >= 1, got {max_boxes}")
    image = decode_image(_get(example, "image"), 3)
    height, width = image.shape[:2]
    if "image/size" in example:
        size = tuple(int(x) for x in np.asarray(example["image/size"]).reshape(-1))
        if size != (height, width):
            raise ValueError(f"image/size {size} differs from the decoded image's {(height, width)}")
    box = np.asarray(_get(example, "box"), np.float64).reshape(4)
    pose = np.asarray(_get(example, "pose"), np.float64).reshape(7)
    if flip:
        image = image[:, ::-1]
        box = flip_boxes(box, width)
        pose = flip_pose(pose, symmetry_axis)
    scale, content_hw = input_scale((height, width), input_size)
    out = {
        "image": resize_and_pad(image, content_hw, input_size),
        "image_hw": np.asarray(content_hw, np.int32),
        "original_hw": np.asarray((height, width), np.int32),
        "scale": np.float32(scale),
        "boxes": np.zeros((max_boxes, 4), np.float32),
        "box_valid": np.zeros((max_boxes,), bool),
        "labels": np.zeros((max_boxes,), np.int32),
        "pose": np.zeros((max_boxes, 7), np.float32),
        "frame_height": np.float32(camera.annotation_frame_height(width, height)),
    }
    out["boxes"][0] = box * scale
    out["box_valid"][0] = True
    out["labels"][0] = int(_get(example, "label"))
    out["pose"][0] = pose
    if with_fields:
        mask = decode_image(_get(example, "mask"), 1)[..., 0]
        loc = np.asarray(_get(example, "location_field"), np.float32)
        if loc.shape[:2] != mask.shape:
            raise ValueError(f"mask {mask.shape} and location_field {loc.shape} sizes differ")
        if flip:
            mask = mask[:, ::-1]
            loc = loc[:, ::-1].copy()
            loc[..., SYMMETRY_AXES[symmetry_axis]] *= -1
        out["mask"] = resize_and_pad(mask, content_hw, input_size, "nearest") > 0
        out["location_field"] = resize_and_pad(loc, content_hw, input_size, "nearest")
    return out


def padding_example(
    input_size: tuple[int, int], max_boxes: int, with_fields: bool = False
) -> dict[str, np.ndarray]:
    """A padding example (eval batches): zeros, no valid box, but harmless geometry.

    ``image_hw = original_hw = input_size``, ``scale = 1`` and ``frame_height =
    int(H_in * 300 / W_in)`` so that no consumer divides by zero.
    """
    hin, win = (int(x) for x in input_size)
    out = {
        "image": np.zeros((hin, win, 3), np.uint8),
        "image_hw": np.asarray((hin, win), np.int32),
        "original_hw": np.asarray((hin, win), np.int32),
        "scale": np.float32(1.0),
        "boxes": np.zeros((max_boxes, 4), np.float32),
        "box_valid": np.zeros((max_boxes,), bool),
        "labels": np.zeros((max_boxes,), np.int32),
        "pose": np.zeros((max_boxes, 7), np.float32),
        "frame_height": np.float32(camera.annotation_frame_height(win, hin)),
    }
    if with_fields:
        out["mask"] = np.zeros((hin, win), bool)
        out["location_field"] = np.zeros((hin, win, 3), np.float32)
    return out


__all__ = [
    "SYMMETRY_AXES",
    "flip_boxes",
    "flip_pose",
    "input_scale",
    "padding_example",
    "preprocess_example",
    "resize_and_pad",
    "resize_nearest",
]
