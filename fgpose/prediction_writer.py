"""Writing one photo's predictions (``python -m fgpose.predict``), and the run's summary.

Per photo with key ``K`` (its path relative to the images directory, e.g. ``00001.jpg`` or
``make/model/2010/abc.jpg``), under the output directory:

* ``overlay/K.png``: the photo with the predicted box (green) and either the projected CAD
  mesh of the predicted class as a tinted silhouette (when the class's mesh is known), or
  the projected wireframe of a centred unit-diagonal cube with the model's X, Y, Z axes
  (:func:`fgpose.evaluate.unit_box_corners`, :data:`fgpose.evaluate.BOX_EDGES`);
* only when the model has a location-field head (its ``predict`` returns ``field`` and
  ``field_fg``): ``mask/K.png`` (uint8 0/255, original size) where the pasted foreground
  probability is at least :data:`MASK_THRESHOLD`, ``field/K.npy`` (``(H, W, 3)`` float32
  model-space XYZ, 0 off the mask) and ``field/K.png`` (its colouring,
  :func:`fgpose.viz.location_field_to_rgb`). The ``S x S`` RoI outputs live on the grid of
  ``top_box``; they are pasted into original-photo pixels by :func:`fgpose.roi_paste.paste_roi`
  with the box divided by the input scale.

Summary (:func:`write_summary`): ``predictions.json`` (every photo's record, the skipped
files with their reasons, counts) and ``poses.pkl``, the release's annotation pickle
(:func:`fgpose.annotations.save_annotations`) with one record per photo whose pose lies in
the release's ranges. Its ``model_id`` is the predicted class's CAD model id when known,
else ``class_<index>``.

Units: boxes ``(y0, x0, y1, x1)`` and ``P`` (``3 x 4``, release convention) in original-photo
pixels; pose ``(azimuth, elevation, theta, distance, f, u, v)`` in radians, model units and
pixels of the width-300 annotation frame of height ``frame_height = int(H * 300 / W)``. Every
file is written atomically (:func:`fgpose.atomic_io.atomic_write`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from fgpose import annotations as anno_lib
from fgpose import camera, raster, viz
from fgpose.atomic_io import atomic_write, save_npy, save_png
from fgpose.evaluate import BOX_EDGES, unit_box_corners
from fgpose.roi_paste import paste_roi

__all__ = ["FIELD_KEYS", "MASK_THRESHOLD", "ClassInfo", "output_paths", "photo_record", "write_prediction",
           "write_summary"]

FIELD_KEYS = ("field", "field_fg")
"""Outputs of a model with a location-field head (``(S, S, 3)`` XYZ and ``(S, S)`` probability)."""

MASK_THRESHOLD = 0.5
"""Foreground probability at or above which a pasted pixel is in the mask."""

OVERLAY_RENDER_SIDE = 512
"""Longer side (pixels) of the silhouette rendered for an overlay; it is resized to the photo."""

JSON_FILE = "predictions.json"
PICKLE_FILE = "poses.pkl"

_AXES = np.concatenate([unit_box_corners(), [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]]).astype(np.float32)
_AXES_EDGES = tuple(BOX_EDGES) + ((8, 9), (8, 10), (8, 11))


@dataclasses.dataclass(frozen=True)
class ClassInfo:
    """What is known about the dataset's classes, in label order (each entry may be ``None``).

    Attributes:
      names: class names.
      model_ids: CAD model id of each class (the release's ``CAD/<Dataset>3D.txt``).
      meshes: :class:`fgpose.mesh.Mesh` of each class (model space of the poses).
    """

    names: Sequence[str] | None = None
    model_ids: Sequence[str] | None = None
    meshes: Sequence[Any] | None = None

    def name(self, index: int) -> str | None:
        return str(self.names[index]) if self.names is not None and 0 <= index < len(self.names) else None

    def model_id(self, index: int) -> str:
        ok = self.model_ids is not None and 0 <= index < len(self.model_ids)
        return str(self.model_ids[index]) if ok else f"class_{index}"

    def mesh(self, index: int):
        return self.meshes[index] if self.meshes is not None and 0 <= index < len(self.meshes) else None


def output_paths(out_dir: str | pathlib.Path, key: str) -> dict[str, pathlib.Path]:
    """``{'overlay', 'mask', 'field_npy', 'field_png'}`` paths of photo ``key`` (module docstring)."""
    out = pathlib.Path(out_dir)
    return {"overlay": out / "overlay" / f"{key}.png", "mask": out / "mask" / f"{key}.png",
            "field_npy": out / "field" / f"{key}.npy", "field_png": out / "field" / f"{key}.png"}


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _pose_dict(pose) -> dict[str, float | None]:
    return {k: _finite(v) for k, v in zip(camera.POSE_FIELDS, np.asarray(pose, np.float64))}


def photo_record(key: str, row: Mapping[str, np.ndarray], classes: ClassInfo) -> dict[str, Any]:
    """The JSON record of one photo from its row of :meth:`fgpose.inference.Predictor.predict`.

    Returns:
      ``{'file', 'image_hw', 'frame_height', 'class', 'class_name', 'model_id', 'score',
      'detected', 'box', 'pose', 'P', 'detections'}`` (+ ``pose_appearance``/``pose_field``
      when the model returns them); box and ``P`` in original pixels (module docstring).
    """
    scale = float(row["scale"])
    cls = int(row["top_class"])
    rec: dict[str, Any] = {
        "file": key,
        "image_hw": [int(x) for x in row["original_hw"]],
        "frame_height": int(round(float(row["frame_height"]))),
        "class": cls,
        "class_name": classes.name(cls),
        "model_id": classes.model_id(cls),
        "score": _finite(row["top_score"]),
        "detected": bool(row["top_valid"]) if "top_valid" in row else True,
        "box": [_finite(x) for x in np.asarray(row["top_box"], np.float64) / scale],
        "pose": _pose_dict(row["pose"]),
        "P": [[_finite(x) for x in r] for r in np.asarray(row["projection"], np.float64)],
        "detections": [{"box": [_finite(x) for x in np.asarray(b, np.float64) / scale], "score": _finite(s),
                        "class": int(c), "class_name": classes.name(int(c))}
                       for b, s, c, ok in zip(row["boxes"], row["scores"], row["classes"], row["valid"]) if ok],
    }
    for extra in ("pose_appearance", "pose_field"):
        if extra in row:
            rec[extra] = _pose_dict(row[extra])
    return rec


def _silhouette(mesh, pose: np.ndarray, frame_height: float, image_hw: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` bool silhouette of ``mesh`` under ``pose``, at most :data:`OVERLAY_RENDER_SIDE`
    on its longer side (the photo's aspect), rendered on a fixed square canvas so that every
    photo size shares one compiled rasterizer."""
    h, w = image_hw
    s = min(1.0, OVERLAY_RENDER_SIDE / max(h, w))
    hw = (max(1, round(h * s)), max(1, round(w * s)))
    p = camera.projection_matrix(camera.Pose.from_array(jnp.asarray(pose, jnp.float32)), frame_height,
                                 image_size=hw)
    side = OVERLAY_RENDER_SIDE if s < 1.0 else max(hw)
    mask = raster.silhouette(mesh.vertices, mesh.faces, p, side, side)
    return np.asarray(mask)[: hw[0], : hw[1]]


def _overlay(photo: np.ndarray, record: Mapping[str, Any], row: Mapping[str, np.ndarray], mesh) -> np.ndarray:
    box = np.asarray(row["top_box"], np.float64) / float(row["scale"])
    if mesh is not None:
        base = viz.overlay_mask(photo, _silhouette(mesh, row["pose"], float(row["frame_height"]), photo.shape[:2]))
        points, edges = None, ()
    else:
        base = photo
        xy, _ = camera.project_points(jnp.asarray(row["projection"], jnp.float32), jnp.asarray(_AXES))
        points, edges = np.asarray(xy), _AXES_EDGES
    text = record["class_name"] or f"class {record['class']}"
    if record["score"] is not None:
        text += f"  score {record['score']:.2f}"
    return viz.pose_overlay(base, pred_box=box, pred_points=points, edges=edges, text=text, min_size=0)


def write_prediction(out_dir: str | pathlib.Path, key: str, photo: np.ndarray, row: Mapping[str, np.ndarray],
                     classes: ClassInfo) -> dict[str, Any]:
    """Writes photo ``key``'s overlay (and mask and field when ``row`` has :data:`FIELD_KEYS`).

    Args:
      out_dir: output directory (module docstring for the layout).
      photo: ``(H, W, 3)`` uint8, the photo as read (EXIF orientation applied).
      row: the photo's row of :meth:`fgpose.inference.Predictor.predict` (no batch axis).
      classes: names, model ids and meshes of the dataset's classes.

    Returns:
      The photo's JSON record (:func:`photo_record`) with ``outputs``: the written files'
      paths relative to ``out_dir`` (``mask``/``field_*`` ``None`` without a field head).
    """
    rec = photo_record(key, row, classes)
    paths = output_paths(out_dir, key)
    save_png(paths["overlay"], _overlay(photo, rec, row, classes.mesh(rec["class"])))
    written = {"overlay": paths["overlay"], "mask": None, "field_npy": None, "field_png": None}
    if all(k in row for k in FIELD_KEYS):
        box = np.asarray(row["top_box"], np.float64) / float(row["scale"])
        hw = tuple(photo.shape[:2])
        mask = paste_roi(row["field_fg"], box, hw) >= MASK_THRESHOLD
        xyz = paste_roi(row["field"], box, hw)
        xyz[~mask] = 0.0
        save_png(paths["mask"], mask.astype(np.uint8) * 255)
        save_npy(paths["field_npy"], xyz.astype(np.float32))
        save_png(paths["field_png"], viz.location_field_to_rgb(xyz, mask))
        written.update({k: paths[k] for k in ("mask", "field_npy", "field_png")})
        rec["mask_pixels"] = int(mask.sum())
    out = pathlib.Path(out_dir)
    rec["outputs"] = {k: (p.relative_to(out).as_posix() if p is not None else None) for k, p in written.items()}
    return rec


def write_summary(out_dir: str | pathlib.Path, records: Sequence[dict], skipped: Sequence[dict],
                  meta: Mapping[str, Any]) -> dict[str, Any]:
    """Writes ``poses.pkl`` (release format) and ``predictions.json``; returns the JSON document.

    A record whose pose is outside the release's ranges (:data:`fgpose.annotations.FLOAT_BOUNDS`,
    e.g. a non-finite value) stays in the JSON with ``in_pickle: false`` and the reason.

    Args:
      records: :func:`write_prediction` results (updated in place with ``in_pickle``).
      skipped: ``[{'file', 'reason'}]`` photos that could not be processed.
      meta: run information stored under ``run`` (workdir, step, dataset, ...).
    """
    out = pathlib.Path(out_dir)
    annos = []
    for rec in records:
        values = [rec["pose"][k] for k in camera.POSE_FIELDS]
        try:
            annos.append(anno_lib.Annotation(rec["file"], rec["model_id"],
                                             *[float("nan") if v is None else v for v in values]))
            rec["in_pickle"] = True
        except anno_lib.AnnotationError as exc:
            rec["in_pickle"] = False
            rec["not_in_pickle_reason"] = str(exc)
    anno_lib.save_annotations(out / PICKLE_FILE, annos)
    doc = {
        "run": dict(meta),
        "counts": {"images": len(records) + len(skipped), "predicted": len(records), "skipped": len(skipped),
                   "detected": sum(bool(r["detected"]) for r in records), "in_pickle": len(annos)},
        "pickle": PICKLE_FILE,
        "images": list(records),
        "skipped": list(skipped),
    }
    text = json.dumps(doc, indent=1, allow_nan=False)
    atomic_write(out / JSON_FILE, lambda fh: fh.write(text.encode()))
    return doc
