"""Evaluation of the location-field branch: Table 2 with one row per output (appearance, field,
combined), the field-quality metrics against hand-built cases, the fusion rule of the combined
row against a float64 reference, and an end-to-end run of the tiny field detector that writes
every output."""

from __future__ import annotations

import json
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import test_train as tt  # noqa: E402

from fgpose import camera  # noqa: E402
from fgpose import evaluate as ev  # noqa: E402


def test_field_quality_hand_built():
    """GT field constant c on a mask over the whole input; prediction c + (0.03, 0, 0.04) on the
    left half of the bins, c elsewhere; predicted foreground on the top 3 of 8 rows."""
    b, s, h, w = 2, 8, 32, 32
    c = np.array([0.1, -0.2, 0.3], np.float32)
    gt = np.broadcast_to(c, (b, h, w, 3)).copy()
    mask = np.ones((b, h, w), bool)
    pred = np.broadcast_to(c, (b, s, s, 3)).copy()
    pred[:, :, : s // 2] += np.array([0.03, 0.0, 0.04], np.float32)
    fg = np.zeros((b, s, s), np.float32)
    fg[:, :3] = 0.9
    box = np.array([[4.0, 4.0, 20.0, 28.0], [0.0, 0.0, 32.0, 32.0]], np.float32)
    q = {k: np.asarray(v) for k, v in ev.field_quality(jnp.asarray(pred), jnp.asarray(fg), jnp.asarray(box),
                                                       jnp.asarray(gt), jnp.asarray(mask)).items()}
    np.testing.assert_allclose(q["fg_count"], [s * s] * b)
    np.testing.assert_allclose(q["xyz_error_sum"] / q["fg_count"], [0.025] * b, rtol=1e-5)  # half the bins err 0.05
    np.testing.assert_allclose(q["intersection"] / q["union"], [3 / 8] * b)
    # Off the object: a mask on the right half only halves the true foreground; IoU = (3 x 4) / (3 x 4 + 5 x 4).
    mask[:, :, :16] = False
    gt[~mask] = 0
    q = {k: np.asarray(v) for k, v in ev.field_quality(jnp.asarray(pred[1:]), jnp.asarray(fg[1:]),
                                                       jnp.asarray(box[1:]), jnp.asarray(gt[1:]),
                                                       jnp.asarray(mask[1:])).items()}
    assert q["fg_count"][0] == s * s / 2 and q["xyz_error_sum"][0] == pytest.approx(0.0, abs=1e-6)
    assert q["intersection"][0] / q["union"][0] == pytest.approx(12 / 44)


def _pose_from_rotation(r: np.ndarray, rest: np.ndarray) -> np.ndarray:
    a, e, t = (np.asarray(x) for x in camera.angles_from_rotation(jnp.asarray(r, jnp.float32)))
    return np.concatenate([np.stack([a, e, t], -1), rest], -1).astype(np.float32)


@pytest.mark.parametrize("weight", [0.0, 0.25, 0.5, 1.0])
def test_fused_pose_matches_float64_rule(weight):
    rng = np.random.default_rng(3)
    m = 6
    r_app = Rotation.random(m, random_state=1)
    delta = Rotation.from_rotvec(rng.normal(0, 0.3, (m, 3)))
    r_fld = delta * r_app
    rest = np.stack([rng.uniform(2, 3, m), rng.uniform(300, 500, m), rng.uniform(-5, 5, m), rng.uniform(-5, 5, m)], -1)
    app = _pose_from_rotation(r_app.as_matrix(), rest)
    fld = _pose_from_rotation(r_fld.as_matrix(), rest + 1.0)
    out = ev.fused_pose(app, fld, weight)
    np.testing.assert_array_equal(out[:, 3:], app[:, 3:])  # d, f, u, v from the appearance head
    # float64 reference: normalised weighted mean of the quaternions on one hemisphere.
    qa = r_app.as_quat()[:, [3, 0, 1, 2]]
    qf = r_fld.as_quat()[:, [3, 0, 1, 2]]
    qf = np.where(np.sum(qa * qf, -1, keepdims=True) < 0, -qf, qf)
    q = (1 - weight) * qa + weight * qf
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    want = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    got = np.asarray(camera.Pose.from_array(jnp.asarray(out)).rotation(), np.float64)
    assert np.max(np.abs(got - want)) < 1e-5


def examples_with_fields(n: int, seed: int) -> list[dict]:
    """test_train's examples plus a mask on the box and a smooth location field on it."""
    out = []
    for ex in tt.make_examples(n, seed=seed):
        h, w = ex["image"].shape[:2]
        y0, x0, y1, x1 = np.round(ex["box"]).astype(int)
        mask = np.zeros((h, w, 1), np.uint8)
        mask[y0:y1, x0:x1] = 1
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        loc = np.stack([xx / w - 0.5, 0.5 - yy / h, 0.1 * np.ones_like(xx)], -1) * mask
        out.append(dict(ex, mask=mask, location_field=loc.astype(np.float32)))
    return out


def test_evaluate_field_detector_writes_three_rows(tmp_path, capsys):
    from fgpose.data import make_eval_iterator
    from fgpose.train import setup

    config = tt._real_config(1)
    config.model.field.enabled = True
    config.model.field.finetune_pose_net = True  # no pre-trained checkpoint in a test
    config.data.with_fields = True
    config.eval.max_examples = 6
    config.eval.num_overlays = 2
    config.eval.fusion_holdout = 4
    config.eval.fusion_grid = (0.0, 1.0, 5)
    examples = examples_with_fields(6, seed=7)
    s = setup(config, tt.NUM_CLASSES)

    def eval_iter(cfg, split, pi, pc):
        return make_eval_iterator(cfg, split, pi, pc, source=examples)

    capsys.readouterr()
    res = ev.evaluate(config, tmp_path, s.graphdef, s.state, mesh=s.mesh, step=1, state_shardings=s.state_shardings,
                      eval_iterator_fn=eval_iter, num_classes=tt.NUM_CLASSES)
    text = capsys.readouterr().out
    for label in ("Baseline (appearance)", "Field only", "w./ Field (combined)", "foreground IoU"):
        assert label in text, text
    assert set(res["rows"]) == {"appearance", "field", "combined"}
    assert res["fusion_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0) and res["fusion_weight_source"].startswith("fitted")
    assert res["rot_median_deg"] == res["rows"]["combined"]["rot_median_deg"]
    assert res["field_xyz_error"] > 0 and 0 <= res["field_fg_iou"] <= 100
    doc = json.loads((tmp_path / "eval" / "1.json").read_text())
    assert set(doc["metrics"]["rows"]) == {"appearance", "field", "combined"}
    assert "field_xyz_error" in doc["metrics"] and "field_fg_iou" in doc["metrics"]
    per = doc["per_example_by_output"]
    for name in ("appearance", "field", "combined"):
        rot = np.array([float(x) for x in per[name]["rot_err_deg"]])
        assert res["rows"][name]["rot_median_deg"] == pytest.approx(np.median(rot), rel=1e-5)
    assert set(doc["curves_by_output"]) == {"appearance", "field", "combined"}
    assert (tmp_path / "eval" / "1_overlays.png").stat().st_size > 1000
    assert (tmp_path / "eval" / "1_accuracy.png").stat().st_size > 1000
