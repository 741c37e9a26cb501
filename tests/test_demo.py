"""``python -m fgpose.demo``: its toy car, and the whole demo end to end (slow tier)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from fgpose import demo


def test_toy_car_is_a_closed_shapenet_framed_car():
    car = demo.toy_car()
    # Two boxes of 12 triangles, four 48-sided wheels (2 x 48 on the side, 2 x 48 in the caps).
    assert car.num_faces == 2 * 12 + 4 * 4 * 48
    assert car.diagonal == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(car.center, 0.0, atol=1e-5)
    # ShapeNet axes: length along X, +Y up, left/right symmetric in Z; the wheels are lowest.
    assert np.argmax(car.extents) == 0 and car.extents[1] < car.extents[0]
    v = car.vertices
    np.testing.assert_allclose(v[:, 2].max(), -v[:, 2].min(), atol=1e-6)
    lowest = v[v[:, 1] < v[:, 1].min() + 1e-3]
    assert np.all(np.abs(lowest[:, 0]) > 0.15)  # under the axles, not mid-body
    # Every part is a closed surface: each edge is shared by exactly two triangles.
    tm = trimesh.Trimesh(car.vertices, car.faces, process=False)
    assert tm.is_watertight
    poses = demo._poses(8)
    assert np.asarray(poses.azimuth).shape == (8,) and np.ptp(np.asarray(poses.azimuth)) > 5.0


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FGPOSE_RELEASE_DIR", raising=False)  # the toy car only
    assert demo.main(["--out", str(tmp_path), "--poses", "8"]) == 0
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["poses"] == 8 and report["mesh_faces"] == demo.toy_car().num_faces
    assert report["max_reprojection_error_px"] < 0.5
    assert report["refine_iou_after_mean"] > report["refine_iou_before_mean"]
    sheet = Image.open(tmp_path / "toy_car_sweep.png")
    assert sheet.size == (8 * 300, 2 * 200)  # one row of 8 poses: location field over depth
    assert "toy_car_sweep.png" in capsys.readouterr().out
