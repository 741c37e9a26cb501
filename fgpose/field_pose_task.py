"""Pose-from-field pre-training (``config.task = 'field_pose'``): model, data, evaluation, and
loading its weights into the detector.

``python -m fgpose.train --config configs/field_pose_<dataset>.py --workdir DIR`` runs the same
loop as the detector (:func:`fgpose.train.train_and_evaluate`: checkpoints, resume, progress
bar, TensorBoard) with the pieces of this module:

* model (:func:`build_model`): :class:`fgpose.models.field_pose_pretrain.FieldPoseModel` on
  ``config.model.field`` (``size``, ``pose_net``), augmentation ``config.field_pose.augment``;
* data (:func:`make_train_iterator`): :func:`fgpose.synthetic.location_field_stream` over the
  dataset's CAD pool, i.e. the mesh of every class as its builder knows it
  (:func:`fgpose.data.registry.class_meshes`: the procedural class meshes of
  ``synthetic_pose3d``, the release's ShapeNet models of the real datasets), decimated to
  ``field_pose.max_faces`` faces, at poses of the dataset's prior
  (:func:`fgpose.synthetic.sample_poses` per class category, release-like photo sizes), the
  field of the object's box at ``field_pose.render_hw``. Global batch ``k`` is a pure function
  of ``(pool, train.seed, k)``; each process keeps its share, so a resumed run continues the
  exact stream;
* evaluation (:func:`evaluate`): median rotation error and ``Acc_pi/6`` on
  ``field_pose.eval_batches`` held-out batches (seed ``train.seed + 1``), on the clean fields
  (the upper bound) and augmented ones (a fixed key), and on the **true** fields of the first
  ``field_pose.true_field_examples`` examples of the dataset's eval split cropped to their
  ground-truth boxes (:func:`true_field_errors`; skipped with a warning when the dataset is not
  built), to ``workdir/eval/<step>.json``.

:func:`load_pose_net` copies the ``field_pose_net`` arrays of such a run into a detector's
state (``model.field.pose_checkpoint``), whether they are trainable there or frozen.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from fgpose import checkpoint as ckpt
from fgpose import distributed, metrics
from fgpose.data import registry
from fgpose.data.pipeline import open_source
from fgpose.data.sources import decode_image
from fgpose.mesh import decimate
from fgpose.models.build import merge_model
from fgpose.models.field_augment import FieldAugmentation, augment_fields
from fgpose.models.field_pose import predict_quaternion
from fgpose.models.field_pose_pretrain import FieldPoseModel, full_boxes, pose_quaternion
from fgpose.models.field_targets import sample_roi_fields
from fgpose.models.quaternion_fusion import quaternion_angle

log = logging.getLogger("fgpose.field_pose_task")

POSE_NET = "field_pose_net"
"""Attribute (and state path prefix) of the pose-from-field network in both models."""


def augmentation(config) -> FieldAugmentation:
    """:class:`FieldAugmentation` of ``config.field_pose.augment``."""
    a = config.field_pose.augment
    return FieldAugmentation(float(a.box_shift), float(a.box_log_scale), float(a.morph_prob),
                             float(a.boundary_flip), float(a.xyz_sigma))


def build_model(config, num_classes: int, seed: int) -> FieldPoseModel:
    """The pre-training model (a :data:`fgpose.models.build.ModelFn`; ``num_classes`` unused)."""
    del num_classes
    return FieldPoseModel(config.model, augmentation(config), rngs=nnx.Rngs(seed))


def _categories(config, count: int) -> list[str]:
    """Category (``'car'`` / ``'airplane'``) of each class: ``field_pose.category`` if set,
    else from the dataset's class names (``synthetic_pose3d``: ``<category>_...``), else
    ``'airplane'`` for FGVC-Aircraft and ``'car'`` otherwise."""
    if config.field_pose.category is not None:
        return [str(config.field_pose.category)] * count
    ds = config.dataset
    try:
        names = list(registry.builder(ds.name, ds.builder_config, ds.data_dir).info.features["label"].names)
    except Exception:  # noqa: BLE001 - names are only a hint
        names = []
    if len(names) == count and all(n.split("_")[0] in ("car", "airplane") for n in names):
        return [n.split("_")[0] for n in names]
    return ["airplane" if ds.name == "fgvc_aircraft3d" else "car"] * count


class _PoolItem:
    """A pool entry for :func:`location_field_stream`: ``.mesh`` and ``.category``."""

    def __init__(self, mesh, category: str):
        self.mesh, self.category = mesh, category


def cad_pool(config) -> list[_PoolItem]:
    """The dataset's class meshes, decimated to ``field_pose.max_faces``, with categories."""
    ds = config.dataset
    meshes, _ = registry.class_meshes(ds.name, ds.builder_config, ds.data_dir)
    cats = _categories(config, len(meshes))
    max_faces = int(config.field_pose.max_faces)
    return [_PoolItem(decimate(m, max_faces), c) for m, c in zip(meshes, cats)]


def _stream(config, pool, *, seed: int, start: int, batch_size: int, num_batches: int | None = None) -> Iterator[dict]:
    from fgpose.synthetic.fields import location_field_stream

    return location_field_stream(pool, batch_size=batch_size, field_hw=tuple(config.field_pose.render_hw), seed=seed,
                                 start=start, num_batches=num_batches)


def _batch(raw: dict, lo: int, hi: int) -> dict[str, np.ndarray]:
    return {"field": raw["field"][lo:hi], "mask": raw["mask"][lo:hi],
            "pose": raw["pose"][lo:hi].astype(np.float32), "valid": np.ones(hi - lo, bool)}


def make_train_iterator(config, start_step: int, process_index: int, process_count: int, *, pool=None):
    """This process's share of global batch ``start_step``, ``start_step + 1``, ... (module doc)."""
    gbs = int(config.train.global_batch_size)
    per = gbs // process_count
    lo, hi = process_index * per, (process_index + 1) * per
    stream = _stream(config, pool if pool is not None else cad_pool(config), seed=int(config.train.seed),
                     start=int(start_step), batch_size=gbs)
    return (_batch(raw, lo, hi) for raw in stream)


def true_fields(config, limit: int, size: int, *, source=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The true ``S x S`` fields of the first ``limit`` examples of ``config.dataset.eval_split``
    (or ``source``): each example's ``location_field`` / ``mask`` (field resolution) resampled in
    its ground-truth ``box`` (scaled from ``image/size`` to the field) exactly like the field
    head's targets (:func:`~fgpose.models.field_targets.sample_roi_fields`).

    Returns:
      ``field (N, S, S, 3)`` float32, ``fg (N, S, S)`` float32 {0, 1}, ``pose (N, 7)`` float32.
    """
    source = open_source(config, config.dataset.eval_split) if source is None else source
    fields, masks, poses = [], [], []
    for i in range(min(int(limit), len(source))):
        ex = source[i]
        field = np.asarray(ex["location_field"], np.float32)
        mask = decode_image(ex["mask"], 1)[..., 0] > 0
        h, w = (float(x) for x in np.asarray(ex["image/size"]).reshape(2))
        sy, sx = field.shape[0] / h, field.shape[1] / w
        box = np.asarray(ex["box"], np.float32).reshape(4) * np.array([sy, sx, sy, sx], np.float32)
        xyz, fg = sample_roi_fields(field, mask, box[None], size)
        fields.append(np.asarray(xyz[0]))
        masks.append(np.asarray(fg[0], np.float32))
        poses.append(np.asarray(ex["pose"], np.float32).reshape(7))
    if not fields:
        return np.zeros((0, size, size, 3), np.float32), np.zeros((0, size, size), np.float32), np.zeros((0, 7), np.float32)
    return np.stack(fields), np.stack(masks), np.stack(poses)


def true_field_errors(config, model: FieldPoseModel, limit: int, *, source=None) -> np.ndarray:
    """Rotation errors (degrees) of the network on :func:`true_fields` (its upper bound: no
    field-head error)."""
    field, fg, pose = true_fields(config, limit, model.size, source=source)
    if not len(pose):
        return np.zeros((0,), np.float64)
    q = jax.jit(predict_quaternion)(model.field_pose_net, field, fg)
    return np.degrees(np.asarray(quaternion_angle(q, pose_quaternion(pose)), np.float64))


def evaluate(config, workdir, setup, step: int, *, pool=None, write: bool = True,
             true_source=None) -> dict[str, Any]:
    """Rotation errors on held-out rendered fields (module docstring); JSON on process 0."""
    model = merge_model(setup.graphdef, distributed.to_host(setup.state))
    gbs = int(config.train.global_batch_size)
    stream = _stream(config, pool if pool is not None else cad_pool(config), seed=int(config.train.seed) + 1, start=0,
                     batch_size=gbs, num_batches=int(config.field_pose.eval_batches))

    @jax.jit
    def errors(batch, key):
        q_true = pose_quaternion(batch["pose"])
        clean = quaternion_angle(model.predict(batch)["quaternion"], q_true)
        aug = augment_fields(key, batch["field"], batch["mask"], full_boxes(batch["field"]), model.size,
                             augmentation(config))
        noisy = quaternion_angle(model.field_pose_net(aug["field"], aug["fg"]), q_true)
        return clean, noisy

    clean, noisy = [], []
    for k, raw in enumerate(stream):
        c, n = errors(_batch(raw, 0, gbs), jax.random.PRNGKey(k))
        clean.append(np.degrees(np.asarray(c)))
        noisy.append(np.degrees(np.asarray(n)))
    clean, noisy = np.concatenate(clean), np.concatenate(noisy)
    res = {"step": int(step), "count": int(len(clean))}
    errors_by = [("clean", clean), ("augmented", noisy)]
    limit = int(config.field_pose.true_field_examples)
    if limit > 0:
        try:
            true = true_field_errors(config, model, limit, source=true_source)
            if len(true):
                errors_by.append(("true", true))
                res["count_true"] = int(len(true))
        except Exception as exc:  # noqa: BLE001 - e.g. the dataset is not built: report the rest
            log.warning("no true-field evaluation (%s: %s)", type(exc).__name__, exc)
    for name, e in errors_by:
        res[f"rot_median_deg_{name}"] = float(np.median(e))
        res[f"rot_mean_deg_{name}"] = float(np.mean(e))
        res[f"rot_acc_pi_6_{name}"] = float(100.0 * np.asarray(metrics.accuracy_curve(e, np.array([30.0])))[0])
    if distributed.is_primary():
        print(f"field_pose @ step {step}: median e_R {res['rot_median_deg_clean']:.2f} deg (clean fields), "
              f"{res['rot_median_deg_augmented']:.2f} deg (augmented); Acc_pi/6 {res['rot_acc_pi_6_clean']:.1f}% / "
              f"{res['rot_acc_pi_6_augmented']:.1f}% on {res['count']} held-out fields", flush=True)
        if "count_true" in res:
            print(f"field_pose @ step {step}: median e_R {res['rot_median_deg_true']:.2f} deg, Acc_pi/6 "
                  f"{res['rot_acc_pi_6_true']:.1f}% on the true fields of {res['count_true']} "
                  f"{config.dataset.eval_split} examples", flush=True)
        if write:
            out = pathlib.Path(workdir) / "eval"
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{step}.json").write_text(json.dumps(res, indent=1))
    return res


def load_pose_net(path: str | os.PathLike, state: dict, state_shardings: dict) -> dict:
    """Copies the :data:`POSE_NET` arrays of a pre-training run into a detector's state.

    Args:
      path: workdir (or checkpoint step directory) of a ``task='field_pose'`` run.
      state: the detector's ``{'params', 'rest'}`` (the network is in ``params`` when
        fine-tuned, in ``rest`` as :class:`~fgpose.models.detector.FrozenWeight` when frozen).
      state_shardings: its shardings.

    Returns:
      The new state (same shardings).

    Raises:
      ValueError: the checkpoint has no pose-from-field network, or its arrays do not match
        the detector's (``model.field.size`` / ``pose_net`` differ from the pre-training run).
    """
    item = ckpt.resolve_checkpoint_path(path)
    restored = ocp.StandardCheckpointer().restore(item)
    src = restored["state"]["params"].get(POSE_NET)
    if not src:
        raise ValueError(f"{item} holds no {POSE_NET} parameters: is it a task='field_pose' run?")
    out = {}
    copied = []
    for part in ("params", "rest"):
        host = distributed.to_host(state[part])
        pure = host.to_pure_dict()
        if POSE_NET in pure:
            _copy_into(pure[POSE_NET], src, POSE_NET, item, copied)
            nnx.replace_by_pure_dict(host, pure)
        out[part] = distributed.place(host, state_shardings[part])
    if not copied:
        raise ValueError(f"the detector has no {POSE_NET} (model.field.enabled is False?)")
    log.info("loaded the pose-from-field network (%d arrays) from %s", len(copied), item)
    return out


def _copy_into(dst: dict, src, prefix: str, item, copied: list) -> None:
    """``dst[k] = src[k]`` recursively (checkpoint keys are strings, an ``nnx.List``'s are ints;
    a saved ``Variable`` may keep a ``value`` level); shapes must agree."""
    for k, v in dst.items():
        s = src.get(k, src.get(str(k))) if hasattr(src, "get") else None
        name = f"{prefix}/{k}"
        if isinstance(v, dict):
            if s is None:
                raise ValueError(f"{name} is missing from {item}")
            _copy_into(v, s, name, item, copied)
            continue
        if hasattr(s, "get") and not hasattr(s, "shape"):
            s = s.get("value")
        if s is None or np.shape(s) != np.shape(v):
            raise ValueError(f"{name}: {np.shape(v)} in the detector, {None if s is None else np.shape(s)} in "
                             f"{item}; use the same model.field.size and model.field.pose_net as that run")
        dst[k] = np.asarray(s, np.asarray(v).dtype)
        copied.append(name)


__all__ = ["POSE_NET", "augmentation", "build_model", "cad_pool", "evaluate", "load_pose_net", "make_train_iterator",
           "true_field_errors", "true_fields"]
