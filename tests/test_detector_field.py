"""The detector's location-field branch (``model.field.enabled``), on tiny shapes.

* the pose-from-field loss reaches only the pose-from-field network: exactly zero gradient to
  the field head, the FPN and the backbone;
* a frozen pose-from-field network has no ``nnx.Param`` (the optimizer never moves it);
* the total is the weighted sum of the terms, the field losses are finite and decrease over a
  few SGD steps on a tiny batch;
* ``predict`` returns the interface contract's keys and shapes, and ``pose`` is the fusion of
  ``pose_appearance`` and ``pose_field`` (checked against a float64 NumPy reference of the
  rule; weights 0 and 1 give the two inputs);
* with the branch disabled none of the field keys exist.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fgpose import camera
from fgpose.config import FIELD_LOSS_TERMS, LOSS_TERMS, tiny_model_config
from fgpose.models import detector

NUM_CLASSES = 3
POSES = np.array([[0.6, 0.2, 0.05, 2.5, 500.0, 3.0, -2.0], [2.4, 0.3, -0.1, 3.0, 450.0, -4.0, 1.0]], np.float32)


def field_config(finetune: bool = True, weight: float = 0.5):
    c = tiny_model_config()
    c.field.enabled = True
    c.field.finetune_pose_net = finetune
    c.field.fusion_weight = weight
    return c


def make_batch() -> dict[str, np.ndarray]:
    """Two 64x64 inputs, one rectangle each, with a smooth location field on the rectangle."""
    b = 2
    image = np.full((b, 64, 64, 3), 90, np.uint8)
    boxes = np.array([[[14, 10, 46, 50]], [[20, 24, 52, 60]]], np.float32)
    mask = np.zeros((b, 64, 64), bool)
    field = np.zeros((b, 64, 64, 3), np.float32)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) + 0.5
    for i, (y0, x0, y1, x1) in enumerate(boxes[:, 0].astype(int)):
        image[i, y0:y1, x0:x1] = ((230, 40, 30), (30, 200, 90))[i]
        mask[i, y0:y1, x0:x1] = True
        xyz = np.stack([(xx - x0) / (x1 - x0) - 0.5, 0.3 - (yy - y0) / (y1 - y0) * 0.6,
                        0.2 * np.sin(xx / 7.0 + i)], -1) * 0.5
        field[i] = np.where(mask[i][..., None], xyz, 0.0)
    return {
        "image": image,
        "image_hw": np.array([[64, 64], [64, 64]], np.int32),
        "original_hw": np.array([[128, 128], [128, 128]], np.int32),
        "scale": np.array([0.5, 0.5], np.float32),
        "boxes": boxes,
        "box_valid": np.ones((b, 1), bool),
        "labels": np.array([[1], [2]], np.int32),
        "pose": POSES[:, None, :],
        "frame_height": np.array([300.0, 300.0], np.float32),
        "index": np.arange(b, dtype=np.int32),
        "valid": np.ones((b,), bool),
        "mask": mask,
        "location_field": field,
    }


def _model(cfg) -> detector.PoseDetector:
    return detector.PoseDetector(cfg, NUM_CLASSES, rngs=nnx.Rngs(jax.random.key(0, impl="unsafe_rbg")))


@pytest.fixture(scope="module")
def batch():
    return make_batch()


def _flat(tree) -> dict[str, np.ndarray]:
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
            for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_pose_from_field_loss_gives_zero_gradient_to_field_head_and_backbone(batch):
    cfg = field_config(finetune=True)
    for k in LOSS_TERMS:  # the total is then the pose-from-field loss alone
        cfg.loss[k] = 1.0 if k == "field_quaternion" else 0.0
    model = _model(cfg)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p):
        loss, metrics = nnx.merge(graphdef, p, rest).losses(batch, jax.random.PRNGKey(1))
        return loss, metrics

    (loss, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
    np.testing.assert_allclose(float(loss), float(metrics["loss_field_quaternion"]), rtol=1e-6)
    assert float(loss) > 0
    grads = _flat(grads)
    moved = {k for k, g in grads.items() if np.any(g != 0)}
    assert moved and all(k.startswith("field_pose_net/") for k in moved), sorted(moved)[:5]
    assert any(k.startswith("field_head/") for k in grads) and any(k.startswith("backbone/") for k in grads)
    assert not any(np.any(g != 0) for k, g in grads.items() if k.startswith(("field_head/", "backbone/", "fpn/")))


def test_frozen_pose_net_has_no_params():
    model = _model(field_config(finetune=False))
    _, params, rest = nnx.split(model, nnx.Param, ...)
    assert not any(k.startswith("field_pose_net/") for k in _flat(params))
    frozen = nnx.state(model.field_pose_net, detector.FrozenWeight)
    assert len(jax.tree.leaves(frozen)) == len(jax.tree.leaves(nnx.state(_model(field_config()).field_pose_net)))
    assert any(k.startswith("field_head/") for k in _flat(params))


def test_field_losses_finite_weighted_and_decreasing(batch):
    cfg = field_config(finetune=True)
    cfg.loss.field_xyz = 2.0
    cfg.loss.field_fg = 0.5
    model = _model(cfg)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(3e-3)

    @jax.jit
    def step(params, opt_state, key):
        def loss_fn(p):
            return nnx.merge(graphdef, p, rest).losses(batch, key)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics

    opt_state = tx.init(params)
    history = []
    for i in range(12):
        params, opt_state, loss, metrics = step(params, opt_state, jax.random.PRNGKey(i))
        m = {k: float(v) for k, v in metrics.items()}
        assert all(np.isfinite(v) for v in m.values()), m
        total = sum(cfg.loss[k] * m[f"loss_{k}"] for k in LOSS_TERMS)
        np.testing.assert_allclose(float(loss), total, rtol=1e-5)
        history.append(m)
    assert set(FIELD_LOSS_TERMS) <= {k[5:] for k in history[0] if k.startswith("loss_")}
    for k in ("loss_field_xyz", "loss_field_fg", "loss_field_quaternion"):
        first, last = np.mean([h[k] for h in history[:2]]), np.mean([h[k] for h in history[-2:]])
        assert last < first, (k, [round(h[k], 4) for h in history])


def _quaternion(pose: np.ndarray) -> np.ndarray:
    q = np.asarray(camera.quaternion_from_rotation(camera.Pose.from_array(jnp.asarray(pose)).rotation()), np.float64)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _fuse64(qa: np.ndarray, qf: np.ndarray, w: float) -> np.ndarray:
    """Float64 reference of the documented rule: normalised weighted mean on qa's hemisphere."""
    qf = np.where(np.sum(qa * qf, -1, keepdims=True) < 0, -qf, qf)
    q = (1 - w) * qa + w * qf
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_predict_returns_contract_keys_and_fused_pose(batch, weight):
    cfg = field_config(finetune=False, weight=weight)
    model = _model(cfg)
    out = jax.jit(lambda m, b: m.predict(b))(model, {k: v for k, v in batch.items()
                                                     if k not in ("mask", "location_field")})
    s, b = cfg.field.size, 2
    shapes = {"field": (b, s, s, 3), "field_fg": (b, s, s), "pose_appearance": (b, 7), "pose_field": (b, 7),
              "pose": (b, 7), "projection": (b, 3, 4), "top_box": (b, 4), "boxes": (b, cfg.test.detections_per_image, 4)}
    for k, shape in shapes.items():
        assert out[k].shape == shape and out[k].dtype == jnp.float32, (k, out[k].shape, out[k].dtype)
    fg = np.asarray(out["field_fg"])
    assert np.all((fg >= 0) & (fg <= 1))
    pose, app, fld = (np.asarray(out[k], np.float64) for k in ("pose", "pose_appearance", "pose_field"))
    np.testing.assert_allclose(pose[:, 3:], app[:, 3:], rtol=1e-6)  # d, f, u, v from the appearance head
    np.testing.assert_allclose(fld[:, 3:], app[:, 3:], rtol=1e-6)
    want = _fuse64(_quaternion(app), _quaternion(fld), weight)
    got = _quaternion(pose)
    dot = np.abs(np.sum(want * got, -1))
    assert np.all(dot > 1 - 1e-5), (dot, weight)


def test_disabled_branch_has_no_field_outputs(batch):
    model = _model(tiny_model_config())
    assert not hasattr(model, "field_head") and not hasattr(model, "field_pose_net")
    out = jax.jit(lambda m, b: m.predict(b))(model, batch)
    assert not {"field", "field_fg", "pose_appearance", "pose_field"} & set(out)
    _, metrics = jax.jit(lambda m, b: m.losses(b, jax.random.PRNGKey(0)))(model, batch)
    assert not any("field" in k for k in metrics)
