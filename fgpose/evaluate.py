"""Evaluation: ``python -m fgpose.evaluate --config configs/<name>.py --workdir DIR``.

Restores the latest checkpoint of ``workdir``, runs ``model.predict`` over
``config.dataset.eval_split`` (sharded like training, every process reading its share) and
reports:

* the paper's Table 2 columns (:func:`fgpose.metrics.pose_metrics`): median / mean rotation
  error ``e_R`` (degrees), ``Acc_pi/6`` (%), median / mean normalised ``~e_ADD`` and
  ``Acc_0.1`` (%), for the pose predicted on the top-scoring detection of each image (an
  image without any detection is a failure: infinite errors);
* detection AP50: VOC AP (all-point interpolated precision/recall area) at IoU 0.5 over the
  top-K detections of every image, class-aware (mean over classes with ground truth) and
  class-agnostic.

``~e_ADD`` needs the CAD model of each object, taken as the mesh of its ground-truth class,
which the dataset's builder supplies (:func:`fgpose.data.registry.class_meshes`; up to
:data:`MAX_VERTICES` vertices each, deterministic subsample):

* real datasets (stanford_cars3d, compcars3d, fgvc_aircraft3d): the release's ShapeNet
  meshes (normalised), when ``$FGPOSE_RELEASE_DIR`` holds every class's model, reported as
  ``add_vertices = 'cad'``;
* ``synthetic_pose3d``: the procedural class meshes (``'class_meshes'``);
* otherwise a proxy: the 8 corners of a centred cube of unit diagonal, reported as
  ``add_vertices = 'unit_box_corners'`` (e_R columns are unaffected).

With the location-field branch (``model.field.enabled``) the table has one row per output
(:data:`FIELD_ROWS`): ``appearance`` (the pose head alone, the paper's Baseline), ``field``
(the pose-from-field quaternion with the appearance head's d, f, u, v) and ``combined`` (the
fused pose, the paper's "w./ Field"; the top-level metrics are this row's). The field's quality
on the eval split (:func:`field_quality`): the ground-truth field and mask are resampled into
the predicted ``top_box``'s ``S x S`` bins exactly like the training targets
(:func:`fgpose.models.field_targets.roi_field_targets`), then ``field_xyz_error`` is the mean
Euclidean XYZ error over the bins that are truly foreground (model units) and
``field_fg_iou`` the IoU (percent, pooled over all images) of the predicted foreground
(``field_fg >= 0.5``) with the true one. The fusion weight is ``model.field.fusion_weight``,
or, with ``eval.fusion_holdout = N > 0``, the :func:`~fgpose.models.quaternion_fusion.
fit_fusion_weight` choice (grid ``eval.fusion_grid``) on the first ``N`` examples of the
training split (``fusion_weight`` in the results). Those examples were seen in training, so
the choice is biased towards the better-fitted head; the config value is the default.

Outputs (process 0): ``workdir/eval/<step>.json`` (metrics, per-example errors, curves),
``workdir/eval/<step>_accuracy.png`` (Figure 8: accuracy vs rotation-error threshold and vs
``~e_ADD`` threshold), ``workdir/eval/<step>_overlays.png`` (Figure 9: predicted box and
projected 3D box/model wireframe in green, ground truth in red, on test images; with the field
branch each is followed by the predicted field inside the predicted box, XYZ as RGB), and the
table on stdout.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fgpose import camera, distributed, metrics
from fgpose import checkpoint as ckpt
from fgpose.config import ConfigError, resolve_num_classes, validate_config
from fgpose.data import make_eval_iterator, registry
from fgpose.models import boxes, pose_coding
from fgpose.models.field_pose_pretrain import pose_quaternion
from fgpose.models.field_targets import roi_field_targets
from fgpose.models.quaternion_fusion import fit_fusion_weight, fuse_quaternions
from fgpose.models.build import abstract_model, build_model, merge_model
from fgpose.optim import make_optimizer

log = logging.getLogger("fgpose.evaluate")

MAX_VERTICES = 1000
"""Vertices per CAD model used for ``~e_ADD`` (uniform deterministic subsample of larger meshes)."""

UNIT_BOX = "unit_box_corners"
"""``add_vertices`` of the proxy used when the builder has no meshes for the classes."""

TABLE_COLUMNS = (
    ("rot_median_deg", "MedErr_R (deg)", "{:.2f}"),
    ("rot_mean_deg", "MeanErr_R (deg)", "{:.2f}"),
    ("rot_acc_pi_6", "Acc_pi/6 (%)", "{:.1f}"),
    ("add_median", "MedErr_ADD", "{:.3f}"),
    ("add_mean", "MeanErr_ADD", "{:.3f}"),
    ("add_acc_0.1", "Acc_0.1 (%)", "{:.1f}"),
    ("ap50", "AP50 (%)", "{:.1f}"),
    ("ap50_agnostic", "AP50 agn. (%)", "{:.1f}"),
)


# ----------------------------------------------------------------------------- detection AP


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the monotone (interpolated) precision-recall curve (VOC 2010+ all-point AP)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def _ap_one(det_img, det_boxes, det_scores, gt_boxes_per_img: Mapping[int, np.ndarray], iou_thr: float):
    num_gt = sum(len(g) for g in gt_boxes_per_img.values())
    if num_gt == 0:
        return None
    order = np.argsort(-np.asarray(det_scores), kind="stable")
    used = {k: np.zeros(len(g), bool) for k, g in gt_boxes_per_img.items()}
    # IoU of every detection with its image's ground truth: one box_iou call per image.
    ious_of: dict[int, np.ndarray] = {}
    for img, gts in gt_boxes_per_img.items():
        sel = np.nonzero(np.asarray(det_img) == img)[0]
        if len(sel) and len(gts):
            ious_of.update(zip(sel.tolist(), np.asarray(boxes.box_iou(np.asarray(det_boxes)[sel], gts))))
    tp = np.zeros(len(order))
    for rank, d in enumerate(order):
        ious = ious_of.get(int(d))
        if ious is None:
            continue
        j = int(np.argmax(ious))
        if ious[j] >= iou_thr and not used[int(det_img[d])][j]:
            used[int(det_img[d])][j] = True
            tp[rank] = 1
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1 - tp)
    recall = ctp / num_gt
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    return voc_ap(recall, precision)


def detection_ap(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    det_valid: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_valid: np.ndarray,
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """VOC-style AP at ``iou_threshold`` over all images.

    Args:
      det_boxes: ``(I, K, 4)`` detections (y0, x0, y1, x1) of ``I`` images, top-K each.
      det_scores, det_classes, det_valid: ``(I, K)``.
      gt_boxes: ``(I, G, 4)`` in the same frame; gt_labels, gt_valid: ``(I, G)``.

    Detections are ranked by score over all images; each matches the unmatched ground truth
    of its image (and class) with the highest IoU if that IoU >= the threshold (a detection
    whose best ground truth is already taken is a false positive, as in VOC).

    Returns:
      ``{'ap50': mean over classes with ground truth of the per-class AP (percent),
      'ap50_agnostic': AP ignoring classes (percent), 'ap50_per_class': {class: AP}}``.
    """
    det_valid = np.asarray(det_valid, bool)
    gt_valid = np.asarray(gt_valid, bool)
    img_idx = np.broadcast_to(np.arange(det_valid.shape[0])[:, None], det_valid.shape)
    d_img, d_box = img_idx[det_valid], np.asarray(det_boxes)[det_valid]
    d_score, d_cls = np.asarray(det_scores)[det_valid], np.asarray(det_classes)[det_valid]
    g_img = np.broadcast_to(np.arange(gt_valid.shape[0])[:, None], gt_valid.shape)[gt_valid]
    g_box, g_cls = np.asarray(gt_boxes)[gt_valid], np.asarray(gt_labels)[gt_valid]

    def group(mask):
        out: dict[int, list] = {}
        for i, b in zip(g_img[mask], g_box[mask]):
            out.setdefault(int(i), []).append(b)
        return {k: np.asarray(v) for k, v in out.items()}

    agnostic = _ap_one(d_img, d_box, d_score, group(np.ones(len(g_img), bool)), iou_threshold)
    per_class = {}
    for c in np.unique(g_cls):
        m = d_cls == c
        per_class[int(c)] = _ap_one(d_img[m], d_box[m], d_score[m], group(g_cls == c), iou_threshold)
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {
        "ap50": 100.0 * mean,
        "ap50_agnostic": 100.0 * agnostic if agnostic is not None else float("nan"),
        "ap50_per_class": {k: 100.0 * v for k, v in per_class.items()},
    }


# ----------------------------------------------------------------------------- CAD vertices


def unit_box_corners() -> np.ndarray:
    """``(8, 3)`` corners of the centred cube with unit diagonal (ShapeNet scale)."""
    h = 0.5 / math.sqrt(3.0)
    return np.array([[x, y, z] for x in (-h, h) for y in (-h, h) for z in (-h, h)], np.float32)


def _subsample(v: np.ndarray, n: int) -> np.ndarray:
    v = np.asarray(v, np.float32)
    if len(v) <= n:
        return v
    return v[np.linspace(0, len(v) - 1, n).round().astype(int)]


def pack_vertices(vertex_list: Sequence[np.ndarray], max_vertices: int = MAX_VERTICES) -> tuple[np.ndarray, np.ndarray]:
    """Per-class vertex arrays -> padded ``(C, N, 3)`` float32 and mask ``(C, N)``."""
    vs = [_subsample(v, max_vertices) for v in vertex_list]
    n = max(len(v) for v in vs)
    out = np.zeros((len(vs), n, 3), np.float32)
    mask = np.zeros((len(vs), n), bool)
    for i, v in enumerate(vs):
        out[i, :len(v)] = v
        mask[i, :len(v)] = True
    return out, mask


def class_vertices(config, num_classes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Model vertices per class for ``~e_ADD``: ``(C, N, 3)``, mask ``(C, N)``, source name.

    The meshes come from the builder of ``config.dataset``
    (:func:`fgpose.data.registry.class_meshes`); when it has none, or not ``num_classes`` of
    them, the fallback is :data:`UNIT_BOX` (the same 8 points for every class).
    """
    ds = config.dataset
    try:
        meshes, source = registry.class_meshes(ds.name, ds.builder_config, ds.data_dir)
        if len(meshes) == num_classes:
            v, m = pack_vertices([getattr(x, "vertices", x) for x in meshes])
            return v, m, source
        log.warning("the %s builder has %d class meshes for %d classes: ~e_ADD uses unit-box corners", ds.name,
                    len(meshes), num_classes)
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the documented proxy
        log.warning("no class meshes from the %s builder (%s: %s): ~e_ADD uses unit-box corners", ds.name,
                    type(exc).__name__, exc)
    box = unit_box_corners()
    return np.broadcast_to(box, (num_classes,) + box.shape).copy(), np.ones((num_classes, 8), bool), UNIT_BOX


# ----------------------------------------------------------------------------- pose errors


@jax.jit
def pose_errors(pred_pose, pred_projection, gt_pose, frame_height, original_hw, vertices, vertex_mask):
    """Per-example errors.

    Args:
      pred_pose: ``(M, 7)`` predicted poses (release convention).
      pred_projection: ``(M, 3, 4)`` predicted P in original-photo pixels.
      gt_pose: ``(M, 7)``; frame_height ``(M,)``; original_hw ``(M, 2)``.
      vertices, vertex_mask: ``(M, N, 3)``, ``(M, N)`` the GT class's model.

    Returns:
      ``(e_R radians (M,), ~e_ADD (M,), e_ADD original pixels (M,), P_gt (M, 3, 4))``.
    """
    gt = camera.Pose.from_array(gt_pose)
    pr = camera.Pose.from_array(pred_pose)
    rot = metrics.rotation_error(pr.rotation(), gt.rotation())
    p_gt = camera.projection_matrix(gt, frame_height, image_size=(original_hw[:, 0], original_hw[:, 1]))
    e_add, e_add_norm = metrics.add_error(pred_projection, p_gt, vertices, vertex_mask)
    return rot, e_add_norm, e_add, p_gt


# ----------------------------------------------------------------------------- field branch

FIELD_ROWS = (("appearance", "pose_appearance", "Baseline (appearance)"), ("field", "pose_field", "Field only"),
              ("combined", "pose", "w./ Field (combined)"))
"""Table rows of the field branch: ``(name, prediction key, label)``."""


def field_quality(field: jax.Array, field_fg: jax.Array, top_box: jax.Array, location_field: jax.Array,
                  mask: jax.Array) -> dict[str, jax.Array]:
    """Per-example sums for the field-quality metrics (module docstring).

    Args:
      field: ``(B, S, S, 3)`` predicted XYZ in the bins of ``top_box``; field_fg ``(B, S, S)``
        predicted foreground probability; top_box ``(B, 4)`` input pixels.
      location_field, mask: ``(B, H_in, W_in, 3)`` / ``(B, H_in, W_in)`` ground truth in the
        input frame.

    Returns:
      ``(B,)`` float32 each: ``xyz_error_sum`` (Euclidean error summed over true-foreground
      bins), ``fg_count`` (true-foreground bins), ``intersection`` and ``union`` of the
      predicted (``>= 0.5``) and true foreground.
    """
    s = field.shape[1]
    ones = jnp.ones((field.shape[0], 2), jnp.float32)
    xyz_t, fg_t = jax.vmap(lambda f, m, b, sc: roi_field_targets(f, m, b[None], sc, s))(
        location_field, mask, top_box, ones)
    xyz_t, fg_t = xyz_t[:, 0], fg_t[:, 0]
    err = jnp.linalg.norm(field - xyz_t, axis=-1)
    pred = field_fg >= 0.5
    f32 = jnp.float32
    return {"xyz_error_sum": jnp.sum(jnp.where(fg_t, err, 0.0), (1, 2)).astype(f32),
            "fg_count": jnp.sum(fg_t, (1, 2)).astype(f32),
            "intersection": jnp.sum(pred & fg_t, (1, 2)).astype(f32),
            "union": jnp.sum(pred | fg_t, (1, 2)).astype(f32)}


def fused_pose(pose_appearance: np.ndarray, pose_field: np.ndarray, weight: float) -> np.ndarray:
    """The combined pose ``(M, 7)`` with fusion ``weight``: the appearance pose with the
    rotation of :func:`~fgpose.models.quaternion_fusion.fuse_quaternions` (as the detector)."""
    q = fuse_quaternions(pose_quaternion(pose_appearance), pose_quaternion(pose_field), weight)
    angles = camera.angles_from_rotation(camera.rotation_from_quaternion(q))
    return np.concatenate([np.stack([np.asarray(a) for a in angles], -1), pose_appearance[:, 3:]], -1).astype(
        np.float32)


# ----------------------------------------------------------------------------- prediction loop


def make_predict_fn(graphdef: nnx.GraphDef, mesh, state_shardings) -> Callable:
    """Jitted ``(state, batch) -> predictions`` (batch-sharded in and out)."""
    bs = distributed.batch_sharding(mesh)

    def predict(state, batch):
        pred = merge_model(graphdef, state).predict(batch)
        if "field" in pred and "location_field" in batch:
            q = field_quality(pred["field"], pred["field_fg"], pred["top_box"], batch["location_field"],
                              batch["mask"])
            pred.update({f"field_quality/{k}": v for k, v in q.items()})
        return pred

    return jax.jit(predict, in_shardings=(state_shardings, bs), out_shardings=bs)


_GT_KEYS = ("boxes", "box_valid", "labels", "pose", "frame_height", "original_hw", "scale", "image_hw", "index",
            "valid")


def run_predictions(config, graphdef, state, *, mesh, state_shardings, eval_iterator_fn=None,
                    num_images: int = 0, split: str | None = None,
                    limit: int | None = -1) -> tuple[dict[str, np.ndarray], list[tuple[int, np.ndarray]]]:
    """Predicts on a split; returns concatenated host arrays (GT + ``pred/*``) and images.

    Every process runs this (collectives); rows are in global batch order. ``num_images``
    input images (process 0's first valid examples, as ``(example index, unpadded image)``) are
    kept for overlays. ``split`` defaults to ``config.dataset.eval_split`` and ``limit`` (the
    number of examples; ``None``: all) to ``config.eval.max_examples``.
    """
    predict = make_predict_fn(graphdef, mesh, state_shardings)
    it = (eval_iterator_fn or make_eval_iterator)(
        config, split or config.dataset.eval_split, jax.process_index(), jax.process_count())
    limit = config.eval.max_examples if limit == -1 else limit
    rows: dict[str, list] = {}
    images: list[np.ndarray] = []
    seen = 0
    try:
        for local in it:
            batch = distributed.global_batch(local, mesh)
            pred = distributed.to_host(predict(state, batch))
            gt = distributed.to_host({k: batch[k] for k in _GT_KEYS if k in batch})
            for k, v in gt.items():
                rows.setdefault(k, []).append(v)
            for k, v in pred.items():
                rows.setdefault("pred/" + k, []).append(np.asarray(v))
            for img, hw, ok, idx in zip(local["image"], local["image_hw"], local["valid"], local["index"]):
                if len(images) < num_images and ok:
                    images.append((int(idx), np.asarray(img[: hw[0], : hw[1]])))
            seen += int(np.sum(gt["valid"]))
            if limit is not None and seen >= limit:
                break
    finally:
        if hasattr(it, "close"):
            it.close()
    out = {k: np.concatenate(v) for k, v in rows.items()}
    keep = out["valid"]
    if limit is not None:
        keep = keep & (np.cumsum(keep) <= limit)
    return {k: v[keep] for k, v in out.items()}, images


def compute_metrics(rows: Mapping[str, np.ndarray], vertices: np.ndarray, vertex_mask: np.ndarray,
                    iou_threshold: float = 0.5, pose_key: str = "pose") -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Table-2 metrics and AP50 from :func:`run_predictions` rows; also per-example errors.

    ``pose_key``: the prediction evaluated (``rows['pred/<pose_key>']``); its projection is
    ``rows['pred/projection']`` for ``'pose'`` and computed from the pose otherwise.
    """
    labels = rows["labels"][:, 0]
    v, vm = vertices[labels], vertex_mask[labels]
    pred_pose = rows["pred/" + pose_key]
    if pose_key == "pose":
        projection = rows["pred/projection"]
    else:
        projection = np.asarray(pose_coding.projection_original(
            jnp.asarray(pred_pose), jnp.asarray(rows["frame_height"], jnp.float32),
            jnp.asarray(rows["original_hw"], jnp.float32)))
    rot, add_norm, add_px, p_gt = (np.asarray(x) for x in pose_errors(
        pred_pose, projection, rows["pose"][:, 0], rows["frame_height"], rows["original_hw"], v, vm))
    detected = rows["pred/valid"].any(axis=-1)
    table = {k: float(np.asarray(x)) for k, x in metrics.pose_metrics(rot, add_norm, valid=detected).items()}
    table["count"] = int(table["count"])
    ap = detection_ap(rows["pred/boxes"], rows["pred/scores"], rows["pred/classes"], rows["pred/valid"],
                      rows["boxes"], rows["labels"], rows["box_valid"], iou_threshold)
    table.update(ap)
    table["detected_pct"] = 100.0 * float(detected.mean()) if len(detected) else float("nan")
    per_example = {"rot_err_deg": np.where(detected, np.degrees(rot), np.inf),
                   "add_norm": np.where(detected, add_norm, np.inf), "add_px": add_px, "p_gt": p_gt,
                   "detected": detected, "projection": projection}
    return table, per_example


def format_table(results: Mapping[str, Any], title: str = "") -> str:
    """The Table-2 row (+ AP50) as fixed-width text; with the field branch (``results['rows']``)
    one row per output and the field-quality line."""
    heads = [h for _, h, _ in TABLE_COLUMNS]
    named = [(label, results["rows"][name]) for name, _, label in FIELD_ROWS if name in results.get("rows", {})]
    if named:
        heads = ["output"] + heads
    table = []
    for label, row in named or [(None, results)]:
        vals = [] if label is None else [label]
        for key, _, fmt in TABLE_COLUMNS:
            x = row.get(key)
            vals.append("-" if x is None else fmt.format(x))
        table.append(vals)
    widths = [max(len(h), *(len(v[i]) for v in table)) for i, h in enumerate(heads)]
    line1 = " | ".join(h.rjust(w) for h, w in zip(heads, widths))
    rule = "-" * len(line1)
    out = [title] if title else []
    out += [rule, line1, rule] + [" | ".join(v.rjust(w) for v, w in zip(vals, widths)) for vals in table] + [rule]
    if "add_vertices" in results:
        out.append(f"~e_ADD vertices: {results['add_vertices']}; images: {results.get('count')}")
    if "field_xyz_error" in results:
        out.append(f"field: mean XYZ error {results['field_xyz_error']:.4f} model units on true foreground bins, "
                   f"foreground IoU {results['field_fg_iou']:.1f}%; fusion weight {results['fusion_weight']:.2f} "
                   f"({results['fusion_weight_source']})")
    return "\n".join(out)


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return _json_safe(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else ("inf" if x > 0 else ("-inf" if x < 0 else "nan"))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _thresholds(spec) -> np.ndarray:
    lo, hi, n = spec
    return np.linspace(float(lo), float(hi), int(n))


def evaluate(
    config,
    workdir: str | os.PathLike,
    graphdef: nnx.GraphDef,
    state: Any,
    *,
    mesh=None,
    step: int = 0,
    state_shardings=None,
    eval_iterator_fn: Callable | None = None,
    num_classes: int | None = None,
    vertices: tuple[np.ndarray, np.ndarray, str] | None = None,
    write: bool = True,
    print_table: bool = True,
) -> dict[str, Any]:
    """Evaluates the model ``(graphdef, state)``; writes JSON and PNGs on process 0.

    Args:
      state: ``{'params', 'rest'}`` (see :func:`fgpose.models.build.split_model`), on ``mesh``.
      eval_iterator_fn: ``(config, split, process_index, process_count) -> iterator`` of
        batches (:mod:`fgpose.data.pipeline`; default :func:`fgpose.data.make_eval_iterator`).
      num_classes: for :func:`class_vertices` (default ``config.dataset.num_classes`` or the
        dataset's).
      vertices: override the per-class vertices ``(V (C, N, 3), mask (C, N), source)``.

    Returns:
      Flat dict: the Table-2 keys of :func:`fgpose.metrics.pose_metrics`, ``ap50``,
      ``ap50_agnostic``, ``detected_pct``, ``count``, ``add_vertices``, ``step``. With the
      field branch these are the combined pose's, plus ``rows`` (``{'appearance', 'field',
      'combined'}``: the same keys per output), ``fusion_weight``, ``fusion_weight_source``,
      ``field_xyz_error`` and ``field_fg_iou`` (when the eval batches carry the fields).
    """
    mesh = mesh or distributed.make_mesh(dict(config.train.mesh_shape))
    if state_shardings is None:
        state_shardings = jax.tree.map(lambda x: x.sharding, state)
    num_overlays = int(config.eval.num_overlays)
    rows, images = run_predictions(config, graphdef, state, mesh=mesh, state_shardings=state_shardings,
                                   eval_iterator_fn=eval_iterator_fn, num_images=num_overlays)
    if vertices is None:
        if num_classes is None:
            num_classes = config.dataset.num_classes
        if num_classes is None:
            num_classes = resolve_num_classes(config)
        vertices = class_vertices(config, num_classes)
    verts, vmask, source = vertices
    ap_iou = float(config.eval.ap_iou)
    per_row: dict[str, dict[str, np.ndarray]] = {}
    if "pred/pose_appearance" in rows:
        weight, weight_source = fit_fusion(config, graphdef, state, mesh=mesh, state_shardings=state_shardings,
                                           eval_iterator_fn=eval_iterator_fn)
        if weight_source != "config":
            rows["pred/pose"] = fused_pose(rows["pred/pose_appearance"], rows["pred/pose_field"], weight)
            rows["pred/projection"] = np.asarray(pose_coding.projection_original(
                jnp.asarray(rows["pred/pose"]), jnp.asarray(rows["frame_height"], jnp.float32),
                jnp.asarray(rows["original_hw"], jnp.float32)))
        tables = {}
        for name, key, _ in FIELD_ROWS:
            tables[name], per_row[name] = compute_metrics(rows, verts, vmask, ap_iou, key)
        table, per_example = tables["combined"], per_row["combined"]
        table = dict(table, rows=tables, fusion_weight=weight, fusion_weight_source=weight_source)
        if "pred/field_quality/fg_count" in rows:
            q = {k: float(np.sum(rows[f"pred/field_quality/{k}"]))
                 for k in ("xyz_error_sum", "fg_count", "intersection", "union")}
            table["field_xyz_error"] = q["xyz_error_sum"] / max(q["fg_count"], 1.0)
            table["field_fg_iou"] = 100.0 * q["intersection"] / max(q["union"], 1.0)
    else:
        table, per_example = compute_metrics(rows, verts, vmask, ap_iou)
        per_row["ours"] = per_example
    results = dict(table, add_vertices=source, step=int(step))
    if not distributed.is_primary():
        return results
    rot_t = _thresholds(config.eval.thresholds.rotation_deg)
    add_t = _thresholds(config.eval.thresholds.add)
    labels = {name: label for name, _, label in FIELD_ROWS}
    rot_curves = {labels.get(n, n): np.asarray(metrics.accuracy_curve(pe["rot_err_deg"], rot_t)) * 100
                  for n, pe in per_row.items()}
    add_curves = {labels.get(n, n): np.asarray(metrics.accuracy_curve(pe["add_norm"], add_t)) * 100
                  for n, pe in per_row.items()}
    rot_curve = rot_curves[labels.get("combined") if "combined" in per_row else "ours"]
    add_curve = add_curves[labels.get("combined") if "combined" in per_row else "ours"]
    if print_table:
        print(format_table(results, title=f"{config.dataset.name}/{config.dataset.builder_config} "
                                          f"{config.dataset.eval_split} @ step {step}"), flush=True)
    if write:
        out = pathlib.Path(workdir) / "eval"
        out.mkdir(parents=True, exist_ok=True)
        doc = {
            "step": int(step),
            "dataset": f"{config.dataset.name}/{config.dataset.builder_config}:{config.dataset.eval_split}",
            "metrics": results,
            "curves": {"rotation_deg": {"thresholds": rot_t, "accuracy_pct": rot_curve},
                       "add_norm": {"thresholds": add_t, "accuracy_pct": add_curve}},
            "per_example": {"index": rows["index"], "rot_err_deg": per_example["rot_err_deg"],
                            "add_norm": per_example["add_norm"], "detected": per_example["detected"]},
        }
        if "combined" in per_row:
            doc["curves_by_output"] = {
                n: {"rotation_deg": rot_curves[labels[n]], "add_norm": add_curves[labels[n]]} for n in per_row}
            doc["per_example_by_output"] = {
                n: {"rot_err_deg": pe["rot_err_deg"], "add_norm": pe["add_norm"]} for n, pe in per_row.items()}
        (out / f"{step}.json").write_text(json.dumps(_json_safe(doc), indent=1))
        from fgpose import viz

        add_label = "~e_ADD" + (" (unit-box corners)" if source == UNIT_BOX else "")
        viz.plot_accuracy_curves(
            [(rot_t, rot_curves, "rotation error threshold (degrees)", "Acc (rotation)"),
             (add_t, add_curves, f"{add_label} threshold", "Acc (ADD)")],
            out / f"{step}_accuracy.png", title=f"{config.dataset.name} @ step {step}")
        if images:
            panels = []
            row_of = {int(ix): r for r, ix in enumerate(rows["index"])}
            for idx, image in images:
                if idx not in row_of:
                    continue
                i = row_of[idx]
                scale = float(rows["scale"][i])
                labels = int(rows["labels"][i, 0])
                v = verts[labels][vmask[labels]]
                corners = _box_corners(v)
                pxy, _ = camera.project_points(jnp.asarray(per_example["projection"][i]), jnp.asarray(corners))
                gxy, _ = camera.project_points(jnp.asarray(per_example["p_gt"][i]), jnp.asarray(corners))
                text = f"eR {per_example['rot_err_deg'][i]:.1f} deg  ADD {per_example['add_norm'][i]:.3f}"
                panels.append(viz.pose_overlay(
                    image, pred_box=rows["pred/top_box"][i], gt_box=rows["boxes"][i, 0],
                    pred_points=np.asarray(pxy) * scale, gt_points=np.asarray(gxy) * scale,
                    edges=BOX_EDGES, text=text))
                if "pred/field" in rows:
                    panels.append(field_picture(rows["pred/field"][i], rows["pred/field_fg"][i], panels[-1].shape[0]))
            viz.save_image_grid(panels, out / f"{step}_overlays.png")
    return results


def field_picture(field: np.ndarray, field_fg: np.ndarray, height: int) -> np.ndarray:
    """The predicted field ``(S, S, 3)`` as RGB (:func:`fgpose.viz.location_field_to_rgb`, XYZ in
    ``[-0.5, 0.5]`` -> 0..255, black where ``field_fg < 0.5``), enlarged (nearest) to about
    ``height`` pixels."""
    from fgpose import viz

    rgb = viz.location_field_to_rgb(field, np.asarray(field_fg) >= 0.5)
    k = max(1, height // rgb.shape[0])
    return np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def fit_fusion(config, graphdef, state, *, mesh, state_shardings, eval_iterator_fn=None) -> tuple[float, str]:
    """``(fusion weight, source)``: ``model.field.fusion_weight`` (source ``'config'``) or,
    with ``eval.fusion_holdout = N > 0``, :func:`fit_fusion_weight` on the first ``N`` training
    examples over ``eval.fusion_grid = (lo, hi, count)`` (module docstring)."""
    n = int(config.eval.fusion_holdout)
    if n <= 0:
        return float(config.model.field.fusion_weight), "config"
    rows, _ = run_predictions(config, graphdef, state, mesh=mesh, state_shardings=state_shardings,
                              eval_iterator_fn=eval_iterator_fn, split=config.dataset.train_split, limit=n)
    lo, hi, count = config.eval.fusion_grid
    weight, _ = fit_fusion_weight(jnp.asarray(pose_quaternion(rows["pred/pose_appearance"])),
                                  jnp.asarray(pose_quaternion(rows["pred/pose_field"])),
                                  jnp.asarray(pose_quaternion(rows["pose"][:, 0])),
                                  np.linspace(float(lo), float(hi), int(count)))
    return float(weight), f"fitted on {len(rows['index'])} training examples"


BOX_EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))
"""Edges of the 8 corners ordered as ``[[x, y, z] for x in (lo, hi) for y in ... for z in ...]``."""


def _box_corners(v: np.ndarray) -> np.ndarray:
    lo, hi = v.min(0), v.max(0)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])],
                    np.float32)


# ----------------------------------------------------------------------------- CLI


def restore_model_state(manager: ckpt.CheckpointManager, step: int, config, num_classes: int, model_fn,
                        mesh) -> tuple[nnx.GraphDef, Any, Any]:
    """The model of ``config`` with the state of checkpoint ``step`` of ``manager``, placed on
    ``mesh``: ``(graphdef, state, state_shardings)``. The optimizer state's structure is only
    needed to read the checkpoint and is dropped."""
    graphdef, host_state = abstract_model(config, num_classes, model_fn)
    shardings = distributed.param_shardings(host_state, mesh, config.train.param_sharding)
    opt_abstract = jax.eval_shape(make_optimizer(config.optim).init, host_state["params"])
    opt_shardings = distributed.param_shardings(opt_abstract, mesh, config.train.param_sharding)
    state, _ = manager.restore(step, host_state, opt_abstract, shardings, opt_shardings)
    return graphdef, state, shardings


def evaluate_workdir(config, workdir: str | os.PathLike, *, step: int | None = None, model_fn=None,
                     eval_iterator_fn=None, num_classes: int | None = None) -> dict[str, Any]:
    """Restores ``step`` (default: latest) of ``workdir/checkpoints`` and runs :func:`evaluate`.

    Args:
      model_fn: ``(config, num_classes, seed) -> nnx.Module`` (default: the detector of
        :func:`fgpose.models.build.build_model` without pretrained weights, which the
        checkpoint replaces).
    """
    validate_config(config, training=False)
    if num_classes is None:
        num_classes = resolve_num_classes(config)
    mesh = distributed.make_mesh(dict(config.train.mesh_shape))
    if model_fn is None:  # the checkpoint replaces any pretrained weights: skip loading them
        def model_fn(c, n, seed):
            return build_model(c, n, seed, pretrained=False)

    manager = ckpt.CheckpointManager(pathlib.Path(workdir) / "checkpoints", keep=config.train.keep_checkpoints)
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise ConfigError(f"no checkpoint in {pathlib.Path(workdir) / 'checkpoints'}: train first with "
                                    f"python -m fgpose.train --config <config> --workdir {workdir}")
        graphdef, state, shardings = restore_model_state(manager, step, config, num_classes, model_fn, mesh)
    finally:
        manager.close()
    return evaluate(config, workdir, graphdef, state, mesh=mesh, step=step, state_shardings=shardings,
                    eval_iterator_fn=eval_iterator_fn, num_classes=num_classes)


def main(argv) -> None:
    from absl import flags

    del argv
    FLAGS = flags.FLAGS
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax/TFDS chatter
    config = FLAGS.config
    distributed.initialize(config)
    try:
        evaluate_workdir(config, FLAGS.workdir, step=FLAGS.step)
    except ConfigError as exc:
        raise SystemExit(f"fgpose.evaluate: {exc}") from None


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<name>.py).")
    flags.DEFINE_string("workdir", None, "Training workdir (its checkpoints/ is restored).")
    flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
