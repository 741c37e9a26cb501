"""Tests of fgpose.models.detector (tiny config, 64x64 inputs, batch 2).

One jitted training step (``forward_train`` + ``loss_from_outputs`` + gradients + SGD update)
is compiled once per module and shared by the loss, gradient and overfit tests; ``predict``
is compiled once. The loss terms are checked against float64 NumPy / SciPy recomputations
from the model's raw outputs (independent IoU, cross-entropy, box and pose target formulas).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fgpose.config import model_config, tiny_model_config
from fgpose.models import detector, heads
from tests.reference import offset as ref_offset
from tests.reference import projection_original as ref_projection_original
from tests.reference import quaternion as ref_quaternion
from tests.reference import rotation as ref_rotation

NUM_CLASSES = 3
POSES = np.array(
    [[0.5, 0.2, 0.05, 2.5, 450.0, 10.0, -8.0], [-1.2, 0.4, -0.1, 1.5, 300.0, -5.0, 12.0]], np.float32
)

# ----------------------------------------------------------------------------- references


def ref_iou(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1), 0.0)


def ref_smooth_l1(x, beta):
    ax = np.abs(x)
    return ax if beta < 1e-5 else np.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def ref_pose_targets(pose, box, frame_h, hw, scale, distance_scale, focal_scale):
    """Quaternion (SciPy, w >= 0), offset, d / scale, f / scale in float64."""
    pose = np.asarray(pose, np.float64)
    off = ref_offset(pose, box, frame_h, hw, scale)
    return ref_quaternion(pose), off, pose[:, 3] / distance_scale, pose[:, 4] / focal_scale


# ----------------------------------------------------------------------------- fixtures


def _rngs() -> nnx.Rngs:
    """Init RNGs. ``unsafe_rbg`` keys compile the ~70 per-shape initialisers ~2.5x faster on
    CPU than the default threefry (which costs ~15 s of the test's time under load)."""
    return nnx.Rngs(jax.random.key(0, impl="unsafe_rbg"))


def make_batch() -> dict[str, np.ndarray]:
    """Two 64x64 inputs with one coloured rectangle each (the second has 8 rows of padding)."""
    b = 2
    image = np.full((b, 64, 64, 3), 90, np.uint8)
    boxes = np.array([[[14, 10, 46, 50]], [[20, 24, 52, 60]]], np.float32)
    image[0, 14:46, 10:50] = (230, 40, 30)
    image[1, 20:52, 24:60] = (30, 200, 90)
    image[1, 56:] = 0  # padding below image_hw
    return {
        "image": image,
        "image_hw": np.array([[64, 64], [56, 64]], np.int32),
        "original_hw": np.array([[128, 128], [112, 128]], np.int32),
        "scale": np.array([0.5, 0.5], np.float32),
        "boxes": boxes,
        "box_valid": np.ones((b, 1), bool),
        "labels": np.array([[1], [2]], np.int32),
        "pose": POSES[:, None, :],
        "frame_height": np.array([300.0, 262.0], np.float32),  # int(H * 300 / W)
        "index": np.arange(b, dtype=np.int32),
        "valid": np.ones((b,), bool),
    }


_predict = jax.jit(lambda model, batch: model.predict(batch))


@pytest.fixture(scope="module")
def cfg():
    return tiny_model_config()


@pytest.fixture(scope="module")
def batch():
    return make_batch()


@pytest.fixture(scope="module")
def trainer(cfg):
    """(model, graphdef, params, rest, tx, step): ``step`` is jitted once for the module."""
    model = detector.PoseDetector(cfg, NUM_CLASSES, rngs=_rngs())
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.clip_by_global_norm(10.0), optax.sgd(0.02, momentum=0.9))

    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_fn(p):
            m = nnx.merge(graphdef, p, rest)
            out = m.forward_train(batch, key)
            loss, metrics = m.loss_from_outputs(out, batch)
            keep = {k: out[k] for k in ("rois", "class_logits", "box_deltas", "pose")}
            return loss, (metrics, keep)

        (loss, (metrics, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics, out, grads

    return model, graphdef, params, rest, tx, step


@pytest.fixture(scope="module")
def first_step(trainer, batch):
    _, _, params, _, tx, step = trainer
    return step(params, tx.init(params), batch, jax.random.PRNGKey(1))


# ----------------------------------------------------------------------------- tests


def test_model_config_has_every_detectron_field(cfg):
    d = model_config()
    for path in [
        "backbone.depth", "backbone.width", "backbone.norm", "backbone.init", "backbone.weights_path",
        "fpn.channels", "fpn.levels", "anchors.sizes", "anchors.aspect_ratios", "rpn.pre_nms_topk",
        "rpn.post_nms_topk", "rpn.nms_threshold", "rpn.batch_size_per_image", "rpn.positive_fraction",
        "roi.batch_size_per_image", "roi.positive_fraction", "roi.output_size", "roi.sampling_ratio",
        "roi.aligned", "box_head.fc_dim", "pose_head.fc_dim", "pose_head.num_fc", "loss.rpn_cls",
        "loss.rpn_box", "loss.cls", "loss.box", "loss.quaternion", "loss.offset", "loss.distance",
        "loss.focal", "test.score_threshold", "test.detections_per_image", "pixel_mean", "pixel_std",
        "compute_dtype",
    ]:
        node = d
        for part in path.split("."):
            node = node[part]
    assert d.backbone.depth == 50 and d.fpn.channels == 256 and d.roi.batch_size_per_image == 512
    assert cfg.backbone.depth == 18 and cfg.backbone.width == 8 and cfg.fpn.channels == 16


@pytest.mark.slow
def test_losses_match_reference(first_step, batch, cfg):
    _, _, loss, metrics, out, _ = first_step
    metrics = {k: float(v) for k, v in metrics.items()}
    assert np.isfinite(float(loss))
    terms = ["rpn_cls", "rpn_box", "cls", "box", "quaternion", "offset", "distance", "focal"]
    total = sum(cfg.loss[k] * metrics[f"loss_{k}"] for k in terms)
    np.testing.assert_allclose(float(loss), total, rtol=1e-5)

    labels = np.asarray(out["rois"]["labels"])
    boxes = np.asarray(out["rois"]["boxes"], np.float64)
    matched = np.asarray(out["rois"]["matched"])
    s = cfg.roi.batch_size_per_image
    assert labels.shape == (2, s)
    fg, sampled = labels == 1, labels >= 0
    assert np.all(fg.sum(1) >= 1)  # the appended GT box is always a candidate
    assert np.all(fg.sum(1) <= int(s * cfg.roi.positive_fraction))
    gt = np.asarray(batch["boxes"], np.float64)
    for b in range(2):
        iou = ref_iou(boxes[b], gt[b])[:, 0]
        assert np.all(iou[fg[b]] >= 0.5) and np.all(iou[labels[b] == 0] < 0.5)
        assert np.all(matched[b][fg[b]] == 0)

    # Classification: softmax CE over C + 1 classes, mean over the sampled RoIs.
    logits = np.asarray(out["class_logits"], np.float64)
    target = np.where(fg, np.asarray(batch["labels"])[:, :1] + 1, 0)
    lse = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1)) + logits.max(-1)
    ce = lse - np.take_along_axis(logits, target[..., None], -1)[..., 0]
    np.testing.assert_allclose(metrics["loss_cls"], ce[sampled].sum() / sampled.sum(), rtol=1e-4)

    # Box regression: L1 (beta 0) of weighted deltas (10, 10, 5, 5), summed / #sampled.
    g = np.broadcast_to(gt[:, :1], boxes.shape)
    h, w = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    gh, gw = g[..., 2] - g[..., 0], g[..., 3] - g[..., 1]
    with np.errstate(all="ignore"):
        tgt = np.stack([
            10 * ((g[..., 0] + g[..., 2]) - (boxes[..., 0] + boxes[..., 2])) / 2 / h,
            10 * ((g[..., 1] + g[..., 3]) - (boxes[..., 1] + boxes[..., 3])) / 2 / w,
            5 * np.log(gh / h), 5 * np.log(gw / w)], -1)
    l1 = np.abs(np.asarray(out["box_deltas"], np.float64) - tgt).sum(-1)
    np.testing.assert_allclose(metrics["loss_box"], l1[fg].sum() / sampled.sum(), rtol=1e-4)

    # Pose: smooth-L1 (beta 1) per group on the foreground, targets relative to each RoI.
    # The pose head runs on the first int(S * positive_fraction) slots only: every
    # foreground RoI must be in that prefix.
    pred = {k: np.asarray(v, np.float64) for k, v in out["pose"].items()}
    p = int(s * cfg.roi.positive_fraction)
    assert pred["quaternion"].shape == (2, p, 4) and pred["distance"].shape == (2, p)
    assert not np.any(fg[:, p:])
    ref = {k: 0.0 for k in ("quaternion", "offset", "distance", "focal")}
    for b in range(2):
        m = fg[b, :p]
        q, off, d, f = ref_pose_targets(
            np.repeat(POSES[b : b + 1], m.sum(), 0), boxes[b, :p][m], float(batch["frame_height"][b]),
            batch["original_hw"][b].astype(np.float64), 0.5, cfg.pose_head.distance_scale, cfg.pose_head.focal_scale,
        )
        lq = np.minimum(ref_smooth_l1(pred["quaternion"][b][m] - q, 1.0).sum(-1),
                        ref_smooth_l1(pred["quaternion"][b][m] + q, 1.0).sum(-1))
        ref["quaternion"] += lq.sum()
        ref["offset"] += ref_smooth_l1(pred["offset"][b][m] - off, 1.0).sum()
        ref["distance"] += ref_smooth_l1(pred["distance"][b][m] - d, 1.0).sum()
        ref["focal"] += ref_smooth_l1(pred["focal"][b][m] - f, 1.0).sum()
    for k, v in ref.items():
        np.testing.assert_allclose(metrics[f"loss_{k}"], v / fg.sum(), rtol=1e-4, err_msg=k)
    for k in ("rpn_accuracy", "rpn_fg_recall", "roi_accuracy", "roi_fg_accuracy"):
        assert 0.0 <= metrics[k] <= 1.0, k


@pytest.mark.slow
def test_padding_example_has_no_rois(trainer, batch):
    _, _, params, _, tx, step = trainer
    padded = dict(batch, valid=np.array([True, False]))
    _, _, loss, metrics, out, grads = step(params, tx.init(params), padded, jax.random.PRNGKey(1))
    labels = np.asarray(out["rois"]["labels"])
    assert np.all(labels[1] == -1) and np.any(labels[0] == 1)
    assert np.isfinite(float(loss)) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_gradients_finite_and_nonzero(first_step):
    grads = first_step[-1]
    leaves = jax.tree_util.tree_leaves_with_path(grads)
    assert leaves
    dead = []
    for path, g in leaves:
        g = np.asarray(g)
        assert np.all(np.isfinite(g)), jax.tree_util.keystr(path)
        if not np.any(g != 0):
            dead.append(jax.tree_util.keystr(path))
    assert not dead, f"parameters with all-zero gradients: {dead}"
    groups = {jax.tree_util.keystr(p[:1]) for p, _ in leaves}
    for name in ("backbone", "fpn", "rpn", "box_head", "pose_head"):
        assert any(name in g for g in groups), name
    pose_paths = " ".join(jax.tree_util.keystr(p) for p, _ in leaves)
    for name, _ in heads.POSE_GROUPS:
        assert f"{name}_pred" in pose_paths


def test_frozen_bn_is_not_a_param():
    from fgpose.models.resnet import FrozenAffine

    c = tiny_model_config()
    c.backbone.norm = "frozen_bn"
    m = detector.PoseDetector(c, NUM_CLASSES, rngs=_rngs())
    paths = lambda state: {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)}  # noqa: E731
    frozen, params = paths(nnx.state(m, FrozenAffine)), paths(nnx.state(m, nnx.Param))
    assert frozen and all("backbone" in p for p in frozen)
    assert not frozen & params


@pytest.mark.slow
def test_predict(trainer, batch, cfg):
    model = trainer[0]
    out = _predict(model, batch)
    k = cfg.test.detections_per_image
    expected = {
        "boxes": ((2, k, 4), np.float32), "scores": ((2, k), np.float32), "classes": ((2, k), np.int32),
        "valid": ((2, k), np.bool_), "top_box": ((2, 4), np.float32), "top_score": ((2,), np.float32),
        "top_class": ((2,), np.int32), "top_valid": ((2,), np.bool_), "pose": ((2, 7), np.float32),
        "projection": ((2, 3, 4), np.float32),
    }
    assert set(out) == set(expected)
    for name, (shape, dtype) in expected.items():
        assert out[name].shape == shape and out[name].dtype == dtype, name
    out = {k_: np.asarray(v) for k_, v in out.items()}
    valid = out["valid"]
    # valid is a prefix; scores sorted, in (threshold, 1]; boxes inside the content.
    assert np.all(valid[:, 1:] <= valid[:, :-1])
    s = np.where(valid, out["scores"], -1)
    assert np.all(np.diff(s, axis=1)[valid[:, 1:]] <= 1e-7)
    assert np.all(out["scores"][valid] > cfg.test.score_threshold) and np.all(out["scores"] <= 1)
    assert np.all((out["classes"] >= 0) & (out["classes"] < NUM_CLASSES))
    hw = batch["image_hw"][:, None, :].astype(np.float32)
    assert np.all(out["boxes"][..., :2] >= 0) and np.all(out["boxes"][..., 2:] <= hw + 1e-4)
    # The top detection is the first NMS output whenever one exists.
    first = valid[:, 0]
    np.testing.assert_allclose(out["top_box"][first], out["boxes"][first, 0])
    np.testing.assert_allclose(out["top_score"][first], out["scores"][first, 0])
    assert np.all(out["top_valid"] == first)
    # Pose is a valid release pose and its projection matches the float64 reference.
    pose = out["pose"].astype(np.float64)
    assert np.all(np.isfinite(pose)) and np.all(pose[:, 3] > 0) and np.all(pose[:, 4] > 0)
    p_ref = ref_projection_original(pose, batch["frame_height"], batch["original_hw"].astype(np.float64))
    norm = np.linalg.norm(p_ref, axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(out["projection"] / norm, p_ref / norm, atol=1e-5)


def test_bfloat16_compute_dtypes(batch):
    """bfloat16 compute (traced only), also with the optional box-geometry pose inputs."""
    c = tiny_model_config()
    c.compute_dtype = "bfloat16"
    c.pose_head.box_features = True
    m = detector.PoseDetector(c, NUM_CLASSES, rngs=_rngs())
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    feats = jax.eval_shape(lambda: m.features(batch))
    assert all(v.dtype == jnp.bfloat16 for v in feats.values())
    loss, metrics = jax.eval_shape(lambda: m.losses(batch, jax.random.PRNGKey(0)))
    assert loss.shape == () and loss.dtype == jnp.float32
    assert all(v.dtype == jnp.float32 for v in metrics.values())
    pred = jax.eval_shape(lambda: m.predict(batch))
    assert pred["pose"].dtype == jnp.float32 and pred["projection"].dtype == jnp.float32


@pytest.mark.slow
def test_overfit_pose(trainer, batch):
    """SGD on the two rectangles: the RoI pose loss falls by more than 10x, and ``predict``
    (box head, NMS, cascaded pose head, decoding) then recovers each image's box, class and
    pose."""
    _, graphdef, params, rest, tx, step = trainer
    pose_terms = ("loss_quaternion", "loss_offset", "loss_distance", "loss_focal")
    opt_state = tx.init(params)
    history = []
    t0 = time.perf_counter()
    for i in range(200):
        params, opt_state, loss, metrics, _, _ = step(params, opt_state, batch, jax.random.PRNGKey(100 + i))
        history.append([float(metrics[k]) for k in pose_terms] + [float(loss)])
    elapsed = time.perf_counter() - t0
    h = np.asarray(history)
    assert np.all(np.isfinite(h))
    start = h[:5, :4].sum(1).mean()
    end = h[-10:, :4].sum(1).mean()
    assert end < start / 10, (start, end, h[::10].round(4).tolist(), elapsed)
    assert h[-10:, 4].mean() < h[:5, 4].mean() / 5

    out = {k: np.asarray(v) for k, v in _predict(nnx.merge(graphdef, params, rest), batch).items()}
    np.testing.assert_array_equal(out["top_class"], batch["labels"][:, 0])
    assert np.all(out["top_valid"])
    for b in range(2):
        assert ref_iou(out["top_box"][b : b + 1], batch["boxes"][b])[0, 0] > 0.8
    pose = out["pose"].astype(np.float64)
    r_pred = ref_rotation(pose[:, 0], pose[:, 1], pose[:, 2])
    r_gt = ref_rotation(POSES[:, 0], POSES[:, 1], POSES[:, 2])
    cos = (np.trace(np.swapaxes(r_pred, -1, -2) @ r_gt, axis1=-2, axis2=-1) - 1) / 2
    assert np.all(np.degrees(np.arccos(np.clip(cos, -1, 1))) < 10), pose
    np.testing.assert_allclose(pose[:, 3:5], POSES[:, 3:5], rtol=0.1)
    # Principal point within 0.1 box sizes in input pixels (RoIs seen in training are the GT
    # box and ~1 proposal per image, so offsets are only roughly equivariant to the refined box).
    px_per_ann = np.stack([batch["original_hw"][:, 1] / 300.0, batch["original_hw"][:, 0] / batch["frame_height"]], -1)
    err_in = np.abs(pose[:, 5:] - POSES[:, 5:]) * px_per_ann * batch["scale"][:, None]
    box = batch["boxes"][:, 0]
    assert np.all(err_in < 0.1 * np.stack([box[:, 3] - box[:, 1], box[:, 2] - box[:, 0]], -1)), err_in
